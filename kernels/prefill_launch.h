// Launcher of the prefill attention kernel (prefill.cu, compiled by nvcc).
// Dispatches over dtype x head_dim {64, 128}, checks the launch and returns
// its cudaError_t; cudaErrorInvalidValue for unsupported sizes. Shapes are
// validated by the host API (prefill.h), not here.
#ifndef STRATA_KERNELS_PREFILL_LAUNCH_H_
#define STRATA_KERNELS_PREFILL_LAUNCH_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/prefill_item.h"

namespace strata::kernels {

struct PrefillArgs {
  const void* queries;       // [total_tokens][num_q_heads][head_dim]
  const void* const* pages;  // chunk slices
  const int32_t* positions;  // position of token 0 of each page
  const PrefillItem* items;
  int32_t num_items;
  void* out;                 // [total_tokens][num_q_heads][head_dim]
  float* lse;                // [total_tokens][num_q_heads], base 2; may be null
  int32_t num_q_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t tokens_per_chunk;
  float scale_log2;          // softmax scale * log2(e)
  int32_t apply_rope;
  const float* inv_freq;     // [head_dim / 2] RoPE frequencies
  float2* rope_table;        // null: sincosf; else read (filled ahead by
                             // LaunchPrefillRopeTable)
  int32_t rope_table_base;   // position of table row 0
  int32_t rope_table_rows;
  void* rotated_keys;        // null: keys rotated in the kernel; else
                             // [num_pages][num_kv_heads][tokens_per_chunk]
                             // [head_dim], filled here, then read
  int32_t num_pages;
  const PrefillMerge* merges;  // split KV (PrefillItem::partial_row)
  int32_t num_merges;
  int32_t partial_rows;      // per KV head
  float* partial_out;        // [num_kv_heads][partial_rows][head_dim]
  float* partial_lse;        // [num_kv_heads][partial_rows]
  int32_t dtype;             // 0 = fp16, 1 = bf16
  int32_t variant;           // PrefillOptions::KernelVariant: 0 = 64 rows
                             // (prefill.cuh), 1 = 128 rows x 8 warps,
                             // 2 = 128 rows x 4 warps (prefill_wide.cuh),
                             // 3, 4 = 128 rows on wgmma, 64- / 128-token
                             // KV tiles, 5 = 128 / 128 pipelined
                             // (prefill_wgmma.cuh)
  // The chunk slices' pool (PrefillPagePool; pool_slots == 0: none): the
  // pipelined kernel loads K / V tiles through tensor maps of it (TMA).
  const void* pool_base;
  int64_t pool_stride;
  int64_t pool_slots;
  // Filled by LaunchPrefill for the pipelined kernel: tensor maps
  // (CUtensorMap) of the pool, [slot][k|v][kv_head][token][head_dim], and
  // of rotated_keys, [page][kv_head][token][head_dim], both with boxes of
  // 64 elements x tma_rows tokens, 128-byte swizzle; tma_rows == 0: no
  // maps (loads by cp.async).
  alignas(64) unsigned char pool_map[128];
  alignas(64) unsigned char key_map[128];
  int32_t tma_rows;
  // pool_stride / 16 when it and every slice's offset / 16 are below 2^31
  // (a slice's slot by FastDiv), else 0 (by a 64-bit division).
  uint32_t pool_stride16;
};

// Fills the RoPE table: rows x half (cos, sin) of (base + row) x
// inv_freq[i] (sincosf), on `stream`. Once per uploaded plan
// (UploadPrefillPlan); every launch of the plan reads it.
cudaError_t LaunchPrefillRopeTable(float2* table, const float* inv_freq, int half, int base,
                                   int rows, cudaStream_t stream);

// The key rotation kernel when rotated_keys is set, then the attention
// kernel of `variant` (grid (num_items, num_kv_heads), 128 to 384 threads;
// a programmatic dependent of the grid before it), then the merge kernel
// when num_merges > 0 (grid (num_merges, num_kv_heads)), on `stream`.
cudaError_t LaunchPrefill(const PrefillArgs& args, cudaStream_t stream);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_PREFILL_LAUNCH_H_
