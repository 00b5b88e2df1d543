#include "store/common/checksum.h"

#include <xxhash.h>

#include <cstddef>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "store/common/checksum_internal.h"

namespace strata {
namespace {

using checksum_internal::kCopyBlock;

// Sizes around XXH3's internal boundaries (16, 128, 240 bytes, 64-byte
// stripes, 1024-byte blocks), the copy loop's 128-byte step and the fused
// copy's blocks, odd ones among them.
std::vector<size_t> Sizes() {
  std::vector<size_t> sizes = {0,    1,    3,    7,    16,   17,   37,   63,   64,  65,
                               127,  128,  129,  239,  240,  241,  255,  256,  1023, 1024,
                               1025, 4095, 4096, 4097, 65537};
  for (size_t n : {kCopyBlock - 1, kCopyBlock, kCopyBlock + 1, 2 * kCopyBlock,
                   3 * kCopyBlock + 17, (size_t{8} << 20) + 3}) {
    sizes.push_back(n);
  }
  return sizes;
}

std::vector<std::byte> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (std::byte& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// The definition: XXH3-64 with seed 0 (the published value of the empty
// input, and the linked library's value of any input).
TEST(ChecksumTest, IsXxh3With64BitsAndSeedZero) {
  EXPECT_EQ(ChunkChecksum({}), uint64_t{0x2D06800538D394C2});
  for (size_t n : Sizes()) {
    const std::vector<std::byte> bytes = Random(n, n);
    EXPECT_EQ(ChunkChecksum(bytes), XXH3_64bits(bytes.data(), n)) << n;
  }
}

// The fused copy gives the bytes and the checksum of a plain copy, at sizes
// around its block boundaries.
TEST(ChecksumTest, CopyAndChecksumEqualsCopyThenChecksum) {
  for (size_t n : Sizes()) {
    const std::vector<std::byte> src = Random(n, 7 + n);
    std::vector<std::byte> dest(n, std::byte{0x5a});
    const uint64_t sum = CopyAndChecksum(dest, src.data());
    EXPECT_EQ(dest, src) << n;
    EXPECT_EQ(sum, XXH3_64bits(src.data(), n)) << n;
  }
}

// Every variant, on source and destination addresses of every alignment
// mod 32, writes exactly dest[0, n) and returns the library's XXH3.
void ExpectVariantsAgree(const char* name, uint64_t (*checksum)(const std::byte*, size_t),
                         uint64_t (*copy_and_checksum)(std::byte*, const std::byte*, size_t)) {
  for (size_t n : Sizes()) {
    const std::vector<std::byte> src = Random(n + 64, 11 + n);
    for (size_t src_off : {size_t{0}, size_t{1}, size_t{13}, size_t{32}}) {
      const uint64_t want = XXH3_64bits(src.data() + src_off, n);
      EXPECT_EQ(checksum(src.data() + src_off, n), want) << name << " " << n << " +" << src_off;
      for (size_t dest_off : {size_t{0}, size_t{5}, size_t{31}}) {
        std::vector<std::byte> dest(n + 64, std::byte{0xa5});
        EXPECT_EQ(copy_and_checksum(dest.data() + dest_off, src.data() + src_off, n), want)
            << name << " " << n << " +" << src_off << " -> +" << dest_off;
        for (size_t i = 0; i < dest.size(); ++i) {
          const std::byte expected =
              i >= dest_off && i < dest_off + n ? src[src_off + i - dest_off] : std::byte{0xa5};
          if (dest[i] != expected) {
            ADD_FAILURE() << name << " " << n << " +" << src_off << " -> +" << dest_off
                          << ": byte " << i << " of the destination is wrong";
            break;
          }
        }
      }
    }
  }
}

TEST(ChecksumTest, PortableVariantAgreesWithTheLibrary) {
  ExpectVariantsAgree("portable", checksum_internal::ChecksumPortable,
                      checksum_internal::CopyAndChecksumPortable);
}

#if defined(__x86_64__)
TEST(ChecksumTest, Avx2VariantAgreesWithTheLibrary) {
  if (!checksum_internal::Avx2Available()) GTEST_SKIP() << "this CPU has no AVX2";
  ExpectVariantsAgree("avx2", checksum_internal::ChecksumAvx2,
                      checksum_internal::CopyAndChecksumAvx2);
}
#endif

TEST(ChecksumTest, ADifferentByteChangesTheChecksum) {
  std::vector<std::byte> a(300000, std::byte{1});
  std::vector<std::byte> b = a;
  b[200000] = std::byte{2};
  std::vector<std::byte> d(a.size());
  EXPECT_NE(CopyAndChecksum(d, a.data()), CopyAndChecksum(d, b.data()));
}

}  // namespace
}  // namespace strata
