#include "store/common/chunk_key.h"

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace strata {
namespace {

TEST(ChunkKeyTest, HexRoundTrip) {
  std::string hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
  auto key = ChunkKey::FromHex(hex);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->ToHex(), "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  EXPECT_EQ(key->ShortHex(), "0011223344556677");
  EXPECT_EQ(ChunkKey::FromBytes(key->AsStringView()).value(), *key);
}

TEST(ChunkKeyTest, MalformedInputIsInvalidArgument) {
  EXPECT_EQ(ChunkKey::FromHex("abc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChunkKey::FromHex(std::string(64, 'g')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChunkKey::FromBytes(std::string_view("short")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChunkKey::FromBytes(std::string(33, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChunkKeyTest, HashesAndOrders) {
  ChunkKey a, b;
  b.bytes[31] = 1;
  absl::flat_hash_set<ChunkKey> set = {a, b, a};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_TRUE(a < b);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace strata
