// The variants behind ChunkChecksum and CopyAndChecksum (checksum.h), for
// their tests and benchmarks; other code calls checksum.h.
#ifndef STRATA_STORE_COMMON_CHECKSUM_INTERNAL_H_
#define STRATA_STORE_COMMON_CHECKSUM_INTERNAL_H_

#include <cstddef>
#include <cstdint>

namespace strata::checksum_internal {

// CopyAndChecksum's block: small enough that a block is still in the L2
// cache when it is hashed after its copy.
inline constexpr size_t kCopyBlock = size_t{128} << 10;

// Portable: the linked xxhash library's XXH3 and a copy loop of 128-byte
// fixed-size memcpy calls (compiled to vector moves).
void CopyPortable(std::byte* dest, const std::byte* src, size_t n);
uint64_t ChecksumPortable(const std::byte* p, size_t n);
uint64_t CopyAndChecksumPortable(std::byte* dest, const std::byte* src, size_t n);

// ChunkChecksumStream's pieces: `state` is its XXH3_state_t (reset and
// digested by the xxhash library; the variants update it with the same
// arithmetic). Update hashes n bytes at p; CopyAndUpdate copies n bytes from
// src to dest and hashes dest, kCopyBlock bytes at a time.
void UpdatePortable(void* state, const std::byte* p, size_t n);
void CopyAndUpdatePortable(void* state, std::byte* dest, const std::byte* src, size_t n);

// True when this CPU (and the OS) run AVX2 code; always false off x86-64.
bool Avx2Available();

// Built for AVX2 (checksum_avx2.cc): XXH3 with its AVX2 accumulator and a
// copy loop of 32-byte loads and stores. Defined on x86-64 only.
// REQUIRES: Avx2Available(). (CopyAndChecksumAvx2 is composed in
// checksum.cc from the other three, as CopyAndChecksumPortable is.)
void CopyAvx2(std::byte* dest, const std::byte* src, size_t n);
uint64_t ChecksumAvx2(const std::byte* p, size_t n);
uint64_t CopyAndChecksumAvx2(std::byte* dest, const std::byte* src, size_t n);
void UpdateAvx2(void* state, const std::byte* p, size_t n);
void CopyAndUpdateAvx2(void* state, std::byte* dest, const std::byte* src, size_t n);

}  // namespace strata::checksum_internal

#endif  // STRATA_STORE_COMMON_CHECKSUM_INTERNAL_H_
