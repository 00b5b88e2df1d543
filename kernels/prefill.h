// Host API of the prefill-over-cached-chunks attention kernel (CUDA): the
// new tokens of a batch of sequences over their cached history and,
// causally, over each other, reading every K/V from chunk slices in place and
// rotating keys (and queries) at the positions of their page-table entries.
// Semantics, layouts, RoPE convention and the base-2 LSE: prefill_plan.h.
//
// A call is BuildPrefillPlan (host, prefill_plan.h) + UploadPrefillPlan +
// RunPrefill; callers replaying the same batch layout keep the
// DevicePrefillPlan. Thread-compatible: concurrent calls need distinct
// workspaces.
#ifndef STRATA_KERNELS_PREFILL_H_
#define STRATA_KERNELS_PREFILL_H_

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/prefill_plan.h"

namespace strata::kernels {

// A prefill plan's metadata in a device workspace. A copyable view; the
// workspace is borrowed and must outlive its use.
struct DevicePrefillPlan {
  KvLayout layout;
  PrefillOptions options;
  int total_tokens = 0;
  int num_items = 0;
  const void* const* pages = nullptr;
  const int32_t* positions = nullptr;
  const PrefillItem* items = nullptr;
  int num_merges = 0;
  const PrefillMerge* merges = nullptr;
  int partial_rows = 0;           // per KV head
  float* partial_out = nullptr;   // [kv_heads][partial_rows][head_dim]
  float* partial_lse = nullptr;   // [kv_heads][partial_rows]
  const float* inv_freq = nullptr;  // [head_dim / 2]
  int rope_table_base = 0;
  int rope_table_rows = 0;
  float2* rope_table = nullptr;   // [rope_table_rows][head_dim / 2] (cos, sin)
  int num_pages = 0;
  void* rotated_keys = nullptr;   // [num_pages][kv_heads][tokens_per_chunk][head_dim]
  // The pool of the slices `pages` held at upload (FindPrefillPagePool),
  // which g128p's tensor maps address; RunPrefill uses it only while
  // `pages` is still pool_pages (a page table swapped in by hand falls back
  // to cp.async loads; MovedPrefillPlan keeps both in step).
  PrefillPagePool pool;
  const void* const* pool_pages = nullptr;
};

// `plan` for a page table at `pages` (device) holding each of plan's slices
// moved by `bytes` (e.g. another layer's slices of the same chunks): the
// pool moves with them, so g128p keeps its tensor-map loads. `pages` must
// hold exactly those slices, and an uploaded table must not be rewritten in
// place with others: the tensor maps would still address the pool the plan
// was made for. (A new table swapped into `pages` by hand is safe: RunPrefill
// then loads by cp.async.)
DevicePrefillPlan MovedPrefillPlan(const DevicePrefillPlan& plan, const void* const* pages,
                                   int64_t bytes);

// Device workspace bytes that UploadPrefillPlan needs for `plan`.
size_t PrefillWorkspaceBytes(const PrefillPlan& plan);

// Copies the plan's metadata into `workspace` (device memory of at least
// PrefillWorkspaceBytes(plan), 256-byte aligned) on `stream`, and fills the
// plan's RoPE table there (one kernel, when the plan has a table; every
// RunPrefill of the plan, and of plans moved from it, reads it). Chunk pointers
// must be device pointers, 16-byte aligned. kInvalidArgument: workspace too
// small, null or misaligned; misaligned chunk slice.
absl::StatusOr<DevicePrefillPlan> UploadPrefillPlan(const PrefillPlan& plan,
                                                    void* workspace,
                                                    size_t workspace_bytes,
                                                    cudaStream_t stream);

// Runs the plan (the key rotation pre-kernel when it rotates keys ahead,
// the attention kernel, the merge of split tiles when it has any; all on
// `stream`): queries [total_tokens][q_heads][head_dim] (device, KV
// dtype, unrotated) -> out (same shape and dtype) and lse
// [total_tokens][q_heads] (float, base 2; may be null). Queries and out
// 16-byte aligned. Rows of sequences without new tokens: nothing written.
absl::Status RunPrefill(const DevicePrefillPlan& plan, const void* queries,
                        void* out, float* lse, cudaStream_t stream);

// Plan, upload and run in one call (chunk pointers are device pointers).
absl::Status PrefillAttention(const KvLayout& layout,
                              const PrefillOptions& options,
                              const PrefillBatch& batch, const void* queries,
                              void* out, float* lse, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_PREFILL_H_
