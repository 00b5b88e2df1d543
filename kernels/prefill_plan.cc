#include "kernels/prefill_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace strata::kernels {
namespace {

constexpr int64_t kMaxExactPosition = int64_t{1} << 24;

int64_t DefaultPosition(const PrefillBatch& batch, int b, int entry, int tpc) {
  return int64_t{entry - batch.chunk_offsets[b]} * tpc;
}

// Cuts the KV extent of tiles into pieces of whole 64-token tiles while the
// launch has fewer blocks (items x KV heads) than target_blocks: each tile
// into max(1, floor(its share of the work x target_blocks / kv_heads))
// pieces of one length (the last may be shorter; all but the last at least
// kPrefillMinSplitTokens), so that the long pieces fill about target_blocks
// blocks. Tiles too short for a share of their own stay whole, one block
// each on top of the target: they are the launch's last and shortest blocks
// (heaviest first). (One piece length for every tile would cut a 68-tile
// extent into 33 + 33 + 2 tiles: a third wave of blocks for 2 tiles of
// work.)
template <typename Extent>
void SplitLongTiles(int64_t target_blocks, int kv_heads, Extent extent,
                    PrefillPlan* plan) {
  const int64_t blocks = static_cast<int64_t>(plan->items.size()) * kv_heads;
  if (target_blocks <= 0 || blocks == 0 || blocks >= target_blocks) return;
  constexpr int kTile = kPrefillKvTile;  // KV tokens per kernel step
  int64_t work = 0;  // KV tiles of all items (per head)
  for (const PrefillItem& it : plan->items) work += (extent(it) + kTile - 1) / kTile;
  if (work == 0) return;
  const double per_head = static_cast<double>(target_blocks) / kv_heads;
  constexpr int kMinTiles = kPrefillMinSplitTokens / kTile;
  std::vector<PrefillItem> items;
  for (const PrefillItem& it : plan->items) {
    const int end = extent(it);
    const int tiles = (end + kTile - 1) / kTile;
    const int64_t want = static_cast<int64_t>(per_head * tiles / static_cast<double>(work));
    const int64_t most = std::max(1, tiles / kMinTiles);
    const int64_t cut = std::clamp<int64_t>(want, 1, most);
    const int piece_tiles = static_cast<int>((tiles + cut - 1) / cut);
    const int piece = piece_tiles * kTile;
    const int pieces = (tiles + piece_tiles - 1) / piece_tiles;
    if (pieces <= 1) {
      items.push_back(it);
      continue;
    }
    PrefillMerge merge;
    merge.q_offset = it.q_offset;
    merge.row_begin = it.row_begin;
    merge.num_rows = it.num_rows;
    merge.partial_row = plan->partial_rows;
    merge.num_pieces = pieces;
    plan->merges.push_back(merge);
    for (int p = 0; p < pieces; ++p) {
      PrefillItem part = it;
      part.kv_begin = p * piece;
      part.kv_stop = std::min(end, (p + 1) * piece);
      part.partial_row = plan->partial_rows + p * it.num_rows;
      items.push_back(part);
    }
    plan->partial_rows += pieces * it.num_rows;
  }
  plan->items = std::move(items);
}

}  // namespace

float PrefillOptions::EffectiveScale(int head_dim) const {
  if (scale != 0.0f) return scale;
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

int PrefillRowsPerTile(PrefillOptions::KernelVariant variant) {
  switch (variant) {
    case PrefillOptions::KernelVariant::kRows64:
      return kPrefillRowsPerTile;
    case PrefillOptions::KernelVariant::kRows128:
    case PrefillOptions::KernelVariant::kRows128Wide:
    case PrefillOptions::KernelVariant::kRows128Wgmma:
    case PrefillOptions::KernelVariant::kRows128WgmmaKv128:
    case PrefillOptions::KernelVariant::kRows128WgmmaPipelined:
      return kPrefillWideRowsPerTile;
  }
  return 0;
}

int PrefillBlocksPerSm(PrefillOptions::KernelVariant variant) {
  switch (variant) {
    case PrefillOptions::KernelVariant::kRows64:
    case PrefillOptions::KernelVariant::kRows128Wide:
      return 2;
    case PrefillOptions::KernelVariant::kRows128:
    case PrefillOptions::KernelVariant::kRows128Wgmma:
    case PrefillOptions::KernelVariant::kRows128WgmmaKv128:
    case PrefillOptions::KernelVariant::kRows128WgmmaPipelined:
      return 1;
    case PrefillOptions::KernelVariant::kAuto:
      break;
  }
  return 0;
}

const char* PrefillKernelVariantName(PrefillOptions::KernelVariant variant) {
  switch (variant) {
    case PrefillOptions::KernelVariant::kRows64:
      return "base";
    case PrefillOptions::KernelVariant::kRows128:
      return "r128";
    case PrefillOptions::KernelVariant::kRows128Wide:
      return "w128";
    case PrefillOptions::KernelVariant::kRows128Wgmma:
      return "g128";
    case PrefillOptions::KernelVariant::kRows128WgmmaKv128:
      return "g128x128";
    case PrefillOptions::KernelVariant::kRows128WgmmaPipelined:
      return "g128p";
  }
  return "unknown";
}

absl::StatusOr<PrefillOptions::KernelVariant> ParsePrefillKernelVariant(
    absl::string_view name) {
  for (PrefillOptions::KernelVariant v :
       {PrefillOptions::KernelVariant::kRows64,
        PrefillOptions::KernelVariant::kRows128,
        PrefillOptions::KernelVariant::kRows128Wide,
        PrefillOptions::KernelVariant::kRows128Wgmma,
        PrefillOptions::KernelVariant::kRows128WgmmaKv128,
        PrefillOptions::KernelVariant::kRows128WgmmaPipelined}) {
    if (name == PrefillKernelVariantName(v)) return v;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown prefill kernel variant '", name, "' (base, r128, w128, g128, g128x128, g128p)"));
}

PrefillPagePool FindPrefillPagePool(const std::vector<const void*>& pages,
                                    int64_t slice_bytes) {
  PrefillPagePool pool;
  if (pages.empty() || slice_bytes <= 0) return pool;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (const void* p : pages) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    lo = std::min(lo, a);
    hi = std::max(hi, a);
  }
  uint64_t stride = 0;  // gcd of the offsets from the lowest slice
  for (const void* p : pages) {
    uint64_t a = reinterpret_cast<uintptr_t>(p) - lo, b = stride;
    while (b != 0) a = std::exchange(b, a % b);
    stride = a;
  }
  if (stride == 0) stride = static_cast<uint64_t>(slice_bytes);  // one distinct slice
  constexpr uint64_t kMaxStride = uint64_t{1} << 39;  // tensor map strides < 2^40
  if (stride % 16 != 0 || stride < static_cast<uint64_t>(slice_bytes) || stride >= kMaxStride) {
    return pool;
  }
  const uint64_t slots = (hi - lo) / stride + 1;
  if (slots > (uint64_t{1} << 31)) return pool;
  pool.base = lo;
  pool.stride = static_cast<int64_t>(stride);
  pool.slots = static_cast<int64_t>(slots);
  return pool;
}

float PrefillRopeInvFreq(float theta, int i, int head_dim) {
  return static_cast<float>(
      std::pow(static_cast<double>(theta), -2.0 * i / head_dim));
}

absl::Status ValidatePrefill(const KvLayout& layout,
                             const PrefillOptions& options,
                             const PrefillBatch& batch) {
  AttentionOptions shape_options;
  shape_options.num_q_heads = options.num_q_heads;
  shape_options.scale = options.scale;
  shape_options.apply_rope = options.apply_rope;
  shape_options.rope_theta = options.rope_theta;
  absl::Status s = ValidateShapes(layout, shape_options);
  if (!s.ok()) return s;
  if (options.apply_rope && !std::isfinite(options.rope_theta)) {
    return absl::InvalidArgumentError("rope_theta must be finite");
  }
  if (options.kernel_variant != PrefillOptions::KernelVariant::kAuto &&
      PrefillRowsPerTile(options.kernel_variant) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown prefill kernel variant ",
        static_cast<int>(options.kernel_variant)));
  }
  const int b = batch.batch();
  if (b <= 0) return absl::InvalidArgumentError("empty batch");
  if (batch.chunk_offsets.size() != static_cast<size_t>(b) + 1 ||
      batch.query_offsets.size() != static_cast<size_t>(b) + 1) {
    return absl::InvalidArgumentError(
        "chunk_offsets and query_offsets must have batch+1 entries");
  }
  if (batch.chunk_offsets[0] != 0 ||
      batch.chunk_offsets[b] != static_cast<int64_t>(batch.chunks.size())) {
    return absl::InvalidArgumentError(
        "chunk_offsets must start at 0 and end at chunks.size()");
  }
  if (batch.query_offsets[0] != 0) {
    return absl::InvalidArgumentError("query_offsets must start at 0");
  }
  if (!batch.positions.empty() && batch.positions.size() != batch.chunks.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "positions has ", batch.positions.size(), " entries, chunks ",
        batch.chunks.size(), " (one position per chunk, or none)"));
  }
  const int tpc = layout.tokens_per_chunk;
  for (int i = 0; i < b; ++i) {
    const int32_t num_new = batch.query_offsets[i + 1] - batch.query_offsets[i];
    if (num_new < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("query_offsets decrease at sequence ", i));
    }
    const int32_t len = batch.kv_lengths[i];
    if (len < num_new || len < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " has kv length ", len, " < its ",
                       num_new, " new tokens"));
    }
    const int32_t n = batch.chunk_offsets[i + 1] - batch.chunk_offsets[i];
    const int32_t need = (len + tpc - 1) / tpc;
    if (n != need) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " of kv length ", len, " needs ", need,
                       " chunks, page table has ", n));
    }
    for (int e = batch.chunk_offsets[i]; e < batch.chunk_offsets[i + 1]; ++e) {
      const int64_t pos = batch.positions.empty()
                              ? DefaultPosition(batch, i, e, tpc)
                              : batch.positions[e];
      if (pos < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("negative position ", pos, " of chunk entry ", e));
      }
      if (pos + tpc > kMaxExactPosition) {
        return absl::OutOfRangeError(absl::StrCat(
            "position ", pos, " of chunk entry ", e,
            " is past 2^24 - tokens_per_chunk (fp32 positions)"));
      }
    }
  }
  for (const void* p : batch.chunks) {
    if (p == nullptr) return absl::InvalidArgumentError("null chunk pointer");
  }
  return absl::OkStatus();
}

absl::StatusOr<PrefillPlan> BuildPrefillPlan(const KvLayout& layout,
                                             const PrefillOptions& options,
                                             const PrefillBatch& batch) {
  absl::Status s = ValidatePrefill(layout, options, batch);
  if (!s.ok()) return s;
  PrefillPlan plan;
  plan.layout = layout;
  plan.options = options;
  if (options.kernel_variant == PrefillOptions::KernelVariant::kAuto) {
    // The pipelined 128-row wgmma kernel for every batch: since its split
    // pieces merge by one warp per row, it measured faster than the 64-row
    // tiles on an H200 for every single-sequence shape tried, short prefills
    // included (gqa 4096 / 128: 41 vs 59 us, 4096 / 7: 24.6 vs 31.8), or as
    // fast (gqa 4096 / 32, mha 1024 / 128: within 2%;
    // bench_results/h200/prefill_small_rows.log).
    plan.options.kernel_variant = PrefillOptions::KernelVariant::kRows128WgmmaPipelined;
  }
  plan.batch = batch.batch();
  plan.total_tokens = batch.total_tokens();
  plan.pages.assign(batch.chunks.begin(), batch.chunks.end());
  const int tpc = layout.tokens_per_chunk;
  plan.positions.resize(batch.chunks.size());
  for (int b = 0; b < plan.batch; ++b) {
    for (int e = batch.chunk_offsets[b]; e < batch.chunk_offsets[b + 1]; ++e) {
      plan.positions[e] = batch.positions.empty()
                              ? static_cast<int32_t>(DefaultPosition(batch, b, e, tpc))
                              : batch.positions[e];
    }
  }
  const int group = plan.group();
  const int tile_rows = PrefillRowsPerTile(plan.options.kernel_variant);
  for (int b = 0; b < plan.batch; ++b) {
    const int num_new = batch.query_offsets[b + 1] - batch.query_offsets[b];
    const int rows = num_new * group;
    const int history = batch.kv_lengths[b] - num_new;
    for (int r = 0; r < rows; r += tile_rows) {
      PrefillItem item;
      item.page_begin = batch.chunk_offsets[b];
      item.kv_length = batch.kv_lengths[b];
      item.history = history;
      item.q_offset = batch.query_offsets[b];
      item.row_begin = r;
      item.num_rows = std::min(tile_rows, rows - r);
      plan.items.push_back(item);
    }
    // Causal extents: token i reads history + i + 1 keys.
    const double keys = static_cast<double>(num_new) * history +
                        0.5 * static_cast<double>(num_new) * (num_new + 1);
    plan.flops += 4.0 * layout.head_dim * options.num_q_heads * keys;
  }
  // Heaviest tiles first: the KV extent of a tile's last row.
  auto extent = [group](const PrefillItem& it) {
    return std::min(it.kv_stop,
                    it.history + (it.row_begin + it.num_rows - 1) / group + 1) -
           it.kv_begin;
  };
  SplitLongTiles(int64_t{options.split_target_blocks} *
                     PrefillBlocksPerSm(plan.options.kernel_variant) / 2,
                 layout.num_kv_heads, extent, &plan);
  std::stable_sort(plan.items.begin(), plan.items.end(),
                   [&](const PrefillItem& a, const PrefillItem& b) {
                     return extent(a) > extent(b);
                   });
  if (options.apply_rope && !plan.positions.empty()) {
    const auto [lo, hi] =
        std::minmax_element(plan.positions.begin(), plan.positions.end());
    const int64_t rows = int64_t{*hi} + tpc - *lo;
    const int64_t bytes = rows * (layout.head_dim / 2) * 8;
    if (bytes <= options.max_rope_table_bytes) {
      plan.rope_table_base = *lo;
      plan.rope_table_rows = static_cast<int32_t>(rows);
    }
  }
  if (options.apply_rope &&
      options.key_rotation != PrefillOptions::KeyRotation::kInKernel) {
    // Key reads by query tiles (a split tile's pieces read disjoint keys).
    int64_t reads = 0, keys = 0;
    for (int b = 0; b < plan.batch; ++b) {
      const int64_t rows =
          int64_t{batch.query_offsets[b + 1] - batch.query_offsets[b]} * group;
      const int64_t tiles = (rows + tile_rows - 1) / tile_rows;
      if (tiles == 0) continue;
      reads += tiles * batch.kv_lengths[b];
      keys += batch.kv_lengths[b];
    }
    const int64_t bytes = static_cast<int64_t>(plan.pages.size()) *
                          layout.num_kv_heads * tpc * layout.head_dim *
                          static_cast<int64_t>(kKvElementBytes);
    // g128p: ahead for every batch, decodes included (measured faster or
    // as fast on an H200 for 1 to 2048 new tokens: gqa 1024 / 1 15.5 vs
    // 18.8 us, mha 16384 / 128 162 vs 191; key_rotation_sweep.log). The
    // other kernels: ahead when each key is read by two query tiles or more.
    const bool worth =
        options.key_rotation == PrefillOptions::KeyRotation::kAhead ||
        plan.options.kernel_variant == PrefillOptions::KernelVariant::kRows128WgmmaPipelined ||
        reads >= 2 * keys;
    if (keys > 0 && worth && bytes <= options.max_rotated_key_bytes) {
      plan.rotated_key_bytes = bytes;
    }
  }
  // Unique bytes: each distinct chunk slice once, at its largest use.
  absl::flat_hash_set<const void*> seen;
  const int64_t token_bytes =
      int64_t{2} * layout.num_kv_heads * layout.head_dim * kKvElementBytes;
  for (int b = 0; b < plan.batch; ++b) {
    for (int e = batch.chunk_offsets[b]; e < batch.chunk_offsets[b + 1]; ++e) {
      if (!seen.insert(batch.chunks[e]).second) continue;
      const int t0 = (e - batch.chunk_offsets[b]) * tpc;
      plan.unique_kv_bytes +=
          token_bytes * std::min(tpc, batch.kv_lengths[b] - t0);
    }
  }
  return plan;
}

}  // namespace strata::kernels
