// Attention states and their exact merge, for every kernel that combines
// partial attention (prefix-aware, relay, split paged decode).
//
// The state of a set of keys J for one query: the normalised output
//   v = sum_j 2^(s_j) v_j / sum_j 2^(s_j)
// and its log-sum-exp IN BASE 2,  s = log2(sum_j 2^(s_j)),  where
// s_j = (q . k_j) * scale * log2(e). (ln-based lse = s * ln 2.)
// Merge (commutative, associative; s = -inf is the empty state):
//   s = log2(2^s_a + 2^s_b),  v = (2^s_a v_a + 2^s_b v_b) / 2^s.
#ifndef STRATA_KERNELS_MERGE_STATE_CUH_
#define STRATA_KERNELS_MERGE_STATE_CUH_

#include <cuda_runtime.h>

namespace strata::kernels::device {

// State of N output elements held by one thread.
template <int N>
struct AttentionState {
  float v[N];
  float s;

  __device__ __forceinline__ void Init() {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = 0.0f;
    s = -INFINITY;
  }

  // Merges (v_b, s_b) into this state.
  __device__ __forceinline__ void Merge(const float (&v_b)[N], float s_b) {
    const float m = fmaxf(s, s_b);
    if (m == -INFINITY) return;  // both empty
    const float wa = exp2f(s - m);
    const float wb = exp2f(s_b - m);
    const float sum = wa + wb;
    const float inv = 1.0f / sum;
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = (v[i] * wa + v_b[i] * wb) * inv;
    s = m + log2f(sum);
  }
};

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_MERGE_STATE_CUH_
