// Launcher of the prefill attention kernels (prefill.cuh, prefill_wide.cuh,
// prefill_wgmma.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda.h>  // CUtensorMap and its enums (the encoder comes from cudart)
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <numeric>

#include "kernels/dependent_launch.cuh"
#include "kernels/prefill.cuh"
#include "kernels/prefill_wgmma.cuh"
#include "kernels/prefill_wide.cuh"
#include "kernels/prefill_launch.h"

namespace strata::kernels {
namespace device {

// The RoPE cos/sin table (prefill.cuh): row p - base holds (cos f, sin f) of
// f = (float) p * inv_freq_i for i < D / 2, computed with sincosf exactly as
// the kernel would (so the table changes no result).
__global__ void PrefillRopeTableKernel(float2* table, const float* inv_freq, int half, int base,
                                       int rows) {
  const int64_t n = static_cast<int64_t>(rows) * half;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / half);
    const int e = static_cast<int>(i % half);
    float sn, cs;
    sincosf(__fmul_rn(static_cast<float>(base + row), inv_freq[e]), &sn, &cs);
    table[i] = make_float2(cs, sn);
  }
}

}  // namespace device

namespace {

// Launches one attention kernel, raising its dynamic shared-memory limit
// once per process and kernel (benign race: concurrent first calls set the
// same value). The kernel is a programmatic dependent (LaunchDependent) of
// the grid before it on the stream (the key rotation, or the caller's last
// kernel): its blocks may be scheduled as that grid's last blocks run, and
// wait (GridDependencyWait) before their first read.
template <typename Kernel>
cudaError_t LaunchAttention(Kernel kernel, int threads, int smem, bool& smem_limit_set,
                            const PrefillArgs& args, cudaStream_t stream) {
  if (!smem_limit_set) {
    cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
    smem_limit_set = true;
  }
  return LaunchDependent(kernel, dim3(args.num_items, args.num_kv_heads), dim3(threads), smem,
                         stream, args);
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

// cuTensorMapEncodeTiled of the driver, found through the runtime (the
// build links no driver library); null where the driver lacks it.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                   const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                   const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiledFn TensorMapEncoder() {
  static const EncodeTiledFn fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      return EncodeTiledFn{nullptr};
    }
    return reinterpret_cast<EncodeTiledFn>(p);
  }();
  return fn;
}

// A tensor map of 16-bit elements over `rank` dimensions (innermost first;
// byte strides of dimensions 1..rank-1), boxes of 64 elements x box_rows
// rows (x 1 ...), 128-byte swizzle: the K / V tile layout of the wgmma
// kernels. False when it cannot be encoded.
bool EncodeTileMap(unsigned char (&out)[128], const void* base, int rank, const uint64_t* dims,
                   const uint64_t* strides, uint32_t box_rows) {
  static_assert(sizeof(CUtensorMap) == 128, "CUtensorMap is 128 bytes");
  const EncodeTiledFn encode = TensorMapEncoder();
  if (encode == nullptr) return false;
  const cuuint32_t box[5] = {64, box_rows, 1, 1, 1};
  const cuuint32_t element_strides[5] = {1, 1, 1, 1, 1};
  CUtensorMap map;
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, static_cast<cuuint32_t>(rank),
                            const_cast<void*>(base), dims, strides, box, element_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return false;
  std::memcpy(out, &map, sizeof(map));
  return true;
}

template <typename T, int D>
cudaError_t LaunchWgmmaPipelined(const PrefillArgs& in, cudaStream_t stream) {
  static bool smem_limit_set[2] = {false, false};
  using Cfg = device::PrefillWgmmaPipelinedConfig<D>;
  // Tensor maps of the pool (and of the rotated keys) when the slices share
  // one; otherwise the kernel loads by cp.async.
  PrefillArgs args = in;
  args.tma_rows = 0;
  args.pool_stride16 = 0;
  if (args.pool_slots > 0) {
    const uint32_t rows = std::gcd(static_cast<uint32_t>(args.tokens_per_chunk), 64u);
    const uint64_t tpc = static_cast<uint64_t>(args.tokens_per_chunk);
    const uint64_t heads = static_cast<uint64_t>(args.num_kv_heads);
    const uint64_t pool_dims[5] = {D, tpc, heads, 2, static_cast<uint64_t>(args.pool_slots)};
    const uint64_t pool_strides[4] = {D * 2, tpc * D * 2, heads * tpc * D * 2,
                                      static_cast<uint64_t>(args.pool_stride)};
    bool ok = EncodeTileMap(args.pool_map, args.pool_base, 5, pool_dims, pool_strides, rows);
    if (ok && args.rotated_keys != nullptr) {
      const uint64_t key_dims[4] = {D, tpc, heads, static_cast<uint64_t>(args.num_pages)};
      ok = EncodeTileMap(args.key_map, args.rotated_keys, 4, key_dims, pool_strides, rows);
    }
    if (ok) args.tma_rows = static_cast<int32_t>(rows);
    const uint64_t stride16 = static_cast<uint64_t>(args.pool_stride) / 16;
    constexpr uint64_t kFast = uint64_t{1} << 31;
    if (stride16 < kFast && stride16 * static_cast<uint64_t>(args.pool_slots) < kFast) {
      args.pool_stride16 = static_cast<uint32_t>(stride16);
    }
  }
  // Keys rotated in the kernel (PrefillBlock::rotate_k) or not: two
  // instantiations, so that the loop without rotations carries none of
  // their code (it measured 2% slower with it).
  if (args.apply_rope && args.rotated_keys == nullptr) {
    return LaunchAttention(device::PrefillWgmmaPipelinedKernel<T, D, true>, Cfg::kThreads,
                           Cfg::kSmemBytes, smem_limit_set[1], args, stream);
  }
  return LaunchAttention(device::PrefillWgmmaPipelinedKernel<T, D, false>, Cfg::kThreads,
                         Cfg::kSmemBytes, smem_limit_set[0], args, stream);
}

template <typename T, int D>
cudaError_t LaunchPrefillTyped(const PrefillArgs& args, cudaStream_t stream) {
  if (args.rotated_keys != nullptr) {
    const int64_t n = static_cast<int64_t>(args.num_pages) * args.tokens_per_chunk * (D / 16) *
                      ((args.num_kv_heads + device::kPrefillRotateHeads - 1) /
                       device::kPrefillRotateHeads);
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
  const int64_t merge_blocks = int64_t{args.num_merges} * device::kPrefillMergeRowBlocks;
  if (merge_blocks > 0x7fffffff) return cudaErrorInvalidValue;
  return LaunchDependent(device::PrefillMergeKernel<T, D>,
                         dim3(static_cast<unsigned>(merge_blocks), args.num_kv_heads),
                         dim3(device::kPrefillMergeThreads), 0, stream, args);
}

}  // namespace

cudaError_t LaunchPrefillRopeTable(float2* table, const float* inv_freq, int half, int base,
                                   int rows, cudaStream_t stream) {
  if (table == nullptr || inv_freq == nullptr || half <= 0 || rows <= 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t n = static_cast<int64_t>(rows) * half;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096));
  device::PrefillRopeTableKernel<<<blocks, 256, 0, stream>>>(table, inv_freq, half, base, rows);
  return cudaGetLastError();
}

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
#define STRATA_INSTANTIATE_G128P(T, D, ROTATE) \
  template __global__ void device::PrefillWgmmaPipelinedKernel<T, D, ROTATE>( \
      const __grid_constant__ PrefillArgs);
STRATA_INSTANTIATE_G128P(__half, 64, false)
STRATA_INSTANTIATE_G128P(__half, 64, true)
STRATA_INSTANTIATE_G128P(__half, 128, false)
STRATA_INSTANTIATE_G128P(__half, 128, true)
STRATA_INSTANTIATE_G128P(__nv_bfloat16, 64, false)
STRATA_INSTANTIATE_G128P(__nv_bfloat16, 64, true)
STRATA_INSTANTIATE_G128P(__nv_bfloat16, 128, false)
STRATA_INSTANTIATE_G128P(__nv_bfloat16, 128, true)
#undef STRATA_INSTANTIATE_G128P
template __global__ void device::PrefillRotateKeysKernel<__half, 64>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__half, 128>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__nv_bfloat16, 64>(const PrefillArgs);
template __global__ void device::PrefillRotateKeysKernel<__nv_bfloat16, 128>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__half, 64>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__half, 128>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__nv_bfloat16, 64>(const PrefillArgs);
template __global__ void device::PrefillMergeKernel<__nv_bfloat16, 128>(const PrefillArgs);

}  // namespace strata::kernels
