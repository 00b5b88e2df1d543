// LlamaModel: one forward step of a Llama-architecture decoder
// (llama_config.h) over a batch of sequences' new tokens, whose attention
// reads every key and value from chunk slots in the store's layout through
// Strata's prefill kernel (kernels/prefill_plan.h): the cached history of
// each sequence as loaded, the new tokens' K/V written into their slots by
// this step before attention reads them. Keys are stored without RoPE; the
// attention rotates keys and queries at the positions of the page table.
//
// Two implementations with the same arithmetic: CreateCpuLlama (host memory,
// float with 16-bit rounding where the GPU rounds: the reference the tests
// compare against) and, with CUDA, CreateCudaLlama (llama_cuda.h).
//
// Rounding points (those of Hugging Face's LlamaForCausalLM in bf16):
// RMSNorm in fp32, its normalised value rounded before the weight multiply,
// the product rounded; every projection accumulates in fp32 and rounds its
// output; silu(gate) rounded, times up rounded; residual adds rounded; the
// LM head's logits stay fp32.
#ifndef STRATA_CLIENT_RUNTIME_LLAMA_MODEL_H_
#define STRATA_CLIENT_RUNTIME_LLAMA_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/llama_weights.h"
#include "kernels/prefill_plan.h"

namespace strata::runtime {

// Which kernel runs a step's attention.
enum class AttentionKernel { kPrefill, kPagedDecode, kPrefixAwareDecode, kRelayDecode };

// One step's input. Pointers are the model's memory (host for the CPU model,
// device for the CUDA one).
struct ForwardBatch {
  // The new tokens of every sequence, in the order of attention's query rows.
  std::span<const int32_t> tokens;
  // Per new token: the base of the chunk slot that receives its K/V (layer
  // 0; the store's layout) and its token index in that chunk.
  std::span<std::byte* const> kv_slots;
  std::span<const int32_t> kv_index;
  // The attention's page tables with LAYER 0 slices (slot bases); layer l
  // reads base + l x slice bytes. Its last query_offsets entry equals
  // tokens.size().
  kernels::PrefillBatch attention;
  // Logits of every new token (rows in token order), else of each sequence's
  // last new token (one row per sequence with new tokens).
  bool all_logits = false;
  // Which kernel runs attention. The decode kernels need exactly one new token
  // per sequence (InvalidArgument otherwise) and positions 0,1,2,... along each
  // page table (empty positions span, or positions equal to that; InvalidArgument otherwise).
  AttentionKernel attention_kernel = AttentionKernel::kPrefill;
  // Runs before layer `layer`'s attention reads the page table (the runtime
  // waits there for that layer's loaded bytes); an error aborts the step.
  std::function<absl::Status(int layer)> before_attention;
};

class LlamaModel {
 public:
  virtual ~LlamaModel() = default;
  virtual const LlamaConfig& config() const = 0;
  virtual int tokens_per_chunk() const = 0;
  // Runs the step; `logits` gets [rows][vocab] floats. InvalidArgument for
  // inconsistent sizes, a token outside the vocabulary or a null slot;
  // the attention's own errors as they are. On error the K/V written into
  // the slots for these tokens are unspecified.
  virtual absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) = 0;
};

// The ForwardBatch of sequences whose tokens [history, length) are new:
// their chunks' slot bases (layer 0, ceil(length / tokens_per_chunk) of them,
// positions from 0), the new tokens' K/V going to their chunks.
struct SequenceStep {
  std::vector<const void*> pages;
  std::vector<int32_t> chunk_offsets, kv_lengths, query_offsets;
  std::vector<std::byte*> kv_slots;
  std::vector<int32_t> kv_index;

  // InvalidArgument unless 0 <= history < length and there are exactly
  // enough chunks.
  static absl::StatusOr<SequenceStep> Make(std::span<std::byte* const> chunk_bases, int history,
                                           int length, int tokens_per_chunk);
  // Adds another sequence after the ones already there (the same checks; on
  // error nothing is added). Its new tokens follow theirs.
  absl::Status Append(std::span<std::byte* const> chunk_bases, int history, int length,
                      int tokens_per_chunk);
  // A view of this step for `new_tokens` (length - history of them); valid
  // while this object lives.
  ForwardBatch Batch(std::span<const int32_t> new_tokens) const;
};

// Checks what both models check before anything runs.
absl::Status ValidateForward(const LlamaConfig& config, int tokens_per_chunk,
                             const ForwardBatch& batch);

// The host model. `weights` must outlive it. InvalidArgument for a bad
// config or chunk size.
absl::StatusOr<std::unique_ptr<LlamaModel>> CreateCpuLlama(const LlamaConfig& config,
                                                           int tokens_per_chunk,
                                                           const LlamaWeightViews& weights);

// The index of the largest logit of each row (first on ties).
std::vector<int32_t> ArgmaxRows(std::span<const float> logits, int vocab);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_MODEL_H_
