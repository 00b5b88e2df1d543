// LlamaModel: one forward step of a Llama-architecture decoder
// (llama_config.h) over a batch of sequences' new tokens, whose attention
// reads every key and value from chunk slots in the store's layout through
// Strata's prefill kernel (kernels/prefill_plan.h) or, for a batch of decode
// steps, one of its decode kernels (kernels/attention.h; AttentionKernel):
// the cached history of each sequence as loaded, the new tokens' K/V written
// into their slots by this step before attention reads them. Keys are stored
// without RoPE; the kernels rotate keys at the positions of the page table,
// and queries too (prefill) or the model rotates the queries first (decode,
// the same fp32 angles: kernels/prefill_plan.h).
//
// Two implementations with the same arithmetic: CreateCpuLlama (host memory,
// float with 16-bit rounding where the GPU rounds: the reference the tests
// compare against) and, with CUDA, CreateCudaLlama (llama_cuda.h). The CPU
// model runs attention through the kernels' CPU references, in double:
// ReferencePrefill, or the decode plan executed on the CPU
// (kernels::ExecutePlanOnCpu, the kernels' decomposition into partial states
// and their merge) with queries rotated in double from the fp32 angle, so
// its four kernels agree to double rounding; the GPU rounds rotated queries
// and keys to the 16-bit dtype (in both of its attention paths).
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
#include "kernels/attention_plan.h"
#include "kernels/attention_types.h"
#include "kernels/prefill_plan.h"

namespace strata::runtime {

// The kernel that runs a step's attention. kPrefill: the prefill kernel
// (kernels/prefill.h), any number of new tokens per sequence. The decode
// kernels (kernels/attention.h), for a batch of decode steps (one new token
// per sequence), read K/V shared by several sequences once per batch:
//  - kPagedDecode: every sequence over its own page table (nothing shared);
//  - kPrefixAwareDecode: page tables merged into a prefix tree by slot
//    pointer (same pointer at the same depth with the same valid tokens);
//    shared runs are read once for all their sequences (chunk-first), the
//    rest per sequence;
//  - kRelayDecode: the relay prefix (RelayPrefixChunks) is read once for the
//    whole batch, each sequence's remaining chunks separately; with no such
//    prefix or a batch of one sequence the relay planner has nothing to
//    share (it refuses an empty prefix) and the step runs the paged plan.
// All four compute the same attention; they differ in what they read.
enum class AttentionKernel { kPrefill, kPagedDecode, kPrefixAwareDecode, kRelayDecode };

// "prefill", "paged", "prefix-aware", "relay".
const char* AttentionKernelName(AttentionKernel kernel);

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
  // With a decode kernel, `attention`'s page tables (layer-0 slot bases) and
  // kv_lengths (each including its new token, whose K/V the step writes
  // first) are the decode kernels' batch; query row b is sequence b's new
  // token, rotated by the model at position kv_lengths[b] - 1 (the decode
  // kernels rotate keys only); the plan is built once per step and run on
  // every layer with its pages moved by l x slice bytes.
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

// Checks what both models check before anything runs (for the decode
// kernels also ValidateDecodeBatch). InvalidArgument for an unknown kernel.
absl::Status ValidateForward(const LlamaConfig& config, int tokens_per_chunk,
                             const ForwardBatch& batch);

// InvalidArgument unless every sequence of `batch` has exactly one new token
// and its page table's positions are 0, 1, 2, ... (an empty span, or equal to
// that), which is what the decode planners assume. REQUIRES: `batch` passed
// kernels::ValidatePrefill.
absl::Status ValidateDecodeBatch(const kernels::PrefillBatch& batch, int tokens_per_chunk);

// kRelayDecode's prefix: the number of leading chunks that are full
// (tokens_per_chunk valid tokens) in every sequence and whose slot pointers
// are the same in every sequence. 0 for a batch of fewer than two sequences.
// REQUIRES: `batch` passed kernels::ValidatePrefill.
int RelayPrefixChunks(const kernels::PrefillBatch& batch, int tokens_per_chunk);

// The attention of one decode step, planned on the host once per step.
struct DecodeStep {
  // The plan over layer-0 slot bases; layer l runs it with every page moved
  // by l x the layout's slice bytes (pointer identity, hence sharing, is the
  // same in every layer).
  kernels::AttentionPlan plan;
  kernels::AttentionOptions options;
  // Per query row (= sequence): the position of its new token,
  // kv_lengths[b] - 1, at which the model rotates its query.
  std::vector<int32_t> query_positions;
  // kRelayDecode: chunks of the prefix read once for the batch; 0 when the
  // paged plan ran instead (no common full chunk, or one sequence).
  int relay_prefix_chunks = 0;
};

// Validates `batch` (ValidateForward) and plans its attention with the
// planner of batch.attention_kernel (not kPrefill: InvalidArgument). Keys
// are rotated by the kernel at their positions with the config's theta.
absl::StatusOr<DecodeStep> BuildDecodeStep(const LlamaConfig& config, int tokens_per_chunk,
                                           const ForwardBatch& batch,
                                           const kernels::PlanOptions& plan_options);

// The host model. `weights` must outlive it. InvalidArgument for a bad
// config or chunk size.
absl::StatusOr<std::unique_ptr<LlamaModel>> CreateCpuLlama(const LlamaConfig& config,
                                                           int tokens_per_chunk,
                                                           const LlamaWeightViews& weights);

// The index of the largest logit of each row (first on ties).
std::vector<int32_t> ArgmaxRows(std::span<const float> logits, int vocab);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_MODEL_H_
