// Work decomposition of one decode step, shared by the CUDA kernels and their
// CPU executions.
//
// Every attention kernel of Strata runs the same two steps:
//  1. partial attention: each WorkItem (a chunk-aligned run of KV tokens of
//     one KV head, against the query rows of every sequence that shares those
//     tokens) writes one partial state per row: the normalised output and its
//     log-sum-exp (base 2);
//  2. merge: each (sequence, query head) merges the partial states of the
//     items that cover its tokens into the final output and log-sum-exp.
// The planners differ only in how tokens are grouped into items:
//  - paged: every sequence's chunks are its own (no sharing detected);
//  - prefix tree (ChunkAttention's two phases, generalised to trees as in
//    DeFT): chunk lists are merged into a prefix tree by pointer identity;
//    runs of chunks shared by >= 2 sequences become chunk-first items whose
//    rows are all sharing queries (x the GQA group), private runs become
//    sequence-first items;
//  - relay: one explicit system prefix shared by the whole batch, plus each
//    sequence's private context.
// Long runs are split into chunk-aligned pieces so that the item count fills
// the GPU (PlanOptions::target_blocks), but a run shared by R query rows (per
// KV head) is not cut below 2R tokens a piece by default, so that partial
// states stay small next to the KV bytes; both phases are items of one launch.
//
// Plans are plain values; they own copies of the chunk pointers. Thread-safe
// to read concurrently.
#ifndef STRATA_KERNELS_ATTENTION_PLAN_H_
#define STRATA_KERNELS_ATTENTION_PLAN_H_

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/attention_types.h"
#include "kernels/work_item.h"

namespace strata::kernels {

struct PlanOptions {
  // Multiprocessors of the GPU that runs the plan. The host API
  // (attention.h) reads it from the current device; planners stay pure.
  int num_sms = 132;
  // Blocks (items x KV heads) to aim for; 0: 2 x num_sms (two blocks fit an
  // SM). Measured best among 132..2112 on the H100 (132 SMs).
  int target_blocks = 0;
  // Upper bound on the chunks of one item (0: no bound beyond balancing).
  int max_chunks_per_item = 0;
  // A run shared by R query rows (per KV head) is not cut into pieces of
  // fewer than min_piece_tokens_per_row x R tokens (0: no lower bound).
  int min_piece_tokens_per_row = 2;
  // Runs with more than one row tile per KV head (> kMaxRowsPerItem rows,
  // e.g. a GQA prefix shared by a batch of 32: 128 rows) are cut so that
  // their blocks spread evenly over the multiprocessors (see
  // HeavyRunPieces in attention_plan.cc). Off: measured slower on the H200
  // (kernels/README.md, "Tuning").
  bool spread_row_tiled_runs = false;
  // Launch order of the items. Default: longest first. With this set, items
  // shared by several sequences (many MMA rows per KV byte: tensor-core
  // bound) and private items (few rows: memory bound) are interleaved in
  // proportion to their counts, each kind still longest first, so that the
  // two kinds share the multiprocessors instead of running in two phases.
  // A variant under measurement (kernels/README.md, "GQA variants").
  bool interleave_shared_items = false;
  // Merge inside the partial-attention launch: the last block to write a
  // (sequence, KV head)'s partial states merges them into the output (arrival
  // counters in the workspace), so that no second launch waits for the
  // whole first one. A variant under measurement.
  bool fused_merge = false;
  // Items with at least kWgmmaMinRows query rows (a GQA prefix shared by 9
  // or more sequences: 33-64 rows per KV head) run on Hopper warpgroup MMAs
  // (wgmma, sm_90a; attention_partial.cuh) instead of mma.sync, where the
  // device has them (with RoPE too). Off: every item on mma.sync.
  bool wgmma_shared_items = true;

  int EffectiveTargetBlocks() const {
    return target_blocks > 0 ? target_blocks : 2 * std::max(1, num_sms);
  }
};

// The fewest rows of an item that the partial kernel runs on wgmma
// (PlanOptions::wgmma_shared_items): a 64-row warpgroup MMA tile is worth
// its empty rows only past half full.
inline constexpr int kWgmmaMinRows = 33;

struct AttentionPlan {
  KvLayout layout;
  AttentionOptions options;
  int batch = 0;

  std::vector<const void*> pages;      // chunk slices referenced by items
  std::vector<int32_t> seq_ids;        // sharing sequences of items
  std::vector<WorkItem> items;         // longest first
  std::vector<int32_t> merge_offsets;  // batch + 1
  std::vector<int32_t> merge_slots;    // slot of (sequence, q head 0)
  int32_t num_slots = 0;               // partial states
  // Fused merge (PlanOptions::fused_merge): items that write partial states
  // of sequence b, per KV head (every item runs once per KV head).
  bool fused_merge = false;
  std::vector<int32_t> merge_arrivals;  // batch
  // Items with at least this many rows run on wgmma (0: none;
  // PlanOptions::wgmma_shared_items).
  int32_t wgmma_min_rows = 0;

  // Statistics (computed, not measured).
  int64_t kv_bytes = 0;        // K+V bytes of all items' tokens, all KV heads,
                               // each shared run counted once
  int num_shared_runs = 0;     // runs of chunks shared by >= 2 sequences
  int64_t shared_tokens = 0;   // tokens in those runs

  int group() const { return options.num_q_heads / layout.num_kv_heads; }
};

// Per-sequence attention over each sequence's own chunk list.
// REQUIRES nothing; kInvalidArgument on bad shapes or page tables.
absl::StatusOr<AttentionPlan> BuildPagedPlan(const KvLayout& layout,
                                             const AttentionOptions& options,
                                             const PagedBatch& batch,
                                             const PlanOptions& plan_options);

// Prefix-aware plan: chunk slices that are the same pointer at the same depth
// of two sequences (with the same number of valid tokens) are shared.
// Any tree shape; sequences need not be sorted.
absl::StatusOr<AttentionPlan> BuildPrefixTreePlan(
    const KvLayout& layout, const AttentionOptions& options,
    const PagedBatch& batch, const PlanOptions& plan_options);

// Relay plan: every sequence attends over prefix (prefix_length tokens in
// prefix_chunks, last chunk may be partial) followed by its own context
// (context.lengths[b] >= 0 tokens; positions continue after the prefix).
absl::StatusOr<AttentionPlan> BuildRelayPlan(
    const KvLayout& layout, const AttentionOptions& options,
    std::span<const void* const> prefix_chunks, int prefix_length,
    const PagedBatch& context, const PlanOptions& plan_options);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_ATTENTION_PLAN_H_
