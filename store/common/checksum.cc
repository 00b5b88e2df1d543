#include "store/common/checksum.h"

#include <xxhash.h>

namespace strata {

uint64_t ChunkChecksum(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace strata
