// The checksum of a chunk's bytes: XXH3 64-bit, seed 0. Clients and the store
// compute it the same way (it is part of the wire protocol).
//
// Every function here picks its code once per process: on an x86-64 CPU
// with AVX2 a build of XXH3 and of the copy loop for AVX2
// (checksum_internal.h), otherwise the portable one. Every variant returns
// the same value for the same bytes. The functions are safe for concurrent
// use; a ChunkChecksumStream is not (see there).
#ifndef STRATA_STORE_COMMON_CHECKSUM_H_
#define STRATA_STORE_COMMON_CHECKSUM_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace strata {

uint64_t ChunkChecksum(std::span<const std::byte> bytes);

// Copies src (dest.size() bytes) to dest and returns ChunkChecksum(dest), in
// one pass over the source: block by block, each block hashed while it is
// still in the cache after its copy. The copy is a loop of vector loads and
// stores, never the C library's `rep movsb`, which copies a source that is
// not in the cache at half of memcpy's large-copy speed on some CPUs.
// REQUIRES: src and dest do not overlap.
uint64_t CopyAndChecksum(std::span<std::byte> dest, const std::byte* src);

// ChunkChecksum of a chunk whose bytes come in consecutive pieces, such as
// the layer slices of a layer-by-layer load: after pieces p1, ..., pk,
// Checksum() == ChunkChecksum(p1 || ... || pk), whatever the pieces' sizes.
// CopyAndAppend copies a piece as CopyAndChecksum does (the same vector loop,
// each block hashed while it is still in the cache), so a chunk copied slice
// by slice is read once. Copyable (a copy continues from the same bytes).
// Not safe for concurrent use: one stream per chunk and thread.
class ChunkChecksumStream {
 public:
  ChunkChecksumStream();  // no bytes yet

  // Copies src (dest.size() bytes) to dest and appends dest's bytes.
  // REQUIRES: src and dest do not overlap.
  void CopyAndAppend(std::span<std::byte> dest, const std::byte* src);
  // Appends bytes that are already in place (hashes them only).
  void Append(std::span<const std::byte> bytes);
  // ChunkChecksum of every byte appended so far; appending may go on.
  uint64_t Checksum() const;

  // The size of an XXH3_state_t of the xxhash version we build against
  // (checked in checksum.cc).
  static constexpr size_t kStateBytes = 576;

 private:
  alignas(64) std::byte state_[kStateBytes];
};

}  // namespace strata

#endif  // STRATA_STORE_COMMON_CHECKSUM_H_
