// Damage to the files of an NvmeTier directory, done the way media and full
// disks do it (bytes flipped on disk, files gone, writes refused), against a
// real RocksDB: what each kind of damage costs, and that nothing costs more.
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "store/common/checksum.h"
#include "store/common/chunk_key.h"
#include "store/nvme_tier_testing.h"
#include "store/nvme_tier.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;


std::string TestPath(const std::string& leaf = "db") {
  return testing::NvmeTestPath("nvme_tier_damage_test", leaf);
}
NvmeTierOptions Options(const std::string& path) { return testing::NvmeTestOptions(path); }
std::unique_ptr<NvmeTier> MustOpen(const std::string& path) { return testing::MustOpenNvme(path); }

struct Chunk {
  NvmeRecord rec;
  std::vector<std::byte> payload;
};

Chunk MakeChunk(std::mt19937_64& rng, size_t size) {
  Chunk c;
  c.payload.resize(size);
  for (auto& b : c.payload) b = static_cast<std::byte>(rng());
  for (auto& b : c.rec.key.bytes) b = static_cast<uint8_t>(rng());
  c.rec.namespace_id = 3;
  c.rec.size = static_cast<uint32_t>(size);
  c.rec.checksum = ChunkChecksum(c.payload);
  return c;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const fs::path& p, const std::string& contents) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << contents;
}

// XORs `n` bytes of `file` from `offset` with 0x5a.
void FlipBytes(const fs::path& file, size_t offset, size_t n) {
  std::string bytes = ReadAll(file);
  ASSERT_LE(offset + n, bytes.size()) << file;
  for (size_t i = 0; i < n; ++i) bytes[offset + i] ^= 0x5a;
  WriteAll(file, bytes);
}

std::vector<fs::path> FilesEndingIn(const std::string& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> FilesStartingWith(const std::string& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every file under `dir` (relative path -> contents).
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    files[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? ReadAll(e.path()) : "<dir>";
  }
  return files;
}

// Reads every chunk; returns how many read back intact, and records the
// code of each failure.
size_t ReadEvery(NvmeTier& tier, const std::vector<Chunk>& chunks,
                 std::map<size_t, absl::StatusCode>* failures = nullptr) {
  size_t intact = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    std::vector<std::byte> out(chunks[i].payload.size());
    const absl::Status s = tier.Read(chunks[i].rec.key, out);
    if (s.ok() && out == chunks[i].payload) {
      ++intact;
    } else if (failures != nullptr) {
      (*failures)[i] = s.ok() ? absl::StatusCode::kUnknown : s.code();
    }
  }
  return intact;
}

// --- blob files ---------------------------------------------------------------

// 26 blob-sized chunks, flushed together into one blob file, and 4 inline
// (below blob_min_size) chunks that live in an SST.
constexpr size_t kBlobChunks = 26;
constexpr size_t kBlobChunkSize = 8192;
constexpr size_t kInlineChunks = 4;

struct BlobDb {
  std::string path;
  std::vector<Chunk> chunks;  // blob-sized first, then inline
  fs::path blob_file;
  std::string blob_bytes;  // the blob file before any damage
};

BlobDb MakeBlobDb(const std::string& path) {
  BlobDb db;
  db.path = path;
  std::mt19937_64 rng(42);
  auto tier = MustOpen(path);
  EXPECT_NE(tier, nullptr);
  if (tier == nullptr) return db;
  for (size_t i = 0; i < kBlobChunks + kInlineChunks; ++i) {
    db.chunks.push_back(MakeChunk(rng, i < kBlobChunks ? kBlobChunkSize : 1000));
    EXPECT_TRUE(tier->Write(db.chunks.back().rec, db.chunks.back().payload).ok());
  }
  EXPECT_TRUE(tier->Flush().ok());
  tier.reset();
  const std::vector<fs::path> blobs = FilesEndingIn(path, ".blob");
  EXPECT_EQ(blobs.size(), 1u);
  if (blobs.size() != 1) return db;
  db.blob_file = blobs[0];
  db.blob_bytes = ReadAll(db.blob_file);
  return db;
}

// Offset in the blob file of the copy of chunk i's key (each blob record is
// a 32-byte header, the key, then the value).
size_t KeyOffset(const BlobDb& db, size_t i) {
  const size_t at = db.blob_bytes.find(db.chunks[i].rec.key.AsStringView());
  EXPECT_NE(at, std::string::npos);
  return at;
}

struct BlobDamage {
  const char* name;
  // Offset of the damage in the blob file, given the file.
  size_t (*offset)(const BlobDb&);
  size_t bytes;
};

// Damage to RocksDB's framing of a blob file: no chunk's payload is touched,
// so every chunk must stay readable. (RocksDB 7.8 refuses the whole file on
// a bad header or footer, and a record on a bad record header or CRC.)
const BlobDamage kFramingDamage[] = {
    {"HeaderMagic", [](const BlobDb&) -> size_t { return 0; }, 4},
    {"HeaderColumnFamily", [](const BlobDb&) -> size_t { return 8; }, 4},
    {"HeaderExpiration", [](const BlobDb&) -> size_t { return 14; }, 4},
    {"FooterMagic", [](const BlobDb& db) { return db.blob_bytes.size() - 32; }, 4},
    {"FooterBlobCount", [](const BlobDb& db) { return db.blob_bytes.size() - 28; }, 4},
    {"FooterCrc", [](const BlobDb& db) { return db.blob_bytes.size() - 4; }, 4},
    // Chunk 13's record header: value length, then header CRC.
    {"RecordValueLength", [](const BlobDb& db) { return KeyOffset(db, 13) - 32 + 8; }, 4},
    {"RecordHeaderCrc", [](const BlobDb& db) { return KeyOffset(db, 13) - 32 + 24; }, 4},
    // Chunk 13's key copy in its record (covered by the record's blob CRC).
    {"RecordKeyCopy", [](const BlobDb& db) { return KeyOffset(db, 13) + 5; }, 4},
};

class BlobFramingDamageTest : public ::testing::TestWithParam<BlobDamage> {};

TEST_P(BlobFramingDamageTest, EveryChunkStaysReadable) {
  const std::string path = TestPath();
  BlobDb db = MakeBlobDb(path);
  ASSERT_FALSE(db.blob_bytes.empty());
  FlipBytes(db.blob_file, GetParam().offset(db), GetParam().bytes);

  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  std::map<size_t, absl::StatusCode> failures;
  EXPECT_EQ(ReadEvery(*tier, db.chunks, &failures), db.chunks.size());
  for (const auto& [i, code] : failures) ADD_FAILURE() << "chunk " << i << ": " << code;
  EXPECT_EQ(tier->chunk_count(), db.chunks.size());
  // Again, once the salvaged chunks have fresh copies, and after a restart.
  EXPECT_EQ(ReadEvery(*tier, db.chunks), db.chunks.size());
  ASSERT_TRUE(tier->Flush().ok());
  tier.reset();
  tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(ReadEvery(*tier, db.chunks), db.chunks.size());
  EXPECT_EQ(tier->chunk_count(), db.chunks.size());
}

INSTANTIATE_TEST_SUITE_P(Damage, BlobFramingDamageTest, ::testing::ValuesIn(kFramingDamage),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(BlobPayloadDamageTest, FlippedPayloadByteCostsExactlyThatChunk) {
  const std::string path = TestPath();
  BlobDb db = MakeBlobDb(path);
  ASSERT_FALSE(db.blob_bytes.empty());
  constexpr size_t kVictim = 13;
  FlipBytes(db.blob_file, KeyOffset(db, kVictim) + 32 + 100, 1);

  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  std::map<size_t, absl::StatusCode> failures;
  EXPECT_EQ(ReadEvery(*tier, db.chunks, &failures), db.chunks.size() - 1);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures.begin()->first, kVictim);
  EXPECT_EQ(failures.begin()->second, absl::StatusCode::kDataLoss);
  // Deleted, so never served; the rest stays.
  std::vector<std::byte> out(kBlobChunkSize);
  EXPECT_EQ(tier->Read(db.chunks[kVictim].rec.key, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tier->chunk_count(), db.chunks.size() - 1);
  tier.reset();
  tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->chunk_count(), db.chunks.size() - 1);
  EXPECT_EQ(ReadEvery(*tier, db.chunks), db.chunks.size() - 1);
}

// --- files of the LSM tree --------------------------------------------------

// A Strata DB with data in SSTs, blob files and the write-ahead log.
std::vector<Chunk> MakeDbWithEveryFileKind(const std::string& path) {
  std::mt19937_64 rng(7);
  std::vector<Chunk> chunks;
  auto tier = MustOpen(path);
  EXPECT_NE(tier, nullptr);
  if (tier == nullptr) return chunks;
  for (int i = 0; i < 8; ++i) {
    chunks.push_back(MakeChunk(rng, i % 2 == 0 ? 1000 : 8192));
    EXPECT_TRUE(tier->Write(chunks.back().rec, chunks.back().payload).ok());
  }
  EXPECT_TRUE(tier->Flush().ok());
  for (int i = 0; i < 4; ++i) {  // left in the log
    chunks.push_back(MakeChunk(rng, 1000));
    EXPECT_TRUE(tier->Write(chunks.back().rec, chunks.back().payload).ok());
  }
  return chunks;
}

TEST(LsmDamageTest, CorruptManifestIsDataLossAndUntouched) {
  // 4 flipped bytes at every third offset of the MANIFEST, each on a fresh
  // copy of one DB. Each flip is either DataLoss, naming the path, with
  // nothing in the directory modified, or (where RocksDB takes the damaged
  // record for a torn write at the end of the file, and drops it) an open
  // DB. It is never taken for a foreign directory.
  const std::string base = TestPath("base");
  ASSERT_FALSE(MakeDbWithEveryFileKind(base).empty());
  const std::vector<fs::path> manifests = FilesStartingWith(base, "MANIFEST-");
  ASSERT_EQ(manifests.size(), 1u);
  const size_t size = static_cast<size_t>(fs::file_size(manifests[0]));
  size_t data_loss = 0;
  for (size_t offset = 0; offset + 4 <= size; offset += 3) {
    SCOPED_TRACE(::testing::Message() << "flip at " << offset << " of " << size);
    const std::string path = TestPath("copy");
    fs::copy(base, path);
    FlipBytes(fs::path(path) / manifests[0].filename(), offset, 4);
    const auto before = Snapshot(path);
    const absl::Status s = NvmeTier::Open(Options(path)).status();
    if (s.ok()) continue;
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
    EXPECT_EQ(Snapshot(path), before);
    ++data_loss;
  }
  EXPECT_GT(data_loss, size / 3 / 2);  // most flips are detected
}

TEST(LsmDamageTest, MissingCurrentIsDataLossAndUntouched) {
  const std::string path = TestPath();
  ASSERT_FALSE(MakeDbWithEveryFileKind(path).empty());
  ASSERT_TRUE(fs::remove(fs::path(path) / "CURRENT"));
  const auto before = Snapshot(path);
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("CURRENT"), absl::string_view::npos) << s;
  EXPECT_EQ(Snapshot(path), before);
}

TEST(LsmDamageTest, ForeignRocksDbWithoutCurrentIsFailedPreconditionAndUntouched) {
  const std::string path = TestPath();
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, &db).ok());
    ASSERT_TRUE(db->Put({}, "k", "v").ok());
    ASSERT_TRUE(db->Flush({}).ok());
    delete db;
  }
  ASSERT_TRUE(fs::remove(fs::path(path) / "CURRENT"));
  const auto before = Snapshot(path);
  const absl::Status s = NvmeTier::Open(Options(path)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(Snapshot(path), before);
}

// --- full disk ----------------------------------------------------------------

// Writes 64 KiB chunks to a tier on a disk of `disk_bytes` until a write
// fails; checks that it fails as a full disk, then shuts the tier down as
// the engine does (Flush, then destroy). Exits 0 if all went as expected,
// 2 otherwise; a crash (SIGABRT) is what the test guards against.
[[noreturn]] void FillDiskAndShutDown(const std::string& path, uint64_t disk_bytes, bool sync) {
  NvmeTierOptions o = Options(path);
  o.disk_bytes_for_testing = disk_bytes;  // 0: the real disk
  o.sync_writes = sync;
  auto tier = NvmeTier::Open(o);
  if (!tier.ok()) {
    std::fprintf(stderr, "open: %s\n", tier.status().ToString().c_str());
    std::_Exit(2);
  }
  std::mt19937_64 rng(disk_bytes);
  absl::Status s;
  for (int i = 0; i < 10000 && s.ok(); ++i) {
    Chunk c = MakeChunk(rng, 64 << 10);
    s = (*tier)->Write(c.rec, c.payload);
  }
  if (s.code() != absl::StatusCode::kResourceExhausted) {
    std::fprintf(stderr, "write on a full disk: %s\n", s.ToString().c_str());
    std::_Exit(2);
  }
  const absl::Status flushed = (*tier)->Flush();
  if (flushed.code() != absl::StatusCode::kResourceExhausted) {
    std::fprintf(stderr, "flush on a full disk: %s\n", flushed.ToString().c_str());
    std::_Exit(2);
  }
  tier->reset();
  std::_Exit(0);
}

TEST(FullDiskTest, WriteIsResourceExhaustedAndShutdownDoesNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Disk sizes that make the failing write land in different files (the
  // log, the info log, blob and table files of a flush, the MANIFEST).
  int run = 0;
  for (uint64_t disk : {uint64_t{100} << 10, uint64_t{1} << 20, uint64_t{3} << 20,
                        uint64_t{9} << 20, uint64_t{70} << 20}) {
    for (bool sync : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "disk " << disk << " sync " << sync);
      const std::string path = TestPath("db" + std::to_string(run++));
      EXPECT_EXIT(FillDiskAndShutDown(path, disk, sync), ::testing::ExitedWithCode(0), "");
    }
  }
}

// A real full disk: a 16 MiB tmpfs, mounted in a private mount namespace of
// a child process (so it needs no cleanup). RocksDB's own info log (LOG)
// then fails too, which the seam above cannot show. Skipped where mounting
// is not permitted.
TEST(FullDiskTest, RealTmpfsShutdownDoesNotCrash) {
  constexpr int kCannotMount = 77;
  for (int trial = 0; trial < 8; ++trial) {
    SCOPED_TRACE(::testing::Message() << "trial " << trial);
    const std::string path = TestPath("mnt" + std::to_string(trial));
    fs::create_directories(path);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const bool root = ::geteuid() == 0;
      if (::unshare(root ? CLONE_NEWNS : (CLONE_NEWUSER | CLONE_NEWNS)) != 0 ||
          ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=16m") != 0) {
        std::_Exit(kCannotMount);
      }
      FillDiskAndShutDown(path + "/db", 0, trial % 2 == 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == kCannotMount) {
      GTEST_SKIP() << "cannot mount a tmpfs here";
    }
    ASSERT_FALSE(WIFSIGNALED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
}

TEST(FullDiskTest, AcknowledgedWritesSurviveAFullDisk) {
  const std::string path = TestPath();
  std::mt19937_64 rng(3);
  std::vector<Chunk> written;
  {
    NvmeTierOptions o = Options(path);
    o.disk_bytes_for_testing = uint64_t{3} << 20;
    auto tier = NvmeTier::Open(o);
    ASSERT_TRUE(tier.ok()) << tier.status();
    for (int i = 0; i < 1000; ++i) {
      Chunk c = MakeChunk(rng, 64 << 10);
      const absl::Status s = (*tier)->Write(c.rec, c.payload);
      if (!s.ok()) {
        EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        break;
      }
      written.push_back(std::move(c));
    }
    ASSERT_FALSE(written.empty());
    ASSERT_LT(written.size(), 1000u);
    EXPECT_EQ((*tier)->Flush().code(), absl::StatusCode::kResourceExhausted);
  }
  // Space again: everything acknowledged is there.
  auto tier = MustOpen(path);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->chunk_count(), written.size());
  EXPECT_EQ(ReadEvery(*tier, written), written.size());
}

}  // namespace
}  // namespace strata::store
