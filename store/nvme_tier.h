// NvmeTier: the persistent chunk store of a store node, kept in one RocksDB
// directory (DESIGN.md, "Store node"). A chunk is its metadata (NvmeRecord)
// and its payload, written together atomically; every read verifies the
// payload's checksum, and a chunk that fails it is deleted, never served.
// On restart the engine rebuilds its index from ForEach().
#ifndef STRATA_STORE_NVME_TIER_H_
#define STRATA_STORE_NVME_TIER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/common/chunk_key.h"

namespace strata::store {

struct NvmeTierOptions {
  // Directory of the tier; created (with its parents) if missing.
  std::string path;
  // Capacity the engine budgets for this tier. Informational for the tier
  // itself (it does not refuse writes past it); 0 is InvalidArgument.
  uint64_t capacity_bytes = 0;
  // Payloads of at least this many bytes go to blob files (RocksDB's
  // integrated BlobDB), smaller ones stay in the LSM tree.
  uint64_t blob_min_size = 4096;
  // Sync the write-ahead log on every Write/Delete (fdatasync). Without it a
  // crash of the machine (not of the process) may lose the latest writes,
  // never tear one: each chunk is one atomic batch.
  bool sync_writes = false;
  // Test seam for a full disk: when > 0, file writes RocksDB makes in this
  // directory fail as on a full disk (ENOSPC) once this many bytes have been
  // written since Open. 0: no limit (production).
  uint64_t disk_bytes_for_testing = 0;
};

// Metadata of one persisted chunk.
struct NvmeRecord {
  ChunkKey key;
  std::optional<ChunkKey> parent;  // previous chunk of its key chain
  uint32_t namespace_id = 0;
  uint32_t size = 0;       // payload bytes
  uint64_t checksum = 0;   // strata::ChunkChecksum of the payload (XXH3-64)

  friend bool operator==(const NvmeRecord&, const NvmeRecord&) = default;
};

// Safe for concurrent use by any number of threads without external locking.
// used_bytes() and chunk_count() are exact once every concurrent Write and
// Delete has returned.
//
// Open() rules for options.path:
//   - missing, or an empty directory: a new Strata DB is created there;
//   - a regular file (or anything but a directory): FailedPrecondition;
//   - a non-empty directory without a RocksDB CURRENT file:
//     FailedPrecondition ("not a Strata NVMe directory"), nothing touched;
//     but DataLoss if an OPTIONS-* file there is Strata's (its column
//     families, blob files on "chunks"): then CURRENT was lost;
//   - a RocksDB that is not Strata's (other column families, or no/another
//     format marker): FailedPrecondition, nothing touched (it is probed
//     read-only before being opened for writing). Exception: a DB with
//     exactly Strata's column families, all of them empty, and no marker is a
//     creation that was interrupted before the marker was written; it is
//     completed;
//   - unreadable or corrupt DB files (CURRENT, MANIFEST, ...): DataLoss,
//     with the path in the message, nothing touched. A MANIFEST that lost
//     Strata's column families or the files holding the format marker,
//     where Strata's OPTIONS-* file is present, is such a corruption;
//   - the DB is already open (by this or another process): Unavailable.
// Open scans the metadata once to rebuild used_bytes()/chunk_count(). A
// metadata record that does not decode is deleted with its payload (it can
// never be served) and counted in records_dropped_on_open().
class NvmeTier {
 public:
  static absl::StatusOr<std::unique_ptr<NvmeTier>> Open(const NvmeTierOptions& options);

  virtual ~NvmeTier() = default;
  NvmeTier(const NvmeTier&) = delete;
  NvmeTier& operator=(const NvmeTier&) = delete;

  // Persists rec and payload atomically (one WriteBatch), replacing any chunk
  // stored under rec.key.
  // REQUIRES: payload.size() == rec.size (else InvalidArgument) and
  // ChunkChecksum(payload) == rec.checksum (else DataLoss). On any error
  // nothing is written. A full disk is ResourceExhausted; RocksDB then
  // refuses further writes (and Deletes) until it recovers.
  virtual absl::Status Write(const NvmeRecord& rec, std::span<const std::byte> payload) = 0;

  // Copies the payload of `key` into `out`.
  //   NotFound: no such chunk.
  //   InvalidArgument: out.size() differs from the stored size (nothing read).
  //   DataLoss: the payload is missing, short, or fails its checksum; the
  //     chunk is deleted before returning, so it is never served. `out` then
  //     holds unspecified bytes.
  // When RocksDB reports the payload corrupt (damage to its blob file's
  // header, footer or record framing), an intact copy is looked for, read
  // without RocksDB's checksums or straight from the blob file: if its
  // bytes match rec.checksum it is served (OK) and rewritten to a fresh
  // blob file; otherwise DataLoss as above.
  virtual absl::Status Read(const ChunkKey& key, std::span<std::byte> out) = 0;

  // Deletes the chunk; OK if it is absent (idempotent).
  virtual absl::Status Delete(const ChunkKey& key) = 0;

  // Calls fn with the metadata of every chunk, in key order, from a
  // consistent snapshot taken at the call; payloads are not read. fn may call
  // other methods of this tier (no lock is held while it runs). A record that
  // fails to decode stops the walk with DataLoss naming its key (Open
  // already dropped those present at open, so this means corruption after
  // open).
  virtual absl::Status ForEach(absl::FunctionRef<void(const NvmeRecord&)> fn) const = 0;

  // Persists namespace `id` -> its canonical bytes (opaque here). Putting the
  // same bytes again is OK; different bytes under an existing id are
  // AlreadyExists (chunks refer to namespaces by id, so an id never changes
  // meaning).
  virtual absl::Status PutNamespace(uint32_t id, std::span<const uint8_t> canonical) = 0;
  // Deletes namespace record `id`; OK if absent. (Its chunks are deleted by
  // the caller, with Delete.)
  virtual absl::Status DeleteNamespace(uint32_t id) = 0;
  // Calls fn for every namespace, in increasing id order.
  virtual absl::Status ForEachNamespace(
      absl::FunctionRef<void(uint32_t, std::span<const uint8_t>)> fn) const = 0;

  // Sum of the payload sizes of the stored chunks, and their number; kept up
  // to date by Write/Delete/Read and rebuilt by Open.
  virtual uint64_t used_bytes() const = 0;
  virtual size_t chunk_count() const = 0;
  // Records Open found undecodable and deleted (see the class comment).
  virtual uint64_t records_dropped_on_open() const = 0;

  // Flushes the memtables to files (graceful shutdown; not needed for
  // durability, which the write-ahead log provides). Does nothing and
  // returns that error while a write has failed (ResourceExhausted for a
  // full disk) or RocksDB holds a background error. Destroying the tier is
  // safe in those states too (it never aborts the process).
  virtual absl::Status Flush() = 0;

  // Test seam: overwrites the stored payload of `key` with `bytes` without
  // touching its metadata (simulates media corruption).
  // REQUIRES: bytes.size() equals the stored size (else InvalidArgument).
  // NotFound if absent.
  virtual absl::Status CorruptPayloadForTesting(const ChunkKey& key,
                                                std::span<const std::byte> bytes) = 0;

 protected:
  NvmeTier() = default;
};

}  // namespace strata::store

#endif  // STRATA_STORE_NVME_TIER_H_
