// Plain-old-data records of the prefill kernel, shared by the host planner
// (g++) and the CUDA kernel (nvcc). No dependencies: included from both sides.
#ifndef STRATA_KERNELS_PREFILL_ITEM_H_
#define STRATA_KERNELS_PREFILL_ITEM_H_

#include <cstdint>

namespace strata::kernels {

// Query rows of one block of the prefill kernel (4 warps x 16 rows).
inline constexpr int kPrefillRowsPerTile = 64;

// One block of the prefill kernel, computed once per KV head (grid
// (kv_heads, items)): up to 64 query rows of one sequence against that
// sequence's KV tokens [0, kv_end), where kv_end is the causal limit of the
// tile's last row.
//
// Rows of a sequence are (new token, query head within the GQA group): row
// r in [0, num_new * group) is new token r / group (0-based among the new
// tokens), query head kv_head * group + r % group. New token i is KV token
// history + i, and sees KV tokens [0, history + i].
struct PrefillItem {
  int32_t page_begin;  // first entry of the sequence in pages / positions
  int32_t kv_length;   // history + num_new
  int32_t history;     // cached tokens before the new ones
  int32_t q_offset;    // first query token of the sequence
  int32_t row_begin;   // first row of this tile
  int32_t num_rows;    // rows in this tile, 1..64
  int32_t reserved0 = 0;
  int32_t reserved1 = 0;
};

static_assert(sizeof(PrefillItem) == 32, "PrefillItem is uploaded as raw bytes");

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_PREFILL_ITEM_H_
