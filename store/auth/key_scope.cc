#include "store/auth/key_scope.h"

#include <openssl/evp.h>

#include <string_view>

namespace strata::auth {

ChunkKey ScopeKey(const ChunkKey& namespace_root, const ChunkKey& key) {
  static constexpr std::string_view kDomain = "strata-scope-v1";
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, kDomain.data(), kDomain.size());
  EVP_DigestUpdate(ctx, namespace_root.bytes.data(), ChunkKey::kSize);
  EVP_DigestUpdate(ctx, key.bytes.data(), ChunkKey::kSize);
  ChunkKey out;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, out.bytes.data(), &len);
  EVP_MD_CTX_free(ctx);
  return out;
}

std::string ScopeName(std::string_view tenant, std::string_view name) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(name.data(), name.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(tenant);
  out.push_back('/');
  for (int i = 0; i < 16; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

}  // namespace strata::auth
