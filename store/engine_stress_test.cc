// Several threads put, get, lease, abort and evict at once against a small
// DRAM pool backed by a real RocksDB; every byte read is verified.
#include <atomic>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "store/common/checksum.h"
#include "store/engine.h"
#include "store/engine_test_util.h"

namespace strata::store {
namespace {

using testing::Payload;
using testing::SmallSpec;
using testing::TestKey;

constexpr uint64_t kChunk = 4096;
constexpr int kThreads = 4;
constexpr int kOpsPerThread = 15000;
constexpr uint64_t kKeySpace = 300;

bool Allowed(const absl::Status& s) {
  // Misses, a full pool of pinned chunks, and racing writers of one key are
  // expected under this load; anything else is a bug.
  return s.ok() || s.code() == absl::StatusCode::kNotFound ||
         s.code() == absl::StatusCode::kResourceExhausted ||
         s.code() == absl::StatusCode::kAborted;
}

TEST(EngineStressTest, ConcurrentTrafficLosesAndCorruptsNothing) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "stress";
  std::filesystem::remove_all(dir);
  EngineOptions options;
  options.dram_bytes = 48 * kChunk;
  options.nvme_path = (dir / "nvme").string();
  options.nvme_capacity_bytes = 200 * kChunk;  // smaller than the key space
  options.reap_interval = absl::Milliseconds(5);
  options.write_back_wait = absl::Milliseconds(200);
  uint32_t ns;
  std::atomic<uint64_t> gets_ok{0}, bad_bytes{0}, unexpected{0};
  {
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    Engine& engine = **opened;
    ns = engine.RegisterNamespace(SmallSpec(4), "stress").value();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(t + 1);
        std::vector<std::byte> buf(kChunk);
        for (int op = 0; op < kOpsPerThread; ++op) {
          const uint64_t k = rng() % kKeySpace;
          absl::Status s;
          switch (rng() % 6) {
            case 0:
            case 1:  // put, chained to its predecessor
              s = engine.Put(ns, TestKey(k), k > 0 ? std::optional(TestKey(k - 1)) : std::nullopt,
                             Payload(TestKey(k), kChunk));
              break;
            case 2:  // get and verify
              s = engine.Get(ns, TestKey(k), buf);
              if (s.ok()) {
                ++gets_ok;
                if (buf != Payload(TestKey(k), kChunk)) ++bad_bytes;
              }
              break;
            case 3: {  // hold a multi-key lease, verify in place, release
              std::vector<ChunkKey> keys = {TestKey(k), TestKey((k + 1) % kKeySpace)};
              auto lease = engine.Acquire(ns, keys, absl::Milliseconds(50));
              s = lease.status();
              if (lease.ok()) {
                for (size_t i = 0; i < keys.size(); ++i) {
                  const auto& c = lease->chunks[i];
                  if (ChunkChecksum(c.data) != c.checksum ||
                      std::vector<std::byte>(c.data.begin(), c.data.end()) !=
                          Payload(keys[i], kChunk)) {
                    ++bad_bytes;
                  }
                }
                // Some leases are left to expire instead of being released.
                if (rng() % 8 != 0) s = engine.Release(lease->id);
              }
              break;
            }
            case 4: {  // begin a put and abort it, or let it expire
              std::vector<PutItem> items = {{TestKey(k + kKeySpace), {}}};
              auto lease = engine.BeginPut(ns, items, absl::Milliseconds(20));
              s = lease.status();
              if (lease.ok() && rng() % 2 == 0 && !lease->slots[0].already_present) {
                s = engine.AbortPut(lease->id);
              }
              break;
            }
            case 5: {
              std::vector<ChunkKey> keys = {TestKey(k), TestKey(k + 1)};
              s = engine.Lookup(ns, keys).status();
              break;
            }
          }
          if (!Allowed(s)) {
            ++unexpected;
            ADD_FAILURE() << "thread " << t << " op " << op << ": " << s;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    // Let the leases that were left to expire run out and be reaped.
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_EQ(engine.Stats().active_read_leases + engine.Stats().active_write_leases, 0u);
    ASSERT_TRUE(engine.FlushWriteBack().ok());
    EngineStats stats = engine.Stats();
    EXPECT_EQ(stats.checksum_failures, 0u);
    EXPECT_EQ(stats.write_back_errors, 0u);
    EXPECT_LE(stats.nvme_used_bytes, options.nvme_capacity_bytes);
    EXPECT_GT(stats.dram_evictions, 0u);
    EXPECT_GT(stats.reads_nvme, 0u);
    EXPECT_GT(gets_ok.load(), 0u);
    // Everything the index lists reads back intact.
    for (uint64_t k = 0; k < kKeySpace; ++k) {
      std::vector<std::byte> buf(kChunk);
      absl::Status s = engine.Get(ns, TestKey(k), buf);
      ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kNotFound) << s;
      if (s.ok()) EXPECT_EQ(buf, Payload(TestKey(k), kChunk)) << k;
    }
  }
  EXPECT_EQ(bad_bytes.load(), 0u);
  EXPECT_EQ(unexpected.load(), 0u);
  // After a restart every persisted chunk is served with the right bytes.
  options.reap_interval = absl::ZeroDuration();
  auto reopened = Engine::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_GT((*reopened)->Stats().chunks_restored, 0u);
  size_t found = 0;
  for (uint64_t k = 0; k < kKeySpace; ++k) {
    std::vector<std::byte> buf(kChunk);
    absl::Status s = (*reopened)->Get(ns, TestKey(k), buf);
    ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kNotFound) << s;
    if (s.ok()) {
      ++found;
      EXPECT_EQ(buf, Payload(TestKey(k), kChunk)) << k;
    }
  }
  EXPECT_EQ(found, (*reopened)->Stats().chunks_restored);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace strata::store
