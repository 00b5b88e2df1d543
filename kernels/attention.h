// Host API of Strata's decode attention kernels (CUDA). Validates shapes and
// returns absl::Status; launches go through attention_launch.h.
//
// Kernels (all decode: one query token per sequence; layouts and the base-2
// log-sum-exp in attention_types.h and merge_state.cuh):
//  - PagedDecode: each sequence over its own page table (split over the GPU,
//    partial states merged).
//  - PrefixAwareDecode: chunk slices shared by several sequences (a prefix
//    tree of any shape) are read once per batch: their partial attention for
//    all sharing queries is one MMA pass (chunk-first); private chunks are
//    attended per sequence (sequence-first); states merged exactly.
//  - RelayDecode: an explicit system prefix read once for the whole batch,
//    the private contexts per sequence, merged through the log-sum-exp.
//  - MergeState: element-wise merge of two arrays of attention states.
//
// Every decode call is Build*Plan (host) + UploadPlan + RunAttention; callers
// that replay the same batch layout keep the DevicePlan and call
// RunAttention alone. Functions are thread-compatible: concurrent calls need
// distinct workspaces.
#ifndef STRATA_KERNELS_ATTENTION_H_
#define STRATA_KERNELS_ATTENTION_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention_plan.h"
#include "kernels/attention_types.h"
#include "kernels/cuda_status.h"

namespace strata::kernels {

// A plan's metadata and partial-state buffers in a device workspace. A
// copyable view; the workspace is borrowed and must outlive its use.
struct DevicePlan {
  KvLayout layout;
  AttentionOptions options;
  int batch = 0;
  int num_items = 0;
  const void* const* pages = nullptr;
  const WorkItem* items = nullptr;
  const int32_t* seq_ids = nullptr;
  const int32_t* merge_offsets = nullptr;
  const int32_t* merge_slots = nullptr;
  float* partial_o = nullptr;
  float* partial_lse = nullptr;
  // Fused merge (AttentionPlan::fused_merge): arrival counters, zeroed by
  // UploadPlan and left zero by every complete run.
  bool fused_merge = false;
  int32_t* arrivals = nullptr;
  const int32_t* merge_arrivals = nullptr;
  int32_t wgmma_min_rows = 0;  // AttentionPlan::wgmma_min_rows
  // RoPE frequencies (options.apply_rope: head_dim / 2 floats, the prefill
  // kernels' PrefillRopeInvFreq values), else null.
  const float* inv_freq = nullptr;
  // The cos / sin table of the positions the plan reads (filled by
  // UploadPlan when it takes at most kMaxDecodeRopeTableBytes), or null (the
  // kernel calls sincosf: the same values).
  const float2* rope_table = nullptr;
  int32_t rope_table_base = 0;
};

// Largest RoPE cos / sin table UploadPlan fills (positions x head_dim / 2 x 8
// bytes; 64 MiB: 131072 positions at head_dim 128).
inline constexpr size_t kMaxDecodeRopeTableBytes = size_t{64} << 20;

// Device workspace bytes that UploadPlan needs for `plan`.
size_t PlanWorkspaceBytes(const AttentionPlan& plan);

// Copies the plan's metadata into `workspace` (device memory of at least
// PlanWorkspaceBytes(plan), 256-byte aligned) on `stream`; with RoPE it also
// launches the fill of the plan's cos / sin table there (DevicePlan::
// rope_table). Chunk pointers in the plan must be device pointers, 16-byte
// aligned.
// kInvalidArgument: workspace too small, null or misaligned.
absl::StatusOr<DevicePlan> UploadPlan(const AttentionPlan& plan, void* workspace,
                                      size_t workspace_bytes, cudaStream_t stream);

// Runs the plan: queries [batch][q_heads][head_dim] (device, KV dtype) ->
// out (same shape and dtype) and lse [batch][q_heads] (float, base 2; may be
// null). Queries and out must be 16-byte aligned.
absl::Status RunAttention(const DevicePlan& plan, const void* queries, void* out,
                          float* lse, cudaStream_t stream);

// The partial-attention launch of RunAttention alone (no merge launch), for
// benchmarks that time the merge's share. A plan without fused merge writes
// only its partial states (out and lse are left untouched); with fused merge
// this is RunAttention.
absl::Status RunPartialAttention(const DevicePlan& plan, const void* queries, void* out,
                                 float* lse, cudaStream_t stream);

// Convenience wrappers: plan, upload and run in one call (chunk pointers in
// `batch` / `prefix_chunks` are device pointers).
absl::Status PagedDecode(const KvLayout& layout, const AttentionOptions& options,
                         const PagedBatch& batch, const void* queries, void* out,
                         float* lse, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream);
absl::Status PrefixAwareDecode(const KvLayout& layout,
                               const AttentionOptions& options,
                               const PagedBatch& batch, const void* queries,
                               void* out, float* lse, void* workspace,
                               size_t workspace_bytes, cudaStream_t stream);
absl::Status RelayDecode(const KvLayout& layout, const AttentionOptions& options,
                         std::span<const void* const> prefix_chunks,
                         int prefix_length, const PagedBatch& context,
                         const void* queries, void* out, float* lse,
                         void* workspace, size_t workspace_bytes,
                         cudaStream_t stream);

// Merges two arrays of attention states: v_* [num_states][head_dim] in
// `dtype`, s_* [num_states] float base 2; s_out may be null. In-place
// (v_out == v_a) is allowed.
absl::Status MergeState(KvDtype dtype, int head_dim, int64_t num_states,
                        const void* v_a, const float* s_a, const void* v_b,
                        const float* s_b, void* v_out, float* s_out,
                        cudaStream_t stream);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_ATTENTION_H_
