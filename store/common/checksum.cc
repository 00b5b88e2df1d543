#include "store/common/checksum.h"

// For XXH3_state_t on the stack (its layout is fixed by the library version
// we link).
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "store/common/checksum_internal.h"

namespace strata {
namespace checksum_internal {

// Fixed-size memcpy calls compile to vector moves; a variable-size memcpy
// of a large block may become `rep movsb` in the C library.
void CopyPortable(std::byte* dest, const std::byte* src, size_t n) {
  size_t off = 0;
  for (; n - off >= 128; off += 128) std::memcpy(dest + off, src + off, 128);
  std::memcpy(dest + off, src + off, n - off);
}

namespace {

// CopyAndChecksum through one variant's pieces: a chunk of one block is
// copied, then hashed in one call; a longer one block by block into an
// XXH3 state the library resets and digests.
uint64_t CopyAndChecksumWith(void (*copy)(std::byte*, const std::byte*, size_t),
                             uint64_t (*checksum)(const std::byte*, size_t),
                             void (*copy_and_update)(void*, std::byte*, const std::byte*, size_t),
                             std::byte* dest, const std::byte* src, size_t n) {
  if (n <= kCopyBlock) {
    copy(dest, src, n);
    return checksum(dest, n);
  }
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_64bits_reset(&state);
  copy_and_update(&state, dest, src, n);
  return XXH3_64bits_digest(&state);
}

}  // namespace

uint64_t ChecksumPortable(const std::byte* p, size_t n) { return XXH3_64bits(p, n); }

uint64_t CopyAndChecksumPortable(std::byte* dest, const std::byte* src, size_t n) {
  return CopyAndChecksumWith(CopyPortable, ChecksumPortable, CopyAndUpdatePortable, dest, src, n);
}

#if defined(__x86_64__)
uint64_t CopyAndChecksumAvx2(std::byte* dest, const std::byte* src, size_t n) {
  return CopyAndChecksumWith(CopyAvx2, ChecksumAvx2, CopyAndUpdateAvx2, dest, src, n);
}
#endif

void UpdatePortable(void* state, const std::byte* p, size_t n) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state), p, n);
}

void CopyAndUpdatePortable(void* state, std::byte* dest, const std::byte* src, size_t n) {
  for (size_t off = 0; off < n; off += kCopyBlock) {
    const size_t len = std::min(kCopyBlock, n - off);
    CopyPortable(dest + off, src + off, len);
    XXH3_64bits_update(static_cast<XXH3_state_t*>(state), dest + off, len);
  }
}

bool Avx2Available() {
#if defined(__x86_64__)
  static const bool available = [] {
    __builtin_cpu_init();  // this may run before the CPU model is set up
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return available;
#else
  return false;
#endif
}

}  // namespace checksum_internal

uint64_t ChunkChecksum(std::span<const std::byte> bytes) {
#if defined(__x86_64__)
  if (checksum_internal::Avx2Available()) {
    return checksum_internal::ChecksumAvx2(bytes.data(), bytes.size());
  }
#endif
  return checksum_internal::ChecksumPortable(bytes.data(), bytes.size());
}

uint64_t CopyAndChecksum(std::span<std::byte> dest, const std::byte* src) {
#if defined(__x86_64__)
  if (checksum_internal::Avx2Available()) {
    return checksum_internal::CopyAndChecksumAvx2(dest.data(), src, dest.size());
  }
#endif
  return checksum_internal::CopyAndChecksumPortable(dest.data(), src, dest.size());
}

static_assert(sizeof(XXH3_state_t) == ChunkChecksumStream::kStateBytes &&
                  alignof(XXH3_state_t) <= 64,
              "ChunkChecksumStream's storage does not fit this xxhash version's XXH3_state_t");

ChunkChecksumStream::ChunkChecksumStream() {
  XXH3_state_t* state = new (state_) XXH3_state_t;
  XXH3_INITSTATE(state);
  XXH3_64bits_reset(state);
}

void ChunkChecksumStream::CopyAndAppend(std::span<std::byte> dest, const std::byte* src) {
#if defined(__x86_64__)
  if (checksum_internal::Avx2Available()) {
    checksum_internal::CopyAndUpdateAvx2(state_, dest.data(), src, dest.size());
    return;
  }
#endif
  checksum_internal::CopyAndUpdatePortable(state_, dest.data(), src, dest.size());
}

void ChunkChecksumStream::Append(std::span<const std::byte> bytes) {
#if defined(__x86_64__)
  if (checksum_internal::Avx2Available()) {
    checksum_internal::UpdateAvx2(state_, bytes.data(), bytes.size());
    return;
  }
#endif
  checksum_internal::UpdatePortable(state_, bytes.data(), bytes.size());
}

uint64_t ChunkChecksumStream::Checksum() const {
  return XXH3_64bits_digest(std::launder(reinterpret_cast<const XXH3_state_t*>(state_)));
}

}  // namespace strata
