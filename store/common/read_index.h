// ReadIndex: the table of committed DRAM chunks that a node publishes in
// shared memory, so that a client on its host can copy a chunk out of the
// node's shared pool without a Get round trip (a lease-free read), and know
// afterwards whether the bytes it copied were the chunk's.
//
// Layout (all fields little-endian uint64, the node's native order; the
// table and the pool are only ever shared on one host):
//
//   header, 64 bytes: magic "STRIDX01", entry count (a power of two),
//                     closed (1 once the node stopped serving), then zeros
//   entry i, 64 bytes at 64 * (i + 1):
//     seq       even: stable; odd: the node is changing this entry
//     key[4]    the chunk's stored key, 32 bytes
//     offset    of the chunk in the shared DRAM pool
//     size_ns   size in bytes (low 32 bits; 0 = empty entry) and the
//               namespace id (high 32 bits)
//     checksum  XXH3-64 of the chunk's bytes (store/common/checksum.h)
//
// A key lives in one of the kProbe entries from (first 8 key bytes) mod
// entries; when all of them are taken the chunk is not published and readers
// fall back to a leased Get.
//
// Protocol (a sequence lock per entry). The node (ReadIndexWriter, one
// writer, serialised by its caller):
//   publish / withdraw:  seq := s + 1 (odd); release fence;
//                        write key, offset, size_ns, checksum;
//                        seq := s + 2 (release store)
// A chunk is published only once committed (its checksum verified, its bytes
// in the pool) and withdrawn before its slot is freed, so before any byte of
// the slot can be written again (eviction, namespace removal, a corrupt copy
// dropped); the next writer of the slot learns its offset only from an
// allocation made after the withdrawal, under the node's lock.
// A reader (ReadIndexView):
//   Find:  s1 := seq (acquire); skip if odd; read the fields (relaxed);
//          acquire fence; s2 := seq; use the entry only if s1 == s2
//   copy the chunk's bytes out of the mapped pool (plain loads)
//   Unchanged:  acquire fence; s3 := seq; the copy is the chunk's only if
//               s3 == s1
// The acquire fence keeps every load of the copy before the load of s3. If
// the copy saw any byte written after the chunk was withdrawn, that write
// followed the node's odd store of seq (through the node's lock and the RPC
// that handed the slot to its next writer), so s3 != s1 and the reader
// discards the copy. seq only grows, so a chunk withdrawn and published again
// at the same place between s1 and s3 is seen as changed too. The copy's
// plain loads race with such a writer by design (as in every sequence lock);
// their result is never used unless seq proves no write happened, and the
// reader verifies the chunk's checksum over its copy as a second line.
// Fields are read and written through std::atomic_ref on uint64 words.
#ifndef STRATA_STORE_COMMON_READ_INDEX_H_
#define STRATA_STORE_COMMON_READ_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/common/chunk_key.h"

namespace strata {

struct ReadIndexLayout {
  static constexpr uint64_t kMagic = 0x3130584449525453ull;  // "STRIDX01"
  static constexpr size_t kEntryBytes = 64;
  static constexpr size_t kHeaderBytes = 64;
  static constexpr uint32_t kProbe = 8;
  // Words of an entry.
  static constexpr size_t kSeq = 0, kKey = 1, kOffset = 5, kSizeNs = 6, kChecksum = 7;

  // Bytes of a table of `entries` entries (a power of two).
  static constexpr uint64_t Bytes(uint64_t entries) { return kHeaderBytes + entries * kEntryBytes; }
};

// What a reader found for a key: where the chunk is, and the entry's seq to
// check after copying.
struct ReadIndexHit {
  uint32_t entry = 0;
  uint64_t seq = 0;
  uint64_t offset = 0;
  uint32_t size = 0;
  uint64_t checksum = 0;
};

// The node's side. Not thread-safe: one writer, serialised by the caller.
// The region must be 8-byte aligned and outlive the writer.
class ReadIndexWriter {
 public:
  // Formats `region` (zeroed by the caller, ReadIndexLayout::Bytes(entries)
  // long) for `entries` entries. REQUIRES: entries a power of two >= kProbe.
  ReadIndexWriter(std::span<std::byte> region, uint32_t entries);

  // Publishes (or updates) `key`. False when its probe window is full (the
  // chunk stays readable through leases only).
  bool Publish(const ChunkKey& key, uint32_t ns, uint64_t offset, uint32_t size,
               uint64_t checksum);
  // Withdraws `key` if published; true if it was.
  bool Withdraw(const ChunkKey& key);
  // Marks the table closed: readers find nothing from now on (the node is
  // stopping; a node that dies without it is noticed through its RPCs).
  void Close();
  // Entries in use.
  uint64_t published() const { return published_; }
  uint32_t entries() const { return entries_; }

 private:
  uint64_t* Entry(uint32_t i) const { return words_ + (i + 1) * 8; }
  bool Holds(uint32_t i, const ChunkKey& key) const;
  void Write(uint32_t i, const ChunkKey& key, uint64_t offset, uint64_t size_ns,
             uint64_t checksum);

  uint64_t* const words_;
  const uint32_t entries_;
  uint64_t published_ = 0;
};

// A client's side, over the table mapped read-only. Thread-safe (it only
// reads); the mapping must outlive it.
class ReadIndexView {
 public:
  // InvalidArgument when `region` is not a table (bad magic, size or entry
  // count).
  static absl::StatusOr<ReadIndexView> Open(std::span<const std::byte> region);

  // The stable entry of `key` in namespace `ns`, or nullopt (absent, another
  // namespace's, being changed, or the table is closed).
  std::optional<ReadIndexHit> Find(const ChunkKey& key, uint32_t ns) const;
  // True when the entry of `hit` did not change since Find: bytes copied
  // after Find and before this call are the chunk's.
  bool Unchanged(const ReadIndexHit& hit) const;

 private:
  ReadIndexView(const uint64_t* words, uint32_t entries) : words_(words), entries_(entries) {}
  const uint64_t* Entry(uint32_t i) const { return words_ + (i + 1) * 8; }

  const uint64_t* words_;
  uint32_t entries_;
};

}  // namespace strata

#endif  // STRATA_STORE_COMMON_READ_INDEX_H_
