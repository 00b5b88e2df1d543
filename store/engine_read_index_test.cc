// The engine's read index (EngineOptions::read_index) follows the committed
// DRAM copies: published at commit and promotion, withdrawn at eviction,
// namespace removal and corruption; Touch counts lease-free reads.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "store/common/checksum.h"
#include "store/common/read_index.h"
#include "store/engine.h"
#include "store/engine_test_util.h"

namespace strata::store {
namespace {

using testing::SmallSpec;
using testing::TestKey;

constexpr uint64_t kChunk = 4096;  // SmallSpec(4)

// The engine's index mapped read-only, as a client on the host maps it.
class MappedIndex {
 public:
  explicit MappedIndex(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    struct stat st{};
    EXPECT_EQ(fstat(fd, &st), 0);
    bytes_ = static_cast<size_t>(st.st_size);
    base_ = mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    EXPECT_NE(base_, MAP_FAILED);
    auto view = ReadIndexView::Open(
        std::span<const std::byte>(static_cast<const std::byte*>(base_), bytes_));
    EXPECT_TRUE(view.ok()) << view.status();
    view_.emplace(*view);
  }
  ~MappedIndex() { munmap(base_, bytes_); }
  std::optional<ReadIndexHit> Find(const ChunkKey& key, uint32_t ns) const {
    return view_->Find(key, ns);
  }

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
  std::optional<ReadIndexView> view_;
};

class EngineReadIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("read_index_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Engine> Open(uint64_t dram_chunks, bool nvme = false) {
    EngineOptions o;
    o.dram_bytes = dram_chunks * kChunk;
    o.shared_dram = true;
    o.dram_policy = "lru";
    o.clock = &clock_;
    o.reap_interval = absl::ZeroDuration();
    if (nvme) {
      o.nvme_path = (dir_ / "nvme").string();
      o.nvme_capacity_bytes = 64 * kChunk;
    }
    auto engine = Engine::Open(o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }
  absl::Status Put(Engine& e, uint32_t ns, uint64_t i) {
    return testing::PutTestKey(e, ns, i, kChunk);
  }

  std::filesystem::path dir_;
  FakeClock clock_;
};

TEST_F(EngineReadIndexTest, PublishedAtCommitWithdrawnAtEvictionAndRemoval) {
  auto engine = Open(4);
  ASSERT_NE(engine, nullptr);
  ASSERT_FALSE(engine->read_index_share_path().empty());
  MappedIndex index(engine->read_index_share_path());
  const uint32_t ns = *engine->RegisterNamespace(SmallSpec(4), "tenant");
  ASSERT_TRUE(Put(*engine, ns, 0).ok());
  auto hit = index.Find(TestKey(0), ns);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->size, kChunk);
  const std::span<std::byte> pool = engine->dram_region();
  EXPECT_EQ(ChunkChecksum(pool.subspan(hit->offset, hit->size)), hit->checksum);
  EXPECT_EQ(hit->checksum, ChunkChecksum(testing::Payload(TestKey(0), kChunk)));
  EXPECT_FALSE(index.Find(TestKey(0), ns + 1).has_value());
  // Four more chunks in a pool of four: key 0 (least recent) is evicted.
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(Put(*engine, ns, i).ok());
  EXPECT_FALSE(index.Find(TestKey(0), ns).has_value());
  EXPECT_EQ(engine->Stats().read_index_published, 4u);
  EXPECT_EQ(engine->Stats().read_index_full, 0u);
  ASSERT_TRUE(engine->RemoveNamespace(ns).ok());
  for (uint64_t i = 1; i <= 4; ++i) EXPECT_FALSE(index.Find(TestKey(i), ns).has_value());
  EXPECT_EQ(engine->Stats().read_index_published, 0u);
}

TEST_F(EngineReadIndexTest, PromotedChunksArePublishedAndCorruptOnesWithdrawn) {
  auto engine = Open(2, /*nvme=*/true);
  ASSERT_NE(engine, nullptr);
  MappedIndex index(engine->read_index_share_path());
  const uint32_t ns = *engine->RegisterNamespace(SmallSpec(4), "tenant");
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(Put(*engine, ns, i).ok());
    ASSERT_TRUE(engine->FlushWriteBack().ok());
  }
  ASSERT_FALSE(index.Find(TestKey(0), ns).has_value());  // on NVMe only
  std::vector<std::byte> out(kChunk);
  ASSERT_TRUE(engine->Get(ns, TestKey(0), out).ok());  // promoted
  auto hit = index.Find(TestKey(0), ns);
  ASSERT_TRUE(hit.has_value());
  // A corrupt DRAM copy is withdrawn at once.
  engine->dram_region()[hit->offset] ^= std::byte{0xff};
  EXPECT_EQ(engine->CheckDramCopy(ns, TestKey(0)).code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(index.Find(TestKey(0), ns).has_value());
}

TEST_F(EngineReadIndexTest, TouchCountsReadsForEviction) {
  auto engine = Open(3);
  ASSERT_NE(engine, nullptr);
  const uint32_t ns = *engine->RegisterNamespace(SmallSpec(4), "tenant");
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(Put(*engine, ns, i).ok());
    clock_.Advance(absl::Seconds(1));
  }
  // Key 0 is the oldest; a lease-free read of it, reported, makes it young.
  const ChunkKey keys[] = {TestKey(0), TestKey(99)};
  auto counted = engine->Touch(ns, keys);
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ(*counted, 1u);  // key 99 is not stored
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Put(*engine, ns, 3).ok());
  std::vector<std::byte> out(kChunk);
  EXPECT_TRUE(engine->Get(ns, TestKey(0), out).ok());
  EXPECT_EQ(engine->Get(ns, TestKey(1), out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->Stats().lease_free_reads, 1u);
  EXPECT_EQ(engine->Touch(ns + 7, keys).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->Touch(ns, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineReadIndexTest, NoIndexWithoutASharedPoolOrWhenTurnedOff) {
  EngineOptions o;
  o.dram_bytes = 4 * kChunk;
  auto unshared = Engine::Open(o);
  ASSERT_TRUE(unshared.ok());
  EXPECT_TRUE((*unshared)->read_index_share_path().empty());
  o.shared_dram = true;
  o.read_index = false;
  auto off = Engine::Open(o);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE((*off)->dram_share_path().empty());
  EXPECT_TRUE((*off)->read_index_share_path().empty());
}

}  // namespace
}  // namespace strata::store
