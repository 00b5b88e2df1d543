// Seeded data for the integration tests: chunk bytes and token ids that any
// test can regenerate to compare.
#ifndef STRATA_TESTS_TEST_DATA_H_
#define STRATA_TESTS_TEST_DATA_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace strata::testing {

// `n` pseudo-random bytes from `seed` (a trailing n % 8 bytes stay zero).
inline std::vector<std::byte> Bytes(size_t n, uint64_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t x = rng();
    std::memcpy(v.data() + i, &x, 8);
  }
  return v;
}

// `n` token ids below 50000 from `seed`.
inline std::vector<uint32_t> Tokens(size_t n, uint32_t seed) {
  std::vector<uint32_t> t(n);
  std::mt19937 rng(seed);
  for (auto& x : t) x = rng() % 50000;
  return t;
}

}  // namespace strata::testing

#endif  // STRATA_TESTS_TEST_DATA_H_
