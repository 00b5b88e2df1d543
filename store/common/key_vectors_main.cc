// key_vectors: prints the canonical namespace bytes, root and chunk keys of a
// key chain, for cross-checking against other implementations.
//
// Usage: key_vectors MODEL LAYERS KV_HEADS HEAD_DIM DTYPE TOKENS_PER_CHUNK
//                    SALT_HEX EXTRA TOKENS
//   EXTRA   comma-separated name=value pairs, or "-" for none
//   TOKENS  comma-separated uint32 tokens, or "-" for none
// Output: "canonical <hex>", "root <hex>", then "key <i> <hex>" per chunk.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "store/common/key_chain.h"

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "key_vectors: %s\n", msg.c_str());
  return 2;
}

bool ParseU32(const std::string& s, uint32_t* out) { return absl::SimpleAtoi(s, out); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 10) {
    return Fail("usage: key_vectors MODEL LAYERS KV_HEADS HEAD_DIM DTYPE TOKENS_PER_CHUNK "
                "SALT_HEX EXTRA TOKENS");
  }
  strata::NamespaceSpec spec;
  spec.model_id = argv[1];
  if (!ParseU32(argv[2], &spec.num_layers) || !ParseU32(argv[3], &spec.num_kv_heads) ||
      !ParseU32(argv[4], &spec.head_dim) || !ParseU32(argv[6], &spec.tokens_per_chunk)) {
    return Fail("layers, kv heads, head dim and tokens per chunk must be unsigned integers");
  }
  auto dtype = strata::ParseDType(argv[5]);
  if (!dtype.ok()) return Fail(std::string(dtype.status().message()));
  spec.dtype = *dtype;
  std::string salt_hex = argv[7];
  if (salt_hex == "-") salt_hex.clear();
  if (salt_hex.size() % 2 != 0 ||
      salt_hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return Fail("SALT_HEX must be an even number of hex digits or '-'");
  }
  std::string salt = absl::HexStringToBytes(salt_hex);
  if (std::string(argv[8]) != "-") {
    for (absl::string_view pair : absl::StrSplit(argv[8], ',')) {
      std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
      if (kv.size() != 2) return Fail("EXTRA entries must be name=value");
      spec.extra_keys.emplace_back(kv[0], kv[1]);
    }
  }
  std::vector<uint32_t> tokens;
  if (std::string(argv[9]) != "-") {
    for (absl::string_view t : absl::StrSplit(argv[9], ',')) {
      uint32_t v;
      if (!absl::SimpleAtoi(t, &v)) return Fail("TOKENS must be uint32 values");
      tokens.push_back(v);
    }
  }
  auto chain = strata::KeyChain::Create(
      spec, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(salt.data()), salt.size()));
  if (!chain.ok()) return Fail(std::string(chain.status().message()));
  std::vector<uint8_t> canonical = spec.CanonicalBytes();
  std::printf("canonical %s\n",
              absl::BytesToHexString(absl::string_view(
                                         reinterpret_cast<const char*>(canonical.data()),
                                         canonical.size()))
                  .c_str());
  std::printf("root %s\n", chain->root().ToHex().c_str());
  std::vector<strata::ChunkKey> keys = chain->Keys(tokens);
  for (size_t i = 0; i < keys.size(); ++i) {
    std::printf("key %zu %s\n", i, keys[i].ToHex().c_str());
  }
  return 0;
}
