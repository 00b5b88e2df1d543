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

#include <cstddef>

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

// One warp merges n partial states exactly as AttentionState::Merge applied
// over all of them, in one pass: the largest LSE first (lanes load 32
// states' LSEs at a time, and the first kPre states' vectors at the same
// time: one round trip to L2 for a merge of up to kPre states), then the
// weighted sum with independent loads in flight. State k's D floats are at
// partial_o + slot_of(k) * D (each lane reads its D / 32), its LSE at
// partial_lse[slot_of(k)]; first_slot is slot_of(lane) for lane < n (so a
// caller may read it before waiting for the grid that wrote the states),
// and slot_of is called only for k >= 32. Writes this lane's share of the
// normalised output to `out` and returns the LSE (-inf when every state is
// empty, with `out` zero). kFromL2: every load bypasses L1 (ld.global.cg),
// for states that other blocks of the running grid wrote.
template <int D, bool kFromL2 = false, typename SlotOf>
__device__ __forceinline__ float MergeStatesWarp(const float* __restrict__ partial_o,
                                                 const float* __restrict__ partial_lse, int n,
                                                 size_t first_slot, SlotOf slot_of,
                                                 float (&out)[D / 32]) {
  constexpr int kPer = D / 32;
  // 8: a prefix-aware decode merges 3-16 states; 16 measured no better than
  // 8 there, and 4% slower at gqa 4096:128:256.
  constexpr int kPre = 8;
  const int lane = threadIdx.x % 32;
  auto load = [](const auto* p) {
    if constexpr (kFromL2) {
      return __ldcg(p);
    } else {
      return *p;
    }
  };
  auto load_lse = [&](size_t slot) { return load(partial_lse + slot); };
  auto load_state = [&](size_t slot, float (&x)[kPer]) {
    const float* src = partial_o + slot * D + lane * kPer;
    if constexpr (kPer == 4) {
      const float4 v = load(reinterpret_cast<const float4*>(src));
      x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    } else {
      const float2 v = load(reinterpret_cast<const float2*>(src));
      x[0] = v.x, x[1] = v.y;
    }
  };
  float pre[kPre][kPer];
#pragma unroll
  for (int j = 0; j < kPre; ++j) {
    const size_t slot = __shfl_sync(0xffffffffu, first_slot, j);
    if (j < n) {
      load_state(slot, pre[j]);
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) pre[j][i] = 0.0f;
    }
  }
  const float my_lse = lane < n ? load_lse(first_slot) : -INFINITY;
  float m = my_lse;
  for (int k = lane + 32; k < n; k += 32) m = fmaxf(m, load_lse(slot_of(k)));
#pragma unroll
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] = 0.0f;
  float wsum = 0.0f;
  if (m != -INFINITY) {
    for (int base = 0; base < n; base += 32) {
      const int k = base + lane;
      size_t my_slot = 0;
      float my_w = 0.0f;
      if (k < n) {
        my_slot = base == 0 ? first_slot : slot_of(k);
        my_w = exp2f((base == 0 ? my_lse : load_lse(my_slot)) - m);
      }
      const int count = min(32, n - base);
      int j = 0;
      if (base == 0) {
#pragma unroll
        for (; j < kPre; ++j) {
          const float wj = __shfl_sync(0xffffffffu, my_w, j);  // 0 past n
#pragma unroll
          for (int i = 0; i < kPer; ++i) out[i] += wj * pre[j][i];
          wsum += wj;
        }
      }
#pragma unroll 4
      for (; j < count; ++j) {
        const size_t slot = __shfl_sync(0xffffffffu, my_slot, j);
        const float wj = __shfl_sync(0xffffffffu, my_w, j);
        float x[kPer];
        load_state(slot, x);
#pragma unroll
        for (int i = 0; i < kPer; ++i) out[i] += wj * x[i];
        wsum += wj;
      }
    }
  }
  const float inv = wsum > 0.0f ? 1.0f / wsum : 0.0f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] *= inv;
  return wsum > 0.0f ? m + log2f(wsum) : -INFINITY;
}

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_MERGE_STATE_CUH_
