// Tenant quotas in the engine: a tenant over its quota makes room from its
// own chunks only (in the policy's order), and is refused when none of them
// can go, while other tenants go on.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "store/engine.h"
#include "store/engine_test_util.h"

namespace strata::store {
namespace {

using testing::SmallSpec;
using testing::TestKey;

constexpr uint64_t kChunk = 4096;  // SmallSpec(4)

class EngineQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("engine_quota_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A node of `dram_chunks` chunks of DRAM and, if nonzero, `nvme_chunks`
  // on NVMe, with tenants "a" and "b" registered.
  void Open(uint64_t dram_chunks, uint64_t nvme_chunks = 0, std::string dram_policy = "lru") {
    EngineOptions o;
    o.dram_bytes = dram_chunks * kChunk;
    if (nvme_chunks > 0) {
      o.nvme_path = (dir_ / "nvme").string();
      o.nvme_capacity_bytes = nvme_chunks * kChunk;
    }
    o.clock = &clock_;
    o.reap_interval = absl::ZeroDuration();
    o.dram_policy = dram_policy;
    auto engine = Engine::Open(o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    auto a = engine_->RegisterNamespace(SmallSpec(4), "a");
    auto b = engine_->RegisterNamespace(SmallSpec(4), "b");
    ASSERT_TRUE(a.ok() && b.ok());
    a_ = *a;
    b_ = *b;
  }

  void SetQuota(const std::string& tenant, TenantQuota q) {
    quotas_[tenant] = q;
    engine_->SetTenantQuotas(quotas_);
  }

  absl::Status Put(uint32_t ns, uint64_t i, std::optional<uint64_t> parent = {}) {
    return testing::PutTestKey(*engine_, ns, i, kChunk, parent);
  }
  absl::Status Verify(uint32_t ns, uint64_t i) {
    return testing::VerifyTestKey(*engine_, ns, i, kChunk);
  }
  Tier TierOf(uint32_t ns, uint64_t i, bool* persisted = nullptr) {
    const ChunkKey key = TestKey(i);
    auto r = engine_->Lookup(ns, std::span<const ChunkKey>(&key, 1));
    EXPECT_TRUE(r.ok()) << r.status();
    if (persisted != nullptr) *persisted = r.ok() && r->persisted[0];
    return r.ok() ? r->tiers[0] : Tier::kMissing;
  }
  TenantStats Of(const std::string& tenant) { return engine_->GetTenantStats(tenant); }

  std::filesystem::path dir_;
  FakeClock clock_;
  std::unique_ptr<Engine> engine_;
  std::map<std::string, TenantQuota, std::less<>> quotas_;
  uint32_t a_ = 0, b_ = 0;
};

TEST_F(EngineQuotaTest, OverItsDramQuotaATenantEvictsOnlyItsOwnChunksInPolicyOrder) {
  Open(32);
  SetQuota("a", {.dram_bytes = 4 * kChunk});
  // b's chunks are the least recently used of the node: a node-wide
  // eviction would take them first.
  for (uint64_t i = 100; i < 106; ++i) ASSERT_TRUE(Put(b_, i).ok());
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(Put(a_, i).ok());
  EXPECT_EQ(Of("a").dram_bytes, 4 * kChunk);
  // Key 1 is read: key 2 is now a's least recently used.
  ASSERT_TRUE(Verify(a_, 1).ok());
  ASSERT_TRUE(Put(a_, 5).ok());
  EXPECT_EQ(TierOf(a_, 2), Tier::kMissing);
  EXPECT_EQ(TierOf(a_, 1), Tier::kDram);
  ASSERT_TRUE(Put(a_, 6).ok());
  EXPECT_EQ(TierOf(a_, 3), Tier::kMissing);
  for (uint64_t i : {1, 4, 5, 6}) EXPECT_TRUE(Verify(a_, i).ok()) << i;
  for (uint64_t i = 100; i < 106; ++i) EXPECT_TRUE(Verify(b_, i).ok()) << i;
  const TenantStats a = Of("a");
  EXPECT_EQ(a.dram_bytes, 4 * kChunk);
  EXPECT_EQ(a.dram_quota_evictions, 2u);
  EXPECT_EQ(a.quota.dram_bytes, 4 * kChunk);
  EXPECT_EQ(Of("b").dram_bytes, 6 * kChunk);
  EXPECT_EQ(Of("b").dram_quota_evictions, 0u);
  EXPECT_EQ(engine_->Stats().dram_evictions, 2u);
}

TEST_F(EngineQuotaTest, PrefixLruOrderRestrictedToTheTenant) {
  Open(32, 0, "prefix-lru");
  SetQuota("a", {.dram_bytes = 4 * kChunk});
  ASSERT_TRUE(Put(b_, 100).ok());
  // A chain 1 <- 2 <- 3, then 4 on its own.
  ASSERT_TRUE(Put(a_, 1).ok());
  ASSERT_TRUE(Put(a_, 2, 1).ok());
  ASSERT_TRUE(Put(a_, 3, 2).ok());
  ASSERT_TRUE(Put(a_, 4).ok());
  // 1 and 2 are older but have a cached descendant: the chain's tail goes
  // first; then 2, a leaf once 3 went, at its own recency (older than 4's).
  // b's chunk, older than all, stays.
  ASSERT_TRUE(Put(a_, 5).ok());
  EXPECT_EQ(TierOf(a_, 3), Tier::kMissing);
  EXPECT_EQ(TierOf(a_, 1), Tier::kDram);
  EXPECT_EQ(TierOf(a_, 2), Tier::kDram);
  ASSERT_TRUE(Put(a_, 6).ok());
  EXPECT_EQ(TierOf(a_, 2), Tier::kMissing);
  EXPECT_EQ(TierOf(a_, 4), Tier::kDram);
  EXPECT_EQ(TierOf(b_, 100), Tier::kDram);
  EXPECT_EQ(Of("a").dram_quota_evictions, 2u);
}

TEST_F(EngineQuotaTest, RefusedWhenNothingOfItsOwnCanGoWhileOthersGoOn) {
  Open(32);
  SetQuota("a", {.dram_bytes = 2 * kChunk});
  ASSERT_TRUE(Put(a_, 1).ok());
  ASSERT_TRUE(Put(a_, 2).ok());
  // Both of a's chunks under a read lease.
  std::vector<ChunkKey> keys = {TestKey(1), TestKey(2)};
  auto lease = engine_->Acquire(a_, keys);
  ASSERT_TRUE(lease.ok()) << lease.status();
  absl::Status refused = Put(a_, 3);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("tenant 'a' is at its DRAM quota"), std::string::npos)
      << refused;
  EXPECT_EQ(Of("a").quota_refusals, 1u);
  EXPECT_EQ(Of("a").dram_bytes, 2 * kChunk);
  // b is not limited by a's quota, and a's refusal evicted nothing of b's.
  for (uint64_t i = 100; i < 120; ++i) ASSERT_TRUE(Put(b_, i).ok()) << i;
  EXPECT_EQ(engine_->Stats().dram_evictions, 0u);
  // Released: a's next put evicts its own least recently used chunk.
  ASSERT_TRUE(engine_->Release(lease->id).ok());
  ASSERT_TRUE(Put(a_, 3).ok());
  EXPECT_EQ(TierOf(a_, 1), Tier::kMissing);
  EXPECT_TRUE(Verify(a_, 2).ok());
  EXPECT_TRUE(Verify(a_, 3).ok());

  // Open write leases count too: two uncommitted slots fill the quota.
  std::vector<PutItem> items = {{TestKey(10), std::nullopt}, {TestKey(11), std::nullopt}};
  auto writing = engine_->BeginPut(a_, items);
  ASSERT_TRUE(writing.ok()) << writing.status();
  EXPECT_EQ(Of("a").dram_bytes, 2 * kChunk);  // 2 and 3 evicted for them
  EXPECT_EQ(Put(a_, 12).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(engine_->AbortPut(writing->id).ok());
  EXPECT_EQ(Of("a").dram_bytes, 0u);
  EXPECT_TRUE(Put(a_, 12).ok());
}

TEST_F(EngineQuotaTest, ABatchLargerThanTheQuotaIsRefusedWhole) {
  Open(32);
  SetQuota("a", {.dram_bytes = 3 * kChunk});
  std::vector<PutItem> items;
  for (uint64_t i = 0; i < 4; ++i) items.push_back({TestKey(i), std::nullopt});
  auto lease = engine_->BeginPut(a_, items);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kResourceExhausted) << lease.status();
  EXPECT_EQ(Of("a").dram_bytes, 0u);
  EXPECT_EQ(engine_->Stats().active_write_leases, 0u);
  EXPECT_EQ(engine_->Stats().dram_used_bytes, 0u);
  // One chunk larger than the whole quota says so.
  SetQuota("a", {.dram_bytes = kChunk - 1});
  absl::Status big = Put(a_, 9);
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(big.message().find("larger than tenant 'a''s DRAM quota"), std::string::npos) << big;
}

TEST_F(EngineQuotaTest, NewQuotasApplyAtOnce) {
  Open(32);
  SetQuota("a", {.dram_bytes = 4 * kChunk});
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(Put(a_, i).ok());
  for (uint64_t i = 100; i < 104; ++i) ASSERT_TRUE(Put(b_, i).ok());
  // Lowered: a's two least recently used chunks go now.
  SetQuota("a", {.dram_bytes = 2 * kChunk});
  EXPECT_EQ(Of("a").dram_bytes, 2 * kChunk);
  EXPECT_EQ(TierOf(a_, 1), Tier::kMissing);
  EXPECT_EQ(TierOf(a_, 2), Tier::kMissing);
  EXPECT_EQ(TierOf(a_, 4), Tier::kDram);
  // b gets a quota below what it holds: its own chunks go, not a's.
  SetQuota("b", {.dram_bytes = kChunk});
  EXPECT_EQ(Of("b").dram_bytes, kChunk);
  EXPECT_EQ(Of("a").dram_bytes, 2 * kChunk);
  // Removed from the table: no limit.
  quotas_.erase("a");
  engine_->SetTenantQuotas(quotas_);
  for (uint64_t i = 10; i < 20; ++i) ASSERT_TRUE(Put(a_, i).ok());
  EXPECT_EQ(Of("a").dram_bytes, 12 * kChunk);
  EXPECT_EQ(Of("a").quota.dram_bytes, 0u);
}

TEST_F(EngineQuotaTest, WaitsForItsOwnWriteBackRatherThanFail) {
  Open(32, 64);
  SetQuota("a", {.dram_bytes = 2 * kChunk});
  // Every put finds a's previous chunks queued for write-back or persisted:
  // it waits for the writer, then evicts persisted DRAM copies.
  for (uint64_t i = 1; i <= 8; ++i) ASSERT_TRUE(Put(a_, i).ok()) << i;
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  EXPECT_LE(Of("a").dram_bytes, 2 * kChunk);
  EXPECT_EQ(Of("a").nvme_bytes, 8 * kChunk);
  // Every chunk survives on NVMe; reading promotes within the quota.
  for (uint64_t i = 1; i <= 8; ++i) EXPECT_TRUE(Verify(a_, i).ok()) << i;
  EXPECT_LE(Of("a").dram_bytes, 2 * kChunk);
  EXPECT_EQ(Of("a").quota_refusals, 0u);
}

TEST_F(EngineQuotaTest, PromotionIsRefusedWhenItsOwnChunksArePinned) {
  Open(32, 64);
  SetQuota("a", {.dram_bytes = 2 * kChunk});
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(Put(a_, i).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  ASSERT_TRUE(Put(b_, 100).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  // a's DRAM holds 3 and 4; 1 is on NVMe only.
  ASSERT_EQ(TierOf(a_, 1), Tier::kNvme);
  std::vector<ChunkKey> held = {TestKey(3), TestKey(4)};
  auto lease = engine_->Acquire(a_, held);
  ASSERT_TRUE(lease.ok()) << lease.status();
  absl::Status get = Verify(a_, 1);
  EXPECT_EQ(get.code(), absl::StatusCode::kResourceExhausted) << get;
  EXPECT_NE(get.message().find("get: tenant 'a' is at its DRAM quota"), std::string::npos) << get;
  EXPECT_TRUE(Verify(b_, 100).ok());
  ASSERT_TRUE(engine_->Release(lease->id).ok());
  EXPECT_TRUE(Verify(a_, 1).ok());
  EXPECT_EQ(Of("a").dram_bytes, 2 * kChunk);
}

TEST_F(EngineQuotaTest, OverItsNvmeQuotaATenantDeletesOnlyItsOwnNvmeChunks) {
  Open(64, 64);
  SetQuota("a", {.nvme_bytes = 3 * kChunk});
  for (uint64_t i = 100; i < 103; ++i) ASSERT_TRUE(Put(b_, i).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  for (uint64_t i = 1; i <= 6; ++i) ASSERT_TRUE(Put(a_, i).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  const TenantStats a = Of("a");
  EXPECT_EQ(a.nvme_bytes, 3 * kChunk);
  EXPECT_EQ(a.nvme_quota_evictions, 3u);
  EXPECT_EQ(Of("b").nvme_bytes, 3 * kChunk);
  for (uint64_t i = 100; i < 103; ++i) {
    bool persisted = false;
    EXPECT_EQ(TierOf(b_, i, &persisted), Tier::kDram);
    EXPECT_TRUE(persisted) << i;
  }
  for (uint64_t i = 1; i <= 6; ++i) {
    bool persisted = false;
    EXPECT_EQ(TierOf(a_, i, &persisted), Tier::kDram) << i;  // DRAM copies stay
    EXPECT_EQ(persisted, i > 3) << i;
  }
  EXPECT_EQ(engine_->Stats().nvme_used_bytes, 6 * kChunk);
  // A chunk larger than the NVMe quota could never be persisted: refused.
  SetQuota("a", {.nvme_bytes = kChunk / 2});
  EXPECT_EQ(Of("a").nvme_bytes, 0u);  // lowered: deleted at once
  absl::Status big = Put(a_, 9);
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(big.message().find("NVMe quota"), std::string::npos) << big;
  EXPECT_TRUE(Put(b_, 110).ok());
}

TEST_F(EngineQuotaTest, AChunkWithNoNvmeRoomInItsQuotaStaysInDramUnpersisted) {
  Open(64, 64);
  SetQuota("a", {.nvme_bytes = kChunk});
  ASSERT_TRUE(Put(a_, 1).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  // 1 is being read: it may not leave NVMe, so 2 finds no room.
  const ChunkKey one = TestKey(1);
  auto lease = engine_->Acquire(a_, std::span<const ChunkKey>(&one, 1));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(Put(a_, 2).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  bool persisted = true;
  EXPECT_EQ(TierOf(a_, 2, &persisted), Tier::kDram);
  EXPECT_FALSE(persisted);
  EXPECT_EQ(Of("a").nvme_quota_skips, 1u);
  EXPECT_EQ(Of("a").nvme_bytes, kChunk);
  EXPECT_TRUE(Verify(a_, 2).ok());
  ASSERT_TRUE(engine_->Release(lease->id).ok());
  // b persists as usual.
  ASSERT_TRUE(Put(b_, 100).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  EXPECT_EQ(Of("b").nvme_bytes, kChunk);
}

TEST_F(EngineQuotaTest, HintSetsLargerThanTheJobQuotaAreRefused) {
  Open(32);
  SetQuota("a", {.hint_jobs = 2});
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(Put(a_, i).ok());
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(Put(b_, 100 + i).ok());
  std::vector<JobHint> jobs = {{TestKey(1), 0}, {TestKey(2), 1}, {TestKey(3), 2}};
  absl::Status s = engine_->SetHints("sched", a_, jobs, absl::Seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("quota of 2 jobs"), std::string::npos) << s;
  EXPECT_TRUE(engine_->SetHints("sched", a_, std::span(jobs).first(2), absl::Seconds(10)).ok());
  std::vector<JobHint> b_jobs = {{TestKey(101), 0}, {TestKey(102), 1}, {TestKey(103), 2}};
  EXPECT_TRUE(engine_->SetHints("sched-b", b_, b_jobs, absl::Seconds(10)).ok());
  EXPECT_EQ(Of("a").quota_refusals, 1u);
}

TEST_F(EngineQuotaTest, AccountsFollowNamespacesAndRestarts) {
  Open(32, 64);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(Put(a_, i).ok());
  ASSERT_TRUE(Put(b_, 100).ok());
  ASSERT_TRUE(engine_->FlushWriteBack().ok());
  EXPECT_EQ(Of("a").namespaces, 1u);
  EXPECT_EQ(Of("a").dram_bytes, 3 * kChunk);
  EXPECT_EQ(Of("a").nvme_bytes, 3 * kChunk);
  // Restart: NVMe bytes come back per tenant.
  engine_.reset();
  Open(32, 64);
  EXPECT_EQ(Of("a").nvme_bytes, 3 * kChunk);
  EXPECT_EQ(Of("a").dram_bytes, 0u);
  EXPECT_EQ(Of("b").nvme_bytes, kChunk);
  // A quota given after the restart applies to what was restored.
  SetQuota("a", {.nvme_bytes = kChunk});
  EXPECT_EQ(Of("a").nvme_bytes, kChunk);
  EXPECT_EQ(Of("a").nvme_quota_evictions, 2u);
  // Removing the namespace gives everything back; the tenant stays listed
  // while it has a quota.
  ASSERT_TRUE(engine_->RemoveNamespace(a_).ok());
  ASSERT_TRUE(engine_->RemoveNamespace(b_).ok());
  std::vector<TenantStats> all = engine_->AllTenantStats();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].tenant, "a");
  EXPECT_EQ(all[0].namespaces, 0u);
  EXPECT_EQ(all[0].nvme_bytes, 0u);
  EXPECT_EQ(all[0].dram_bytes, 0u);
  EXPECT_EQ(engine_->Stats().nvme_used_bytes, 0u);
}

}  // namespace
}  // namespace strata::store
