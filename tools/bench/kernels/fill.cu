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

}  // namespace

cudaError_t FillRandom16(void* data, size_t elements, uint64_t seed, bool bf16,
                         cudaStream_t stream) {
  FillKernel<<<1024, 256, 0, stream>>>(static_cast<uint16_t*>(data), elements, seed,
                                       bf16 ? 1 : 0);
  return cudaGetLastError();
}

}  // namespace strata::bench
