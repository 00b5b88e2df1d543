// The checksum of a chunk's bytes: XXH3 64-bit, seed 0. Clients and the store
// compute it the same way (it is part of the wire protocol).
#ifndef STRATA_STORE_COMMON_CHECKSUM_H_
#define STRATA_STORE_COMMON_CHECKSUM_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace strata {

uint64_t ChunkChecksum(std::span<const std::byte> bytes);

}  // namespace strata

#endif  // STRATA_STORE_COMMON_CHECKSUM_H_
