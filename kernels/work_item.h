// Plain-old-data records shared by the host planner (g++) and the CUDA
// kernels (nvcc). No dependencies: included from both sides.
#ifndef STRATA_KERNELS_WORK_ITEM_H_
#define STRATA_KERNELS_WORK_ITEM_H_

#include <cstdint>

namespace strata::kernels {

// One unit of partial attention: a run of KV tokens (chunk-aligned, in the
// plan's page array) against a tile of at most 64 query rows. The grid is
// (kv_heads, items): every item is computed once per KV head.
//
// Rows of an item are (sharing sequence, query head within the GQA group):
// row r in [row_begin, row_begin + num_rows) is sequence
// seq_ids[seq_begin + r / group], query head kv_head * group + r % group.
// Its partial state goes to slot  slot_base + (r / group) * q_heads + q_head.
struct WorkItem {
  int32_t page_begin;  // index of the first chunk slice in the page array
  int32_t num_tokens;  // tokens covered, starting at token 0 of that chunk
  int32_t position;    // absolute position of the first token (RoPE)
  int32_t seq_begin;   // first entry in seq_ids of the sharing sequences
  int32_t num_seqs;    // sequences sharing these tokens (>= 1)
  int32_t row_begin;   // first row of this tile, in [0, num_seqs * group)
  int32_t num_rows;    // rows in this tile, 1..64
  int32_t slot_base;   // partial-state slot of (first sequence, query head 0)
};

static_assert(sizeof(WorkItem) == 32, "WorkItem is uploaded as raw bytes");

// Rows handled by one block of the partial-attention kernel.
inline constexpr int kMaxRowsPerItem = 64;

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_WORK_ITEM_H_
