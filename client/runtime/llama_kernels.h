// Launchers of the model step's elementwise kernels (llama_kernels.cu): the
// parts of a Llama layer that are not matrix products (cuBLAS) or attention
// (kernels/prefill, kernels/attention). Every tensor is row-major, 16-bit in
// `dtype` (0 fp16, 1 bf16), device memory; arithmetic in fp32 with the
// rounding points of llama_model.h. Each returns the launch error.
#ifndef STRATA_CLIENT_RUNTIME_LLAMA_KERNELS_H_
#define STRATA_CLIENT_RUNTIME_LLAMA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace strata::runtime {

// x[t] = embed[tokens[t]], n rows of `hidden`.
cudaError_t LaunchEmbed(int dtype, const int32_t* tokens, const void* embed, void* x, int n,
                        int hidden, cudaStream_t stream);

// With delta: x[t] = round(x[t] + delta[t]) in place; then
// out[t] = round(round(x[t] * rsqrt(mean(x[t]^2) + eps)) * w).
// Rows: `rows` (nullable: row t) picks the x row of output row t.
cudaError_t LaunchAddNorm(int dtype, void* x, const void* delta, const void* w, void* out, int n,
                          int hidden, float eps, const int32_t* rows, cudaStream_t stream);

// K and V of each token (columns [q_dim, q_dim + kv_dim) and
// [q_dim + kv_dim, q_dim + 2 kv_dim) of qkv row t) into its chunk slot's
// layer slice at slot_bases[t] + layer_offset: [k|v][head][token][head_dim],
// token index kv_index[t]; and the queries (columns [0, q_dim)) to q [n][q_dim].
cudaError_t LaunchScatterQkv(const void* qkv, void* q, void* const* slot_bases,
                             const int32_t* kv_index, size_t layer_offset, int n, int q_dim,
                             int kv_heads, int head_dim, int tokens_per_chunk,
                             cudaStream_t stream);

// Rotates the queries q [n][heads][head_dim] in place ("rotate half") at
// positions[t], exactly as the prefill kernel rotates its queries
// (kernels/prefill.cuh, RotateVectors): f = __fmul_rn((float) pos,
// inv_freq[i]), sincosf, x'[i] = round(fma(x[i], cos, -x[i+d/2] sin)),
// x'[i+d/2] = round(fma(x[i+d/2], cos, x[i] sin)); inv_freq [head_dim / 2]
// from kernels::PrefillRopeInvFreq. For the decode kernels, which take
// rotated queries.
cudaError_t LaunchRopeQueries(int dtype, void* q, const int32_t* positions, const float* inv_freq,
                              int n, int heads, int head_dim, cudaStream_t stream);

// out[t][i] = round(round(silu(gu[t][i])) * gu[t][inter + i]).
cudaError_t LaunchSwiGlu(int dtype, const void* gu, void* out, int n, int inter,
                         cudaStream_t stream);

// dst[i] = round(SeededValue(seed, tensor, i, kind, in_features, hidden)).
cudaError_t LaunchSeedFill(int dtype, void* dst, size_t count, uint64_t seed, uint32_t tensor,
                           int kind, int in_features, int hidden, cudaStream_t stream);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_KERNELS_H_
