#include "store/common/key_chain.h"

#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace strata {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

NamespaceSpec Llama() {
  NamespaceSpec spec;
  spec.model_id = "llama-3-8b";
  spec.num_layers = 32;
  spec.num_kv_heads = 8;
  spec.head_dim = 128;
  spec.dtype = DType::kBFloat16;
  spec.tokens_per_chunk = 64;
  return spec;
}

// README vector 1 (also recomputed with Python's hashlib by
// //tests:key_vectors_test).
TEST(KeyChainTest, ReadmeVector1) {
  auto chain = KeyChain::Create(Llama());
  ASSERT_TRUE(chain.ok());
  std::vector<uint32_t> tokens(128);
  std::iota(tokens.begin(), tokens.end(), 0);
  std::vector<ChunkKey> keys = chain->Keys(tokens);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(chain->root().ToHex(),
            "cc9ad0ee9944c4f4731c414c86bc8496b9ef4d7a1824d3689f354c4ab46ca3a8");
  EXPECT_EQ(keys[0].ToHex(), "8e401a8f89e472ba29037c9786f237d30cfdeb6eb1c905316661f6f406b020b2");
  EXPECT_EQ(keys[1].ToHex(), "39d7bdf578fad72200db541ce654d451acb555c6faf87bdbc2e735fcb4d927d3");
}

// README vector 3: extra keys given out of order, a salt with a zero byte and
// the extreme token value.
TEST(KeyChainTest, ReadmeVector3) {
  NamespaceSpec spec;
  spec.model_id = "m";
  spec.num_layers = spec.num_kv_heads = spec.head_dim = 1;
  spec.tokens_per_chunk = 1;
  spec.extra_keys = {{"b", "2"}, {"a", "1"}};
  const std::string salt("\x00\xff", 2);
  auto chain = KeyChain::Create(spec, Bytes(salt));
  ASSERT_TRUE(chain.ok());
  std::vector<uint32_t> tokens = {0, 4294967295u, 7};
  std::vector<ChunkKey> keys = chain->Keys(tokens);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(chain->root().ToHex(),
            "d952fdbb0118adddebed0c500e92d3bb55e9af4719c2326073893a2c0561bb2b");
  EXPECT_EQ(keys[2].ToHex(), "5039a751dc08c4b9f50cfc9ec0abefa13b92a02849f021618cae6002903bc5a0");
}

TEST(KeyChainTest, OnlyFullChunksAreKeyed) {
  auto chain = KeyChain::Create(Llama());
  ASSERT_TRUE(chain.ok());
  std::vector<uint32_t> tokens(64 * 3 - 1, 5);
  EXPECT_EQ(chain->Keys(tokens).size(), 2u);
  EXPECT_TRUE(chain->Keys(std::span<const uint32_t>(tokens.data(), 63)).empty());
}

TEST(KeyChainTest, KeysArePrefixStable) {
  auto chain = KeyChain::Create(Llama());
  ASSERT_TRUE(chain.ok());
  std::vector<uint32_t> a(256), b(256);
  std::iota(a.begin(), a.end(), 100);
  b = a;
  b[200] = 1;  // differs in chunk 3 only
  auto ka = chain->Keys(a), kb = chain->Keys(b);
  EXPECT_EQ(ka[0], kb[0]);
  EXPECT_EQ(ka[2], kb[2]);
  EXPECT_NE(ka[3], kb[3]);
  // Next() extends a chain exactly like Keys().
  EXPECT_EQ(KeyChain::Next(ka[2], std::span<const uint32_t>(a).subspan(192, 64)), ka[3]);
}

TEST(KeyChainTest, NamespaceTenantAndExtraKeysSeparateChains) {
  NamespaceSpec base = Llama();
  NamespaceSpec other_dtype = base;
  other_dtype.dtype = DType::kFloat16;
  NamespaceSpec with_lora = base;
  with_lora.extra_keys = {{"lora", "a"}};
  const std::string salt = "tenant-a";
  std::vector<ChunkKey> roots = {
      KeyChain::Create(base)->root(), KeyChain::Create(other_dtype)->root(),
      KeyChain::Create(with_lora)->root(), KeyChain::Create(base, Bytes(salt))->root()};
  for (size_t i = 0; i < roots.size(); ++i) {
    for (size_t j = i + 1; j < roots.size(); ++j) EXPECT_NE(roots[i], roots[j]) << i << " " << j;
  }
}

TEST(KeyChainTest, InvalidSpecIsRejected) {
  NamespaceSpec spec = Llama();
  spec.head_dim = 0;
  EXPECT_EQ(KeyChain::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata
