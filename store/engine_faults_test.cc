// Faults and abuse at the engine: a failing NVMe tier never loses an
// acknowledged chunk while the node runs, hint sets cost bounded work, and
// calls of the wrong kind or shape leave what is stored alone.
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "absl/time/clock.h"
#include "store/common/checksum.h"
#include "store/engine.h"
#include "store/engine_test_util.h"
#include "store/faulty_nvme_tier.h"
#include "store/nvme_tier.h"

namespace strata::store {
namespace {

using testing::Payload;
using testing::SmallSpec;
using testing::TestKey;

constexpr uint64_t kChunk = 4096;  // SmallSpec(4)

class EngineFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("faults_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // An engine over a fault-injecting NVMe tier (faulty_ points at it).
  EngineOptions Options(uint64_t dram_chunks, uint64_t nvme_chunks, const NvmeFaults& faults) {
    EngineOptions o;
    o.dram_bytes = dram_chunks * kChunk;
    o.nvme_path = (dir_ / "nvme").string();
    o.nvme_capacity_bytes = nvme_chunks * kChunk;
    o.reap_interval = absl::ZeroDuration();
    o.write_back_retry = absl::Milliseconds(20);
    o.write_back_wait = absl::Milliseconds(200);
    o.wrap_nvme = [this, faults](std::unique_ptr<NvmeTier> inner) -> std::unique_ptr<NvmeTier> {
      auto tier = NewFaultyNvmeTier(std::move(inner), faults);
      faulty_ = tier.get();
      return tier;
    };
    return o;
  }

  // A DRAM-only engine of `dram_chunks` chunks (options from `o`) with one
  // namespace registered, in ns_.
  std::unique_ptr<Engine> DramOnly(uint64_t dram_chunks, EngineOptions o = {}) {
    o.dram_bytes = dram_chunks * kChunk;
    auto engine = OpenOrDie(o);
    if (engine != nullptr) ns_ = engine->RegisterNamespace(SmallSpec(4), "t").value_or(0);
    EXPECT_NE(ns_, 0u);
    return engine;
  }

  std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
    auto engine = Engine::Open(o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  absl::Status PutKey(Engine& engine, uint32_t ns, uint64_t i,
                      std::optional<uint64_t> parent = {}) {
    return testing::PutTestKey(engine, ns, i, kChunk, parent);
  }

  absl::Status Verify(Engine& engine, uint32_t ns, uint64_t i) {
    return testing::VerifyTestKey(engine, ns, i, kChunk);
  }

  // Waits (real time) until pred() or 10 s.
  template <typename Pred>
  bool Eventually(Pred pred) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!pred()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  std::filesystem::path dir_;
  FaultyNvmeTier* faulty_ = nullptr;
  uint32_t ns_ = 0;
};

// Issue: a full disk made the node evict chunks whose write-back had failed,
// silently losing acknowledged puts.
TEST_F(EngineFaultsTest, FullDiskKeepsUnpersistedChunksAndRefusesPuts) {
  NvmeFaults faults;
  faults.full_after_bytes = 2 * kChunk;  // the disk takes two chunks
  auto engine = OpenOrDie(Options(/*dram_chunks=*/4, /*nvme_chunks=*/64, faults));
  ASSERT_NE(engine, nullptr);
  auto ns = engine->RegisterNamespace(SmallSpec(4), "t");
  ASSERT_TRUE(ns.ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(PutKey(*engine, *ns, i).ok()) << i;
  ASSERT_TRUE(Eventually([&] { return engine->Stats().chunks_unpersisted == 2; }));
  EXPECT_EQ(engine->Stats().write_back_failing, 1u);
  EXPECT_EQ(engine->PersistenceStatus().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(engine->FlushWriteBack().code(), absl::StatusCode::kUnavailable);

  // A new put would need room: the two persisted chunks may go, the two
  // unpersisted ones never. While not persisting, puts are refused.
  absl::Status refused = PutKey(*engine, *ns, 4);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("not persisting"), std::string::npos) << refused;
  for (uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(Verify(*engine, *ns, i).ok()) << i;

  // The disk frees up: the retry persists them and puts are taken again.
  faulty_->SetFaults(NvmeFaults());
  ASSERT_TRUE(Eventually([&] { return engine->Stats().chunks_unpersisted == 0; }));
  EXPECT_TRUE(engine->PersistenceStatus().ok());
  EXPECT_TRUE(engine->FlushWriteBack().ok());
  for (uint64_t i = 4; i < 8; ++i) ASSERT_TRUE(PutKey(*engine, *ns, i).ok()) << i;
  ASSERT_TRUE(engine->FlushWriteBack().ok());
  EXPECT_GE(engine->Stats().write_back_errors, 2u);

  // Everything acknowledged survives a restart.
  engine.reset();
  engine = OpenOrDie(Options(4, 64, NvmeFaults()));
  ASSERT_NE(engine, nullptr);
  for (uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(Verify(*engine, *ns, i).ok()) << i;
}

TEST_F(EngineFaultsTest, WriteErrorsAreRetriedUntilTheyPass) {
  NvmeFaults faults;
  faults.write_error = 1.0;
  auto engine = OpenOrDie(Options(8, 64, faults));
  ASSERT_NE(engine, nullptr);
  auto ns = engine->RegisterNamespace(SmallSpec(4), "t");
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(PutKey(*engine, *ns, 1).ok());
  ASSERT_TRUE(Eventually([&] { return faulty_->counts().write_errors >= 3; }));
  auto lookup = engine->Lookup(*ns, std::vector<ChunkKey>{TestKey(1)});
  ASSERT_TRUE(lookup.ok());
  EXPECT_FALSE(lookup->persisted[0]);
  EXPECT_EQ(lookup->tiers[0], Tier::kDram);
  faulty_->SetFaults(NvmeFaults());
  ASSERT_TRUE(Eventually([&] {
    auto l = engine->Lookup(*ns, std::vector<ChunkKey>{TestKey(1)});
    return l.ok() && l->persisted[0];
  }));
  EXPECT_TRUE(Verify(*engine, *ns, 1).ok());
}

// A failed NVMe read (an I/O error, not corruption) keeps the NVMe copy:
// the next read promotes it.
TEST_F(EngineFaultsTest, NvmeReadErrorKeepsTheCopy) {
  auto engine = OpenOrDie(Options(/*dram_chunks=*/2, 64, NvmeFaults()));
  ASSERT_NE(engine, nullptr);
  auto ns = engine->RegisterNamespace(SmallSpec(4), "t");
  ASSERT_TRUE(ns.ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(PutKey(*engine, *ns, i).ok());
  ASSERT_TRUE(engine->FlushWriteBack().ok());  // chunk 0 is now on NVMe only
  NvmeFaults faults;
  faults.read_error = 1.0;
  faulty_->SetFaults(faults);
  EXPECT_EQ(Verify(*engine, *ns, 0).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->Stats().nvme_read_errors, 1u);
  faulty_->SetFaults(NvmeFaults());
  EXPECT_TRUE(Verify(*engine, *ns, 0).ok());
}

// A DRAM copy damaged after commit is caught at write-back: dropped and
// counted, never persisted or served.
TEST_F(EngineFaultsTest, DramCopyDamagedBeforeWriteBackIsDropped) {
  NvmeFaults faults;
  faults.slow = absl::Milliseconds(300);  // holds the write-back back
  auto engine = OpenOrDie(Options(8, 64, faults));
  ASSERT_NE(engine, nullptr);
  auto ns = engine->RegisterNamespace(SmallSpec(4), "t");
  ASSERT_TRUE(ns.ok());
  PutItem item{TestKey(1), std::nullopt};
  auto lease = engine->BeginPut(*ns, std::span<const PutItem>(&item, 1));
  ASSERT_TRUE(lease.ok());
  std::vector<std::byte> bytes = Payload(TestKey(1), kChunk);
  std::memcpy(lease->slots[0].dest.data(), bytes.data(), kChunk);
  const uint64_t sum = ChunkChecksum(bytes);
  ASSERT_TRUE(engine->CommitPut(lease->id, std::span<const uint64_t>(&sum, 1)).ok());
  engine->dram_region()[lease->slots[0].pool_offset + 7] ^= std::byte{1};
  ASSERT_TRUE(engine->FlushWriteBack().ok());
  EXPECT_EQ(engine->Stats().checksum_failures, 1u);
  EXPECT_EQ(Verify(*engine, *ns, 1).code(), absl::StatusCode::kNotFound);
}

// Issue: a chunk naming itself as parent, then one hint of 4096 jobs naming
// it, took 21 s and 2 GB; long chains hinted by 8 schedulers did the same.
TEST_F(EngineFaultsTest, SelfParentIsRejected) {
  auto engine = DramOnly(8);
  ASSERT_TRUE(PutKey(*engine, ns_, 1).ok());
  absl::Status s = PutKey(*engine, ns_, 2, /*parent=*/2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("itself"), std::string::npos);
  EXPECT_TRUE(Verify(*engine, ns_, 1).ok());
  EXPECT_EQ(Verify(*engine, ns_, 2).code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineFaultsTest, HintWorkIsOnePassOverDistinctChunks) {
  constexpr uint64_t kChain = 2000;
  auto engine = DramOnly(kChain + 8);
  const uint32_t* ns = &ns_;
  for (uint64_t i = 0; i < kChain; ++i) {
    ASSERT_TRUE(PutKey(*engine, *ns, i, i == 0 ? std::nullopt : std::optional<uint64_t>(i - 1))
                    .ok());
  }
  // 8 schedulers, each 4096 jobs ending anywhere on the chain.
  for (int s = 0; s < 8; ++s) {
    std::vector<JobHint> jobs(4096);
    for (size_t j = 0; j < jobs.size(); ++j) {
      jobs[j].last_key = TestKey((j * 7919 + s) % kChain);
      jobs[j].queue_position = static_cast<uint32_t>(j);
    }
    const uint64_t before = engine->Stats().hint_resolve_steps;
    ASSERT_TRUE(engine->SetHints("sched-" + std::to_string(s), *ns, jobs, absl::Seconds(60)).ok());
    // One rebuild walks each stored chunk at most once.
    EXPECT_LE(engine->Stats().hint_resolve_steps - before, kChain) << s;
  }
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.hinted_chunks, kChain);
  EXPECT_EQ(stats.hint_jobs, 8u * 4096u);
  EXPECT_EQ(stats.hint_schedulers, 8u);
}

TEST_F(EngineFaultsTest, HintSchedulersAreBounded) {
  EngineOptions o;
  o.max_hint_schedulers = 2;
  auto engine = DramOnly(8, o);
  const uint32_t* ns = &ns_;
  std::vector<JobHint> jobs(1);
  jobs[0].last_key = TestKey(1);
  ASSERT_TRUE(engine->SetHints("a", *ns, jobs, absl::Seconds(60)).ok());
  ASSERT_TRUE(engine->SetHints("b", *ns, jobs, absl::Seconds(60)).ok());
  EXPECT_EQ(engine->SetHints("c", *ns, jobs, absl::Seconds(60)).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(engine->SetHints("a", *ns, jobs, absl::Seconds(60)).ok());  // replaces
  ASSERT_TRUE(engine->SetHints("a", *ns, {}, absl::Seconds(60)).ok());    // withdraws
  EXPECT_TRUE(engine->SetHints("c", *ns, jobs, absl::Seconds(60)).ok());
}

// Parent cycles can only come back from NVMe records (a chunk re-put after
// its parent was evicted); the restore cuts them and hints end.
TEST_F(EngineFaultsTest, ParentCycleFromNvmeIsCutAtRestore) {
  auto o = Options(8, 64, NvmeFaults());
  uint32_t ns = 0;
  {
    auto engine = OpenOrDie(o);
    ns = engine->RegisterNamespace(SmallSpec(4), "t").value();
    ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
    ASSERT_TRUE(PutKey(*engine, ns, 2, 1).ok());
    ASSERT_TRUE(engine->FlushWriteBack().ok());
  }
  {
    // Rewrite chunk 1's record so that its parent is chunk 2: 1 -> 2 -> 1.
    NvmeTierOptions t;
    t.path = o.nvme_path;
    t.capacity_bytes = o.nvme_capacity_bytes;
    auto tier = NvmeTier::Open(t);
    ASSERT_TRUE(tier.ok()) << tier.status();
    std::vector<std::byte> bytes = Payload(TestKey(1), kChunk);
    NvmeRecord rec{TestKey(1), TestKey(2), ns, static_cast<uint32_t>(kChunk),
                   ChunkChecksum(bytes)};
    ASSERT_TRUE((*tier)->Write(rec, bytes).ok());
  }
  auto engine = OpenOrDie(o);
  ASSERT_NE(engine, nullptr);
  std::vector<JobHint> jobs(4096);
  for (auto& j : jobs) j.last_key = TestKey(2);
  ASSERT_TRUE(engine->SetHints("s", ns, jobs, absl::Seconds(60)).ok());
  // One of the two links is cut (which one depends on the restore order).
  EXPECT_LE(engine->Stats().hint_resolve_steps, 2u);
  EXPECT_GE(engine->Stats().hinted_chunks, 1u);
  EXPECT_LE(engine->Stats().hinted_chunks, 2u);
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  EXPECT_TRUE(Verify(*engine, ns, 2).ok());
}

// Issue: the same namespace with its extra keys in another order got
// another id, and a put of the same key under it failed.
TEST_F(EngineFaultsTest, NamespaceIdentityIsTheCanonicalEncoding) {
  auto engine = DramOnly(8);
  NamespaceSpec a = SmallSpec(4);
  a.extra_keys = {{"lora", "x"}, {"adapter", "y"}};
  NamespaceSpec b = SmallSpec(4);
  b.extra_keys = {{"adapter", "y"}, {"lora", "x"}};
  auto ida = engine->RegisterNamespace(a, "t");
  auto idb = engine->RegisterNamespace(b, "t");
  ASSERT_TRUE(ida.ok() && idb.ok());
  EXPECT_EQ(*ida, *idb);
  ASSERT_TRUE(PutKey(*engine, *ida, 1).ok());
  EXPECT_TRUE(PutKey(*engine, *idb, 1).ok());
  EXPECT_EQ(engine->FindNamespace(b, "t").value_or(0), *ida);
  EXPECT_EQ(engine->Stats().namespaces, 2u);  // DramOnly's and this one
}

// Issue: PutAbort on one's read lease (or Release on a write lease) dropped
// the lease's ownership; the engine now says FailedPrecondition and keeps it.
TEST_F(EngineFaultsTest, WrongKindOfLeaseCallKeepsTheLease) {
  auto engine = DramOnly(8);
  const uint32_t* ns = &ns_;
  ASSERT_TRUE(PutKey(*engine, *ns, 1).ok());
  const ChunkKey key = TestKey(1);
  auto read = engine->Acquire(*ns, std::span<const ChunkKey>(&key, 1));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(engine->AbortPut(read->id).code(), absl::StatusCode::kFailedPrecondition);
  const uint64_t sum = 0;
  EXPECT_EQ(engine->CommitPut(read->id, std::span<const uint64_t>(&sum, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(engine->Release(read->id).ok());

  PutItem item{TestKey(2), std::nullopt};
  auto write = engine->BeginPut(*ns, std::span<const PutItem>(&item, 1));
  ASSERT_TRUE(write.ok());
  EXPECT_EQ(engine->Release(write->id).code(), absl::StatusCode::kFailedPrecondition);
  std::vector<std::byte> bytes = Payload(TestKey(2), kChunk);
  std::memcpy(write->slots[0].dest.data(), bytes.data(), kChunk);
  const uint64_t sum2 = ChunkChecksum(bytes);
  EXPECT_TRUE(engine->CommitPut(write->id, std::span<const uint64_t>(&sum2, 1)).ok());
  EXPECT_TRUE(Verify(*engine, *ns, 2).ok());
}

// Issue: namespaces could not be removed, so a node could be filled with
// them forever.
TEST_F(EngineFaultsTest, RemoveNamespaceDropsItsChunksEverywhere) {
  auto o = Options(4, 64, NvmeFaults());
  uint32_t keep = 0, gone = 0;
  {
    auto engine = OpenOrDie(o);
    keep = engine->RegisterNamespace(SmallSpec(4, "keep"), "t").value();
    gone = engine->RegisterNamespace(SmallSpec(4, "gone"), "t").value();
    for (uint64_t i = 0; i < 6; ++i) {  // more than DRAM holds: some NVMe only
      ASSERT_TRUE(PutKey(*engine, gone, i).ok());
    }
    ASSERT_TRUE(PutKey(*engine, keep, 100).ok());
    ASSERT_TRUE(engine->FlushWriteBack().ok());

    // An open lease blocks removal, and nothing is lost by the refusal.
    const ChunkKey key = TestKey(5);
    auto lease = engine->Acquire(gone, std::span<const ChunkKey>(&key, 1));
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(engine->RemoveNamespace(gone).status().code(),
              absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE(engine->Release(lease->id).ok());

    auto removed = engine->RemoveNamespace(gone);
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_EQ(*removed, 6u);
    EXPECT_EQ(engine->RemoveNamespace(gone).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(engine->Lookup(gone, std::vector<ChunkKey>{TestKey(0)}).status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_EQ(engine->Stats().nvme_used_bytes, kChunk);
    EXPECT_TRUE(Verify(*engine, keep, 100).ok());
  }
  auto engine = OpenOrDie(o);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Stats().namespaces, 1u);
  EXPECT_EQ(engine->Stats().chunks_restored, 1u);
  EXPECT_TRUE(Verify(*engine, keep, 100).ok());
  // The free id is given to the next namespace, which starts empty.
  auto again = engine->RegisterNamespace(SmallSpec(4, "gone"), "t");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, gone);
  EXPECT_EQ(Verify(*engine, *again, 0).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace strata::store
