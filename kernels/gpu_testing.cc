#include "kernels/gpu_testing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace strata::kernels::testing {

Tolerance TolFor(KvDtype dtype) {
  return dtype == KvDtype::kFloat16 ? Tolerance{2e-3, 1e-2, 5e-3}
                                    : Tolerance{1.5e-2, 6e-2, 3e-2};
}

void ExpectClose(KvDtype dtype, const std::vector<uint16_t>& out, const std::vector<float>& lse,
                 const ReferenceOutput& ref, const std::string& what) {
  const Tolerance tol = TolFor(dtype);
  ASSERT_EQ(out.size(), ref.out.size());
  double err2 = 0, ref2 = 0, max_abs = 0, max_lse = 0;
  size_t nan = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double v = ToFloat(dtype, out[i]);
    if (!std::isfinite(v)) {
      ++nan;
      continue;
    }
    err2 += (v - ref.out[i]) * (v - ref.out[i]);
    ref2 += ref.out[i] * ref.out[i];
    max_abs = std::max(max_abs, std::fabs(v - ref.out[i]));
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    if (!std::isfinite(lse[i])) {
      ++nan;
      continue;
    }
    max_lse = std::max(max_lse, std::fabs(lse[i] - ref.lse[i]));
  }
  EXPECT_EQ(nan, 0u) << what << ": unwritten or non-finite outputs";
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
  std::printf("error %-64s rel %.2e  max_abs %.2e  max_lse %.2e\n", what.c_str(), rel, max_abs,
              max_lse);
  EXPECT_LE(rel, tol.rel) << what;
  EXPECT_LE(max_abs, tol.abs) << what;
  EXPECT_LE(max_lse, tol.lse) << what;
}

}  // namespace strata::kernels::testing
