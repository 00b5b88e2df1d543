#include "store/isolated_data_plane.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "proto/data_message.h"
#include "store/engine.h"

namespace strata::store {
namespace {

std::string PutChunkHeader(uint64_t lease, uint32_t index, const std::string& client_id) {
  proto::DataMessage m;
  m.kind = proto::DataMessage::Kind::kPutChunk;
  m.id = lease;
  m.index = index;
  m.client_id = client_id;
  return m.Encode();
}

class IsolatedDataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions o;
    o.dram_bytes = 1 << 20;
    auto engine = Engine::Open(o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    plane_ = std::make_unique<IsolatedDataPlane>(engine_.get(), 16);
  }

  // Whether the node would take the payload of this message.
  bool Accepted(uint64_t lease, uint32_t index, const std::string& client_id, size_t bytes) {
    const std::string header = PutChunkHeader(lease, index, client_id);
    return !plane_->Sink()(std::as_bytes(std::span(header)), bytes).dest.empty();
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<IsolatedDataPlane> plane_;
};

// Reproduced by tools/fuzz/isolated_fuzzer (corpus: short-leases): a write lease
// its client let expire, instead of committing or aborting it, stayed
// awaited for as long as the node ran, so a client opening short leases
// grew the node's memory without bound.
TEST_F(IsolatedDataPlaneTest, ForgetsWriteLeasesThatExpired) {
  const absl::Time past = absl::Now() - absl::Milliseconds(1);
  const absl::Time future = absl::Now() + absl::Minutes(1);
  for (uint64_t lease = 1; lease <= 1000; ++lease) {
    plane_->ExpectPut(lease, "c", {0, 1}, 64, past);
  }
  EXPECT_EQ(plane_->awaited_puts(), 1u);  // each forgot those before it
  plane_->ExpectPut(2000, "c", {0}, 64, future);
  EXPECT_EQ(plane_->awaited_puts(), 1u);

  // Chunks for a forgotten lease are dropped and counted; the live one
  // still takes its own.
  EXPECT_FALSE(Accepted(1000, 0, "c", 64));
  EXPECT_EQ(plane_->counters().messages_rejected.load(), 1u);
  EXPECT_TRUE(Accepted(2000, 0, "c", 64));
  // Nothing is awaited for a forgotten lease, and its late commit hears
  // that it expired (FailedPrecondition, at once), not a checksum verdict
  // on slots that never got their bytes.
  const absl::Status late = plane_->AwaitPut(1000, absl::Now() + absl::Minutes(1));
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition) << late;
  EXPECT_NE(late.message().find("expired"), std::string::npos) << late;
  EXPECT_EQ(plane_->AwaitPut(1, absl::Now() + absl::Minutes(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  plane_->ForgetPut(1);  // aborted or reaped by the engine: nothing more to say
  EXPECT_TRUE(plane_->AwaitPut(1, absl::Now()).ok());
  EXPECT_TRUE(plane_->AwaitPut(123456, absl::Now()).ok());  // never expected
}

// A lease that expired while still awaited (no later PutBegin reaped it)
// answers its commit at once instead of waiting out the commit's deadline.
TEST_F(IsolatedDataPlaneTest, ACommitOfAnExpiredLeaseDoesNotWait) {
  plane_->ExpectPut(7, "c", {0, 1}, 64, absl::Now() - absl::Milliseconds(1));
  const absl::Status s = plane_->AwaitPut(7, absl::Now() + absl::Seconds(20));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("expired"), std::string::npos) << s;
}

TEST_F(IsolatedDataPlaneTest, KeepsLeasesThatDidNotExpire) {
  const absl::Time future = absl::Now() + absl::Minutes(1);
  plane_->ExpectPut(1, "c", {0}, 64, future);
  plane_->ExpectPut(2, "d", {0, 3}, 64, future);
  EXPECT_EQ(plane_->awaited_puts(), 2u);
  EXPECT_FALSE(Accepted(2, 0, "c", 64));  // another client's lease
  EXPECT_FALSE(Accepted(2, 1, "d", 64));  // a slot it does not await
  EXPECT_FALSE(Accepted(2, 3, "d", 63));  // the wrong size
  EXPECT_TRUE(Accepted(2, 3, "d", 64));
  EXPECT_EQ(plane_->AwaitPut(1, absl::Now()).code(), absl::StatusCode::kFailedPrecondition);
  plane_->ForgetPut(1);
  plane_->ForgetPut(2);
  EXPECT_EQ(plane_->awaited_puts(), 0u);
}

}  // namespace
}  // namespace strata::store
