// Plain-old-data records of the prefill kernel, shared by the host planner
// (g++) and the CUDA kernel (nvcc). No dependencies: included from both sides.
#ifndef STRATA_KERNELS_PREFILL_ITEM_H_
#define STRATA_KERNELS_PREFILL_ITEM_H_

#include <cstdint>

namespace strata::kernels {

// Query rows of one block of the default prefill kernel (4 warps x 16
// rows); the 128-row variants (PrefillOptions::kernel_variant) take
// kPrefillWideRowsPerTile.
inline constexpr int kPrefillRowsPerTile = 64;
inline constexpr int kPrefillWideRowsPerTile = 128;
// KV tokens per pipeline stage of every variant (split pieces start at
// multiples of it).
inline constexpr int kPrefillKvTile = 64;

// One block of the prefill kernel, computed once per KV head (grid
// (items, kv_heads)): up to 64 (or 128) query rows of one sequence against that
// sequence's KV tokens [kv_begin, min(kv_stop, kv_end)), where kv_end is the
// causal limit of the tile's last row. A tile whose KV extent is split into
// pieces (split KV) has one item per piece (kv_begin a multiple of 64); each
// piece writes its rows' partial state (normalised fp32 output, base-2 LSE)
// to partial rows partial_row .. partial_row + num_rows of its KV head, and
// a PrefillMerge record combines them. partial_row < 0: the item covers the
// whole extent and writes the final output.
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
  int32_t num_rows;    // rows in this tile, 1..64 (1..128: wide variants)
  int32_t kv_begin = 0;     // first KV token of this piece (multiple of 64)
  int32_t kv_stop = 1 << 30;  // end of this piece (clamped to the causal end)
  int32_t partial_row = -1; // split KV: first partial row; -1: not split
};

static_assert(sizeof(PrefillItem) == 36, "PrefillItem is uploaded as raw bytes");

// The merge of one split tile (grid (merges, kv_heads)): its num_pieces
// pieces wrote rows partial_row + p * num_rows + r (p < num_pieces,
// r < num_rows) of the partial buffers; the merged rows go to the output
// rows of (q_offset, row_begin + r) as in PrefillItem.
struct PrefillMerge {
  int32_t q_offset;
  int32_t row_begin;
  int32_t num_rows;
  int32_t partial_row;
  int32_t num_pieces;
  int32_t reserved = 0;
};

static_assert(sizeof(PrefillMerge) == 24, "PrefillMerge is uploaded as raw bytes");

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_PREFILL_ITEM_H_
