// ChunkKey: the 32-byte identity of one chunk of KV cache (see key_chain.h for
// how keys are derived from tokens).
#ifndef STRATA_STORE_COMMON_CHUNK_KEY_H_
#define STRATA_STORE_COMMON_CHUNK_KEY_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace strata {

// A chunk key: SHA-256 of the chunk's parent key and its tokens. A value type;
// trivially copyable. The all-zero key is never produced by SHA-256 in
// practice and is not treated specially.
struct ChunkKey {
  static constexpr size_t kSize = 32;
  std::array<uint8_t, kSize> bytes{};

  // Builds a key from exactly 32 raw bytes; any other length is
  // InvalidArgument.
  static absl::StatusOr<ChunkKey> FromBytes(std::span<const uint8_t> raw);
  static absl::StatusOr<ChunkKey> FromBytes(std::string_view raw);
  // Parses 64 hex digits (either case); anything else is InvalidArgument.
  static absl::StatusOr<ChunkKey> FromHex(std::string_view hex);

  // 64 lowercase hex digits.
  std::string ToHex() const;
  // The first 8 bytes as hex, for logs.
  std::string ShortHex() const;
  std::string_view AsStringView() const {
    return std::string_view(reinterpret_cast<const char*>(bytes.data()), kSize);
  }

  friend bool operator==(const ChunkKey& a, const ChunkKey& b) { return a.bytes == b.bytes; }
  friend bool operator!=(const ChunkKey& a, const ChunkKey& b) { return !(a == b); }
  friend bool operator<(const ChunkKey& a, const ChunkKey& b) { return a.bytes < b.bytes; }

  // The key is already a uniform hash: its first 8 bytes seed absl's hash.
  template <typename H>
  friend H AbslHashValue(H h, const ChunkKey& k) {
    uint64_t prefix;
    std::memcpy(&prefix, k.bytes.data(), sizeof(prefix));
    return H::combine(std::move(h), prefix);
  }
};

}  // namespace strata

#endif  // STRATA_STORE_COMMON_CHUNK_KEY_H_
