// Scheduler hints on the engine: validation, prefetch in queue order within
// the window, never evicting a chunk needed sooner, withdrawal and expiry.
#include <filesystem>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "store/engine.h"
#include "store/engine_test_util.h"

namespace strata::store {
namespace {

using testing::Payload;
using testing::SmallSpec;
using testing::TestKey;

constexpr uint64_t kChunk = 4096;

class EngineHintsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("hints_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open(uint64_t dram_chunks, uint64_t prefetch_chunks) {
    EngineOptions o;
    o.dram_bytes = dram_chunks * kChunk;
    o.nvme_path = (dir_ / "nvme").string();
    o.nvme_capacity_bytes = 1024 * kChunk;
    o.clock = &clock_;
    o.reap_interval = absl::ZeroDuration();
    o.prefetch_bytes = prefetch_chunks * kChunk;
    o.max_hint_jobs = 16;
    auto engine = Engine::Open(o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    ns_ = engine_->RegisterNamespace(SmallSpec(4), "t").value();
  }

  // Puts chain `c`: keys 100*c .. 100*c + n - 1, each the parent of the next.
  void PutChain(int c, int n) {
    for (int i = 0; i < n; ++i) {
      const uint64_t k = 100 * c + i;
      std::optional<ChunkKey> parent;
      if (i > 0) parent = TestKey(k - 1);
      ASSERT_TRUE(engine_->Put(ns_, TestKey(k), parent, Payload(TestKey(k), kChunk)).ok());
      ASSERT_TRUE(engine_->FlushWriteBack().ok());
    }
  }
  std::vector<ChunkKey> Chain(int c, int n) {
    std::vector<ChunkKey> keys;
    for (int i = 0; i < n; ++i) keys.push_back(TestKey(100 * c + i));
    return keys;
  }
  JobHint Job(int c, int n, uint32_t position) {
    JobHint job;
    job.last_key = TestKey(100 * c + n - 1);
    job.queue_position = position;
    job.expected_start = clock_.Now() + absl::Seconds(1 + position);
    return job;
  }
  // Waits (real time) until `pred(stats)` holds, up to 5 s.
  template <typename Pred>
  bool WaitFor(Pred pred) {
    for (int i = 0; i < 500; ++i) {
      if (pred(engine_->Stats())) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }
  std::vector<Tier> Tiers(const std::vector<ChunkKey>& keys) {
    return engine_->Lookup(ns_, keys)->tiers;
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  std::unique_ptr<Engine> engine_;
  uint32_t ns_ = 0;
};

TEST_F(EngineHintsTest, BadHintsAreRejected) {
  Open(8, 4);
  std::vector<JobHint> jobs = {Job(1, 1, 0)};
  EXPECT_EQ(engine_->SetHints("", ns_, jobs, absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->SetHints(std::string(129, 's'), ns_, jobs, absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->SetHints("s", 42, jobs, absl::Seconds(1)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->SetHints("s", ns_, jobs, absl::Hours(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->SetHints("s", ns_, jobs, -absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<JobHint> many(17, jobs[0]);
  EXPECT_EQ(engine_->SetHints("s", ns_, many, absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  // Unknown keys are accepted but refer to nothing.
  ASSERT_TRUE(engine_->SetHints("s", ns_, jobs, absl::Seconds(5)).ok());
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.hint_jobs, 1u);
  EXPECT_EQ(s.hinted_chunks, 0u);
  EXPECT_EQ(s.hint_sets_received, 1u);
}

TEST_F(EngineHintsTest, PrefetchesTheNextJobsChunksWithinTheWindow) {
  Open(/*dram_chunks=*/6, /*prefetch_chunks=*/3);
  PutChain(1, 5);  // evicted from DRAM by chain 2 below, kept on NVMe
  PutChain(2, 6);
  EXPECT_EQ(Tiers(Chain(1, 5)), std::vector<Tier>(5, Tier::kNvme));
  std::vector<JobHint> jobs = {Job(1, 5, 0)};
  ASSERT_TRUE(engine_->SetHints("sched", ns_, jobs, absl::Seconds(30)).ok());
  EXPECT_EQ(engine_->Stats().hinted_chunks, 5u);
  // The window is 3 chunks: the first three of the chain, in order.
  ASSERT_TRUE(WaitFor([](const EngineStats& s) { return s.prefetches_issued == 3; }));
  absl::SleepFor(absl::Milliseconds(100));  // no more than the window
  EXPECT_EQ(engine_->Stats().prefetches_issued, 3u);
  std::vector<Tier> tiers = Tiers(Chain(1, 5));
  EXPECT_EQ(tiers, (std::vector<Tier>{Tier::kDram, Tier::kDram, Tier::kDram, Tier::kNvme,
                                      Tier::kNvme}));
  // The job reads its chain: the prefetched chunks were used, which frees
  // the window for the rest.
  auto lease = engine_->Acquire(ns_, Chain(1, 3));
  ASSERT_TRUE(lease.ok());
  for (const ReadChunk& c : lease->chunks) EXPECT_EQ(c.found_in, Tier::kDram);
  ASSERT_TRUE(engine_->Release(lease->id).ok());
  EXPECT_EQ(engine_->Stats().prefetches_used, 3u);
  ASSERT_TRUE(WaitFor([](const EngineStats& s) { return s.prefetches_issued == 5; }));
  EXPECT_EQ(Tiers(Chain(1, 5)), std::vector<Tier>(5, Tier::kDram));
}

TEST_F(EngineHintsTest, NeverEvictsAChunkNeededSoonerThanTheOneBroughtIn) {
  Open(/*dram_chunks=*/4, /*prefetch_chunks=*/4);
  PutChain(1, 4);  // ends up on NVMe only
  PutChain(2, 4);  // fills DRAM
  // Chain 2 runs first, chain 1 after it: bringing chain 1 in would evict
  // chain 2, which is needed sooner.
  std::vector<JobHint> jobs = {Job(2, 4, 0), Job(1, 4, 1)};
  ASSERT_TRUE(engine_->SetHints("sched", ns_, jobs, absl::Seconds(30)).ok());
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(engine_->Stats().prefetches_issued, 0u);
  EXPECT_EQ(Tiers(Chain(2, 4)), std::vector<Tier>(4, Tier::kDram));
  // Once chain 2 no longer runs, chain 1 may take its place.
  jobs = {Job(1, 4, 0)};
  ASSERT_TRUE(engine_->SetHints("sched", ns_, jobs, absl::Seconds(30)).ok());
  ASSERT_TRUE(WaitFor([](const EngineStats& s) { return s.prefetches_issued == 4; }));
  EXPECT_EQ(Tiers(Chain(1, 4)), std::vector<Tier>(4, Tier::kDram));
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.dram_evictions_unhinted, s.dram_evictions - s.dram_evictions_hinted);
}

TEST_F(EngineHintsTest, WithdrawnAndExpiredHintsReleasePrefetchedChunks) {
  Open(/*dram_chunks=*/4, /*prefetch_chunks=*/2);
  PutChain(1, 2);
  PutChain(2, 4);
  std::vector<JobHint> jobs = {Job(1, 2, 0)};
  ASSERT_TRUE(engine_->SetHints("sched", ns_, jobs, absl::Seconds(30)).ok());
  ASSERT_TRUE(WaitFor([](const EngineStats& s) { return s.prefetches_issued == 2; }));
  // Withdrawn before the job read them: evictable again, and wasted once
  // evicted unread.
  ASSERT_TRUE(engine_->SetHints("sched", ns_, {}, absl::Seconds(30)).ok());
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.hint_schedulers, 0u);
  EXPECT_EQ(s.prefetches_wasted, 0u);
  PutChain(3, 4);  // needs the whole pool: the formerly prefetched chunks go
  EXPECT_EQ(Tiers(Chain(1, 2)), std::vector<Tier>(2, Tier::kNvme));
  EXPECT_EQ(engine_->Stats().prefetches_wasted, 2u);

  // Expiry: a hint set past its ttl stops counting; a chunk prefetched for
  // it and read afterwards still counts as used.
  ASSERT_TRUE(engine_->SetHints("sched", ns_, jobs, absl::Seconds(2)).ok());
  ASSERT_TRUE(WaitFor([](const EngineStats& s) { return s.prefetches_issued == 4; }));
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(WaitFor([](const EngineStats& s) { return s.hint_jobs == 0; }));
  std::vector<std::byte> out(kChunk);
  ASSERT_TRUE(engine_->Get(ns_, TestKey(100), out).ok());
  s = engine_->Stats();
  EXPECT_EQ(s.prefetches_used, 1u);
  EXPECT_EQ(s.prefetches_wasted, 2u);
}

}  // namespace
}  // namespace strata::store
