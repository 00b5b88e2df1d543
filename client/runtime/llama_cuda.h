// The CUDA model step (llama_model.h): weights in device memory, matrix
// products through cuBLAS (16-bit inputs, fp32 accumulation), attention
// through Strata's prefill kernel or, for a batch of decode steps, its
// decode kernels (ForwardBatch::attention_kernel), reading chunk slots in
// place; the rest in llama_kernels.cu. Chunk slot pointers in ForwardBatch
// are device pointers. A decode step's plan (BuildDecodeStep, planned for
// this device's multiprocessors) is built on the host and uploaded into the
// workspace once per step, with one page array per layer (the plan's pages
// moved by l x slice bytes); each layer rotates its queries
// (LaunchRopeQueries: the prefill kernel's query rotation, bit for bit) and
// runs the plan on its page array.
//
// Forward enqueues everything on the model's stream and returns when the
// logits are on the host. Not thread-safe: one step at a time.
#ifndef STRATA_CLIENT_RUNTIME_LLAMA_CUDA_H_
#define STRATA_CLIENT_RUNTIME_LLAMA_CUDA_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "client/runtime/llama_model.h"

struct CUstream_st;

namespace strata::runtime {

class CudaLlama : public LlamaModel {
 public:
  // The stream every step runs on (the runtime makes it wait for loaded
  // layers in before_attention).
  virtual CUstream_st* stream() const = 0;
  // Device bytes held by weights and by the largest step so far.
  virtual size_t weight_bytes() const = 0;
  virtual size_t activation_bytes() const = 0;
  // Prepares cuBLAS for every step of up to `max_rows` new tokens (matrix
  // products run over row counts rounded up to buckets; the first product of
  // a shape costs cuBLAS tens of milliseconds), so that a request's first
  // step does not pay for it. Grows the activation buffers to max_rows.
  virtual absl::Status Warmup(int max_rows) = 0;
};

// Uploads `weights` (host views, e.g. of a mapped safetensors file) to
// device `device`. InvalidArgument for a bad config or chunk size; the CUDA
// or cuBLAS error when the device, memory or library cannot be had.
absl::StatusOr<std::unique_ptr<CudaLlama>> CreateCudaLlama(const LlamaConfig& config,
                                                           int tokens_per_chunk,
                                                           const LlamaWeightViews& weights,
                                                           int device = 0);
// The weights of SeededLlamaWeights(config, seed), drawn on the device (the
// same values, without a host copy: Llama-3-8B's 16 GB).
absl::StatusOr<std::unique_ptr<CudaLlama>> CreateSeededCudaLlama(const LlamaConfig& config,
                                                                 int tokens_per_chunk,
                                                                 uint64_t seed, int device = 0);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_CUDA_H_
