// XXH3-64 and CopyAndChecksum's loop compiled for AVX2. This file alone is
// built with -mavx2 (store/common/BUILD); checksum.cc calls it only after
// Avx2Available(). It includes nothing but xxhash (every function of it
// static here, through XXH_INLINE_ALL) and the intrinsics, so no inline
// function shared with other files is ever emitted from it with AVX2 code.
#include "store/common/checksum_internal.h"

#if defined(__x86_64__)

#define XXH_INLINE_ALL
#include <immintrin.h>
#include <xxhash.h>

namespace strata::checksum_internal {


// 128 bytes per step in four 32-byte loads and stores; the tail (< 128
// bytes) by memcpy.
void CopyAvx2(std::byte* dest, const std::byte* src, size_t n) {
  size_t off = 0;
  for (; n - off >= 128; off += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + off));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + off + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + off + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + off + 96));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dest + off), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dest + off + 32), b);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dest + off + 64), c);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dest + off + 96), d);
  }
  memcpy(dest + off, src + off, n - off);
}

uint64_t ChecksumAvx2(const std::byte* p, size_t n) { return XXH3_64bits(p, n); }

// `state` was reset by the library (checksum.cc): the same struct, from the
// same header, as XXH3_state_t here.
void UpdateAvx2(void* state, const std::byte* p, size_t n) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state), p, n);
}

void CopyAndUpdateAvx2(void* state, std::byte* dest, const std::byte* src, size_t n) {
  for (size_t off = 0; off < n; off += kCopyBlock) {
    const size_t len = n - off < kCopyBlock ? n - off : kCopyBlock;
    CopyAvx2(dest + off, src + off, len);
    XXH3_64bits_update(static_cast<XXH3_state_t*>(state), dest + off, len);
  }
}

}  // namespace strata::checksum_internal

#endif  // defined(__x86_64__)
