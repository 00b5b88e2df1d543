// Launchers of the attention kernels (defined in attention.cu, compiled by
// nvcc). Each dispatches over dtype x head_dim {64, 128}, checks the launch
// and returns its cudaError_t; cudaErrorInvalidValue for unsupported sizes.
// Shapes are validated by the host API (attention.h), not here.
#ifndef STRATA_KERNELS_ATTENTION_LAUNCH_H_
#define STRATA_KERNELS_ATTENTION_LAUNCH_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/work_item.h"

namespace strata::kernels {

// dtype codes: 0 = fp16, 1 = bf16 (KvDtype's values).
struct PartialAttentionArgs {
  const void* queries;          // [batch][num_q_heads][head_dim]
  const void* const* pages;     // chunk slices
  const WorkItem* items;
  int32_t num_items;
  const int32_t* seq_ids;
  float* partial_o;             // [slots][head_dim]
  float* partial_lse;           // [slots], base 2
  int32_t num_q_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t tokens_per_chunk;
  float scale_log2;             // softmax scale * log2(e)
  int32_t apply_rope;
  const float* inv_freq;        // [head_dim / 2] RoPE frequencies (apply_rope)
  // RoPE cos / sin of every position the items read (rows from
  // rope_table_base; LaunchPrefillRopeTable's layout), or null: sincosf.
  const float2* rope_table;
  int32_t rope_table_base;
  int32_t dtype;
  // Fused merge (fused != 0): after writing its partial states, a block
  // counts its arrival per (sequence, KV head) in arrivals[seq * num_kv_heads
  // + kv_head] (zero before the launch); the block that brings a count to
  // merge_arrivals[seq] merges that sequence's query heads of its KV head
  // (merge_offsets / merge_slots as MergePartialsArgs) into out / lse and
  // sets the count back to zero.
  int32_t fused;
  int32_t batch;
  int32_t* arrivals;               // [batch][num_kv_heads]
  const int32_t* merge_arrivals;   // [batch]
  const int32_t* merge_offsets;    // batch + 1
  const int32_t* merge_slots;
  void* out;                       // [batch][num_q_heads][head_dim]
  float* lse;                      // [batch][num_q_heads] or null
  // Items with at least this many rows run on wgmma where the kernel was
  // built for sm_90a (0: none).
  int32_t wgmma_min_rows;
};

// Grid (num_kv_heads, num_items), 128 threads: every item's partial states
// (and, when args.fused, the merged outputs).
cudaError_t LaunchPartialAttention(const PartialAttentionArgs& args,
                                   cudaStream_t stream);

struct MergePartialsArgs {
  const float* partial_o;
  const float* partial_lse;
  const int32_t* merge_offsets;  // batch + 1
  const int32_t* merge_slots;    // slot of (sequence, head 0)
  int32_t batch;
  int32_t num_q_heads;
  int32_t head_dim;
  int32_t dtype;
  void* out;                     // [batch][num_q_heads][head_dim]
  float* lse;                    // [batch][num_q_heads] or null
};

// One warp per (sequence, query head): merges its partial states.
cudaError_t LaunchMergePartials(const MergePartialsArgs& args,
                                cudaStream_t stream);

struct MergeStateArgs {
  const void* v_a;  // [num_states][head_dim]
  const float* s_a;
  const void* v_b;
  const float* s_b;
  void* v_out;
  float* s_out;     // may be null
  int64_t num_states;
  int32_t head_dim;
  int32_t dtype;
};

// Element-wise merge of two arrays of attention states.
cudaError_t LaunchMergeState(const MergeStateArgs& args, cudaStream_t stream);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_ATTENTION_LAUNCH_H_
