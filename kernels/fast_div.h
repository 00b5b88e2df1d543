// Division of non-negative 31-bit integers by a divisor known only at run
// time (tokens per chunk), as one multiply-high, an add and a shift instead
// of the ~20 instructions of an integer division on the GPU. Round-up
// method: shift s = ceil(log2 d), magic m = floor(2^32 (2^s - d) / d) + 1,
// n / d = (mulhi(n, m) + n) >> s, exact for 0 <= n < 2^31 and
// 1 <= d < 2^31 (m < 2^32 and the sum < 2n < 2^32). Host and device; no
// dependencies beyond the CUDA headers.
#ifndef STRATA_KERNELS_FAST_DIV_H_
#define STRATA_KERNELS_FAST_DIV_H_

#include <cstdint>

#if defined(__CUDACC__)
#define STRATA_HOST_DEVICE __host__ __device__
#else
#define STRATA_HOST_DEVICE
#endif

namespace strata::kernels {

class FastDiv {
 public:
  // d in [1, 2^31).
  STRATA_HOST_DEVICE explicit FastDiv(uint32_t d) : d_(d) {
    while ((uint64_t{1} << shift_) < d) ++shift_;
    magic_ = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift_) - d)) / d + 1);
  }

  // n / d and n % d for n in [0, 2^31).
  STRATA_HOST_DEVICE uint32_t Div(uint32_t n) const { return (MulHi(n, magic_) + n) >> shift_; }
  STRATA_HOST_DEVICE uint32_t Mod(uint32_t n) const { return n - Div(n) * d_; }
  STRATA_HOST_DEVICE uint32_t divisor() const { return d_; }

 private:
  static STRATA_HOST_DEVICE uint32_t MulHi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((uint64_t{a} * b) >> 32);
#endif
  }

  uint32_t d_;
  uint32_t magic_ = 0;
  uint32_t shift_ = 0;
};

}  // namespace strata::kernels

#undef STRATA_HOST_DEVICE

#endif  // STRATA_KERNELS_FAST_DIV_H_
