// The seeded weight values of llama_weights.h, computable on the host and the
// device alike (the same bits): a splitmix64 hash of (seed, tensor, index)
// mapped to a float uniform in [-1, 1).
#ifndef STRATA_CLIENT_RUNTIME_LLAMA_SEED_H_
#define STRATA_CLIENT_RUNTIME_LLAMA_SEED_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define STRATA_HOST_DEVICE __host__ __device__
#else
#define STRATA_HOST_DEVICE
#endif

namespace strata::runtime {

STRATA_HOST_DEVICE inline uint64_t SeedMix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1), 24 bits of resolution.
STRATA_HOST_DEVICE inline float SeededUniform(uint64_t seed, uint32_t tensor, uint64_t index) {
  const uint64_t h = SeedMix(SeedMix(seed ^ (uint64_t{tensor} << 40)) + index);
  return static_cast<float>(static_cast<int32_t>(h >> 40) - (1 << 23)) * (1.0f / (1 << 23));
}

// Scale of tensor kind: 0 embed, 1 norm, 2 projection (in_features), 3 head.
// uniform(-a, a) has deviation a / sqrt(3).
STRATA_HOST_DEVICE inline float SeededScale(int kind, int in_features, int hidden) {
  switch (kind) {
    case 0: return 1.7320508f;
    case 1: return 0.0f;  // norms are 1 (see SeededValue)
    case 2: return 1.7320508f / sqrtf(static_cast<float>(in_features));
    default: return 4.0f * 1.7320508f / sqrtf(static_cast<float>(hidden));
  }
}

STRATA_HOST_DEVICE inline float SeededValue(uint64_t seed, uint32_t tensor, uint64_t index, int kind,
                                            int in_features, int hidden) {
  if (kind == 1) return 1.0f;
  return SeededUniform(seed, tensor, index) * SeededScale(kind, in_features, hidden);
}

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_SEED_H_
