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

}  // namespace strata::auth
