#include "kernels/attention_plan.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace strata::kernels {
namespace {

// A run of consecutive chunks (in pages, from page_begin) read by the same
// set of sequences.
struct Run {
  int32_t page_begin;
  int32_t num_chunks;
  int32_t num_tokens;
  int32_t position;
  std::vector<int32_t> seqs;
};

int CeilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Pieces for a run of num_chunks chunks whose every piece is
// blocks_per_piece blocks (row tiles x KV heads) of 64-row tiles. Such
// blocks do four times the MMA work per KV byte of a lone sequence's block
// (GQA groups fill their rows), so their time is set by the multiprocessor
// that runs the most of their tiles; the block scheduler hands the first
// blocks of a launch (these are the longest, hence first) one per SM, then a
// second one per SM, and so on. The busiest SM runs
//   ceil(pieces x blocks_per_piece / num_sms) x ceil(num_chunks / pieces)
// chunks of this run. Returns the fewest pieces in [min_pieces, max_pieces]
// (fewer partial states to write and merge) whose load is within 1/16 of the
// smallest load there; `current` is kept unless its load is above that.
int RowTiledRunPieces(int num_chunks, int current, int blocks_per_piece,
                      int num_sms, int min_pieces, int max_pieces) {
  auto load = [&](int p) {
    return int64_t{CeilDiv(int64_t{p} * blocks_per_piece, num_sms)} *
           CeilDiv(num_chunks, p);
  };
  min_pieces = std::max(1, min_pieces);
  int64_t min_load = load(current);
  for (int p = min_pieces; p <= max_pieces; ++p) {
    min_load = std::min(min_load, load(p));
  }
  const int64_t good_enough = min_load + min_load / 16;
  if (load(current) <= good_enough) return current;
  for (int p = min_pieces; p <= max_pieces; ++p) {
    if (load(p) <= good_enough) return p;
  }
  return current;
}

// Items shared by >= 2 sequences and private items, interleaved in
// proportion to their counts (shared first on ties); each kind keeps its
// order.
std::vector<WorkItem> InterleaveSharedItems(const std::vector<WorkItem>& items) {
  std::vector<WorkItem> shared, priv;
  for (const WorkItem& it : items) (it.num_seqs >= 2 ? shared : priv).push_back(it);
  std::vector<WorkItem> out;
  out.reserve(items.size());
  const int64_t ns = static_cast<int64_t>(shared.size());
  const int64_t np = static_cast<int64_t>(priv.size());
  size_t is = 0, ip = 0;
  while (is < shared.size() || ip < priv.size()) {
    // Take a shared item while its kind is not ahead of the other's share.
    const bool take_shared =
        ip == priv.size() ||
        (is < shared.size() && static_cast<int64_t>(is) * np <= static_cast<int64_t>(ip) * ns);
    out.push_back(take_shared ? shared[is++] : priv[ip++]);
  }
  return out;
}

// Splits runs into items, assigns partial slots and merge lists.
absl::StatusOr<AttentionPlan> Finish(const KvLayout& layout,
                                     const AttentionOptions& options, int batch,
                                     std::vector<const void*> pages,
                                     const std::vector<Run>& runs,
                                     const PlanOptions& plan_options) {
  AttentionPlan plan;
  plan.layout = layout;
  plan.options = options;
  plan.batch = batch;
  plan.pages = std::move(pages);
  const int group = plan.group();
  const int tpc = layout.tokens_per_chunk;

  int64_t units = 0;
  for (const Run& r : runs) {
    units += int64_t{r.num_chunks} *
             CeilDiv(int64_t{r.seqs.size()} * group, kMaxRowsPerItem);
  }
  const int target_items = std::max(
      1, plan_options.EffectiveTargetBlocks() / layout.num_kv_heads);
  int max_chunks = std::max(1, CeilDiv(units, target_items));
  if (plan_options.max_chunks_per_item > 0) {
    max_chunks = std::min(max_chunks, plan_options.max_chunks_per_item);
  }

  std::vector<std::vector<int32_t>> per_seq(batch);
  const int64_t token_bytes =
      int64_t{2} * layout.num_kv_heads * layout.head_dim * kKvElementBytes;
  for (const Run& r : runs) {
    const int nseq = static_cast<int>(r.seqs.size());
    if (nseq >= 2) {
      ++plan.num_shared_runs;
      plan.shared_tokens += r.num_tokens;
    }
    plan.kv_bytes += token_bytes * r.num_tokens;
    const int seq_begin = static_cast<int>(plan.seq_ids.size());
    plan.seq_ids.insert(plan.seq_ids.end(), r.seqs.begin(), r.seqs.end());
    const int rows = nseq * group;
    // A piece writes rows x head_dim fp32 partial outputs per KV head (read
    // again by the merge) and reads tokens x head_dim x 2 KV elements: keep
    // pieces long next to their rows so that partial states stay a small
    // fraction of the bytes moved (unless the caller bounds the length).
    const int min_piece_chunks = std::max(
        1, CeilDiv(int64_t{plan_options.min_piece_tokens_per_row} * rows, tpc));
    int run_chunks = std::max(max_chunks, min_piece_chunks);
    if (plan_options.max_chunks_per_item > 0) {
      run_chunks = std::min(run_chunks, plan_options.max_chunks_per_item);
    }
    int pieces = CeilDiv(r.num_chunks, run_chunks);
    const int row_tiles = CeilDiv(rows, kMaxRowsPerItem);
    if (plan_options.spread_row_tiled_runs && row_tiles > 1) {
      const int min_pieces =
          plan_options.max_chunks_per_item > 0
              ? CeilDiv(r.num_chunks, plan_options.max_chunks_per_item)
              : 1;
      const int max_pieces =
          std::max(min_pieces, r.num_chunks / min_piece_chunks);
      pieces = RowTiledRunPieces(r.num_chunks, pieces,
                                 row_tiles * layout.num_kv_heads,
                                 std::max(1, plan_options.num_sms), min_pieces,
                                 max_pieces);
    }
    for (int p = 0; p < pieces; ++p) {
      const int c0 = static_cast<int>(int64_t{r.num_chunks} * p / pieces);
      const int c1 = static_cast<int>(int64_t{r.num_chunks} * (p + 1) / pieces);
      const int t0 = c0 * tpc;
      const int t1 = std::min(c1 * tpc, r.num_tokens);
      const int32_t slot_base = plan.num_slots;
      plan.num_slots += nseq * options.num_q_heads;
      for (int s = 0; s < nseq; ++s) {
        per_seq[r.seqs[s]].push_back(slot_base + s * options.num_q_heads);
      }
      for (int row = 0; row < rows; row += kMaxRowsPerItem) {
        WorkItem item;
        item.page_begin = r.page_begin + c0;
        item.num_tokens = t1 - t0;
        item.position = r.position + t0;
        item.seq_begin = seq_begin;
        item.num_seqs = nseq;
        item.row_begin = row;
        item.num_rows = std::min(kMaxRowsPerItem, rows - row);
        item.slot_base = slot_base;
        plan.items.push_back(item);
      }
    }
  }
  // Longest items first: the tail of the launch is made of short items.
  std::stable_sort(plan.items.begin(), plan.items.end(),
                   [](const WorkItem& a, const WorkItem& b) {
                     return a.num_tokens > b.num_tokens;
                   });
  if (plan_options.interleave_shared_items) {
    plan.items = InterleaveSharedItems(plan.items);
  }
  if (plan.items.size() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan has ", plan.items.size(),
                     " items, more than one launch holds (65535)"));
  }
  plan.merge_offsets.push_back(0);
  for (int b = 0; b < batch; ++b) {
    if (per_seq[b].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", b, " attends over no tokens"));
    }
    plan.merge_slots.insert(plan.merge_slots.end(), per_seq[b].begin(),
                            per_seq[b].end());
    plan.merge_offsets.push_back(static_cast<int32_t>(plan.merge_slots.size()));
  }
  plan.fused_merge = plan_options.fused_merge;
  plan.wgmma_min_rows = plan_options.wgmma_shared_items ? kWgmmaMinRows : 0;
  if (plan.fused_merge) {
    // An item writes states of the sequences that own rows of its tile (a
    // sequence's group may straddle two row tiles of one piece).
    plan.merge_arrivals.assign(batch, 0);
    for (const WorkItem& it : plan.items) {
      const int first = it.row_begin / group;
      const int last = (it.row_begin + it.num_rows - 1) / group;
      for (int s = first; s <= last; ++s) {
        ++plan.merge_arrivals[plan.seq_ids[it.seq_begin + s]];
      }
    }
  }
  return plan;
}

int ValidTokens(int length, int chunk_index, int tpc) {
  return std::min(tpc, length - chunk_index * tpc);
}

}  // namespace

absl::StatusOr<AttentionPlan> BuildPagedPlan(const KvLayout& layout,
                                             const AttentionOptions& options,
                                             const PagedBatch& batch,
                                             const PlanOptions& plan_options) {
  absl::Status s = ValidateShapes(layout, options);
  if (!s.ok()) return s;
  s = ValidateBatch(layout, batch, 1);
  if (!s.ok()) return s;
  std::vector<Run> runs;
  for (int b = 0; b < batch.batch(); ++b) {
    runs.push_back(Run{batch.chunk_offsets[b],
                       batch.chunk_offsets[b + 1] - batch.chunk_offsets[b],
                       batch.lengths[b], 0, {b}});
  }
  return Finish(layout, options, batch.batch(),
                std::vector<const void*>(batch.chunks.begin(),
                                         batch.chunks.end()),
                runs, plan_options);
}

absl::StatusOr<AttentionPlan> BuildPrefixTreePlan(
    const KvLayout& layout, const AttentionOptions& options,
    const PagedBatch& batch, const PlanOptions& plan_options) {
  absl::Status s = ValidateShapes(layout, options);
  if (!s.ok()) return s;
  s = ValidateBatch(layout, batch, 1);
  if (!s.ok()) return s;
  const int tpc = layout.tokens_per_chunk;

  // Trie over (parent, chunk pointer, valid tokens). Node 0 is the root.
  struct Node {
    int32_t page = -1;  // index in pages (of the first sequence seen)
    int32_t depth = -1;
    int32_t valid = 0;
    std::vector<int32_t> seqs;
    std::vector<int32_t> children;
  };
  std::vector<Node> nodes(1);
  std::map<std::tuple<int32_t, const void*, int32_t>, int32_t> index;
  for (int b = 0; b < batch.batch(); ++b) {
    int32_t cur = 0;
    const int n = batch.chunk_offsets[b + 1] - batch.chunk_offsets[b];
    for (int c = 0; c < n; ++c) {
      const int32_t page = batch.chunk_offsets[b] + c;
      const int32_t valid = ValidTokens(batch.lengths[b], c, tpc);
      auto key = std::make_tuple(cur, batch.chunks[page], valid);
      auto it = index.find(key);
      int32_t next;
      if (it == index.end()) {
        next = static_cast<int32_t>(nodes.size());
        index.emplace(key, next);
        Node node;
        node.page = page;
        node.depth = c;
        node.valid = valid;
        nodes.push_back(std::move(node));
        nodes[cur].children.push_back(next);
      } else {
        next = it->second;
      }
      nodes[next].seqs.push_back(b);
      cur = next;
    }
  }

  // Compress chains with an unchanged sequence set into runs (depth first).
  std::vector<Run> runs;
  std::vector<int32_t> stack(nodes[0].children.rbegin(),
                             nodes[0].children.rend());
  while (!stack.empty()) {
    int32_t n = stack.back();
    stack.pop_back();
    Run run{nodes[n].page, 1, nodes[n].valid, nodes[n].depth * tpc,
            nodes[n].seqs};
    while (nodes[n].children.size() == 1 &&
           nodes[nodes[n].children[0]].seqs.size() == nodes[n].seqs.size() &&
           nodes[n].valid == tpc) {
      n = nodes[n].children[0];
      ++run.num_chunks;
      run.num_tokens += nodes[n].valid;
    }
    runs.push_back(std::move(run));
    stack.insert(stack.end(), nodes[n].children.rbegin(),
                 nodes[n].children.rend());
  }
  return Finish(layout, options, batch.batch(),
                std::vector<const void*>(batch.chunks.begin(),
                                         batch.chunks.end()),
                runs, plan_options);
}

absl::StatusOr<AttentionPlan> BuildRelayPlan(
    const KvLayout& layout, const AttentionOptions& options,
    std::span<const void* const> prefix_chunks, int prefix_length,
    const PagedBatch& context, const PlanOptions& plan_options) {
  absl::Status s = ValidateShapes(layout, options);
  if (!s.ok()) return s;
  s = ValidateBatch(layout, context, 0);
  if (!s.ok()) return s;
  const int tpc = layout.tokens_per_chunk;
  if (prefix_length <= 0) {
    return absl::InvalidArgumentError("relay prefix must have >= 1 token");
  }
  if (static_cast<int64_t>(prefix_chunks.size()) !=
      (prefix_length + tpc - 1) / tpc) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefix of ", prefix_length, " tokens needs ",
                     (prefix_length + tpc - 1) / tpc, " chunks, got ",
                     prefix_chunks.size()));
  }
  for (const void* p : prefix_chunks) {
    if (p == nullptr) return absl::InvalidArgumentError("null chunk pointer");
  }
  std::vector<const void*> pages(prefix_chunks.begin(), prefix_chunks.end());
  pages.insert(pages.end(), context.chunks.begin(), context.chunks.end());
  std::vector<Run> runs;
  Run prefix{0, static_cast<int32_t>(prefix_chunks.size()), prefix_length, 0,
             {}};
  for (int b = 0; b < context.batch(); ++b) prefix.seqs.push_back(b);
  runs.push_back(std::move(prefix));
  const int32_t base = static_cast<int32_t>(prefix_chunks.size());
  for (int b = 0; b < context.batch(); ++b) {
    if (context.lengths[b] == 0) continue;
    runs.push_back(Run{base + context.chunk_offsets[b],
                       context.chunk_offsets[b + 1] - context.chunk_offsets[b],
                       context.lengths[b], prefix_length, {b}});
  }
  return Finish(layout, options, context.batch(), std::move(pages), runs,
                plan_options);
}

}  // namespace strata::kernels
