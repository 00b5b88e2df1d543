// Launchers of the attention kernels: dispatch over dtype x head_dim, explicit
// instantiations, launch checks.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attention_launch.h"
#include "kernels/dependent_launch.cuh"
#include "kernels/attention_partial.cuh"
#include "kernels/merge_state.cuh"
#include "kernels/mma_ops.cuh"

namespace strata::kernels {
namespace device {

// One warp per (sequence, query head): merges that pair's partial states.
// Exactly AttentionState::Merge applied over all states, computed in one
// pass: the max lse first (lanes load 32 states' lse at a time, and the
// first four states' vectors at the same time), then the weighted sum with
// independent loads in flight.
template <typename T, int D>
__global__ void __launch_bounds__(128) MergePartialsKernel(const MergePartialsArgs args) {
  constexpr int kPer = D / 32;
  const int w = blockIdx.x * 4 + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (w >= args.batch * args.num_q_heads) return;
  const int b = w / args.num_q_heads;
  const int h = w % args.num_q_heads;
  const int begin = args.merge_offsets[b];
  const int n = args.merge_offsets[b + 1] - begin;
  // Plan metadata does not depend on the partial-attention grid: read the
  // first 32 slots before waiting for it (launched as a programmatic
  // dependent; the wait is a no-op under a normal launch).
  const size_t first_slot =
      lane < n ? static_cast<size_t>(args.merge_slots[begin + lane]) + h : 0;
  GridDependencyWait();
  auto slot_of = [&](int k) -> size_t {
    return k < 32 ? first_slot : static_cast<size_t>(args.merge_slots[begin + k]) + h;
  };
  auto load_state = [&](size_t slot, float (&x)[kPer]) {
    const float* src = args.partial_o + slot * D + lane * kPer;
    if constexpr (kPer == 4) {
      const float4 v = *reinterpret_cast<const float4*>(src);
      x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    } else {
      const float2 v = *reinterpret_cast<const float2*>(src);
      x[0] = v.x, x[1] = v.y;
    }
  };
  // The first kPre states are loaded together with the LSEs (they do not
  // depend on them): one round trip to L2 for every state of a sequence
  // with up to kPre (the prefix-aware plans give 3-16), not one per four
  // (16 measured no better than 8, and 4% slower at gqa 4096:128:256).
  constexpr int kPre = 8;
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
  const float my_lse = lane < n ? args.partial_lse[first_slot] : -INFINITY;
  float m = my_lse;
  for (int k = lane + 32; k < n; k += 32) m = fmaxf(m, args.partial_lse[slot_of(k)]);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  float acc[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) acc[i] = 0.0f;
  float wsum = 0.0f;
  if (m != -INFINITY) {
    for (int base = 0; base < n; base += 32) {
      const int k = base + lane;
      size_t my_slot = 0;
      float my_w = 0.0f;
      if (k < n) {
        my_slot = slot_of(k);
        my_w = exp2f((base == 0 ? my_lse : args.partial_lse[my_slot]) - m);
      }
      const int count = min(32, n - base);
      int j = 0;
      if (base == 0) {
#pragma unroll
        for (; j < kPre; ++j) {
          const float wj = __shfl_sync(0xffffffffu, my_w, j);  // 0 past n
#pragma unroll
          for (int i = 0; i < kPer; ++i) acc[i] += wj * pre[j][i];
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
        for (int i = 0; i < kPer; ++i) acc[i] += wj * x[i];
        wsum += wj;
      }
    }
  }
  const float inv = wsum > 0.0f ? 1.0f / wsum : 0.0f;
  T* out = static_cast<T*>(args.out) + static_cast<size_t>(w) * D + lane * kPer;
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] = MmaOps<T>::FromFloat(acc[i] * inv);
  if (args.lse != nullptr && lane == 0) {
    args.lse[w] = wsum > 0.0f ? m + log2f(wsum) : -INFINITY;
  }
}

// One warp per state: (v_a, s_a) merged with (v_b, s_b).
template <typename T, int D>
__global__ void __launch_bounds__(128) MergeStateKernel(const MergeStateArgs args) {
  constexpr int kPer = D / 32;
  const int64_t w = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (w >= args.num_states) return;
  const size_t base = static_cast<size_t>(w) * D + lane * kPer;
  const T* va = static_cast<const T*>(args.v_a) + base;
  const T* vb = static_cast<const T*>(args.v_b) + base;
  AttentionState<kPer> state;
  float v[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    state.v[i] = MmaOps<T>::ToFloat(va[i]);
    v[i] = MmaOps<T>::ToFloat(vb[i]);
  }
  state.s = args.s_a[w];
  state.Merge(v, args.s_b[w]);
  T* out = static_cast<T*>(args.v_out) + base;
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] = MmaOps<T>::FromFloat(state.v[i]);
  if (args.s_out != nullptr && lane == 0) args.s_out[w] = state.s;
}

}  // namespace device

namespace {

template <typename T, int D, bool kFused>
cudaError_t LaunchPartialVariant(const PartialAttentionArgs& args, cudaStream_t stream) {
  constexpr int kSmem = device::PartialConfig<D>::kSmemBytes;
  auto kernel = device::PartialAttentionKernel<T, D, kFused>;
  // Raising the dynamic shared-memory limit once per process and kernel is
  // enough (benign race: concurrent first calls set the same value).
  static bool smem_limit_set = false;
  if (!smem_limit_set) {
    cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess) return err;
    smem_limit_set = true;
  }
  const dim3 grid(args.num_kv_heads, args.num_items);
  kernel<<<grid, device::PartialConfig<D>::kThreads, kSmem, stream>>>(args);
  return cudaGetLastError();
}

template <typename T, int D>
cudaError_t LaunchPartialTyped(const PartialAttentionArgs& args, cudaStream_t stream) {
  return args.fused ? LaunchPartialVariant<T, D, true>(args, stream)
                    : LaunchPartialVariant<T, D, false>(args, stream);
}

// The merge is launched as a programmatic dependent of the partial-attention
// kernel (Hopper): its blocks start while the last partial blocks run, read
// the plan metadata, then wait (griddepcontrol.wait) for the partial grid to
// complete (LaunchDependent).
template <typename T, int D>
cudaError_t LaunchMergePartialsTyped(const MergePartialsArgs& args, cudaStream_t stream) {
  const int warps = args.batch * args.num_q_heads;
  return LaunchDependent(device::MergePartialsKernel<T, D>, dim3((warps + 3) / 4), dim3(128), 0,
                         stream, args);
}

template <typename T, int D>
cudaError_t LaunchMergeStateTyped(const MergeStateArgs& args, cudaStream_t stream) {
  const int64_t blocks = (args.num_states + 3) / 4;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  device::MergeStateKernel<T, D><<<static_cast<unsigned>(blocks), 128, 0, stream>>>(args);
  return cudaGetLastError();
}

// Calls F<T, D>(args, stream) for the supported (dtype, head_dim) pairs.
#define STRATA_DISPATCH(FN, ARGS, STREAM)                                   \
  do {                                                                      \
    if ((ARGS).dtype == 0 && (ARGS).head_dim == 64) return FN<__half, 64>(ARGS, STREAM);          \
    if ((ARGS).dtype == 0 && (ARGS).head_dim == 128) return FN<__half, 128>(ARGS, STREAM);        \
    if ((ARGS).dtype == 1 && (ARGS).head_dim == 64) return FN<__nv_bfloat16, 64>(ARGS, STREAM);   \
    if ((ARGS).dtype == 1 && (ARGS).head_dim == 128) return FN<__nv_bfloat16, 128>(ARGS, STREAM); \
    return cudaErrorInvalidValue;                                           \
  } while (0)

}  // namespace

cudaError_t LaunchPartialAttention(const PartialAttentionArgs& args, cudaStream_t stream) {
  if (args.num_items <= 0 || args.num_items > 65535 || args.num_kv_heads <= 0) {
    return cudaErrorInvalidValue;
  }
  if (args.fused && (args.arrivals == nullptr || args.merge_arrivals == nullptr ||
                     args.merge_offsets == nullptr || args.merge_slots == nullptr ||
                     args.out == nullptr || args.batch <= 0)) {
    return cudaErrorInvalidValue;
  }
  STRATA_DISPATCH(LaunchPartialTyped, args, stream);
}

cudaError_t LaunchMergePartials(const MergePartialsArgs& args, cudaStream_t stream) {
  if (args.batch <= 0 || args.num_q_heads <= 0) return cudaErrorInvalidValue;
  STRATA_DISPATCH(LaunchMergePartialsTyped, args, stream);
}

cudaError_t LaunchMergeState(const MergeStateArgs& args, cudaStream_t stream) {
  if (args.num_states <= 0) return cudaSuccess;
  STRATA_DISPATCH(LaunchMergeStateTyped, args, stream);
}

// Explicit instantiations of every kernel the launchers dispatch to.
#define STRATA_INSTANTIATE(T, D)                                                             \
  template __global__ void device::PartialAttentionKernel<T, D, false>(                      \
      const PartialAttentionArgs);                                                           \
  template __global__ void device::PartialAttentionKernel<T, D, true>(                       \
      const PartialAttentionArgs);                                                           \
  template __global__ void device::MergePartialsKernel<T, D>(const MergePartialsArgs);       \
  template __global__ void device::MergeStateKernel<T, D>(const MergeStateArgs);
STRATA_INSTANTIATE(__half, 64)
STRATA_INSTANTIATE(__half, 128)
STRATA_INSTANTIATE(__nv_bfloat16, 64)
STRATA_INSTANTIATE(__nv_bfloat16, 128)
#undef STRATA_INSTANTIATE
#undef STRATA_DISPATCH

}  // namespace strata::kernels
