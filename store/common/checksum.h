// The checksum of a chunk's bytes: XXH3 64-bit, seed 0. Clients and the store
// compute it the same way (it is part of the wire protocol).
//
// Both functions pick their code once per process: on an x86-64 CPU with
// AVX2 a build of XXH3 and of the copy loop for AVX2
// (checksum_internal.h), otherwise the portable one. Every variant returns
// the same value for the same bytes. Safe for concurrent use.
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

}  // namespace strata

#endif  // STRATA_STORE_COMMON_CHECKSUM_H_
