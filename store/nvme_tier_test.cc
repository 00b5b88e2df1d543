#include "store/nvme_tier.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "store/common/checksum.h"
#include "store/common/chunk_key.h"
#include "store/nvme_tier_testing.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMiB = 1 << 20;

std::string TestPath(const std::string& leaf = "db") {
  return testing::NvmeTestPath("nvme_tier_test", leaf);
}
NvmeTierOptions Options(const std::string& path) { return testing::NvmeTestOptions(path); }
std::unique_ptr<NvmeTier> MustOpen(const std::string& path) { return testing::MustOpenNvme(path); }

ChunkKey RandomKey(std::mt19937_64& rng) {
  ChunkKey k;
  for (auto& b : k.bytes) b = static_cast<uint8_t>(rng());
  return k;
}

std::vector<std::byte> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<std::byte> v(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<std::byte>(rng());
  return v;
}

struct Chunk {
  NvmeRecord rec;
  std::vector<std::byte> payload;
};

Chunk MakeChunk(std::mt19937_64& rng, size_t size, std::optional<ChunkKey> parent = std::nullopt,
                uint32_t ns = 7) {
  Chunk c;
  c.payload = RandomBytes(rng, size);
  c.rec.key = RandomKey(rng);
  c.rec.parent = parent;
  c.rec.namespace_id = ns;
  c.rec.size = static_cast<uint32_t>(size);
  c.rec.checksum = ChunkChecksum(c.payload);
  return c;
}

void ExpectReads(NvmeTier& tier, const Chunk& c) {
  std::vector<std::byte> out(c.payload.size());
  const absl::Status s = tier.Read(c.rec.key, out);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(out == c.payload) << "payload of " << c.rec.key.ShortHex() << " differs";
}

// Every file under `dir` (relative path -> contents), to show that Open
// touched nothing.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    if (!e.is_regular_file()) {
      files[rel] = "<dir>";
      continue;
    }
    std::ifstream in(e.path(), std::ios::binary);
    files[rel] = std::string(std::istreambuf_iterator<char>(in), {});
  }
  return files;
}

void WriteFile(const fs::path& p, const std::string& contents) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << contents;
}

// Opens the directory as plain RocksDB with Strata's column-family names (for
// tests that tamper with what the tier wrote).
struct RawDb {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> cf;  // default, meta, chunks, namespaces
  explicit RawDb(const std::string& path, bool create = false) {
    rocksdb::DBOptions o;
    o.create_if_missing = create;
    o.create_missing_column_families = create;
    std::vector<rocksdb::ColumnFamilyDescriptor> d = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"meta", {}}, {"chunks", {}}, {"namespaces", {}}};
    rocksdb::Status s = rocksdb::DB::Open(o, path, d, &cf, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  ~RawDb() {
    if (db == nullptr) return;
    for (auto* h : cf) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
};

TEST(NvmeTierTest, RoundTripRandomBytes) {
  std::mt19937_64 rng(1);
  auto tier = MustOpen(TestPath());
  ASSERT_NE(tier, nullptr);
  // Sizes either side of blob_min_size (4096) and odd ones.
  std::vector<Chunk> chunks;
  for (size_t size : {size_t{0}, size_t{1}, size_t{17}, size_t{4095}, size_t{4096},
                      size_t{4097}, size_t{256 << 10}}) {
    chunks.push_back(MakeChunk(rng, size));
    ASSERT_TRUE(tier->Write(chunks.back().rec, chunks.back().payload).ok());
  }
  uint64_t total = 0;
  for (const Chunk& c : chunks) {
    ExpectReads(*tier, c);
    total += c.payload.size();
  }
  EXPECT_EQ(tier->used_bytes(), total);
  EXPECT_EQ(tier->chunk_count(), chunks.size());
  // Again from files rather than memtables.
  ASSERT_TRUE(tier->Flush().ok());
  for (const Chunk& c : chunks) ExpectReads(*tier, c);
}

TEST(NvmeTierTest, LargeValues) {
  std::mt19937_64 rng(2);
  const std::string path = TestPath();
  std::vector<Chunk> chunks;
  for (int i = 0; i < 3; ++i) chunks.push_back(MakeChunk(rng, 8 * kMiB));
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    for (const Chunk& c : chunks) ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
    for (const Chunk& c : chunks) ExpectReads(*tier, c);
    ASSERT_TRUE(tier->Flush().ok());
    for (const Chunk& c : chunks) ExpectReads(*tier, c);
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->used_bytes(), 3 * 8 * kMiB);
  for (const Chunk& c : chunks) ExpectReads(*tier, c);
}

TEST(NvmeTierTest, ReopenKeepsDataAndCounters) {
  std::mt19937_64 rng(3);
  const std::string path = TestPath();
  std::vector<Chunk> chunks;
  for (int i = 0; i < 20; ++i) chunks.push_back(MakeChunk(rng, (i % 2) ? 100 : 10000));
  uint64_t total = 0;
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    for (const Chunk& c : chunks) ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
    // Delete three, replace one with a different size.
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(tier->Delete(chunks[i].rec.key).ok());
    chunks.erase(chunks.begin(), chunks.begin() + 3);
    Chunk replacement = MakeChunk(rng, 5000);
    replacement.rec.key = chunks[0].rec.key;
    ASSERT_TRUE(tier->Write(replacement.rec, replacement.payload).ok());
    chunks[0] = replacement;
    for (const Chunk& c : chunks) total += c.payload.size();
    EXPECT_EQ(tier->used_bytes(), total);
    EXPECT_EQ(tier->chunk_count(), chunks.size());
    // No Flush: the write-ahead log alone must bring it back.
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->used_bytes(), total);
  EXPECT_EQ(tier->chunk_count(), chunks.size());
  EXPECT_EQ(tier->records_dropped_on_open(), 0u);
  for (const Chunk& c : chunks) ExpectReads(*tier, c);
}

TEST(NvmeTierTest, ForEachReturnsAllRecords) {
  std::mt19937_64 rng(4);
  const std::string path = TestPath();
  std::map<ChunkKey, NvmeRecord> want;
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    std::optional<ChunkKey> parent;
    for (int i = 0; i < 50; ++i) {
      Chunk c = MakeChunk(rng, 64 + i * 200, parent, /*ns=*/i % 3);
      ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
      want[c.rec.key] = c.rec;
      parent = (i % 10 == 9) ? std::nullopt : std::optional<ChunkKey>(c.rec.key);
    }
    ASSERT_TRUE(tier->PutNamespace(1, std::vector<uint8_t>{1, 2, 3}).ok());
    std::map<ChunkKey, NvmeRecord> got;
    ASSERT_TRUE(tier->ForEach([&](const NvmeRecord& r) { got[r.key] = r; }).ok());
    EXPECT_EQ(got, want);
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  std::map<ChunkKey, NvmeRecord> got;
  ASSERT_TRUE(tier->ForEach([&](const NvmeRecord& r) { got[r.key] = r; }).ok());
  EXPECT_EQ(got, want);
}

TEST(NvmeTierTest, NamespacesPersist) {
  const std::string path = TestPath();
  const std::vector<uint8_t> a = {0x00, 0x01, 0xff}, b = {}, c(300, 0x5a);
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    ASSERT_TRUE(tier->PutNamespace(300, c).ok());
    ASSERT_TRUE(tier->PutNamespace(2, a).ok());
    ASSERT_TRUE(tier->PutNamespace(0x01000000, b).ok());
    EXPECT_TRUE(tier->PutNamespace(2, a).ok());  // same bytes: idempotent
    EXPECT_EQ(tier->PutNamespace(2, c).code(), absl::StatusCode::kAlreadyExists);
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> got;
  ASSERT_TRUE(tier->ForEachNamespace([&](uint32_t id, std::span<const uint8_t> bytes) {
                    got.emplace_back(id, std::vector<uint8_t>(bytes.begin(), bytes.end()));
                  }).ok());
  const std::vector<std::pair<uint32_t, std::vector<uint8_t>>> want = {
      {2, a}, {300, c}, {0x01000000, b}};
  EXPECT_EQ(got, want);
  // Namespaces are not chunks.
  EXPECT_EQ(tier->chunk_count(), 0u);
}

TEST(NvmeTierTest, CorruptPayloadIsDataLossAndDeleted) {
  std::mt19937_64 rng(5);
  const std::string path = TestPath();
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  // One inline (below blob_min_size) and one blob-sized victim, and bystanders.
  std::vector<Chunk> chunks;
  for (size_t size : {size_t{1000}, size_t{256 << 10}, size_t{1000}, size_t{256 << 10}}) {
    chunks.push_back(MakeChunk(rng, size));
    ASSERT_TRUE(tier->Write(chunks.back().rec, chunks.back().payload).ok());
  }
  ASSERT_TRUE(tier->Flush().ok());
  for (int victim : {0, 1}) {
    const Chunk& c = chunks[victim];
    std::vector<std::byte> bad = c.payload;
    bad[bad.size() / 2] ^= std::byte{0x01};  // one flipped bit
    ASSERT_TRUE(tier->CorruptPayloadForTesting(c.rec.key, bad).ok());
    std::vector<std::byte> out(c.payload.size());
    EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(tier->chunk_count(), 2u);
  EXPECT_EQ(tier->used_bytes(), chunks[2].payload.size() + chunks[3].payload.size());
  ExpectReads(*tier, chunks[2]);
  ExpectReads(*tier, chunks[3]);
  size_t seen = 0;
  ASSERT_TRUE(tier->ForEach([&](const NvmeRecord&) { ++seen; }).ok());
  EXPECT_EQ(seen, 2u);

  // Still gone after a restart.
  tier.reset();
  tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->chunk_count(), 2u);
  std::vector<std::byte> out(chunks[0].payload.size());
  EXPECT_EQ(tier->Read(chunks[0].rec.key, out).code(), absl::StatusCode::kNotFound);
  ExpectReads(*tier, chunks[3]);
}

TEST(NvmeTierTest, MissingPayloadIsDataLossAndDeleted) {
  std::mt19937_64 rng(6);
  const std::string path = TestPath();
  Chunk c = MakeChunk(rng, 8192), other = MakeChunk(rng, 8192);
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
    ASSERT_TRUE(tier->Write(other.rec, other.payload).ok());
  }
  {
    RawDb raw(path);
    ASSERT_NE(raw.db, nullptr);
    ASSERT_TRUE(raw.db->Delete({}, raw.cf[2], c.rec.key.AsStringView()).ok());
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  std::vector<std::byte> out(c.payload.size());
  EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tier->chunk_count(), 1u);
  ExpectReads(*tier, other);
}

TEST(NvmeTierTest, CorruptBlobFileIsDataLossAndDeleted) {
  // Real media corruption: a flipped byte inside a blob file on disk.
  std::mt19937_64 rng(16);
  const std::string path = TestPath();
  Chunk victim = MakeChunk(rng, 256 << 10);
  Chunk other = MakeChunk(rng, 1000);  // inline, not in the blob file
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    ASSERT_TRUE(tier->Write(victim.rec, victim.payload).ok());
    ASSERT_TRUE(tier->Write(other.rec, other.payload).ok());
    ASSERT_TRUE(tier->Flush().ok());
  }
  std::vector<fs::path> blobs;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.path().extension() == ".blob") blobs.push_back(e.path());
  }
  ASSERT_EQ(blobs.size(), 1u);
  {
    std::fstream f(blobs[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(fs::file_size(blobs[0]) / 2));
    char b = 0;
    f.read(&b, 1);
    b ^= 0x10;
    f.seekp(static_cast<std::streamoff>(fs::file_size(blobs[0]) / 2));
    f.write(&b, 1);
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  std::vector<std::byte> out(victim.payload.size());
  const absl::Status s = tier->Read(victim.rec.key, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(tier->Read(victim.rec.key, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tier->chunk_count(), 1u);
  EXPECT_EQ(tier->used_bytes(), 1000u);
  ExpectReads(*tier, other);
}

TEST(NvmeTierTest, UndecodableRecordIsDroppedOnOpen) {
  std::mt19937_64 rng(7);
  const std::string path = TestPath();
  Chunk good = MakeChunk(rng, 100), bad = MakeChunk(rng, 100);
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    ASSERT_TRUE(tier->Write(good.rec, good.payload).ok());
    ASSERT_TRUE(tier->Write(bad.rec, bad.payload).ok());
  }
  {
    RawDb raw(path);
    ASSERT_NE(raw.db, nullptr);
    // A future record version this build cannot read.
    ASSERT_TRUE(raw.db->Put({}, raw.cf[1], bad.rec.key.AsStringView(), "\x09garbage").ok());
  }
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->records_dropped_on_open(), 1u);
  EXPECT_EQ(tier->chunk_count(), 1u);
  EXPECT_EQ(tier->used_bytes(), 100u);
  std::vector<NvmeRecord> seen;
  ASSERT_TRUE(tier->ForEach([&](const NvmeRecord& r) { seen.push_back(r); }).ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], good.rec);
  std::vector<std::byte> out(100);
  EXPECT_EQ(tier->Read(bad.rec.key, out).code(), absl::StatusCode::kNotFound);
  ExpectReads(*tier, good);
}

TEST(NvmeTierTest, WrongOutSizeIsInvalidArgument) {
  std::mt19937_64 rng(8);
  auto tier = MustOpen(TestPath());
  ASSERT_NE(tier, nullptr);
  Chunk c = MakeChunk(rng, 5000);
  ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
  std::vector<std::byte> small(4999), large(5001);
  EXPECT_EQ(tier->Read(c.rec.key, small).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tier->Read(c.rec.key, large).code(), absl::StatusCode::kInvalidArgument);
  ExpectReads(*tier, c);  // untouched
}

TEST(NvmeTierTest, MissingIsNotFoundAndDeleteIsIdempotent) {
  std::mt19937_64 rng(9);
  auto tier = MustOpen(TestPath());
  ASSERT_NE(tier, nullptr);
  Chunk c = MakeChunk(rng, 10);
  std::vector<std::byte> out(10);
  EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(tier->Delete(c.rec.key).ok());
  EXPECT_EQ(tier->CorruptPayloadForTesting(c.rec.key, out).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
  EXPECT_TRUE(tier->Delete(c.rec.key).ok());
  EXPECT_TRUE(tier->Delete(c.rec.key).ok());
  EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tier->chunk_count(), 0u);
  EXPECT_EQ(tier->used_bytes(), 0u);
}

TEST(NvmeTierTest, BadWriteStoresNothing) {
  std::mt19937_64 rng(10);
  auto tier = MustOpen(TestPath());
  ASSERT_NE(tier, nullptr);
  Chunk c = MakeChunk(rng, 6000);
  NvmeRecord wrong_sum = c.rec;
  wrong_sum.checksum ^= 1;
  EXPECT_EQ(tier->Write(wrong_sum, c.payload).code(), absl::StatusCode::kDataLoss);
  NvmeRecord wrong_size = c.rec;
  wrong_size.size += 1;
  EXPECT_EQ(tier->Write(wrong_size, c.payload).code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> out(6000);
  EXPECT_EQ(tier->Read(c.rec.key, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tier->chunk_count(), 0u);
  EXPECT_EQ(tier->used_bytes(), 0u);
  size_t seen = 0;
  ASSERT_TRUE(tier->ForEach([&](const NvmeRecord&) { ++seen; }).ok());
  EXPECT_EQ(seen, 0u);
  // A bad write over an existing chunk leaves the old one.
  ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
  Chunk d = MakeChunk(rng, 6000);
  d.rec.key = c.rec.key;
  d.rec.checksum ^= 1;
  EXPECT_EQ(tier->Write(d.rec, d.payload).code(), absl::StatusCode::kDataLoss);
  ExpectReads(*tier, c);
}

TEST(NvmeTierTest, InvalidOptions) {
  NvmeTierOptions o = Options(TestPath());
  o.capacity_bytes = 0;
  EXPECT_EQ(NvmeTier::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(o.path));  // checked before anything is created
  o = Options("");
  EXPECT_EQ(NvmeTier::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NvmeTierTest, CreatesMissingAndEmptyDirectories) {
  const std::string nested = TestPath("a") + "/b/c";
  EXPECT_NE(MustOpen(nested), nullptr);
  const std::string empty = TestPath("empty");
  fs::create_directories(empty);
  EXPECT_NE(MustOpen(empty), nullptr);
  EXPECT_NE(MustOpen(empty), nullptr);  // and reopens as Strata's
}

TEST(NvmeTierTest, RegularFileIsFailedPrecondition) {
  const std::string path = TestPath("file");
  WriteFile(path, "hello");
  EXPECT_EQ(NvmeTier::Open(Options(path)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::ifstream in(path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "hello");
}

TEST(NvmeTierTest, ForeignDirectoryIsFailedPreconditionAndUntouched) {
  std::mt19937_64 rng(11);
  const std::string path = TestPath();
  fs::create_directories(path + "/sub");
  for (const char* name : {"notes.txt", "LOG", "000001.sst", "sub/data.bin"}) {
    std::vector<std::byte> bytes = RandomBytes(rng, 1000);
    WriteFile(fs::path(path) / name, std::string(reinterpret_cast<char*>(bytes.data()), 1000));
  }
  const auto before = Snapshot(path);
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("not a Strata NVMe directory"), absl::string_view::npos) << s;
  EXPECT_EQ(Snapshot(path), before);
}

TEST(NvmeTierTest, PlainRocksDbIsFailedPreconditionAndUntouched) {
  const std::string path = TestPath();
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, &db).ok());
    ASSERT_TRUE(db->Put({}, "k", "v").ok());
    delete db;
  }
  const auto before = Snapshot(path);
  EXPECT_EQ(NvmeTier::Open(Options(path)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Snapshot(path), before);
}

TEST(NvmeTierTest, OurColumnFamiliesWithDataButNoMarkerIsFailedPrecondition) {
  const std::string path = TestPath();
  {
    RawDb raw(path, /*create=*/true);
    ASSERT_NE(raw.db, nullptr);
    ASSERT_TRUE(raw.db->Put({}, raw.cf[2], "some key", "some value").ok());
  }
  const auto before = Snapshot(path);
  EXPECT_EQ(NvmeTier::Open(Options(path)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Snapshot(path), before);
}

TEST(NvmeTierTest, InterruptedCreationIsCompleted) {
  // Our column families, all empty, no marker: a creation that stopped
  // before the marker was written.
  const std::string path = TestPath();
  { RawDb raw(path, /*create=*/true); }
  EXPECT_NE(MustOpen(path), nullptr);
  EXPECT_NE(MustOpen(path), nullptr);
}

TEST(NvmeTierTest, OtherFormatVersionIsFailedPreconditionAndUntouched) {
  std::mt19937_64 rng(12);
  const std::string path = TestPath();
  {
    auto tier = MustOpen(path);
    ASSERT_NE(tier, nullptr);
    Chunk c = MakeChunk(rng, 10000);
    ASSERT_TRUE(tier->Write(c.rec, c.payload).ok());
  }
  {
    RawDb raw(path);
    ASSERT_NE(raw.db, nullptr);
    ASSERT_TRUE(
        raw.db->Put({}, raw.cf[1], std::string("\x00strata-format", 14), "strata-nvme-v2").ok());
    ASSERT_TRUE(raw.db->Flush({}, raw.cf).ok());
  }
  const auto before = Snapshot(path);
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("strata-nvme-v2"), absl::string_view::npos) << s;
  EXPECT_EQ(Snapshot(path), before);
}

std::string MakeStrataDbWithData(const std::string& path) {
  std::mt19937_64 rng(13);
  auto tier = MustOpen(path);
  EXPECT_NE(tier, nullptr);
  if (tier == nullptr) return "";
  Chunk c = MakeChunk(rng, 10000);
  EXPECT_TRUE(tier->Write(c.rec, c.payload).ok());
  EXPECT_TRUE(tier->Flush().ok());
  std::string manifest;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) manifest = e.path().string();
  }
  return manifest;
}

TEST(NvmeTierTest, GarbageCurrentIsDataLoss) {
  const std::string path = TestPath();
  ASSERT_FALSE(MakeStrataDbWithData(path).empty());
  WriteFile(fs::path(path) / "CURRENT", "\x13\x37 not a manifest name\n");
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
}

TEST(NvmeTierTest, TruncatedCurrentIsDataLoss) {
  const std::string path = TestPath();
  ASSERT_FALSE(MakeStrataDbWithData(path).empty());
  WriteFile(fs::path(path) / "CURRENT", "MANIF");  // no newline
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
}

TEST(NvmeTierTest, GarbageManifestIsDataLoss) {
  std::mt19937_64 rng(14);
  const std::string path = TestPath();
  const std::string manifest = MakeStrataDbWithData(path);
  ASSERT_FALSE(manifest.empty());
  std::vector<std::byte> junk = RandomBytes(rng, static_cast<size_t>(fs::file_size(manifest)));
  WriteFile(manifest, std::string(reinterpret_cast<char*>(junk.data()), junk.size()));
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
}

TEST(NvmeTierTest, SecondOpenOfSameDirectoryIsUnavailable) {
  const std::string path = TestPath();
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(" is in use: "), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
}

// Threads write, overwrite, delete and read a shared key set; every payload is
// a function of its key index, so every successful read is verified byte for
// byte, and a concurrent writer must never make a reader see DataLoss.
TEST(NvmeTierTest, ConcurrentWritersAndReaders) {
  constexpr int kKeys = 64;
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 400;
  std::mt19937_64 rng(15);
  std::vector<Chunk> chunks;
  for (int i = 0; i < kKeys; ++i) chunks.push_back(MakeChunk(rng, (i % 4 == 0) ? 64 << 10 : 1500));
  auto tier = MustOpen(TestPath());
  ASSERT_NE(tier, nullptr);
  for (int i = 0; i < kKeys / 2; ++i) ASSERT_TRUE(tier->Write(chunks[i].rec, chunks[i].payload).ok());

  std::atomic<int> reads_ok{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 trng(100 + t);
      std::vector<std::byte> out;
      for (int op = 0; op < kOpsPerThread; ++op) {
        const Chunk& c = chunks[trng() % kKeys];
        const int kind = static_cast<int>(trng() % 10);
        absl::Status s;
        if (kind < 3) {
          s = tier->Write(c.rec, c.payload);
        } else if (kind < 4) {
          s = tier->Delete(c.rec.key);
        } else {
          out.assign(c.payload.size(), std::byte{0});
          s = tier->Read(c.rec.key, out);
          if (s.ok()) {
            if (out != c.payload) {
              ADD_FAILURE() << "wrong bytes for " << c.rec.key.ShortHex();
              ++errors;
            }
            ++reads_ok;
          } else if (s.code() == absl::StatusCode::kNotFound) {
            s = absl::OkStatus();
          }
        }
        if (!s.ok()) {
          ADD_FAILURE() << s;
          ++errors;
        }
        if (op % 100 == 99 && t == 0) {
          EXPECT_TRUE(tier->Flush().ok());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(reads_ok.load(), 0);

  // Counters agree with what is stored, and everything stored is intact.
  uint64_t bytes = 0;
  size_t count = 0;
  ASSERT_TRUE(tier->ForEach([&](const NvmeRecord& r) {
                    bytes += r.size;
                    ++count;
                  }).ok());
  EXPECT_EQ(tier->used_bytes(), bytes);
  EXPECT_EQ(tier->chunk_count(), count);
  for (const Chunk& c : chunks) {
    std::vector<std::byte> out(c.payload.size());
    const absl::Status s = tier->Read(c.rec.key, out);
    if (s.code() == absl::StatusCode::kNotFound) continue;
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_TRUE(out == c.payload);
  }
}

}  // namespace
}  // namespace strata::store
