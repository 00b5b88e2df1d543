// KeyChain: derives chunk keys from tokens, reproducibly in any language:
//   root   = SHA256("strata-kv-v1" || canonical namespace bytes || tenant salt)
//   key[0] = SHA256(root     || tokens of chunk 0 as uint32 little-endian)
//   key[i] = SHA256(key[i-1] || tokens of chunk i as uint32 little-endian)
// Only full chunks are keyed. README.md has test vectors.
#ifndef STRATA_STORE_COMMON_KEY_CHAIN_H_
#define STRATA_STORE_COMMON_KEY_CHAIN_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "store/common/chunk_key.h"
#include "store/common/namespace.h"

namespace strata {

// Immutable after Create; safe for concurrent use.
class KeyChain {
 public:
  // `tenant_salt` separates tenants that share a model (empty for none).
  // InvalidArgument when the spec does not validate.
  static absl::StatusOr<KeyChain> Create(const NamespaceSpec& spec,
                                         std::span<const uint8_t> tenant_salt = {});

  const ChunkKey& root() const { return root_; }
  uint32_t tokens_per_chunk() const { return tokens_per_chunk_; }

  // Keys of every full chunk of `tokens` (a trailing partial chunk has none).
  std::vector<ChunkKey> Keys(std::span<const uint32_t> tokens) const;

  // The key following `prev` for one chunk's tokens. REQUIRES: the tokens of
  // exactly one chunk (the caller's namespace decides the count).
  static ChunkKey Next(const ChunkKey& prev, std::span<const uint32_t> chunk_tokens);

 private:
  KeyChain(const ChunkKey& root, uint32_t tokens_per_chunk)
      : root_(root), tokens_per_chunk_(tokens_per_chunk) {}

  ChunkKey root_;
  uint32_t tokens_per_chunk_;
};

}  // namespace strata

#endif  // STRATA_STORE_COMMON_KEY_CHAIN_H_
