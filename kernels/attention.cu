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

// One warp per (sequence, query head): merges that pair's partial states
// (MergeStatesWarp).
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
  float acc[kPer];
  const float lse = MergeStatesWarp<D>(
      args.partial_o, args.partial_lse, n, first_slot,
      [&](int k) { return static_cast<size_t>(args.merge_slots[begin + k]) + h; }, acc);
  T* out = static_cast<T*>(args.out) + static_cast<size_t>(w) * D + lane * kPer;
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] = MmaOps<T>::FromFloat(acc[i]);
  if (args.lse != nullptr && lane == 0) args.lse[w] = lse;
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
