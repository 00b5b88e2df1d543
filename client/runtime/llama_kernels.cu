#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "client/runtime/llama_kernels.h"
#include "client/runtime/llama_seed.h"

namespace strata::runtime {
namespace {

template <typename T>
__device__ __forceinline__ float ToF(T v);
template <>
__device__ __forceinline__ float ToF<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float ToF<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T FromF(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half FromF<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__device__ __forceinline__ float Round(float v) { return ToF<T>(FromF<T>(v)); }

template <typename T>
__global__ void EmbedKernel(const int32_t* tokens, const T* embed, T* x, int hidden) {
  const int t = blockIdx.x;
  const T* src = embed + static_cast<size_t>(tokens[t]) * hidden;
  T* dst = x + static_cast<size_t>(t) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
}

// One block per output row.
template <typename T>
__global__ void AddNormKernel(T* x, const T* delta, const T* w, T* out, int hidden, float eps,
                              const int32_t* rows) {
  const int t = blockIdx.x;
  const int r = rows != nullptr ? rows[t] : t;
  T* xr = x + static_cast<size_t>(r) * hidden;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = ToF<T>(xr[i]);
    if (delta != nullptr) {
      v = Round<T>(v + ToF<T>(delta[static_cast<size_t>(r) * hidden + i]));
      xr[i] = FromF<T>(v);
    }
    ss += v * v;
  }
  __shared__ float partial[32];
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(hidden) + eps);
  T* o = out + static_cast<size_t>(t) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    o[i] = FromF<T>(Round<T>(ToF<T>(xr[i]) * inv) * ToF<T>(w[i]));
  }
}

// One block per token; 16-byte moves (head_dim and q_dim are multiples of 8).
__global__ void ScatterQkvKernel(const uint4* qkv, uint4* q, void* const* slot_bases,
                                 const int32_t* kv_index, size_t layer_offset, int q_vec,
                                 int kv_heads, int d_vec, int tokens_per_chunk) {
  const int t = blockIdx.x;
  const int kv_vec = kv_heads * d_vec;
  const uint4* row = qkv + static_cast<size_t>(t) * (q_vec + 2 * kv_vec);
  for (int i = threadIdx.x; i < q_vec; i += blockDim.x) q[static_cast<size_t>(t) * q_vec + i] = row[i];
  uint4* slice = reinterpret_cast<uint4*>(static_cast<char*>(slot_bases[t]) + layer_offset);
  const size_t half = static_cast<size_t>(kv_heads) * tokens_per_chunk * d_vec;
  const int idx = kv_index[t];
  for (int i = threadIdx.x; i < 2 * kv_vec; i += blockDim.x) {
    const int which = i / kv_vec;  // 0 K, 1 V
    const int head = (i % kv_vec) / d_vec;
    const int e = i % d_vec;
    slice[which * half + (static_cast<size_t>(head) * tokens_per_chunk + idx) * d_vec + e] =
        row[q_vec + i];
  }
}

// One thread per (token, head, frequency i < half), grid-stride.
template <typename T>
__global__ void RopeQueriesKernel(T* q, const int32_t* positions, const float* inv_freq, int heads,
                                  int half, size_t total) {
  for (size_t k = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(k % half);
    const size_t row = k / half;  // token * heads + head
    const int t = static_cast<int>(row / heads);
    float sn, cs;
    sincosf(__fmul_rn(static_cast<float>(positions[t]), inv_freq[i]), &sn, &cs);
    T* x = q + row * 2 * half;
    const float f1 = ToF<T>(x[i]), f2 = ToF<T>(x[i + half]);
    x[i] = FromF<T>(__fmaf_rn(f1, cs, -__fmul_rn(f2, sn)));
    x[i + half] = FromF<T>(__fmaf_rn(f2, cs, __fmul_rn(f1, sn)));
  }
}

template <typename T>
__global__ void SwiGluKernel(const T* gu, T* out, int inter, size_t total) {
  for (size_t k = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t t = k / inter;
    const size_t i = k % inter;
    const float g = ToF<T>(gu[t * 2 * inter + i]);
    const float u = ToF<T>(gu[t * 2 * inter + inter + i]);
    const float s = Round<T>(g / (1.0f + expf(-g)));
    out[k] = FromF<T>(s * u);
  }
}

template <typename T>
__global__ void SeedFillKernel(T* dst, size_t count, uint64_t seed, uint32_t tensor, int kind,
                               int in_features, int hidden) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    dst[i] = FromF<T>(SeededValue(seed, tensor, i, kind, in_features, hidden));
  }
}

int GridFor(size_t total) {
  const size_t blocks = (total + 255) / 256;
  return static_cast<int>(blocks < 132 * 16 ? (blocks == 0 ? 1 : blocks) : 132 * 16);
}

}  // namespace

cudaError_t LaunchEmbed(int dtype, const int32_t* tokens, const void* embed, void* x, int n,
                        int hidden, cudaStream_t stream) {
  if (dtype == 1) {
    EmbedKernel<__nv_bfloat16><<<n, 256, 0, stream>>>(
        tokens, static_cast<const __nv_bfloat16*>(embed), static_cast<__nv_bfloat16*>(x), hidden);
  } else {
    EmbedKernel<__half><<<n, 256, 0, stream>>>(tokens, static_cast<const __half*>(embed),
                                                static_cast<__half*>(x), hidden);
  }
  return cudaGetLastError();
}

cudaError_t LaunchAddNorm(int dtype, void* x, const void* delta, const void* w, void* out, int n,
                          int hidden, float eps, const int32_t* rows, cudaStream_t stream) {
  if (dtype == 1) {
    AddNormKernel<__nv_bfloat16><<<n, 512, 0, stream>>>(
        static_cast<__nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(delta),
        static_cast<const __nv_bfloat16*>(w), static_cast<__nv_bfloat16*>(out), hidden, eps, rows);
  } else {
    AddNormKernel<__half><<<n, 512, 0, stream>>>(
        static_cast<__half*>(x), static_cast<const __half*>(delta), static_cast<const __half*>(w),
        static_cast<__half*>(out), hidden, eps, rows);
  }
  return cudaGetLastError();
}

cudaError_t LaunchScatterQkv(const void* qkv, void* q, void* const* slot_bases,
                             const int32_t* kv_index, size_t layer_offset, int n, int q_dim,
                             int kv_heads, int head_dim, int tokens_per_chunk,
                             cudaStream_t stream) {
  ScatterQkvKernel<<<n, 256, 0, stream>>>(static_cast<const uint4*>(qkv), static_cast<uint4*>(q),
                                          slot_bases, kv_index, layer_offset, q_dim / 8, kv_heads,
                                          head_dim / 8, tokens_per_chunk);
  return cudaGetLastError();
}

cudaError_t LaunchRopeQueries(int dtype, void* q, const int32_t* positions, const float* inv_freq,
                              int n, int heads, int head_dim, cudaStream_t stream) {
  const int half = head_dim / 2;
  const size_t total = static_cast<size_t>(n) * heads * half;
  if (dtype == 1) {
    RopeQueriesKernel<__nv_bfloat16><<<GridFor(total), 256, 0, stream>>>(
        static_cast<__nv_bfloat16*>(q), positions, inv_freq, heads, half, total);
  } else {
    RopeQueriesKernel<__half><<<GridFor(total), 256, 0, stream>>>(
        static_cast<__half*>(q), positions, inv_freq, heads, half, total);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(int dtype, const void* gu, void* out, int n, int inter,
                         cudaStream_t stream) {
  const size_t total = static_cast<size_t>(n) * inter;
  if (dtype == 1) {
    SwiGluKernel<__nv_bfloat16><<<GridFor(total), 256, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(out), inter, total);
  } else {
    SwiGluKernel<__half><<<GridFor(total), 256, 0, stream>>>(
        static_cast<const __half*>(gu), static_cast<__half*>(out), inter, total);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSeedFill(int dtype, void* dst, size_t count, uint64_t seed, uint32_t tensor,
                           int kind, int in_features, int hidden, cudaStream_t stream) {
  if (dtype == 1) {
    SeedFillKernel<__nv_bfloat16><<<GridFor(count), 256, 0, stream>>>(
        static_cast<__nv_bfloat16*>(dst), count, seed, tensor, kind, in_features, hidden);
  } else {
    SeedFillKernel<__half><<<GridFor(count), 256, 0, stream>>>(
        static_cast<__half*>(dst), count, seed, tensor, kind, in_features, hidden);
  }
  return cudaGetLastError();
}

}  // namespace strata::runtime
