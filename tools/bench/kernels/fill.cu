// Device-side random fill for the attention benchmark (inputs must not be
// zeros: zeros hide unwritten outputs and can run faster than real data).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tools/bench/kernels/fill.h"

namespace strata::bench {
namespace {

__device__ __forceinline__ float HashToNormalish(uint64_t x) {
  // splitmix64, then the sum of 4 uniforms centred (variance 1/3 -> scaled).
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  float s = 0.0f;
  for (int i = 0; i < 4; ++i) s += static_cast<float>((x >> (16 * i)) & 0xffff) / 65535.0f;
  return (s - 2.0f) * 1.7320508f;
}

__global__ void FillKernel(uint16_t* p, size_t n, uint64_t seed, int bf16) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float v = HashToNormalish(seed * 0x100000001b3ull + i);
    if (bf16) {
      __nv_bfloat16 b = __float2bfloat16_rn(v);
      p[i] = *reinterpret_cast<uint16_t*>(&b);
    } else {
      __half h = __float2half_rn(v);
      p[i] = *reinterpret_cast<uint16_t*>(&h);
    }
  }
}

template <int kLoads>
__global__ void __launch_bounds__(256) StreamReadKernel(const uint4* p, size_t n,
                                                      uint32_t* sink) {
  // kLoads independent 16-byte loads per thread, strided by the block so
  // that a warp's loads are contiguous.
  const size_t base = blockIdx.x * size_t{256 * kLoads} + threadIdx.x;
  uint4 v[kLoads];
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    const size_t j = base + i * 256;
    v[i] = j < n ? p[j] : make_uint4(0, 0, 0, 0);
  }
  uint32_t x = 0;
#pragma unroll
  for (int i = 0; i < kLoads; ++i) x ^= v[i].x ^ v[i].y ^ v[i].z ^ v[i].w;
  if (x == 0x5eed1234u) sink[0] = x;
}

}  // namespace

cudaError_t StreamRead(const void* data, size_t bytes, uint32_t* sink, int loads_per_thread,
                       cudaStream_t stream) {
  const size_t n = bytes / 16;
  const auto launch = [&](auto kernel, size_t per_block) {
    kernel<<<static_cast<unsigned>((n + per_block - 1) / per_block), 256, 0, stream>>>(
        static_cast<const uint4*>(data), n, sink);
    return cudaGetLastError();
  };
  switch (loads_per_thread) {
    case 4: return launch(StreamReadKernel<4>, 256 * 4);
    case 16: return launch(StreamReadKernel<16>, 256 * 16);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t FillRandom16(void* data, size_t elements, uint64_t seed, bool bf16,
                         cudaStream_t stream) {
  FillKernel<<<1024, 256, 0, stream>>>(static_cast<uint16_t*>(data), elements, seed,
                                       bf16 ? 1 : 0);
  return cudaGetLastError();
}

}  // namespace strata::bench
