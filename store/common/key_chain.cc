#include "store/common/key_chain.h"

#include <openssl/evp.h>

#include <cstring>

namespace strata {
namespace {

constexpr std::string_view kDomain = "strata-kv-v1";

// SHA-256 over the concatenation of `parts`.
ChunkKey Sha256(std::initializer_list<std::span<const uint8_t>> parts) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const auto& p : parts) EVP_DigestUpdate(ctx, p.data(), p.size());
  ChunkKey key;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, key.bytes.data(), &len);
  EVP_MD_CTX_free(ctx);
  return key;
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

absl::StatusOr<KeyChain> KeyChain::Create(const NamespaceSpec& spec,
                                          std::span<const uint8_t> tenant_salt) {
  if (absl::Status s = spec.Validate(); !s.ok()) return s;
  std::vector<uint8_t> canonical = spec.CanonicalBytes();
  return KeyChain(Sha256({AsBytes(kDomain), canonical, tenant_salt}), spec.tokens_per_chunk);
}

ChunkKey KeyChain::Next(const ChunkKey& prev, std::span<const uint32_t> chunk_tokens) {
  std::vector<uint8_t> le(chunk_tokens.size() * 4);
  for (size_t i = 0; i < chunk_tokens.size(); ++i) {
    uint32_t t = chunk_tokens[i];
    le[4 * i + 0] = static_cast<uint8_t>(t);
    le[4 * i + 1] = static_cast<uint8_t>(t >> 8);
    le[4 * i + 2] = static_cast<uint8_t>(t >> 16);
    le[4 * i + 3] = static_cast<uint8_t>(t >> 24);
  }
  return Sha256({prev.bytes, le});
}

std::vector<ChunkKey> KeyChain::Keys(std::span<const uint32_t> tokens) const {
  std::vector<ChunkKey> keys;
  const size_t n = tokens.size() / tokens_per_chunk_;
  keys.reserve(n);
  ChunkKey prev = root_;
  for (size_t i = 0; i < n; ++i) {
    prev = Next(prev, tokens.subspan(i * tokens_per_chunk_, tokens_per_chunk_));
    keys.push_back(prev);
  }
  return keys;
}

}  // namespace strata
