#include "store/common/checksum.h"

// For XXH3_state_t on the stack (its layout is fixed by the library version
// we link).
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace strata {

uint64_t ChunkChecksum(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

uint64_t CopyAndChecksum(std::span<std::byte> dest, const std::byte* src) {
  // Small enough that a block is still in L2 when it is hashed.
  constexpr size_t kBlock = size_t{128} << 10;
  if (dest.size() <= kBlock) {
    std::memcpy(dest.data(), src, dest.size());
    return ChunkChecksum(dest);
  }
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_64bits_reset(&state);
  for (size_t off = 0; off < dest.size(); off += kBlock) {
    const size_t len = std::min(kBlock, dest.size() - off);
    std::memcpy(dest.data() + off, src + off, len);
    XXH3_64bits_update(&state, dest.data() + off, len);
  }
  return XXH3_64bits_digest(&state);
}

}  // namespace strata
