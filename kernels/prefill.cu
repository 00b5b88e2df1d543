// Launcher of the prefill attention kernels (prefill.cuh, prefill_wide.cuh,
// prefill_wgmma.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "kernels/prefill.cuh"
#include "kernels/prefill_wgmma.cuh"
#include "kernels/prefill_wide.cuh"
#include "kernels/prefill_launch.h"

namespace strata::kernels {
namespace {

// Launches one attention kernel, raising its dynamic shared-memory limit
// once per process and kernel (benign race: concurrent first calls set the
// same value).
template <typename Kernel>
cudaError_t LaunchAttention(Kernel kernel, int threads, int smem, bool& smem_limit_set,
                            const PrefillArgs& args, cudaStream_t stream) {
  if (!smem_limit_set) {
    cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
    smem_limit_set = true;
  }
  const dim3 grid(args.num_items, args.num_kv_heads);
  kernel<<<grid, threads, smem, stream>>>(args);
  return cudaGetLastError();
}

template <typename T, int D, typename Cfg>
cudaError_t LaunchWide(const PrefillArgs& args, cudaStream_t stream) {
  static bool smem_limit_set = false;
  return LaunchAttention(device::PrefillWideKernel<T, D, Cfg>, Cfg::kThreads, Cfg::kSmemBytes,
                         smem_limit_set, args, stream);
}

template <typename T, int D, int kKvTile>
cudaError_t LaunchWgmma(const PrefillArgs& args, cudaStream_t stream) {
  static bool smem_limit_set = false;
  using Cfg = device::PrefillWgmmaConfig<D, kKvTile>;
  return LaunchAttention(device::PrefillWgmmaKernel<T, D, kKvTile>, Cfg::kThreads,
                         Cfg::kSmemBytes, smem_limit_set, args, stream);
}

// Whether the current device runs the wgmma kernels (compiled for sm_90a
// only; the compute_90 PTX of them traps): compute capability 9.0. Cached
// per device.
bool DeviceRunsWgmma() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices];  // 0 unknown, 1 no, 2 yes
  const bool cached = dev >= 0 && dev < kMaxDevices;
  if (cached) {
    const int k = known[dev].load(std::memory_order_relaxed);
    if (k != 0) return k == 2;
  }
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    return false;
  }
  const bool yes = major == 9 && minor == 0;
  if (cached) known[dev].store(yes ? 2 : 1, std::memory_order_relaxed);
  return yes;
}

template <typename T, int D>
cudaError_t LaunchWgmmaPipelined(const PrefillArgs& args, cudaStream_t stream) {
  static bool smem_limit_set = false;
  using Cfg = device::PrefillWgmmaPipelinedConfig<D>;
  return LaunchAttention(device::PrefillWgmmaPipelinedKernel<T, D>, Cfg::kThreads,
                         Cfg::kSmemBytes, smem_limit_set, args, stream);
}

template <typename T, int D>
cudaError_t LaunchPrefillTyped(const PrefillArgs& args, cudaStream_t stream) {
  if (args.rope_table != nullptr) {
    const int64_t n = static_cast<int64_t>(args.rope_table_rows) * (D / 2);
    const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096));
    device::PrefillRopeTableKernel<<<blocks, 256, 0, stream>>>(
        args.rope_table, args.inv_freq, D / 2, args.rope_table_base, args.rope_table_rows);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (args.rotated_keys != nullptr) {
    const int64_t n = static_cast<int64_t>(args.num_pages) * args.num_kv_heads *
                      args.tokens_per_chunk * (D / 16);
    const int blocks = static_cast<int>(std::min<int64_t>(
        (n + device::kPrefillRotateThreads - 1) / device::kPrefillRotateThreads, 1 << 16));
    device::PrefillRotateKeysKernel<T, D><<<blocks, device::kPrefillRotateThreads, 0, stream>>>(
        args);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  cudaError_t err = cudaSuccess;
  int variant = args.variant;
  // The wgmma variants' plans are those of the 128-row mma.sync kernel.
  if (variant >= 3 && variant <= 5 && !DeviceRunsWgmma()) variant = 2;
  if (variant == 1) {
    err = LaunchWide<T, D, device::PrefillRows128Config<D>>(args, stream);
  } else if (variant == 2) {
    err = LaunchWide<T, D, device::PrefillRows128WideConfig<D>>(args, stream);
  } else if (variant == 3) {
    err = LaunchWgmma<T, D, 64>(args, stream);
  } else if (variant == 4) {
    err = LaunchWgmma<T, D, 128>(args, stream);
  } else if (variant == 5) {
    err = LaunchWgmmaPipelined<T, D>(args, stream);
  } else {
    static bool smem_limit_set = false;
    err = LaunchAttention(device::PrefillKernel<T, D>, device::PrefillConfig<D>::kThreads,
                          device::PrefillConfig<D>::kSmemBytes, smem_limit_set, args, stream);
  }
  if (err != cudaSuccess || args.num_merges == 0) return err;
  const dim3 merge_grid(args.num_merges, args.num_kv_heads);
  device::PrefillMergeKernel<T, D><<<merge_grid, device::kPrefillMergeThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefill(const PrefillArgs& args, cudaStream_t stream) {
  if (args.num_items <= 0 || args.num_kv_heads <= 0 || args.num_kv_heads > 65535 ||
      args.num_merges < 0 || args.variant < 0 || args.variant > 5 ||
      (args.apply_rope && args.inv_freq == nullptr) ||
      (args.rotated_keys != nullptr && (!args.apply_rope || args.num_pages <= 0)) ||
      (args.num_merges > 0 && (args.partial_out == nullptr || args.partial_lse == nullptr))) {
    return cudaErrorInvalidValue;
  }
  if (args.dtype == 0 && args.head_dim == 64) return LaunchPrefillTyped<__half, 64>(args, stream);
  if (args.dtype == 0 && args.head_dim == 128) return LaunchPrefillTyped<__half, 128>(args, stream);
  if (args.dtype == 1 && args.head_dim == 64) {
    return LaunchPrefillTyped<__nv_bfloat16, 64>(args, stream);
  }
  if (args.dtype == 1 && args.head_dim == 128) {
    return LaunchPrefillTyped<__nv_bfloat16, 128>(args, stream);
  }
  return cudaErrorInvalidValue;
}

template __global__ void device::PrefillKernel<__half, 64>(const PrefillArgs);
template __global__ void device::PrefillKernel<__half, 128>(const PrefillArgs);
template __global__ void device::PrefillKernel<__nv_bfloat16, 64>(const PrefillArgs);
template __global__ void device::PrefillKernel<__nv_bfloat16, 128>(const PrefillArgs);
template __global__ void device::PrefillWideKernel<__half, 64,
                                                   device::PrefillRows128Config<64>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__half, 64,
                                                   device::PrefillRows128WideConfig<64>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__half, 128,
                                                   device::PrefillRows128Config<128>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__half, 128,
                                                   device::PrefillRows128WideConfig<128>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__nv_bfloat16, 64,
                                                   device::PrefillRows128Config<64>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__nv_bfloat16, 64,
                                                   device::PrefillRows128WideConfig<64>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__nv_bfloat16, 128,
                                                   device::PrefillRows128Config<128>>(
    const PrefillArgs);
template __global__ void device::PrefillWideKernel<__nv_bfloat16, 128,
                                                   device::PrefillRows128WideConfig<128>>(
    const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__half, 64, 64>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__half, 64, 128>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__half, 128, 64>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__half, 128, 128>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__nv_bfloat16, 64, 64>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__nv_bfloat16, 64, 128>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__nv_bfloat16, 128, 64>(const PrefillArgs);
template __global__ void device::PrefillWgmmaKernel<__nv_bfloat16, 128, 128>(const PrefillArgs);
template __global__ void device::PrefillWgmmaPipelinedKernel<__half, 64>(const PrefillArgs);
template __global__ void device::PrefillWgmmaPipelinedKernel<__half, 128>(const PrefillArgs);
template __global__ void device::PrefillWgmmaPipelinedKernel<__nv_bfloat16, 64>(const PrefillArgs);
template __global__ void device::PrefillWgmmaPipelinedKernel<__nv_bfloat16, 128>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__half, 64>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__half, 128>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__nv_bfloat16, 64>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__nv_bfloat16, 128>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__half, 64>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__half, 128>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__nv_bfloat16, 64>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__nv_bfloat16, 128>(const PrefillArgs);

}  // namespace strata::kernels
