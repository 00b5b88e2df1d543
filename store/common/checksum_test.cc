#include "store/common/checksum.h"

#include <cstddef>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace strata {
namespace {

// The fused copy gives the bytes and the checksum of a plain copy, at sizes
// around its block boundaries.
TEST(ChecksumTest, CopyAndChecksumEqualsCopyThenChecksum) {
  std::mt19937_64 rng(7);
  for (size_t n : {size_t{0}, size_t{1}, size_t{4095}, size_t{131071}, size_t{131072},
                   size_t{131073}, size_t{262144}, (size_t{8} << 20) + 3}) {
    std::vector<std::byte> src(n);
    for (std::byte& b : src) b = static_cast<std::byte>(rng());
    std::vector<std::byte> dest(n, std::byte{0x5a});
    const uint64_t sum = CopyAndChecksum(dest, src.data());
    EXPECT_EQ(dest, src) << n;
    EXPECT_EQ(sum, ChunkChecksum(src)) << n;
  }
}

TEST(ChecksumTest, ADifferentByteChangesTheChecksum) {
  std::vector<std::byte> a(300000, std::byte{1});
  std::vector<std::byte> b = a;
  b[200000] = std::byte{2};
  std::vector<std::byte> d(a.size());
  EXPECT_NE(CopyAndChecksum(d, a.data()), CopyAndChecksum(d, b.data()));
}

}  // namespace
}  // namespace strata
