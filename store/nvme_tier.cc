#include "store/nvme_tier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/metadata.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/sst_file_reader.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "store/common/checksum.h"
#include "store/common/status_macros.h"
#include "store/rocksdb_status.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// On-disk layout.
//
// Column families:
//   "meta"       ChunkKey (32 raw bytes) -> encoded record (below);
//                kFormatKey -> kFormatValue.
//   "chunks"     ChunkKey -> payload (blob files from blob_min_size up).
//   "namespaces" id as 4 bytes big-endian (so keys sort by id) -> canonical
//                namespace bytes.
// A chunk's meta and payload entries are always written and deleted in one
// WriteBatch.
//
// Record encoding, little-endian, version 1:
//   u8 version (=1) | u8 flags (bit 0: has parent) | u32 namespace_id |
//   u32 size | u64 checksum | [32-byte parent key if bit 0]
// Exactly 18 or 50 bytes; anything else does not decode.
// ---------------------------------------------------------------------------

constexpr char kMetaCf[] = "meta";
constexpr char kChunksCf[] = "chunks";
constexpr char kNamespacesCf[] = "namespaces";
constexpr std::string_view kFormatKey("\x00strata-format", 14);
constexpr char kFormatValue[] = "strata-nvme-v1";

constexpr uint8_t kRecordVersion = 1;
constexpr uint8_t kFlagHasParent = 0x01;
constexpr size_t kRecordFixedSize = 1 + 1 + 4 + 4 + 8;
constexpr size_t kRecordWithParentSize = kRecordFixedSize + ChunkKey::kSize;

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

std::string EncodeRecord(const NvmeRecord& rec) {
  std::string out;
  out.reserve(kRecordWithParentSize);
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(rec.parent.has_value() ? kFlagHasParent : 0));
  PutLe(&out, rec.namespace_id, 4);
  PutLe(&out, rec.size, 4);
  PutLe(&out, rec.checksum, 8);
  if (rec.parent.has_value()) out.append(rec.parent->AsStringView());
  return out;
}

// Decodes the record stored under `key`; false if `value` is not a valid
// version-1 encoding.
bool DecodeRecord(std::string_view key, std::string_view value, NvmeRecord* rec) {
  if (key.size() != ChunkKey::kSize || value.size() < kRecordFixedSize) return false;
  const uint8_t version = static_cast<uint8_t>(value[0]);
  const uint8_t flags = static_cast<uint8_t>(value[1]);
  if (version != kRecordVersion || (flags & ~kFlagHasParent) != 0) return false;
  const bool has_parent = (flags & kFlagHasParent) != 0;
  if (value.size() != (has_parent ? kRecordWithParentSize : kRecordFixedSize)) return false;
  std::memcpy(rec->key.bytes.data(), key.data(), ChunkKey::kSize);
  rec->namespace_id = static_cast<uint32_t>(GetLe(value.data() + 2, 4));
  rec->size = static_cast<uint32_t>(GetLe(value.data() + 6, 4));
  rec->checksum = GetLe(value.data() + 10, 8);
  if (has_parent) {
    ChunkKey parent;
    std::memcpy(parent.bytes.data(), value.data() + kRecordFixedSize, ChunkKey::kSize);
    rec->parent = parent;
  } else {
    rec->parent.reset();
  }
  return true;
}

std::string NamespaceKey(uint32_t id) {
  std::string k(4, '\0');
  for (int i = 0; i < 4; ++i) k[i] = static_cast<char>((id >> (8 * (3 - i))) & 0xff);
  return k;
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

std::string KeyForMessage(std::string_view raw) {
  auto key = ChunkKey::FromBytes(raw);
  if (key.ok()) return key->ToHex();
  std::string hex;
  for (unsigned char c : raw) absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
  return absl::StrCat("(malformed key 0x", hex, ")");
}

absl::Status FromErrorCode(const std::error_code& ec, std::string_view what) {
  const std::string msg = absl::StrCat(absl::string_view(what.data(), what.size()), ": ",
                                       ec.message());
  switch (ec.value()) {
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOENT:
      return absl::NotFoundError(msg);
    case ENOTDIR:
      return absl::FailedPreconditionError(msg);
    case ENOSPC:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

// Discards RocksDB's info log: used by the read-only probe of an existing
// directory so that the probe writes no file at all.
class NullLogger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char* /*format*/, va_list /*ap*/) override {}
};

// RocksDB's info log ("LOG" in the tier's directory), written with plain
// write(2). A line that cannot be written (a full disk) is dropped. RocksDB's
// own file logger must not be used: after one failed append, its next line
// trips an assertion in WritableFileWriter, and Debian's librocksdb is built
// with assertions on, so a full disk ended the process with SIGABRT (during
// a write, a flush or Close). When the file passes kMaxBytes it is renamed
// to LOG.old and a new one is started. Safe for concurrent use.
class FileLogger final : public rocksdb::Logger {
 public:
  static constexpr uint64_t kMaxBytes = uint64_t{64} << 20;

  explicit FileLogger(std::string dir)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
        path_(std::move(dir) + "/LOG"),
        old_path_(path_ + ".old") {
    absl::MutexLock lock(&mu_);
    StartNewFileLocked();
  }
  ~FileLogger() override {
    absl::MutexLock lock(&mu_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[2048];
    struct timeval now;
    ::gettimeofday(&now, nullptr);
    struct tm t;
    ::localtime_r(&now.tv_sec, &t);
    int n = std::snprintf(line, sizeof(line), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ",
                          t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                          t.tm_sec, static_cast<long>(now.tv_usec));
    va_list copy;
    va_copy(copy, ap);
    const int body = std::vsnprintf(line + n, sizeof(line) - n - 1, format, copy);
    va_end(copy);
    if (body < 0) return;
    n = std::min<int>(n + body, static_cast<int>(sizeof(line)) - 2);
    if (line[n - 1] != '\n') line[n++] = '\n';
    absl::MutexLock lock(&mu_);
    if (size_ + n > kMaxBytes) {
      if (fd_ >= 0) ::close(fd_);
      ::rename(path_.c_str(), old_path_.c_str());
      StartNewFileLocked();
    }
    if (fd_ < 0) return;
    const ssize_t written = ::write(fd_, line, static_cast<size_t>(n));
    if (written > 0) size_ += static_cast<uint64_t>(written);
  }

 private:
  void StartNewFileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    size_ = (fd_ >= 0 && ::fstat(fd_, &st) == 0) ? static_cast<uint64_t>(st.st_size) : 0;
  }

  const std::string path_;
  const std::string old_path_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
};

// Remembers RocksDB's background error (a failed flush, compaction or WAL
// write puts the DB in a read-only state until it recovers). Safe for
// concurrent use.
class BackgroundErrorListener final : public rocksdb::EventListener {
 public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason /*reason*/,
                         rocksdb::Status* bg_error) override {
    if (bg_error == nullptr || bg_error->ok()) return;
    absl::MutexLock lock(&mu_);
    error_ = FromRocksDbStatus(*bg_error, "background error");
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    absl::MutexLock lock(&mu_);
    error_ = FromRocksDbStatus(info.new_bg_error, "background error");
  }
  absl::Status error() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

// Test seam (NvmeTierOptions::disk_bytes_for_testing): a disk of `capacity`
// bytes. Appends past it fail with NoSpace, as the POSIX file system reports
// ENOSPC. Deleted files do not give space back.
class FullDiskFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FullDiskFileSystem(std::shared_ptr<rocksdb::FileSystem> target, uint64_t capacity)
      : rocksdb::FileSystemWrapper(std::move(target)), capacity_(capacity) {}
  const char* Name() const override { return "StrataFullDiskFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, &file, dbg);
    if (s.ok()) *result = std::make_unique<File>(std::move(file), this);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReopenWritableFile(fname, opts, &file, dbg);
    if (s.ok()) *result = std::make_unique<File>(std::move(file), this);
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReuseWritableFile(fname, old_fname, opts, &file, dbg);
    if (s.ok()) *result = std::make_unique<File>(std::move(file), this);
    return s;
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> target, FullDiskFileSystem* fs)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(target)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(data.size())) return rocksdb::IOStatus::NoSpace("No space left on device");
      return target()->Append(data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(data.size())) return rocksdb::IOStatus::NoSpace("No space left on device");
      return target()->Append(data, options, info, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(data.size())) return rocksdb::IOStatus::NoSpace("No space left on device");
      return target()->PositionedAppend(data, offset, options, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& options,
                                       const rocksdb::DataVerificationInfo& info,
                                       rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(data.size())) return rocksdb::IOStatus::NoSpace("No space left on device");
      return target()->PositionedAppend(data, offset, options, info, dbg);
    }

   private:
    FullDiskFileSystem* const fs_;
  };

  // Reserves n bytes; false (and nothing reserved) if they do not fit.
  bool Take(uint64_t n) {
    uint64_t used = used_.load();
    do {
      if (used + n > capacity_) return false;
    } while (!used_.compare_exchange_weak(used, used + n));
    return true;
  }

  const uint64_t capacity_;
  std::atomic<uint64_t> used_{0};
};

rocksdb::DBOptions MakeDbOptions() {
  rocksdb::DBOptions o;
  o.create_if_missing = false;
  o.create_missing_column_families = false;
  o.paranoid_checks = true;
  o.keep_log_file_num = 4;
  o.max_background_jobs = 2;
  // Replaying the write-ahead log at open must not need room for new table
  // and blob files: a node whose disk filled up still opens and serves.
  o.avoid_flush_during_recovery = true;
  return o;
}

std::shared_ptr<rocksdb::TableFactory> MakeTableFactory() {
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  return std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(t));
}

std::vector<rocksdb::ColumnFamilyDescriptor> MakeCfDescriptors(const NvmeTierOptions& options) {
  rocksdb::ColumnFamilyOptions meta;
  meta.table_factory = MakeTableFactory();

  rocksdb::ColumnFamilyOptions chunks;
  chunks.table_factory = MakeTableFactory();
  chunks.compression = rocksdb::kNoCompression;  // KV tensors do not compress
  chunks.enable_blob_files = true;
  chunks.min_blob_size = options.blob_min_size;
  chunks.blob_compression_type = rocksdb::kNoCompression;
  // Evicted chunks leave garbage in blob files; compaction reclaims it.
  chunks.enable_blob_garbage_collection = true;

  rocksdb::ColumnFamilyOptions namespaces;
  return {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kMetaCf, meta},
      {kChunksCf, chunks},
      {kNamespacesCf, namespaces},
  };
}

// Owns an open DB and its column family handles (index as in
// MakeCfDescriptors). Handles go before the DB.
struct OpenDb {
  std::unique_ptr<rocksdb::Env> env;  // null: the default Env; outlives db
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;

  OpenDb() = default;
  OpenDb(const OpenDb&) = delete;
  OpenDb& operator=(const OpenDb&) = delete;
  ~OpenDb() {
    if (db == nullptr) return;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();
    delete db;
  }
};

bool IsEmptyCf(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, absl::Status* status) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  it->SeekToFirst();
  *status = FromRocksDbStatus(it->status());
  return !it->Valid();
}

// Evidence, read without writing, that `path` holds a Strata NVMe DB whose
// CURRENT, MANIFEST or format marker may be damaged: an OPTIONS-* file (the
// options RocksDB saved at the last open) with Strata's three column
// families and blob files enabled on "chunks", as MakeCfDescriptors sets
// them. Returns that file's name, or "" if there is none (then the
// directory is not known to be Strata's).
std::string StrataDbEvidence(const std::string& path) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("OPTIONS-", 0) != 0 || !e.is_regular_file(ec)) continue;
    std::ifstream in(e.path());
    std::set<std::string> sections;
    std::string section;
    bool chunks_in_blobs = false;
    for (std::string line; std::getline(in, line);) {
      const size_t first = line.find_first_not_of(" \t");
      if (first == std::string::npos) continue;
      line = line.substr(first);
      if (line.front() == '[') {
        section = line.substr(0, line.find(']') + 1);
        sections.insert(section);
      } else if (section == absl::StrCat("[CFOptions \"", kChunksCf, "\"]") &&
                 line == "enable_blob_files=true") {
        chunks_in_blobs = true;
      }
    }
    bool all = chunks_in_blobs;
    for (const char* cf : {kMetaCf, kChunksCf, kNamespacesCf}) {
      all = all && sections.count(absl::StrCat("[CFOptions \"", cf, "\"]")) > 0;
    }
    if (all) return name;
  }
  return "";
}

// The MANIFEST that CURRENT names, for messages ("" if unreadable).
std::string CurrentManifest(const std::string& path) {
  std::ifstream in(fs::path(path) / "CURRENT", std::ios::binary);
  std::string name;
  std::getline(in, name);
  return name.rfind("MANIFEST-", 0) == 0 ? name : "";
}

// What Open must do with the existing DB after the read-only probe.
enum class ProbeResult { kStrata, kInterruptedCreation };

// Checks, without writing any file, that the RocksDB at `path` is a Strata
// NVMe DB of this format version.
absl::StatusOr<ProbeResult> ProbeExistingDb(const std::string& path,
                                            const NvmeTierOptions& options) {
  const std::string where = absl::StrCat("Strata NVMe directory ", path);
  std::vector<std::string> cf_names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &cf_names);
  if (!s.ok()) {
    // CURRENT exists (checked by the caller), so a MANIFEST it names that is
    // missing is as much a corruption as a garbage one.
    if (s.IsCorruption() || s.IsPathNotFound() || s.IsNotFound()) {
      return absl::DataLossError(
          absl::StrCat("corrupt DB files in ", where, ": ", s.ToString()));
    }
    return FromRocksDbStatus(s, absl::StrCat("listing column families of ", where));
  }
  const std::set<std::string> want = {rocksdb::kDefaultColumnFamilyName, kMetaCf, kChunksCf,
                                      kNamespacesCf};
  rocksdb::DBOptions db_options = MakeDbOptions();
  db_options.info_log = std::make_shared<NullLogger>();
  if (std::set<std::string>(cf_names.begin(), cf_names.end()) != want) {
    // ListColumnFamilies skips MANIFEST records it cannot parse, so a corrupt
    // Strata MANIFEST can look like a foreign DB: a full read-only recovery
    // tells the two apart.
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& name : cf_names) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    OpenDb foreign;
    s = rocksdb::DB::OpenForReadOnly(db_options, path, cfs, &foreign.handles, &foreign.db);
    if (s.IsCorruption() || s.IsPathNotFound()) {
      return absl::DataLossError(
          absl::StrCat("corrupt DB files in ", where, ": ", s.ToString()));
    }
    // The MANIFEST (the list of the DB's files and column families) lost
    // Strata's column families although other files name them: damage.
    if (const std::string evidence = StrataDbEvidence(path); !evidence.empty()) {
      std::string listed;
      for (const std::string& name : cf_names) {
        absl::StrAppend(&listed, listed.empty() ? "" : ", ", name);
      }
      const std::string manifest = CurrentManifest(path);
      return absl::DataLossError(absl::StrCat(
          "corrupt DB files in ", where, ": its MANIFEST",
          manifest.empty() ? "" : absl::StrCat(" (", manifest, ")"),
          " is damaged: it lists the column families {", listed,
          "} where ", evidence, " names Strata's (meta, chunks, namespaces)"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "not a Strata NVMe directory: ", path,
        " holds a RocksDB without Strata's column families (meta, chunks, namespaces)"));
  }

  OpenDb probe;
  s = rocksdb::DB::OpenForReadOnly(db_options, path, MakeCfDescriptors(options), &probe.handles,
                                   &probe.db);
  if (!s.ok()) {
    if (s.IsCorruption() || s.IsPathNotFound()) {
      return absl::DataLossError(
          absl::StrCat("corrupt DB files in ", where, ": ", s.ToString()));
    }
    return FromRocksDbStatus(s, absl::StrCat("probing ", where));
  }
  std::string format;
  s = probe.db->Get(rocksdb::ReadOptions(), probe.handles[1], ToSlice(kFormatKey), &format);
  if (s.ok()) {
    if (format != kFormatValue) {
      return absl::FailedPreconditionError(
          absl::StrCat("not a Strata NVMe directory of this version: ", path, " has format '",
                       format, "', this build reads '", kFormatValue, "'"));
    }
    return ProbeResult::kStrata;
  }
  if (!s.IsNotFound()) return FromRocksDbStatus(s, absl::StrCat("reading format of ", where));
  for (size_t i = 1; i < probe.handles.size(); ++i) {
    absl::Status st;
    const bool empty = IsEmptyCf(probe.db, probe.handles[i], &st);
    if (!st.ok()) return st;
    if (!empty) {
      // Strata writes the marker first: data without it is damage when
      // Strata's own options say the DB is Strata's.
      if (const std::string evidence = StrataDbEvidence(path); !evidence.empty()) {
        return absl::DataLossError(
            absl::StrCat("corrupt DB files in ", where,
                         ": the format marker is missing from a DB with data whose ", evidence,
                         " is Strata's (a damaged MANIFEST lost the files that held it)"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "not a Strata NVMe directory: ", path, " has Strata's column families but no format marker"));
    }
  }
  return ProbeResult::kInterruptedCreation;
}

// Where a blob-stored value lives, from RocksDB's blob index (the value the
// LSM holds for it; db/blob/blob_index.h):
//   kBlob (1): u8 type | varint64 file number | varint64 offset of the value
//              | varint64 value size | u8 compression
// (kInlinedTTL and kBlobTTL are written by the stacked BlobDB only.)
struct BlobLocation {
  uint64_t file_number = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

bool GetVarint64(std::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

bool DecodeBlobIndex(std::string_view index, BlobLocation* where) {
  constexpr uint8_t kTypeBlob = 1;
  if (index.empty() || static_cast<uint8_t>(index.front()) != kTypeBlob) return false;
  index.remove_prefix(1);
  if (!GetVarint64(&index, &where->file_number) || !GetVarint64(&index, &where->offset) ||
      !GetVarint64(&index, &where->size)) {
    return false;
  }
  // Strata writes blobs uncompressed.
  return index.size() == 1 && static_cast<uint8_t>(index.front()) == rocksdb::kNoCompression;
}

// Reads the value at `where` straight from its blob file (named in the
// column family's metadata), without looking at the file's header, footer
// or record framing.
bool ReadBlob(const rocksdb::ColumnFamilyMetaData& cf_meta, const BlobLocation& where,
              std::string* out) {
  for (const rocksdb::BlobMetaData& blob : cf_meta.blob_files) {
    if (blob.blob_file_number != where.file_number) continue;
    if (where.offset > blob.blob_file_size || where.size > blob.blob_file_size - where.offset) {
      return false;
    }
    std::ifstream in(blob.blob_file_path + blob.blob_file_name, std::ios::binary);
    out->resize(where.size);
    in.seekg(static_cast<std::streamoff>(where.offset));
    in.read(out->data(), static_cast<std::streamsize>(where.size));
    return in.gcount() == static_cast<std::streamsize>(where.size);
  }
  return false;
}

// Lock stripes serialize the read-modify-write of one key (its old size feeds
// the counters) and keep a Read's meta and payload lookups consistent.
struct alignas(64) Stripe {
  absl::Mutex mu;
};
constexpr size_t kStripes = 64;

class RocksNvmeTier final : public NvmeTier {
 public:
  RocksNvmeTier(std::string path, bool sync_writes, std::unique_ptr<OpenDb> db,
                std::shared_ptr<BackgroundErrorListener> listener)
      : path_(std::move(path)),
        db_(std::move(db)),
        listener_(std::move(listener)),
        meta_(db_->handles[1]),
        chunks_(db_->handles[2]),
        namespaces_(db_->handles[3]) {
    write_options_.sync = sync_writes;
  }

  // Rebuilds the counters; deletes records that do not decode.
  absl::Status Init() {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    ro.readahead_size = 2 << 20;
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(ro, meta_));
    std::vector<std::string> bad;
    uint64_t bytes = 0;
    uint64_t count = 0;
    NvmeRecord rec;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view k = ToView(it->key());
      if (k == kFormatKey) continue;
      if (!DecodeRecord(k, ToView(it->value()), &rec)) {
        bad.emplace_back(k);
        continue;
      }
      bytes += rec.size;
      ++count;
    }
    RETURN_IF_ERROR(
        FromRocksDbStatus(it->status(), absl::StrCat("scanning metadata in ", path_)));
    if (!bad.empty()) {
      rocksdb::WriteBatch batch;
      for (const std::string& k : bad) {
        batch.Delete(meta_, k);
        batch.Delete(chunks_, k);
      }
      RETURN_IF_ERROR(CheckWrite(db_->db->Write(write_options_, &batch),
                                 absl::StrCat("dropping bad records in ", path_)));
    }
    used_bytes_.store(bytes);
    chunk_count_.store(count);
    dropped_on_open_ = bad.size();
    return absl::OkStatus();
  }

  absl::Status Write(const NvmeRecord& rec, std::span<const std::byte> payload) override {
    if (payload.size() != rec.size) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", rec.key.ToHex(), ": payload is ",
                                                     payload.size(), " bytes, record says ",
                                                     rec.size));
    }
    const uint64_t actual = ChunkChecksum(payload);
    if (actual != rec.checksum) {
      return absl::DataLossError(absl::StrCat("chunk ", rec.key.ToHex(),
                                              ": payload checksum ", absl::Hex(actual),
                                              " != record checksum ", absl::Hex(rec.checksum),
                                              "; not written"));
    }
    const rocksdb::Slice key = ToSlice(rec.key.AsStringView());
    rocksdb::WriteBatch batch;
    RETURN_IF_ERROR(FromRocksDbStatus(batch.Put(meta_, key, EncodeRecord(rec))));
    RETURN_IF_ERROR(FromRocksDbStatus(batch.Put(
        chunks_, key,
        rocksdb::Slice(reinterpret_cast<const char*>(payload.data()), payload.size()))));

    // RocksDB refuses every write after a background error (a full disk)
    // until it is resumed; try, so that freeing space is enough to recover.
    if (!listener_->error().ok()) (void)db_->db->Resume();
    absl::MutexLock lock(&StripeFor(rec.key).mu);
    ASSIGN_OR_RETURN(std::optional<uint32_t> old_size, StoredSizeLocked(rec.key));
    RETURN_IF_ERROR(CheckWrite(db_->db->Write(write_options_, &batch),
                               absl::StrCat("writing chunk ", rec.key.ToHex())));
    if (old_size.has_value()) {
      used_bytes_.fetch_sub(*old_size);
    } else {
      chunk_count_.fetch_add(1);
    }
    used_bytes_.fetch_add(rec.size);
    return absl::OkStatus();
  }

  absl::Status Read(const ChunkKey& key, std::span<std::byte> out) override {
    const rocksdb::Slice k = ToSlice(key.AsStringView());
    Stripe& stripe = StripeFor(key);
    std::string meta_value;
    std::string problem;
    bool salvaged = false;
    {
      absl::ReaderMutexLock lock(&stripe.mu);
      rocksdb::Status s = db_->db->Get(rocksdb::ReadOptions(), meta_, k, &meta_value);
      if (s.IsNotFound()) {
        return absl::NotFoundError(absl::StrCat("chunk ", key.ToHex(), " not in ", path_));
      }
      NvmeRecord rec;
      if (!s.ok()) {
        if (!s.IsCorruption()) {
          return FromRocksDbStatus(s, absl::StrCat("reading metadata of chunk ", key.ToHex()));
        }
        meta_value.clear();
        problem = absl::StrCat("metadata unreadable (", s.ToString(), ")");
      } else if (!DecodeRecord(key.AsStringView(), meta_value, &rec)) {
        problem = "metadata does not decode";
      } else if (rec.size != out.size()) {
        return absl::InvalidArgumentError(absl::StrCat("chunk ", key.ToHex(), " is ", rec.size,
                                                       " bytes, output buffer is ",
                                                       out.size()));
      } else {
        rocksdb::PinnableSlice payload;
        s = db_->db->Get(rocksdb::ReadOptions(), chunks_, k, &payload);
        if (s.IsCorruption()) {
          // RocksDB's framing of the payload failed: its blob file's header
          // or footer, or its record's header or CRC. The payload's own
          // bytes may be intact: Strata's checksum decides.
          if (SalvagePayloadLocked(key, rec, out)) {
            salvaged = true;
          } else {
            problem = absl::StrCat("payload unreadable (", s.ToString(),
                                   ") and no intact copy found");
          }
        } else if (s.IsNotFound() || s.IsPathNotFound()) {
          problem = absl::StrCat("payload unreadable (", s.ToString(), ")");
        } else if (!s.ok()) {
          return FromRocksDbStatus(s, absl::StrCat("reading chunk ", key.ToHex()));
        } else if (payload.size() != rec.size) {
          problem = absl::StrCat("payload is ", payload.size(), " bytes, record says ", rec.size);
        } else {
          std::memcpy(out.data(), payload.data(), payload.size());
          const uint64_t actual = ChunkChecksum(out);
          if (actual == rec.checksum) return absl::OkStatus();
          problem = absl::StrCat("checksum ", absl::Hex(actual), " != stored ",
                                 absl::Hex(rec.checksum));
        }
      }
    }
    if (salvaged) {
      // Give the chunk a fresh copy (a new blob file), so that its reads stop
      // depending on the damaged file. Best effort: the bytes are verified.
      RewritePayloadIfMetaIs(key, meta_value, out);
      return absl::OkStatus();
    }
    // Never serve it again: delete it, unless a concurrent Write replaced the
    // record since we looked (then the new chunk is not ours to judge).
    absl::Status deleted = DeleteIfMetaIs(key, meta_value);
    return absl::DataLossError(absl::StrCat("chunk ", key.ToHex(), " in ", path_, ": ", problem,
                                            deleted.ok() ? "; chunk deleted"
                                                         : absl::StrCat("; delete failed: ",
                                                                        deleted.ToString())));
  }

  absl::Status Delete(const ChunkKey& key) override {
    absl::MutexLock lock(&StripeFor(key).mu);
    return DeleteLocked(key);
  }

  absl::Status ForEach(absl::FunctionRef<void(const NvmeRecord&)> fn) const override {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    ro.readahead_size = 2 << 20;
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(ro, meta_));
    NvmeRecord rec;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view k = ToView(it->key());
      if (k == kFormatKey) continue;
      if (!DecodeRecord(k, ToView(it->value()), &rec)) {
        return absl::DataLossError(absl::StrCat("metadata of chunk ", KeyForMessage(k), " in ",
                                                path_, " does not decode"));
      }
      fn(rec);
    }
    return FromRocksDbStatus(it->status(), absl::StrCat("scanning metadata in ", path_));
  }

  absl::Status PutNamespace(uint32_t id, std::span<const uint8_t> canonical) override {
    const std::string key = NamespaceKey(id);
    const rocksdb::Slice value(reinterpret_cast<const char*>(canonical.data()), canonical.size());
    absl::MutexLock lock(&namespace_mu_);
    std::string existing;
    rocksdb::Status s = db_->db->Get(rocksdb::ReadOptions(), namespaces_, key, &existing);
    if (s.ok()) {
      if (rocksdb::Slice(existing) == value) return absl::OkStatus();
      return absl::AlreadyExistsError(
          absl::StrCat("namespace ", id, " is already stored with other canonical bytes"));
    }
    if (!s.IsNotFound()) {
      return FromRocksDbStatus(s, absl::StrCat("reading namespace ", id));
    }
    return CheckWrite(db_->db->Put(write_options_, namespaces_, key, value),
                      absl::StrCat("writing namespace ", id));
  }

  absl::Status DeleteNamespace(uint32_t id) override {
    absl::MutexLock lock(&namespace_mu_);
    return FromRocksDbStatus(db_->db->Delete(write_options_, namespaces_, NamespaceKey(id)),
                             absl::StrCat("deleting namespace ", id));
  }

  absl::Status ForEachNamespace(
      absl::FunctionRef<void(uint32_t, std::span<const uint8_t>)> fn) const override {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->db->NewIterator(rocksdb::ReadOptions(), namespaces_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocksdb::Slice k = it->key();
      if (k.size() != 4) {
        return absl::DataLossError(
            absl::StrCat("malformed namespace key of ", k.size(), " bytes in ", path_));
      }
      uint32_t id = 0;
      for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<uint8_t>(k[i]);
      const rocksdb::Slice v = it->value();
      fn(id, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size()));
    }
    return FromRocksDbStatus(it->status(), absl::StrCat("scanning namespaces in ", path_));
  }

  uint64_t used_bytes() const override { return used_bytes_.load(); }
  size_t chunk_count() const override { return static_cast<size_t>(chunk_count_.load()); }
  uint64_t records_dropped_on_open() const override { return dropped_on_open_; }

  absl::Status Flush() override {
    // After a failed write (a full disk) or a background error RocksDB
    // refuses writes until it recovers; a flush cannot succeed then and only
    // adds failing I/O to a shutdown. Every acknowledged write is in the
    // write-ahead log anyway.
    const absl::Status failed = FailedState();
    if (!failed.ok()) {
      return absl::Status(failed.code(),
                          absl::StrCat("not flushing ", path_, ": ", failed.message()));
    }
    return CheckWrite(db_->db->Flush(rocksdb::FlushOptions(), {meta_, chunks_, namespaces_}),
                      absl::StrCat("flushing ", path_));
  }

  absl::Status CorruptPayloadForTesting(const ChunkKey& key,
                                        std::span<const std::byte> bytes) override {
    absl::MutexLock lock(&StripeFor(key).mu);
    ASSIGN_OR_RETURN(std::optional<uint32_t> size, StoredSizeLocked(key));
    if (!size.has_value()) {
      return absl::NotFoundError(absl::StrCat("chunk ", key.ToHex(), " not in ", path_));
    }
    if (*size != bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", key.ToHex(), " is ", *size,
                                                     " bytes, replacement is ", bytes.size()));
    }
    return CheckWrite(
        db_->db->Put(write_options_, chunks_, ToSlice(key.AsStringView()),
                     rocksdb::Slice(reinterpret_cast<const char*>(bytes.data()), bytes.size())),
        absl::StrCat("overwriting chunk ", key.ToHex()));
  }

 private:
  Stripe& StripeFor(const ChunkKey& key) const {
    return stripes_[absl::HashOf(key) % kStripes];
  }

  // The stored size of `key`, nullopt if absent (or if its record does not
  // decode: such a record was never counted).
  // REQUIRES: the key's stripe is held.
  absl::StatusOr<std::optional<uint32_t>> StoredSizeLocked(const ChunkKey& key) const {
    std::string value;
    rocksdb::Status s =
        db_->db->Get(rocksdb::ReadOptions(), meta_, ToSlice(key.AsStringView()), &value);
    if (s.IsNotFound()) return std::optional<uint32_t>();
    RETURN_IF_ERROR(FromRocksDbStatus(s, absl::StrCat("reading metadata of chunk ", key.ToHex())));
    NvmeRecord rec;
    if (!DecodeRecord(key.AsStringView(), value, &rec)) return std::optional<uint32_t>();
    return std::optional<uint32_t>(rec.size);
  }

  // Finds an intact copy of the payload of `key` whose RocksDB read failed
  // with Corruption, copies it into `out` and returns true; false if there
  // is none. Intact means rec.size bytes whose ChunkChecksum is
  // rec.checksum. Tries, in order:
  //   1. RocksDB without its own checksums (covers a damaged record header
  //      or CRC, and damage to the key copy in the blob record);
  //   2. reading the blob where the LSM's blob index points, bypassing
  //      RocksDB's blob file reader, which refuses a whole file when its
  //      header or footer is damaged.
  // REQUIRES: the key's stripe is held.
  bool SalvagePayloadLocked(const ChunkKey& key, const NvmeRecord& rec,
                            std::span<std::byte> out) const {
    auto accept = [&](std::string_view bytes) {
      if (bytes.size() != rec.size || out.size() != rec.size) return false;
      std::memcpy(out.data(), bytes.data(), bytes.size());
      return ChunkChecksum(out) == rec.checksum;
    };
    const rocksdb::Slice k = ToSlice(key.AsStringView());
    rocksdb::ReadOptions unverified;
    unverified.verify_checksums = false;
    rocksdb::PinnableSlice payload;
    if (db_->db->Get(unverified, chunks_, k, &payload).ok() && accept(ToView(payload))) {
      return true;
    }

    rocksdb::ColumnFamilyMetaData cf_meta;
    db_->db->GetColumnFamilyMetaData(chunks_, &cf_meta);
    for (const rocksdb::LevelMetaData& level : cf_meta.levels) {
      for (const rocksdb::SstFileMetaData& file : level.files) {
        // The SST reader shows a blob-stored value as its raw blob index.
        rocksdb::SstFileReader reader{rocksdb::Options()};
        if (!reader.Open(file.db_path + file.name).ok()) continue;
        std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(unverified));
        it->Seek(k);
        if (!it->Valid() || it->key() != k) continue;
        const std::string_view value = ToView(it->value());
        if (accept(value)) return true;  // stored inline after all
        BlobLocation where;
        if (!DecodeBlobIndex(value, &where)) continue;
        std::string blob;
        if (ReadBlob(cf_meta, where, &blob) && accept(blob)) return true;
      }
    }
    return false;
  }

  // Puts `bytes` (verified) back as the payload of `key` if its meta value is
  // still `expected`; failures are ignored (the chunk stays readable).
  void RewritePayloadIfMetaIs(const ChunkKey& key, const std::string& expected,
                              std::span<const std::byte> bytes) {
    absl::MutexLock lock(&StripeFor(key).mu);
    std::string value;
    const rocksdb::Slice k = ToSlice(key.AsStringView());
    if (!db_->db->Get(rocksdb::ReadOptions(), meta_, k, &value).ok() || value != expected) return;
    CheckWrite(db_->db->Put(write_options_, chunks_, k,
                            rocksdb::Slice(reinterpret_cast<const char*>(bytes.data()),
                                           bytes.size())),
               "rewriting a salvaged chunk")
        .IgnoreError();
  }

  // Converts the status of a write. An I/O error (a full disk) is remembered
  // until a later write succeeds, for Flush.
  absl::Status CheckWrite(const rocksdb::Status& s, std::string_view context) {
    absl::Status status = FromRocksDbStatus(s, context);
    if (s.ok() && !write_failed_.load(std::memory_order_relaxed)) return status;
    if (s.ok() || s.IsIOError()) {
      absl::MutexLock lock(&error_mu_);
      write_error_ = status;
      write_failed_.store(!s.ok(), std::memory_order_relaxed);
    }
    return status;
  }

  // Not OK while a write has failed or RocksDB holds a background error.
  absl::Status FailedState() const {
    {
      absl::MutexLock lock(&error_mu_);
      if (!write_error_.ok()) return write_error_;
    }
    return listener_->error();
  }

  // REQUIRES: the key's stripe is held exclusively.
  absl::Status DeleteLocked(const ChunkKey& key) {
    std::string value;
    const rocksdb::Slice k = ToSlice(key.AsStringView());
    rocksdb::Status s = db_->db->Get(rocksdb::ReadOptions(), meta_, k, &value);
    if (s.IsNotFound()) return absl::OkStatus();
    if (!s.ok() && !s.IsCorruption()) {
      return FromRocksDbStatus(s, absl::StrCat("reading metadata of chunk ", key.ToHex()));
    }
    return RemoveLocked(key, s.ok() ? value : std::string());
  }

  // Deletes both entries of `key`, whose meta value is `meta_value` (empty if
  // unreadable), and updates the counters.
  // REQUIRES: the key's stripe is held exclusively.
  absl::Status RemoveLocked(const ChunkKey& key, const std::string& meta_value) {
    const rocksdb::Slice k = ToSlice(key.AsStringView());
    rocksdb::WriteBatch batch;
    RETURN_IF_ERROR(FromRocksDbStatus(batch.Delete(meta_, k)));
    RETURN_IF_ERROR(FromRocksDbStatus(batch.Delete(chunks_, k)));
    RETURN_IF_ERROR(CheckWrite(db_->db->Write(write_options_, &batch),
                               absl::StrCat("deleting chunk ", key.ToHex())));
    NvmeRecord rec;
    if (DecodeRecord(key.AsStringView(), meta_value, &rec)) {
      used_bytes_.fetch_sub(rec.size);
      chunk_count_.fetch_sub(1);
    }
    return absl::OkStatus();
  }

  // Deletes `key` if its meta value is still `expected` (empty: it was
  // unreadable; then it is deleted whatever it is now).
  absl::Status DeleteIfMetaIs(const ChunkKey& key, const std::string& expected) {
    absl::MutexLock lock(&StripeFor(key).mu);
    if (expected.empty()) return DeleteLocked(key);
    std::string value;
    rocksdb::Status s =
        db_->db->Get(rocksdb::ReadOptions(), meta_, ToSlice(key.AsStringView()), &value);
    if (s.IsNotFound()) return absl::OkStatus();  // someone else deleted it
    if (s.ok() && value != expected) return absl::OkStatus();  // replaced meanwhile
    if (!s.ok() && !s.IsCorruption()) {
      return FromRocksDbStatus(s, absl::StrCat("reading metadata of chunk ", key.ToHex()));
    }
    return RemoveLocked(key, expected);
  }

  // Constant after construction.
  const std::string path_;
  rocksdb::WriteOptions write_options_;
  const std::unique_ptr<OpenDb> db_;
  const std::shared_ptr<BackgroundErrorListener> listener_;
  rocksdb::ColumnFamilyHandle* const meta_;
  rocksdb::ColumnFamilyHandle* const chunks_;
  rocksdb::ColumnFamilyHandle* const namespaces_;
  uint64_t dropped_on_open_ = 0;  // set by Init()

  mutable std::array<Stripe, kStripes> stripes_;
  // Serializes PutNamespace's check-then-put.
  absl::Mutex namespace_mu_;

  std::atomic<uint64_t> used_bytes_{0};
  std::atomic<uint64_t> chunk_count_{0};

  mutable absl::Mutex error_mu_;
  absl::Status write_error_ ABSL_GUARDED_BY(error_mu_);  // latest failed write
  std::atomic<bool> write_failed_{false};               // !write_error_.ok()
};

}  // namespace

absl::StatusOr<std::unique_ptr<NvmeTier>> NvmeTier::Open(const NvmeTierOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("NvmeTierOptions.path is empty");
  if (options.capacity_bytes == 0) {
    return absl::InvalidArgumentError("NvmeTierOptions.capacity_bytes must be > 0");
  }
  const std::string& path = options.path;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  bool create = false;
  if (ec && ec.value() != ENOENT) return FromErrorCode(ec, absl::StrCat("stat ", path));
  if (!fs::exists(st)) {
    fs::create_directories(path, ec);
    if (ec) return FromErrorCode(ec, absl::StrCat("creating ", path));
    create = true;
  } else if (!fs::is_directory(st)) {
    return absl::FailedPreconditionError(
        absl::StrCat("not a Strata NVMe directory: ", path, " exists and is not a directory"));
  } else {
    const bool empty = fs::is_empty(path, ec);
    if (ec) return FromErrorCode(ec, absl::StrCat("listing ", path));
    if (empty) {
      create = true;
    } else if (!fs::exists(fs::path(path) / "CURRENT", ec)) {
      if (ec) return FromErrorCode(ec, absl::StrCat("stat ", path, "/CURRENT"));
      if (const std::string evidence = StrataDbEvidence(path); !evidence.empty()) {
        return absl::DataLossError(
            absl::StrCat("corrupt DB files in Strata NVMe directory ", path,
                         ": CURRENT (the pointer to the live MANIFEST) is missing, though ",
                         evidence, " names Strata's column families"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "not a Strata NVMe directory: ", path, " has files but no RocksDB (no CURRENT file)"));
    }
  }

  bool write_marker = create;
  if (!create) {
    ASSIGN_OR_RETURN(ProbeResult probe, ProbeExistingDb(path, options));
    write_marker = probe == ProbeResult::kInterruptedCreation;
  }

  auto db = std::make_unique<OpenDb>();
  rocksdb::DBOptions db_options = MakeDbOptions();
  db_options.create_if_missing = create;
  db_options.create_missing_column_families = create;
  db_options.info_log = std::make_shared<FileLogger>(path);
  auto listener = std::make_shared<BackgroundErrorListener>();
  db_options.listeners.push_back(listener);
  if (options.disk_bytes_for_testing > 0) {
    db->env = rocksdb::NewCompositeEnv(std::make_shared<FullDiskFileSystem>(
        rocksdb::FileSystem::Default(), options.disk_bytes_for_testing));
    db_options.env = db->env.get();
  }
  rocksdb::Status s =
      rocksdb::DB::Open(db_options, path, MakeCfDescriptors(options), &db->handles, &db->db);
  if (!s.ok()) {
    if (s.IsCorruption() || s.IsPathNotFound()) {
      return absl::DataLossError(
          absl::StrCat("corrupt DB files in Strata NVMe directory ", path, ": ", s.ToString()));
    }
    if (s.IsIOError() && absl::StrContains(s.ToString(), "/LOCK: ")) {
      // RocksDB's "While lock file: .../LOCK: Resource temporarily
      // unavailable" names neither the cause nor the cure.
      return absl::UnavailableError(absl::StrCat(
          "Strata NVMe directory ", path, " is in use: another strata serve or strata local (or "
          "another open in this process) holds its LOCK; stop it or give another directory (",
          s.ToString(), ")"));
    }
    return FromRocksDbStatus(s, absl::StrCat("opening Strata NVMe directory ", path));
  }
  if (write_marker) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db->db->Put(wo, db->handles[1], ToSlice(kFormatKey), ToSlice(kFormatValue));
    RETURN_IF_ERROR(FromRocksDbStatus(s, absl::StrCat("writing format marker in ", path)));
  }
  auto tier = std::make_unique<RocksNvmeTier>(path, options.sync_writes, std::move(db),
                                              std::move(listener));
  RETURN_IF_ERROR(tier->Init());
  return std::unique_ptr<NvmeTier>(std::move(tier));
}

}  // namespace strata::store
