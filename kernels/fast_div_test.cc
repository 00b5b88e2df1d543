#include "kernels/fast_div.h"

#include <cstdint>
#include <random>

#include "gtest/gtest.h"

namespace strata::kernels {
namespace {

// Every divisor the kernels can see (tokens per chunk, 16..256) and many
// more, against every numerator up to a few chunks' worth of 2^16 tokens.
TEST(FastDivTest, SmallDivisorsAllNumerators) {
  for (uint32_t d = 1; d <= 1024; ++d) {
    const FastDiv f(d);
    for (uint32_t n = 0; n < (1u << 17); ++n) {
      ASSERT_EQ(f.Div(n), n / d) << n << " / " << d;
      ASSERT_EQ(f.Mod(n), n % d) << n << " % " << d;
    }
  }
}

// The edges of the range: numerators near 2^31, divisors up to 2^31 - 1.
TEST(FastDivTest, EdgesAndRandom) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> num(0, (1u << 31) - 1);
  std::uniform_int_distribution<uint32_t> den(1, (1u << 31) - 1);
  const uint32_t kMaxN = (1u << 31) - 1;
  for (uint32_t d : {1u, 2u, 3u, 7u, 16u, 48u, 64u, 255u, 256u, 65535u, 65536u, 1u << 30,
                     (1u << 30) + 1, kMaxN}) {
    const FastDiv f(d);
    for (uint32_t n : {0u, 1u, d - 1, d, d + 1, kMaxN - 1, kMaxN}) {
      if (n > kMaxN) continue;
      EXPECT_EQ(f.Div(n), n / d) << n << " / " << d;
    }
    for (int i = 0; i < 100000; ++i) {
      const uint32_t n = num(rng);
      ASSERT_EQ(f.Div(n), n / d) << n << " / " << d;
    }
  }
  for (int i = 0; i < 2000; ++i) {
    const uint32_t d = den(rng);
    const FastDiv f(d);
    for (int j = 0; j < 200; ++j) {
      const uint32_t n = num(rng);
      ASSERT_EQ(f.Div(n), n / d) << n << " / " << d;
      ASSERT_EQ(f.Mod(n), n % d) << n << " % " << d;
    }
  }
}

}  // namespace
}  // namespace strata::kernels
