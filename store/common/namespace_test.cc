#include "store/common/namespace.h"

#include "gtest/gtest.h"

namespace strata {
namespace {

NamespaceSpec Valid() {
  NamespaceSpec spec;
  spec.model_id = "opt-125m";
  spec.num_layers = 12;
  spec.num_kv_heads = 12;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 16;
  spec.extra_keys = {{"lora", "adapter-7"}};
  return spec;
}

TEST(NamespaceTest, CanonicalBytesMatchReadmeVector2) {
  std::vector<uint8_t> b = Valid().CanonicalBytes();
  std::string hex;
  for (uint8_t c : b) {
    static const char* d = "0123456789abcdef";
    hex += d[c >> 4];
    hex += d[c & 15];
  }
  EXPECT_EQ(hex,
            "01080000006f70742d3132356d0c0000000c00000040000000011000000001000000040000006c"
            "6f726109000000616461707465722d37");
}

TEST(NamespaceTest, CanonicalRoundTripAndExtraKeyOrder) {
  NamespaceSpec spec = Valid();
  spec.extra_keys = {{"z", "1"}, {"a", ""}};
  auto parsed = NamespaceSpec::FromCanonicalBytes(spec.CanonicalBytes());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  // Parsed specs come back in canonical (sorted) order.
  EXPECT_EQ(parsed->extra_keys[0].first, "a");
  EXPECT_EQ(parsed->CanonicalBytes(), spec.CanonicalBytes());
}

TEST(NamespaceTest, MalformedCanonicalBytesAreInvalidArgument) {
  std::vector<uint8_t> b = Valid().CanonicalBytes();
  auto code = [](std::vector<uint8_t> v) {
    return NamespaceSpec::FromCanonicalBytes(v).status().code();
  };
  EXPECT_EQ(code({}), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> bad_version = b;
  bad_version[0] = 2;
  EXPECT_EQ(code(bad_version), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> truncated(b.begin(), b.end() - 1);
  EXPECT_EQ(code(truncated), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> trailing = b;
  trailing.push_back(0);
  EXPECT_EQ(code(trailing), absl::StatusCode::kInvalidArgument);
}

TEST(NamespaceTest, ValidateRejectsEachOutOfRangeField) {
  auto code = [](auto mutate) {
    NamespaceSpec spec = Valid();
    mutate(spec);
    return spec.Validate().code();
  };
  EXPECT_EQ(code([](NamespaceSpec&) {}), absl::StatusCode::kOk);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.model_id.clear(); }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.model_id.assign(257, 'x'); }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.num_layers = 0; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.num_kv_heads = 5000; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.head_dim = 0; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.tokens_per_chunk = 0; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.dtype = static_cast<DType>(9); }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.extra_keys.push_back({"lora", "b"}); }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](NamespaceSpec& s) { s.extra_keys.push_back({"", "b"}); }),
            absl::StatusCode::kInvalidArgument);
  // 1024 layers x 2 x 1024 heads x 1024 dim x 64 tokens x 2 bytes: too large.
  EXPECT_EQ(code([](NamespaceSpec& s) {
              s.num_layers = 1024;
              s.num_kv_heads = 1024;
              s.head_dim = 1024;
            }),
            absl::StatusCode::kInvalidArgument);
}

TEST(NamespaceTest, DTypeNames) {
  EXPECT_EQ(ParseDType("bf16").value(), DType::kBFloat16);
  EXPECT_EQ(ParseDType("fp16").value(), DType::kFloat16);
  EXPECT_EQ(ParseDType("fp8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_STREQ(DTypeName(DType::kBFloat16), "bf16");
}

TEST(ChunkLayoutTest, LayerMajorGeometry) {
  NamespaceSpec spec = Valid();  // 12 layers, 12 kv heads, d64, 16 tokens, fp16
  ChunkLayout layout(spec);
  EXPECT_EQ(layout.head_bytes(), 16u * 64 * 2);
  EXPECT_EQ(layout.layer_bytes(), 2u * 12 * 16 * 64 * 2);
  EXPECT_EQ(layout.chunk_bytes(), 12u * 2 * 12 * 16 * 64 * 2);
  EXPECT_EQ(layout.layer_offset(3), 3 * layout.layer_bytes());
  // V of head 0 follows K of the last head.
  EXPECT_EQ(layout.head_offset(1, 1, 0), layout.layer_offset(1) + 12 * layout.head_bytes());
  EXPECT_EQ(layout.head_offset(11, 1, 11) + layout.head_bytes(), layout.chunk_bytes());
}

}  // namespace
}  // namespace strata
