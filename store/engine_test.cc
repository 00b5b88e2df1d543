#include "store/engine.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/common/checksum.h"
#include "store/engine_test_util.h"
#include "store/nvme_tier.h"

namespace strata::store {
namespace {

using testing::Payload;
using testing::SmallSpec;
using testing::TestKey;

constexpr uint64_t kChunk = 4096;  // SmallSpec(4)

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("engine_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  EngineOptions Options(uint64_t dram_chunks, uint64_t nvme_chunks = 0) {
    EngineOptions o;
    o.dram_bytes = dram_chunks * kChunk;
    if (nvme_chunks > 0) {
      o.nvme_path = (dir_ / "nvme").string();
      o.nvme_capacity_bytes = nvme_chunks * kChunk;
    }
    o.clock = &clock_;
    o.reap_interval = absl::ZeroDuration();
    return o;
  }

  std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
    auto engine = Engine::Open(o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  uint32_t Register(Engine& engine) {
    auto ns = engine.RegisterNamespace(SmallSpec(4), "tenant");
    EXPECT_TRUE(ns.ok()) << ns.status();
    return ns.value_or(0);
  }

  absl::Status PutKey(Engine& engine, uint32_t ns, uint64_t i,
                      std::optional<uint64_t> parent = {}) {
    return testing::PutTestKey(engine, ns, i, kChunk, parent);
  }

  // OK when key i reads back with exactly its bytes.
  absl::Status Verify(Engine& engine, uint32_t ns, uint64_t i) {
    return testing::VerifyTestKey(engine, ns, i, kChunk);
  }

  std::filesystem::path dir_;
  FakeClock clock_;
};

TEST_F(EngineTest, PutGetRoundTripAndLookup) {
  auto engine = OpenOrDie(Options(16));
  uint32_t ns = Register(*engine);
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  ASSERT_TRUE(PutKey(*engine, ns, 2, 1).ok());
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  EXPECT_TRUE(Verify(*engine, ns, 2).ok());
  std::vector<ChunkKey> keys = {TestKey(1), TestKey(2), TestKey(3), TestKey(1)};
  auto lookup = engine->Lookup(ns, keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_chunks, 2u);
  EXPECT_EQ(lookup->tiers[0], Tier::kDram);
  EXPECT_EQ(lookup->tiers[2], Tier::kMissing);
  EXPECT_EQ(lookup->tiers[3], Tier::kDram);
  EXPECT_EQ(Verify(*engine, ns, 3).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, RegisterNamespaceIsIdempotentAndValidated) {
  auto engine = OpenOrDie(Options(16));
  uint32_t a = Register(*engine);
  EXPECT_EQ(Register(*engine), a);
  EXPECT_NE(engine->RegisterNamespace(SmallSpec(4), "other").value(), a);
  EXPECT_EQ(engine->GetNamespace(a)->chunk_bytes, kChunk);
  NamespaceSpec bad = SmallSpec(4);
  bad.num_layers = 0;
  EXPECT_EQ(engine->RegisterNamespace(bad, "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A chunk larger than the whole DRAM pool can never be stored.
  EXPECT_EQ(engine->RegisterNamespace(SmallSpec(128), "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->GetNamespace(99).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, BadInputIsRejectedAndNothingStoredIsLost) {
  auto engine = OpenOrDie(Options(16));
  uint32_t ns = Register(*engine);
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  // Wrong payload size for the layout.
  EXPECT_EQ(engine->Put(ns, TestKey(2), {}, Payload(TestKey(2), kChunk - 1)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> small(kChunk + 8);
  EXPECT_EQ(engine->Get(ns, TestKey(1), small).code(), absl::StatusCode::kInvalidArgument);
  // Unknown namespace.
  EXPECT_EQ(engine->Put(77, TestKey(2), {}, Payload(TestKey(2), kChunk)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->Lookup(77, std::vector<ChunkKey>{TestKey(1)}).status().code(),
            absl::StatusCode::kNotFound);
  // Empty, oversized and repeated batches; bad lease ttls.
  EXPECT_EQ(engine->Lookup(ns, {}).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<ChunkKey> many(5000, TestKey(1));
  EXPECT_EQ(engine->Acquire(ns, many).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<ChunkKey> twice = {TestKey(1), TestKey(1)};
  EXPECT_EQ(engine->Acquire(ns, twice).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<PutItem> items = {{TestKey(5), {}}, {TestKey(5), {}}};
  EXPECT_EQ(engine->BeginPut(ns, items).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Acquire(ns, std::vector<ChunkKey>{TestKey(1)}, absl::Hours(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Acquire(ns, std::vector<ChunkKey>{TestKey(1)}, -absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The key stored in another namespace is not visible from this one.
  uint32_t other = engine->RegisterNamespace(SmallSpec(4), "other").value();
  EXPECT_EQ(Verify(*engine, other, 1).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->Put(other, TestKey(1), {}, Payload(TestKey(1), kChunk)).code(),
            absl::StatusCode::kInvalidArgument);
  // Unknown leases.
  EXPECT_EQ(engine->Release(12345).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->CommitPut(12345, {}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->AbortPut(12345).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  EXPECT_EQ(engine->Stats().index_entries, 1u);
}

TEST_F(EngineTest, PutOfPresentKeyIsIdempotent) {
  auto engine = OpenOrDie(Options(16));
  uint32_t ns = Register(*engine);
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  std::vector<PutItem> items = {{TestKey(1), {}}, {TestKey(2), {}}};
  auto lease = engine->BeginPut(ns, items);
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(lease->slots[0].already_present);
  EXPECT_TRUE(lease->slots[0].dest.empty());
  EXPECT_FALSE(lease->slots[1].already_present);
  testing::FillPayload(TestKey(2), lease->slots[1].dest);
  std::vector<uint64_t> sums = {0, ChunkChecksum(lease->slots[1].dest)};
  ASSERT_TRUE(engine->CommitPut(lease->id, sums).ok());
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  EXPECT_TRUE(Verify(*engine, ns, 2).ok());
  EXPECT_EQ(engine->Stats().puts_already_present, 1u);
}

TEST_F(EngineTest, ChunkIsInvisibleUntilCommitAndConflictingWriterIsAborted) {
  auto engine = OpenOrDie(Options(16));
  uint32_t ns = Register(*engine);
  std::vector<PutItem> items = {{TestKey(1), {}}};
  auto lease = engine->BeginPut(ns, items);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(engine->Lookup(ns, std::vector<ChunkKey>{TestKey(1)})->tiers[0], Tier::kMissing);
  EXPECT_EQ(engine->Acquire(ns, std::vector<ChunkKey>{TestKey(1)}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->BeginPut(ns, items).status().code(), absl::StatusCode::kAborted);
  testing::FillPayload(TestKey(1), lease->slots[0].dest);
  // Wrong number of checksums.
  EXPECT_EQ(engine->CommitPut(lease->id, {}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint64_t> sums = {ChunkChecksum(lease->slots[0].dest)};
  ASSERT_TRUE(engine->CommitPut(lease->id, sums).ok());
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  // The lease is done.
  EXPECT_EQ(engine->CommitPut(lease->id, sums).code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, CommitWithWrongChecksumStoresNothing) {
  auto engine = OpenOrDie(Options(4));
  uint32_t ns = Register(*engine);
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  std::vector<PutItem> items = {{TestKey(2), {}}, {TestKey(3), {}}};
  auto lease = engine->BeginPut(ns, items);
  ASSERT_TRUE(lease.ok());
  testing::FillPayload(TestKey(2), lease->slots[0].dest);
  testing::FillPayload(TestKey(3), lease->slots[1].dest);
  std::vector<uint64_t> sums = {ChunkChecksum(lease->slots[0].dest),
                                ChunkChecksum(lease->slots[1].dest) ^ 1};
  EXPECT_EQ(engine->CommitPut(lease->id, sums).code(), absl::StatusCode::kDataLoss);
  auto lookup = engine->Lookup(ns, std::vector<ChunkKey>{TestKey(1), TestKey(2), TestKey(3)});
  EXPECT_EQ(lookup->tiers[1], Tier::kMissing);
  EXPECT_EQ(lookup->tiers[2], Tier::kMissing);
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  EXPECT_EQ(engine->Stats().dram_used_bytes, kChunk);  // the two slots were freed
}

TEST_F(EngineTest, ExpiredWriteLeaseFreesItsSlotsAndAbortFreesToo) {
  auto engine = OpenOrDie(Options(2));
  uint32_t ns = Register(*engine);
  std::vector<PutItem> items = {{TestKey(1), {}}, {TestKey(2), {}}};
  auto lease = engine->BeginPut(ns, items, absl::Seconds(5));
  ASSERT_TRUE(lease.ok());
  // The pool is full of uncommitted slots: nothing can be evicted.
  EXPECT_EQ(PutKey(*engine, ns, 3).code(), absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(engine->ReapExpiredLeases(), 0u);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(engine->ReapExpiredLeases(), 1u);
  EXPECT_EQ(engine->Stats().dram_used_bytes, 0u);
  std::vector<uint64_t> sums = {0, 0};
  EXPECT_EQ(engine->CommitPut(lease->id, sums).code(), absl::StatusCode::kNotFound);
  // Key 1 can be written again by a new writer.
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  auto other = engine->BeginPut(ns, std::vector<PutItem>{{TestKey(4), {}}});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(engine->AbortPut(other->id).ok());
  EXPECT_EQ(engine->Stats().dram_used_bytes, kChunk);
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
}

TEST_F(EngineTest, LeasedChunksAreNeverEvictedAndReadLeasesExpire) {
  auto engine = OpenOrDie(Options(2));
  uint32_t ns = Register(*engine);
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  ASSERT_TRUE(PutKey(*engine, ns, 2).ok());
  auto lease = engine->Acquire(ns, std::vector<ChunkKey>{TestKey(1), TestKey(2)}, absl::Seconds(3));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->chunks[0].found_in, Tier::kDram);
  EXPECT_EQ(PutKey(*engine, ns, 3).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::vector<std::byte>(lease->chunks[1].data.begin(), lease->chunks[1].data.end()),
            Payload(TestKey(2), kChunk));
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(engine->ReapExpiredLeases(), 1u);
  EXPECT_EQ(engine->Release(lease->id).code(), absl::StatusCode::kNotFound);
  // Unpinned now: the put evicts the least recently used chunk.
  ASSERT_TRUE(PutKey(*engine, ns, 3).ok());
  EXPECT_EQ(engine->Stats().dram_evictions, 1u);
}

TEST_F(EngineTest, DramEvictionIsPrefixAwareLru) {
  auto engine = OpenOrDie(Options(3));
  uint32_t ns = Register(*engine);
  // A chain 1 -> 2 -> 3; chunk 1 is the oldest but has cached descendants.
  ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(PutKey(*engine, ns, 2, 1).ok());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(PutKey(*engine, ns, 3, 2).ok());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(PutKey(*engine, ns, 4).ok());  // evicts the leaf 3, not the root 1
  auto lookup = engine->Lookup(ns, std::vector<ChunkKey>{TestKey(1), TestKey(2), TestKey(3)});
  EXPECT_EQ(lookup->prefix_chunks, 2u);
  EXPECT_EQ(lookup->tiers[2], Tier::kMissing);
}

TEST_F(EngineTest, WriteThroughThenPromotionFromNvme) {
  auto engine = OpenOrDie(Options(2, 64));
  uint32_t ns = Register(*engine);
  for (uint64_t i = 1; i <= 6; ++i) {
    ASSERT_TRUE(PutKey(*engine, ns, i).ok());
    ASSERT_TRUE(engine->FlushWriteBack().ok());  // DRAM copies become evictable
  }
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.write_backs, 6u);
  EXPECT_EQ(stats.chunks_on_nvme, 6u);
  EXPECT_EQ(stats.chunks_in_dram, 2u);
  auto lookup = engine->Lookup(ns, std::vector<ChunkKey>{TestKey(1), TestKey(6)});
  EXPECT_EQ(lookup->tiers[0], Tier::kNvme);
  EXPECT_EQ(lookup->tiers[1], Tier::kDram);
  for (uint64_t i = 1; i <= 6; ++i) EXPECT_TRUE(Verify(*engine, ns, i).ok()) << i;
  EXPECT_GE(engine->Stats().reads_nvme, 4u);
  EXPECT_EQ(engine->Lookup(ns, std::vector<ChunkKey>{TestKey(6)})->tiers[0], Tier::kDram);
}

TEST_F(EngineTest, NvmeCapacityIsEnforced) {
  auto engine = OpenOrDie(Options(2, 3));
  uint32_t ns = Register(*engine);
  for (uint64_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(PutKey(*engine, ns, i).ok());
    ASSERT_TRUE(engine->FlushWriteBack().ok());
    clock_.Advance(absl::Seconds(1));
  }
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.chunks_on_nvme, 3u);
  EXPECT_EQ(stats.nvme_used_bytes, 3 * kChunk);
  EXPECT_EQ(stats.nvme_evictions, 2u);
  // 1 and 2 are gone everywhere (only 4 and 5 are in DRAM).
  EXPECT_EQ(Verify(*engine, ns, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Verify(*engine, ns, 3).ok());
  EXPECT_TRUE(Verify(*engine, ns, 5).ok());
}

TEST_F(EngineTest, RestartRebuildsIndexAndNamespacesFromNvme) {
  uint32_t ns;
  {
    auto engine = OpenOrDie(Options(4, 64));
    ns = Register(*engine);
    for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(PutKey(*engine, ns, i, i > 1 ? std::optional<uint64_t>(i - 1) : std::nullopt).ok());
  }  // the destructor flushes the write-back queue
  auto engine = OpenOrDie(Options(4, 64));
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.chunks_restored, 10u);
  EXPECT_EQ(stats.namespaces, 1u);
  EXPECT_EQ(Register(*engine), ns);
  for (uint64_t i = 1; i <= 10; ++i) EXPECT_TRUE(Verify(*engine, ns, i).ok()) << i;
  std::vector<ChunkKey> chain;
  for (uint64_t i = 1; i <= 10; ++i) chain.push_back(TestKey(i));
  EXPECT_EQ(engine->Lookup(ns, chain)->prefix_chunks, 10u);
}

TEST_F(EngineTest, CorruptNvmeCopyIsDataLossAndDropped) {
  uint32_t ns;
  {
    auto engine = OpenOrDie(Options(4, 64));
    ns = Register(*engine);
    for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(PutKey(*engine, ns, i).ok());
  }
  {
    NvmeTierOptions o;
    o.path = (dir_ / "nvme").string();
    o.capacity_bytes = 64 * kChunk;
    auto tier = NvmeTier::Open(o);
    ASSERT_TRUE(tier.ok()) << tier.status();
    std::vector<std::byte> garbage(kChunk, std::byte{0x5a});
    ASSERT_TRUE((*tier)->CorruptPayloadForTesting(TestKey(2), garbage).ok());
  }
  auto engine = OpenOrDie(Options(4, 64));
  EXPECT_EQ(Verify(*engine, ns, 2).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(engine->Lookup(ns, std::vector<ChunkKey>{TestKey(2)})->tiers[0], Tier::kMissing);
  EXPECT_EQ(Verify(*engine, ns, 2).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Verify(*engine, ns, 1).ok());
  EXPECT_TRUE(Verify(*engine, ns, 3).ok());
  EXPECT_EQ(engine->Stats().checksum_failures, 1u);
  // A fresh put of the dropped key works again.
  ASSERT_TRUE(PutKey(*engine, ns, 2).ok());
  EXPECT_TRUE(Verify(*engine, ns, 2).ok());
}

// The pool pre-faulted at open (private and shared) and not pre-faulted:
// chunks written into every slot read back byte for byte either way.
TEST_F(EngineTest, PrefaultedAndLazyPoolsStoreAndReadBackChunks) {
  for (const bool shared : {false, true}) {
    for (const bool prefault : {true, false}) {
      SCOPED_TRACE(absl::StrCat("shared=", shared, " prefault=", prefault));
      EngineOptions o = Options(8);
      o.shared_dram = shared;
      o.prefault_dram = prefault;
      std::vector<std::pair<bool, uint64_t>> calls;
      o.on_prefault = [&calls](uint64_t bytes, bool done, absl::Duration) {
        calls.emplace_back(done, bytes);
      };
      auto engine = OpenOrDie(o);
      ASSERT_NE(engine, nullptr);
      if (prefault) {
        const std::vector<std::pair<bool, uint64_t>> want = {{false, 8 * kChunk},
                                                             {true, 8 * kChunk}};
        EXPECT_EQ(calls, want);
      } else {
        EXPECT_TRUE(calls.empty());
      }
      uint32_t ns = Register(*engine);
      for (uint64_t i = 1; i <= 8; ++i) ASSERT_TRUE(PutKey(*engine, ns, i).ok()) << i;
      for (uint64_t i = 1; i <= 8; ++i) EXPECT_TRUE(Verify(*engine, ns, i).ok()) << i;
      EXPECT_EQ(engine->Stats().dram_used_bytes, 8 * kChunk);
    }
  }
}

TEST_F(EngineTest, BadOptionsAndDirectories) {
  EngineOptions o = Options(4);
  o.dram_bytes = 0;
  EXPECT_EQ(Engine::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(4, 4);
  o.nvme_capacity_bytes = 0;
  EXPECT_EQ(Engine::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(4);
  o.dram_policy = "fifo";
  EXPECT_EQ(Engine::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(4);
  o.max_lease_ttl = absl::Seconds(1);
  EXPECT_EQ(Engine::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  // A directory with someone else's files is refused and left untouched.
  std::filesystem::create_directories(dir_ / "nvme");
  { std::ofstream(dir_ / "nvme" / "notes.txt") << "mine"; }
  EXPECT_EQ(Engine::Open(Options(4, 4)).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "nvme" / "notes.txt"));
  // A tiny pool: registration of a namespace whose chunk does not fit fails.
  o = Options(1);
  o.dram_bytes = 100;  // rounded up to one page
  auto engine = OpenOrDie(o);
  EXPECT_EQ(engine->RegisterNamespace(SmallSpec(8), "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->RegisterNamespace(SmallSpec(4), "t").status().code(), absl::StatusCode::kOk);
}

TEST_F(EngineTest, CorruptedDirectoryIsDataLoss) {
  {
    auto engine = OpenOrDie(Options(4, 16));
    uint32_t ns = Register(*engine);
    ASSERT_TRUE(PutKey(*engine, ns, 1).ok());
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir_ / "nvme")) {
    if (entry.path().filename().string().rfind("MANIFEST", 0) == 0) {
      std::ofstream(entry.path(), std::ios::trunc) << "garbage garbage garbage";
    }
  }
  EXPECT_EQ(Engine::Open(Options(4, 16)).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace strata::store

namespace strata::store {
namespace {

class EngineIsolationTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> Open() {
    EngineOptions o;
    o.dram_bytes = 16 * kChunk;
    o.reap_interval = absl::ZeroDuration();
    auto engine = Engine::Open(o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }
};

TEST_F(EngineIsolationTest, WriteSlotCopiesIntoOpenWriteLeasesOnly) {
  auto engine = Open();
  auto ns = engine->RegisterNamespace(SmallSpec(4), "tenant");
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(testing::PutTestKey(*engine, *ns, 1, kChunk, {}).ok());
  const PutItem items[] = {{testing::TestKey(1), {}}, {testing::TestKey(2), {}}};
  auto lease = engine->BeginPut(*ns, items);
  ASSERT_TRUE(lease.ok());
  const std::vector<std::byte> bytes = testing::Payload(testing::TestKey(2), kChunk);
  EXPECT_EQ(engine->WriteSlot(lease->id, 0, bytes).code(),
            absl::StatusCode::kInvalidArgument);  // already present
  EXPECT_EQ(engine->WriteSlot(lease->id, 2, bytes).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->WriteSlot(lease->id, 1, std::span(bytes).first(100)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->WriteSlot(lease->id ^ 1, 1, bytes).code(), absl::StatusCode::kNotFound);
  auto read = engine->Acquire(*ns, std::span(&items[0].key, 1));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(engine->WriteSlot(read->id, 0, bytes).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(engine->Release(read->id).ok());
  ASSERT_TRUE(engine->WriteSlot(lease->id, 1, bytes).ok());
  const uint64_t sums[] = {0, ChunkChecksum(bytes)};
  ASSERT_TRUE(engine->CommitPut(lease->id, sums).ok());
  EXPECT_TRUE(testing::VerifyTestKey(*engine, *ns, 2, kChunk).ok());
  EXPECT_EQ(engine->WriteSlot(lease->id, 1, bytes).code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineIsolationTest, CorruptDramCopyIsDroppedAndCounted) {
  auto engine = Open();
  auto ns = engine->RegisterNamespace(SmallSpec(4), "tenant");
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(testing::PutTestKey(*engine, *ns, 1, kChunk, {}).ok());
  const ChunkKey key = testing::TestKey(1);
  EXPECT_TRUE(engine->CheckDramCopy(*ns, key).ok());  // intact: kept
  auto read = engine->Acquire(*ns, std::span(&key, 1));
  ASSERT_TRUE(read.ok());
  const_cast<std::byte&>(read->chunks[0].data[100]) ^= std::byte{1};  // a flipped bit
  // Pinned: counted, not dropped under the reader.
  EXPECT_EQ(engine->CheckDramCopy(*ns, key).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(engine->Stats().checksum_failures, 1u);
  ASSERT_TRUE(engine->Release(read->id).ok());
  EXPECT_EQ(engine->CheckDramCopy(*ns, key).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(engine->Stats().checksum_failures, 2u);
  auto after = engine->Lookup(*ns, std::span(&key, 1));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->tiers[0], Tier::kMissing);  // no NVMe tier: the chunk is gone
}

}  // namespace
}  // namespace strata::store
