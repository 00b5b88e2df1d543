// Prefill over cached chunks: shapes, validation and the host plan of the
// prefill attention kernel (plain C++, no CUDA: built and tested everywhere).
//
// A batch of sequences, each with num_new >= 0 new query tokens (a prefill
// of a returning conversation, or a decode step when num_new == 1) that
// attend over the sequence's KV: its cached history followed by the new
// tokens' own K/V, all in chunk slices of the store's layout
// (attention_types.h), read in place through a page table (CSR, as
// PagedBatch). The runtime writes the new tokens' K/V into chunk slots, so
// the page table simply continues into them; only the last chunk may be
// partial.
//
// Masking: new token i (0-based among the sequence's new tokens) is KV token
// history + i and sees KV tokens 0 .. history + i (all of the history, the
// new tokens up to itself). history = kv_length - num_new.
//
// Positional encoding (decoupled from the stored keys, options.apply_rope):
// keys are stored WITHOUT RoPE. Each page-table entry carries a position
// base: token t of that chunk is at position positions[entry] + t, so a
// truncated history re-based at new positions is reused as it is. The kernel
// rotates every key at its position and every query at the position of its
// own key (query i at the position of KV token history + i): the caller
// passes UNROTATED queries. Convention "rotate half" (GPT-NeoX / Llama), in
// fp32: for i in [0, head_dim / 2),
//   inv_freq_i = (float) pow((double) theta, -2 i / head_dim)
//   f = (float) position * inv_freq_i                (one fp32 multiply)
//   x'[i]       = x[i] cos f - x[i + d/2] sin f
//   x'[i + d/2] = x[i + d/2] cos f + x[i] sin f
// With apply_rope false nothing is rotated (keys and queries used as given).
//
// Tensors: queries and out [total_tokens][q_heads][head_dim] in the KV dtype
// (sequence b's tokens at rows query_offsets[b] .. query_offsets[b+1]);
// lse [total_tokens][q_heads] float, BASE 2 (attention_types.h).
#ifndef STRATA_KERNELS_PREFILL_PLAN_H_
#define STRATA_KERNELS_PREFILL_PLAN_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/attention_types.h"
#include "kernels/prefill_item.h"

namespace strata::kernels {

struct PrefillOptions {
  int num_q_heads = 0;          // a multiple of the layout's num_kv_heads
  float scale = 0.0f;           // 0 means 1/sqrt(head_dim)
  bool apply_rope = true;       // rotate keys and queries (see above)
  float rope_theta = 500000.0f; // Llama-3
  // RoPE cos/sin table: when the positions of a launch span at most this
  // many bytes of table ((max - min + 1) positions x head_dim / 2 x 8 bytes),
  // a pre-kernel fills the table in the workspace and the kernel reads it
  // instead of calling sincosf (same fp32 angles, same values); otherwise
  // (or 0) the kernel calls sincosf.
  int64_t max_rope_table_bytes = int64_t{64} << 20;
  // Split KV: while the launch has fewer than this many blocks (items x KV
  // heads), long tiles are cut into pieces of whole 64-token KV tiles (at
  // least kPrefillMinSplitTokens each) whose partial states a second kernel
  // merges. 0: never split. The default is 2 blocks per SM of an H100/H200,
  // for the variants that keep 2 blocks per SM; those that keep one
  // (PrefillBlocksPerSm) split below half of it (g128p at gqa 4096/512,
  // 128 blocks on 132 SMs, measured 1.6x faster unsplit than cut into 320
  // blocks).
  int split_target_blocks = 264;
  // Keys rotated ahead (RoPE on): a pre-kernel rotates the keys of every
  // page-table entry once into the workspace ([entries][kv_heads]
  // [tokens_per_chunk][head_dim], the dtype, same fp32 arithmetic as the
  // in-kernel rotation, so the same bits), and the attention kernel reads
  // them from there instead of rotating each K tile in every block that
  // reads it. kAuto: for kRows128WgmmaPipelined whenever the copy fits in
  // max_rotated_key_bytes (measured faster for decodes and short prefills
  // too); for the other kernels when the keys are read by at least two
  // query tiles on average (long prefills; not decodes or short prefills,
  // which read each key once) and the copy fits; kAhead: whenever it fits;
  // kInKernel: never.
  enum class KeyRotation { kAuto, kInKernel, kAhead };
  KeyRotation key_rotation = KeyRotation::kAuto;
  int64_t max_rotated_key_bytes = int64_t{1} << 30;
  // kRows128WgmmaPipelined only: load K / V tiles through tensor maps (TMA)
  // when the chunk slices share one pool of equal slots
  // (FindPrefillPagePool); false, or slices of no common pool: cp.async.
  bool tensor_map_loads = true;
  // Which attention kernel runs the plan (prefill.cuh, prefill_wide.cuh);
  // all give results within the same tolerances of the reference:
  //   kRows64: 64 query rows per block, 4 warps x 16 rows, 2-stage cp.async
  //     pipeline, 2 blocks per SM (the default).
  //   kRows128: 128 query rows per block, 8 warps x 16 rows, 3-stage
  //     pipeline, one __syncthreads per KV tile, 1 block per SM: half the
  //     K / V re-reads from L2 (and in-kernel key rotations) per query row.
  //   kRows128Wide: 128 query rows per block, 4 warps x 32 rows (each K / V
  //     fragment loaded from shared memory feeds two MMAs), 2-stage
  //     pipeline, one __syncthreads per KV tile, 2 blocks per SM.
  //   kRows128Wgmma: 128 query rows per block, 2 warpgroups x 64 rows on
  //     Hopper warpgroup MMAs (wgmma, sm_90a only), 64-token KV tiles,
  //     3-stage pipeline.
  //   kRows128WgmmaKv128: as kRows128Wgmma with 128-token KV tiles
  //     (m64n128 for Q K^T), 2-stage pipeline.
  //   kRows128WgmmaPipelined: the tiles of kRows128WgmmaKv128, each
  //     warpgroup's softmax of one KV tile overlapped with its own P V of
  //     the previous one (FlashAttention-3's intra-warpgroup pipelining;
  //     Q read from shared memory by descriptor).
  //   kAuto: the planner's choice, recorded in the plan: today
  //     kRows128WgmmaPipelined for every batch (measured fastest, or within
  //     2% of kRows64, on an H200 for 1 to 2048 new tokens over 1k to 32k
  //     keys, single-sequence batches).
  // The wgmma variants need an sm_90 device (Hopper): elsewhere the launch
  // runs kRows128Wide, which takes the same plan (128-row tiles, pieces
  // split at multiples of 64 keys).
  // The variant sets the rows per query tile (PrefillRowsPerTile), so it is
  // part of the plan.
  enum class KernelVariant {
    kRows64,
    kRows128,
    kRows128Wide,
    kRows128Wgmma,
    kRows128WgmmaKv128,
    kRows128WgmmaPipelined,
    kAuto
  };
  KernelVariant kernel_variant = KernelVariant::kRows64;

  float EffectiveScale(int head_dim) const;
};

// A batch of prefills (and decodes) as page tables. Sequence b uses chunk
// slices chunks[chunk_offsets[b] .. chunk_offsets[b+1]) for its kv_lengths[b]
// tokens (history then new tokens); positions[e] is the position of token 0
// of chunks[e] (empty span: positions run 0, 1, 2, ... along each sequence,
// i.e. positions[e] = (e - chunk_offsets[b]) * tokens_per_chunk). Its new
// tokens are query rows query_offsets[b] .. query_offsets[b+1].
// Chunk slices may be shared between sequences (and repeated). Pointers are
// not dereferenced by the planner.
struct PrefillBatch {
  std::span<const void* const> chunks;
  std::span<const int32_t> positions;      // chunks.size() entries, or empty
  std::span<const int32_t> chunk_offsets;  // batch + 1 entries
  std::span<const int32_t> kv_lengths;     // batch entries
  std::span<const int32_t> query_offsets;  // batch + 1 entries

  int batch() const { return static_cast<int>(kv_lengths.size()); }
  int total_tokens() const {
    return query_offsets.empty() ? 0 : query_offsets.back();
  }
};

// Query rows per tile (per block) of a kernel variant: 64 or 128; 0 for a
// value outside the enum.
int PrefillRowsPerTile(PrefillOptions::KernelVariant variant);

// The blocks of the variant's attention kernel that an SM (H100 / H200)
// keeps at once: 2 for kRows64 and kRows128Wide, 1 for the others; 0 for
// kAuto.
int PrefillBlocksPerSm(PrefillOptions::KernelVariant variant);

// The variant's short name ("base", "r128", "w128", "g128", "g128x128", "g128p", as
// prefill_bench --variants takes them) and the reverse (kInvalidArgument
// for an unknown name).
const char* PrefillKernelVariantName(PrefillOptions::KernelVariant variant);
absl::StatusOr<PrefillOptions::KernelVariant> ParsePrefillKernelVariant(
    absl::string_view name);

// Checks layout, options and batch. kInvalidArgument for unsupported
// layouts or options (including an unknown kernel_variant), inconsistent
// sizes or offsets, a page table with too few or too many chunks for its kv
// length, more new tokens than kv tokens, negative positions, null chunk
// pointers, or an empty batch; kOutOfRange for
// a position of a token that does not fit in 24 bits (fp32 positions must be
// exact: position + tokens_per_chunk <= 2^24).
absl::Status ValidatePrefill(const KvLayout& layout,
                             const PrefillOptions& options,
                             const PrefillBatch& batch);

// The host plan of one prefill launch: every sequence's page table with its
// position bases, and one item per tile of query rows
// (PrefillRowsPerTile(options.kernel_variant) rows), heaviest
// (longest causal KV extent) first. A plain value; it owns copies of the
// pointers. Thread-safe to read concurrently.
struct PrefillPlan {
  KvLayout layout;
  PrefillOptions options;
  int batch = 0;
  int total_tokens = 0;
  std::vector<const void*> pages;
  std::vector<int32_t> positions;  // one per page
  std::vector<PrefillItem> items;
  // Split KV (see PrefillItem): one record per split tile, and the partial
  // rows per KV head that its pieces write (0 when nothing is split).
  std::vector<PrefillMerge> merges;
  int32_t partial_rows = 0;
  // RoPE table rows for positions [rope_table_base, rope_table_base +
  // rope_table_rows); 0 rows: no table (RoPE off, or the span too large).
  int32_t rope_table_base = 0;
  int32_t rope_table_rows = 0;
  // Bytes of the rotated keys in the workspace (options.key_rotation); 0:
  // keys rotated in the attention kernel (or RoPE off).
  int64_t rotated_key_bytes = 0;

  // Statistics (computed): unique K+V bytes of distinct chunk slices, and
  // the attention FLOPs (2 matrix products, causal extents).
  int64_t unique_kv_bytes = 0;
  double flops = 0;

  int group() const { return options.num_q_heads / layout.num_kv_heads; }
};

// Validates (as ValidatePrefill) and plans. Sequences with no new tokens
// get no item.
inline constexpr int kPrefillMinSplitTokens = 256;
absl::StatusOr<PrefillPlan> BuildPrefillPlan(const KvLayout& layout,
                                             const PrefillOptions& options,
                                             const PrefillBatch& batch);

// inv_freq_i of the RoPE convention above (shared by the references).
float PrefillRopeInvFreq(float theta, int i, int head_dim);

// Chunk slices that all sit at base + i * stride (i < slots): one pool of
// equal slots, which a tensor map can address (the g128p kernel's TMA
// loads). slots == 0: the pointers have no such common stride (or it is
// not a multiple of 16 bytes, or smaller than a slice of slice_bytes).
struct PrefillPagePool {
  uintptr_t base = 0;
  int64_t stride = 0;  // bytes
  int64_t slots = 0;
};
PrefillPagePool FindPrefillPagePool(const std::vector<const void*>& pages, int64_t slice_bytes);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_PREFILL_PLAN_H_
