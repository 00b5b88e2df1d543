// Partial decode attention over chunk slices with tensor-core MMA
// (mma.sync m16n8k16, fp16/bf16 in, fp32 accumulate).
//
// One block (4 warps) computes one WorkItem for one KV head: the item's query
// rows (sharing sequences x GQA group, up to 64; 16 per warp) against its KV
// tokens, read straight from the chunk slices (K at offset 0, V at
// kv_heads * tokens_per_chunk * head_dim) through a 3-stage cp.async pipeline
// of 64-token tiles. With <= 32 rows, warps also split each tile's tokens and
// merge their states at the end (each warp a share of the columns:
// MergeTokenSplits), so that a lone sequence's 16-row tile keeps four warps
// busy. Output: per row, the normalised partial output (fp32) and
// its base-2 log-sum-exp (see merge_state.cuh). With kFused, the block that
// writes the last partial states of a (sequence, KV head) also merges them
// (FusedMergeEpilogue): one launch instead of two.
//
// Shared memory (D = head_dim): Q tile 64 x D, then kStages x (K, V) tiles of
// 64 x D, 16-byte vectors XOR-swizzled by (row & 7) so that ldmatrix reads
// are free of bank conflicts.
//
// Items with many rows (args.wgmma_min_rows: a prefix shared by a batch of
// GQA sequences, 33-64 rows per KV head, 4x the MMA work per KV byte of a
// private item) run on Hopper warpgroup MMAs instead (PartialWgmmaItem,
// sm_90a builds only; with RoPE each K tile is rotated in place first): the
// block's four warps are one warpgroup of 64 rows; per 64-token tile
// S = Q K^T is m64n64k16 (both operands by descriptor) and O += P V
// m64n{D}k16 (the prefill kernels' softmax and P V
// pieces, in FlashAttention-3's order), Q and K / V tiles in the
// descriptors' 128-byte-swizzle layout, same pipeline and outputs.
#ifndef STRATA_KERNELS_ATTENTION_PARTIAL_CUH_
#define STRATA_KERNELS_ATTENTION_PARTIAL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/attention_launch.h"
#include "kernels/mma_ops.cuh"
#include "kernels/prefill_wgmma.cuh"
#include "kernels/wgmma_ops.cuh"
#include "kernels/work_item.h"

namespace strata::kernels::device {

template <int D>
struct PartialConfig {
  static constexpr int kTile = 64;       // KV tokens per pipeline stage
  static constexpr int kThreads = 128;   // 4 warps
  static constexpr int kStages = 3;
  static constexpr int kVecs = D / 8;    // 16-byte vectors per row
  static constexpr int kTileElems = kTile * D;
  // + 1024: PartialWgmmaItem aligns its tiles to 1024 bytes at run time
  // (2 blocks still fit an SM's 228 KiB).
  static constexpr int kSmemBytes = (kTileElems + kStages * 2 * kTileElems) * 2 + 1024;
  static_assert(4 * 16 * D * 4 + 2 * 4 * 2 * 32 * 4 <= kStages * 2 * kTileElems * 2,
                "cross-warp reduction must fit in the stage buffers");
};

// Element offset of 16-byte vector `vec` of row `row` in a swizzled tile.
template <int D>
__device__ __forceinline__ int Swz(int row, int vec) {
  return (row * (D / 8) + (vec ^ (row & 7))) * 8;
}

// One warp: its 16 query rows (A fragments qf) against NS x 16 tokens of a
// swizzled K / V tile starting at tok0; online softmax with the running max
// (m0, m1) and sums (l0, l1) of rows g and g + 8, output accumulators o.
// Tokens at or past tile_tokens are masked.
template <typename T, int D, int NS>
__device__ __forceinline__ void AttendStep(const T* sk, const T* sv, int tok0, int tile_tokens,
                                           float scale_log2, const uint32_t (&qf)[D / 16][4],
                                           float (&o)[D / 8][4], float& m0, float& m1, float& l0,
                                           float& l1) {
  using Ops = MmaOps<T>;
  const int lane = threadIdx.x % 32;
  const int t4 = lane % 4;
  const int mi = lane / 8;
  float s[2 * NS][4];
#pragma unroll
  for (int n = 0; n < 2 * NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int k = 0; k < D / 16; ++k) {
#pragma unroll
    for (int sub = 0; sub < NS; ++sub) {
      uint32_t b[4];
      Ldmatrix4(b, SmemAddr(sk + Swz<D>(tok0 + sub * 16 + (mi / 2) * 8 + lane % 8, k * 2 + (mi % 2))));
      Ops::Mma(s[2 * sub], qf[k], b[0], b[1]);
      Ops::Mma(s[2 * sub + 1], qf[k], b[2], b[3]);
    }
  }
  // Raw scores are scaled inside the exponent (scale > 0 keeps the max).
  if (tok0 + 16 * NS > tile_tokens) {  // warp-uniform: only a tile's tail
#pragma unroll
    for (int n = 0; n < 2 * NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (tok0 + n * 8 + t4 * 2 + (e & 1) >= tile_tokens) s[n][e] = -INFINITY;
      }
    }
  }
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int n = 0; n < 2 * NS; ++n) {
    mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
    mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float mn0 = fmaxf(m0, mx0 * scale_log2), mn1 = fmaxf(m1, mx1 * scale_log2);
  const float base0 = mn0 == -INFINITY ? 0.0f : mn0;
  const float base1 = mn1 == -INFINITY ? 0.0f : mn1;
  const float alpha0 = FastExp2(m0 - base0), alpha1 = FastExp2(m1 - base1);
  m0 = mn0;
  m1 = mn1;
  float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
  for (int n = 0; n < 2 * NS; ++n) {
    s[n][0] = FastExp2(fmaf(s[n][0], scale_log2, -base0));
    s[n][1] = FastExp2(fmaf(s[n][1], scale_log2, -base0));
    s[n][2] = FastExp2(fmaf(s[n][2], scale_log2, -base1));
    s[n][3] = FastExp2(fmaf(s[n][3], scale_log2, -base1));
    sum0 += s[n][0] + s[n][1];
    sum1 += s[n][2] + s[n][3];
  }
  l0 = l0 * alpha0 + sum0;
  l1 = l1 * alpha1 + sum1;
  // The running max rarely moves after the first tokens: skip the rescale
  // when no row of the warp needs it.
  if (__any_sync(0xffffffffu, alpha0 != 1.0f || alpha1 != 1.0f)) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][0] *= alpha0;
      o[j][1] *= alpha0;
      o[j][2] *= alpha1;
      o[j][3] *= alpha1;
    }
  }
#pragma unroll
  for (int sub = 0; sub < NS; ++sub) {
    const uint32_t a[4] = {Ops::Pack(s[2 * sub][0], s[2 * sub][1]),
                           Ops::Pack(s[2 * sub][2], s[2 * sub][3]),
                           Ops::Pack(s[2 * sub + 1][0], s[2 * sub + 1][1]),
                           Ops::Pack(s[2 * sub + 1][2], s[2 * sub + 1][3])};
#pragma unroll
    for (int j2 = 0; j2 < D / 16; ++j2) {
      uint32_t b[4];
      Ldmatrix4Trans(b, SmemAddr(sv + Swz<D>(tok0 + sub * 16 + (mi % 2) * 8 + lane % 8, j2 * 2 + mi / 2)));
      Ops::Mma(o[2 * j2], a, b[0], b[1]);
      Ops::Mma(o[2 * j2 + 1], a, b[2], b[3]);
    }
  }
}

// Fused merge: one warp merges the partial states of (sequence b, query head
// h) into out / lse, as MergePartialsKernel does (attention.cu), reading the
// states written by other blocks of this launch from L2 (ld.global.cg).
template <typename T, int D>
__device__ __forceinline__ void MergeOneHead(const PartialAttentionArgs& args, int b, int h,
                                             int lane) {
  constexpr int kPer = D / 32;
  const int begin = args.merge_offsets[b];
  const int n = args.merge_offsets[b + 1] - begin;
  const size_t first_slot =
      lane < n ? static_cast<size_t>(args.merge_slots[begin + lane]) + h : 0;
  float acc[kPer];
  const float lse = MergeStatesWarp<D, /*kFromL2=*/true>(
      args.partial_o, args.partial_lse, n, first_slot,
      [&](int k) { return static_cast<size_t>(args.merge_slots[begin + k]) + h; }, acc);
  const size_t w = static_cast<size_t>(b) * args.num_q_heads + h;
  T* out = static_cast<T*>(args.out) + w * D + lane * kPer;
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] = MmaOps<T>::FromFloat(acc[i]);
  if (args.lse != nullptr && lane == 0) args.lse[w] = lse;
}

// Fused merge epilogue of one block (all 128 threads), after its partial
// states are written: counts the block's arrival for every sequence that owns
// rows of its tile (KV head kvh); the block that completes a count merges
// that sequence's query heads of kvh and resets the count. `scratch`: shared
// memory for 1 + kMaxRowsPerItem ints, unused by now.
template <typename T, int D>
__device__ __forceinline__ void FusedMergeEpilogue(const PartialAttentionArgs& args,
                                                   const WorkItem& item, int kvh, int group,
                                                   int* scratch) {
  const int tid = threadIdx.x;
  // Release: this thread's partial states are visible device-wide before
  // any thread of the block counts the block's arrival.
  __threadfence();
  if (tid == 0) scratch[0] = 0;
  __syncthreads();
  const int first = item.row_begin / group;
  const int touched = (item.row_begin + item.num_rows - 1) / group - first + 1;  // <= 64
  if (tid < touched) {
    const int seq = args.seq_ids[item.seq_begin + first + tid];
    int* counter = args.arrivals + static_cast<size_t>(seq) * args.num_kv_heads + kvh;
    if (atomicAdd(counter, 1) == args.merge_arrivals[seq] - 1) {
      scratch[1 + atomicAdd(&scratch[0], 1)] = seq;
      atomicExch(counter, 0);  // all arrivals of this launch are in: ready for the next
    }
  }
  __syncthreads();
  const int n = scratch[0];
  if (n == 0) return;
  __threadfence();  // acquire: the other blocks' states are read below (from L2)
  const int warp = tid / 32, lane = tid % 32;
  for (int p = warp; p < n * group; p += PartialConfig<D>::kThreads / 32) {
    MergeOneHead<T, D>(args, scratch[1 + p / group], kvh * group + p % group, lane);
  }
}

// The item's first `rows` Q rows (zero-filled past num_rows) into sq in
// Layout (the mma.sync tiles' swizzle by default; the descriptors' layout
// for the wgmma items) by cp.async, one 16-byte vector per thread and step.
template <typename T, int D, typename Layout = PrefillSwzLayout<D>>
__device__ __forceinline__ void LoadItemQ(const PartialAttentionArgs& args, const WorkItem& item,
                                          int kvh, int group, int rows, T* sq) {
  constexpr int kVecs = D / 8;
  const T* q = static_cast<const T*>(args.queries);
  for (int i = threadIdx.x; i < rows * kVecs; i += PartialConfig<D>::kThreads) {
    const int r = i / kVecs, c = i % kVecs;
    const bool valid = r < item.num_rows;
    const T* src = q;
    if (valid) {
      const int row = item.row_begin + r;
      const int seq = args.seq_ids[item.seq_begin + row / group];
      const int qh = kvh * group + row % group;
      src = q + (static_cast<size_t>(seq) * args.num_q_heads + qh) * D + c * 8;
    }
    CpAsync16(SmemAddr(sq + Layout::Offset(r, c)), src, valid);
  }
}

// A block's K / V tile loads (64 tokens) for one item and KV head: each
// thread copies the same 16-byte column of rows r0, r0 + kRowStep, ... into
// Layout::Offset(row, column); tokens past the item's are zero-filled.
template <typename T, int D, typename Layout>
struct ItemTileLoader {
  static constexpr int kTile = PartialConfig<D>::kTile;
  static constexpr int kVecs = D / 8;
  static constexpr int kRowStep = PartialConfig<D>::kThreads / kVecs;
  static constexpr int kRowsPerThread = kTile / kRowStep;
  const T* const* pages;
  size_t head_offset, v_offset;
  int tpc, num_tokens, col, r0;
  bool tile_in_one_chunk;

  __device__ __forceinline__ ItemTileLoader(const PartialAttentionArgs& args,
                                            const WorkItem& item, int kvh)
      : pages(reinterpret_cast<const T* const*>(args.pages) + item.page_begin),
        head_offset(static_cast<size_t>(kvh) * args.tokens_per_chunk * D),
        v_offset(static_cast<size_t>(args.num_kv_heads) * args.tokens_per_chunk * D),
        tpc(args.tokens_per_chunk),
        num_tokens(item.num_tokens),
        col(static_cast<int>(threadIdx.x) % kVecs),
        r0(static_cast<int>(threadIdx.x) / kVecs),
        tile_in_one_chunk(args.tokens_per_chunk % kTile == 0) {}

  __device__ __forceinline__ void Load(int tile, T* sk, T* sv) const {
    const int t0 = tile * kTile;
    if (tile_in_one_chunk) {
      const T* base = pages[t0 / tpc] + head_offset + static_cast<size_t>(t0 % tpc) * D + col * 8;
#pragma unroll
      for (int k = 0; k < kRowsPerThread; ++k) {
        const int r = r0 + k * kRowStep;
        const bool valid = t0 + r < num_tokens;
        const T* src = base + (valid ? r * D : 0);
        CpAsync16(SmemAddr(sk + Layout::Offset(r, col)), src, valid);
        CpAsync16(SmemAddr(sv + Layout::Offset(r, col)), src + v_offset, valid);
      }
    } else {
      const T* src[kRowsPerThread];
#pragma unroll
      for (int k = 0; k < kRowsPerThread; ++k) {  // independent pointer loads first
        const int t = min(t0 + r0 + k * kRowStep, num_tokens - 1);
        src[k] = pages[t / tpc] + head_offset + static_cast<size_t>(t % tpc) * D + col * 8;
      }
#pragma unroll
      for (int k = 0; k < kRowsPerThread; ++k) {
        const int r = r0 + k * kRowStep;
        const bool valid = t0 + r < num_tokens;
        CpAsync16(SmemAddr(sk + Layout::Offset(r, col)), src[k], valid);
        CpAsync16(SmemAddr(sv + Layout::Offset(r, col)), src[k] + v_offset, valid);
      }
    }
  }

  // Tile `tile` into pipeline stage `stage` of the K / V stages at skv (K
  // then V, PartialConfig's tile each).
  __device__ __forceinline__ void LoadStage(int tile, int stage, T* skv) const {
    T* sk = skv + stage * 2 * PartialConfig<D>::kTileElems;
    Load(tile, sk, sk + PartialConfig<D>::kTileElems);
  }

  // The pipeline's first kStages - 1 tiles, one async group each (empty past
  // the item's last tile).
  __device__ __forceinline__ void Prologue(int num_tiles, T* skv) const {
#pragma unroll
    for (int s = 0; s < PartialConfig<D>::kStages - 1; ++s) {
      if (s < num_tiles) LoadStage(s, s, skv);
      CpAsyncCommit();
    }
  }
};

// Writes the partial states (normalised O, base-2 LSE) of rows r_local =
// rw * 16 + g (+ 8) of the item; o_at(half, j, e) is this thread's
// accumulator of row half, column j * 8 + (lane % 4) * 2 + e. Only the kJ
// column blocks of 8 from j0 on, and the LSE where write_lse (a warp that
// writes a share of the columns: MergeTokenSplits).
template <int D, int kJ = D / 8, typename OAt>
__device__ __forceinline__ void StorePartialRows(const PartialAttentionArgs& args,
                                                 const WorkItem& item, int kvh, int group, int rw,
                                                 float m0, float m1, float l0, float l1,
                                                 OAt o_at, int j0 = 0, bool write_lse = true) {
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int t4 = lane % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r_local = rw * 16 + g + half * 8;
    if (r_local >= item.num_rows) continue;
    const int row = item.row_begin + r_local;
    const int qh = kvh * group + row % group;
    const size_t slot =
        static_cast<size_t>(item.slot_base) + static_cast<size_t>(row / group) * args.num_q_heads + qh;
    const float l = half ? l1 : l0;
    const float m = half ? m1 : m0;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* dst = args.partial_o + slot * D + t4 * 2;
#pragma unroll
    for (int jj = 0; jj < kJ; ++jj) {
      const int j = j0 + jj;
      *reinterpret_cast<float2*>(dst + j * 8) =
          make_float2(o_at(half, j, 0) * inv, o_at(half, j, 1) * inv);
    }
    if (write_lse && t4 == 0) args.partial_lse[slot] = l > 0.0f ? m + log2f(l) : -INFINITY;
  }
}

// The partial states of rows rw * 16 + g (+ 8) of an item whose KV tiles
// were split by tokens over kSplits warps (warp rw + k * row_warps holds
// split k): every split's accumulators, running max and sum are in shared
// memory (red_o [warp][D/8 x 4][32], red_ml [warp][m0, m1, l0, l1][32]); each
// of the kSplits warps of the row group merges and writes its 1 / kSplits
// of the head_dim columns (warp ts: column blocks ts * D / 8 / kSplits ...),
// and warp ts = 0 the rows' log-sum-exp, so that no single warp merges them
// all while the others wait.
template <int D, int kSplits>
__device__ __forceinline__ void MergeTokenSplits(const PartialAttentionArgs& args,
                                                 const WorkItem& item, int kvh, int group,
                                                 int rw, int ts, int row_warps,
                                                 const float* red_o, const float* red_ml) {
  constexpr int kJ = D / 8 / kSplits;  // column blocks of 8 per warp
  const int lane = threadIdx.x % 32;
  float m[2][kSplits], w[2][kSplits];
  float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
  for (int k = 0; k < kSplits; ++k) {
    const int wk = rw + k * row_warps;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m[h][k] = red_ml[(wk * 4 + h) * 32 + lane];
      mx[h] = fmaxf(mx[h], m[h][k]);
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float base = mx[h] == -INFINITY ? 0.0f : mx[h];
#pragma unroll
    for (int k = 0; k < kSplits; ++k) {
      w[h][k] = exp2f(m[h][k] - base);
      l[h] += red_ml[((rw + k * row_warps) * 4 + 2 + h) * 32 + lane] * w[h][k];
    }
  }
  StorePartialRows<D, kJ>(
      args, item, kvh, group, rw, mx[0], mx[1], l[0], l[1],
      [&](int half, int j, int e) {
        float x = 0.0f;
#pragma unroll
        for (int k = 0; k < kSplits; ++k) {
          x += red_o[((rw + k * row_warps) * (D / 8) * 4 + j * 4 + half * 2 + e) * 32 + lane] *
               w[half][k];
        }
        return x;
      },
      ts * kJ, ts == 0);
}

#if STRATA_HAS_WGMMA
// One item on warpgroup MMAs (see the top of this file): the block's four
// warps are one warpgroup of 64 rows (zero past num_rows); Q and the K / V
// tiles of 64 tokens sit in PrefillWgmmaKvLayout<64> (Q by cp.async with
// tile 0, K / V through the same 3-stage cp.async pipeline), and both
// products read their operands from shared memory but P. FlashAttention-3's
// order within the warpgroup: iteration j issues S_j = Q K_j^T, then
// rescales O by the previous softmax's factors and issues O += P_{j-1}
// V_{j-1}, waits for S_j alone and runs its softmax while P V runs, then
// waits for P V, packs P_j and refills the stage of tile j - 1 (one block
// barrier per tile, after P V has read it).
template <typename T, int D, bool kFused>
__device__ __forceinline__ void PartialWgmmaItem(const PartialAttentionArgs& args,
                                                 const WorkItem& item,
                                                 unsigned char* smem_raw) {
  using Cfg = PartialConfig<D>;
  using Layout = PrefillWgmmaKvLayout<Cfg::kTile>;
  constexpr int kTile = Cfg::kTile;
  constexpr int kStages = Cfg::kStages;
  constexpr int kAtomBytes = Layout::kAtomBytes;
  static_assert(Cfg::kThreads == 128, "one warpgroup");
  unsigned char* const smem = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  T* const sq = reinterpret_cast<T*>(smem);
  T* const skv = sq + Cfg::kTileElems;  // 16 KiB (d128) or 8 KiB (d64) past sq: 1024-aligned
  const int kvh = blockIdx.x;
  const int group = args.num_q_heads / args.num_kv_heads;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int num_tiles = (item.num_tokens + kTile - 1) / kTile;

  // Q rows: the first async group, in the descriptors' layout.
  LoadItemQ<T, D, Layout>(args, item, kvh, group, kMaxRowsPerItem, sq);
  const ItemTileLoader<T, D, Layout> loader(args, item, kvh);
  loader.Prologue(num_tiles, skv);
  const uint32_t q_addr = SmemAddr(sq);
  const auto k_addr = [&](int tile) {
    return SmemAddr(skv + (tile % kStages) * 2 * Cfg::kTileElems);
  };
  const auto v_addr = [&](int tile) { return k_addr(tile) + Cfg::kTileElems * 2; };

  float o[D / 2];
#pragma unroll
  for (int j = 0; j < D / 2; ++j) o[j] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  float alpha0 = 1.0f, alpha1 = 1.0f;  // the last softmax's factors
  uint32_t p[kTile / 16][4];            // P of the previous tile
  const int row_g = warp * 16 + lane / 4;
  for (int j = 0; j <= num_tiles; ++j) {
    if (j < num_tiles) {
      CpAsyncWait<kStages - 2>();
      ProxyFenceShared();  // this thread's landed copies, before wgmma reads them
      __syncthreads();
      if (args.apply_rope) {
        // The K tile rotated in place as in the mma.sync path (no product is
        // in flight here: the last P V completed in the previous iteration).
        const int tile_tokens = min(kTile, item.num_tokens - j * kTile);
        const int pos0 = item.position + j * kTile;
        RotateTile<T, D, kTile, Cfg::kThreads, Layout, 4>(
            skv + (j % kStages) * 2 * Cfg::kTileElems, args.rope_table, args.rope_table_base,
            args.inv_freq, [&](int r) { return r < tile_tokens ? pos0 + r : -1; });
        ProxyFenceShared();  // the rotated keys, before wgmma reads them
        __syncthreads();
      }
    }
    float s[kTile / 2];
    const auto issue_s = [&] {
      const uint32_t ka = k_addr(j);
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        WgmmaN64SS<T>(s, WgmmaDesc(q_addr + (k / 4) * kAtomBytes + (k % 4) * 32, 16, 1024),
                      WgmmaDesc(ka + (k / 4) * kAtomBytes + (k % 4) * 32, 16, 1024),
                      k > 0 ? 1 : 0);
      }
      WgmmaCommit();
    };
    const auto issue_pv = [&] {
      PrefillWgmmaRescaleAll<D>(o, alpha0, alpha1);
      WgmmaFenceOperands(o);
      WgmmaFence();
      WgmmaPV<T, D, kTile>(o, p, v_addr(j - 1));
      WgmmaCommit();
    };
    // No causal limit: every row sees the item's tokens (< num_tokens).
    const auto softmax = [&] {
      WgmmaFenceOperands(s);
      const int t0 = j * kTile;
      PrefillWgmmaSoftmaxExp<kTile>(s, t0 + kTile > item.num_tokens, 1 << 30,
                                    item.num_tokens - t0, row_g, 1, args.scale_log2, m0, m1, l0,
                                    l1, alpha0, alpha1);
    };
    // Each case issues and waits for its products on one path (ptxas
    // serializes every wgmma of a kernel whose in-flight products cross a
    // branch).
    if (j > 0 && j < num_tiles) {  // S_j and P_{j-1} V_{j-1} in flight
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      WgmmaFence();
      issue_s();
      issue_pv();
      WgmmaWait<1>();
      softmax();
      WgmmaWait<0>();
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      PrefillWgmmaPackP<T, kTile>(s, p);
    } else if (j == 0) {  // the first tile (num_tiles >= 1)
      WgmmaFence();
      issue_s();
      WgmmaWait<0>();
      softmax();  // O is still zero: its factors apply from the next P V on
      PrefillWgmmaPackP<T, kTile>(s, p);
    } else {  // after the last tile
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      WgmmaFence();
      issue_pv();
      WgmmaWait<0>();
      WgmmaFenceOperands(o);
    }
    if (j < num_tiles) {
      // Every warp's P V of tile j - 1 has read its stage: refill it.
      __syncthreads();
      const int pre = j + kStages - 1;
      if (pre < num_tiles) loader.LoadStage(pre, pre % kStages, skv);
      CpAsyncCommit();
    }
  }
  CpAsyncWait<0>();
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  StorePartialRows<D>(args, item, kvh, group, warp, m0, m1, l0, l1,
                      [&](int half, int j, int e) { return o[4 * j + half * 2 + e]; });
  if constexpr (kFused) {
    __syncthreads();  // every warp is done with the Q tile, the merge's scratch
    FusedMergeEpilogue<T, D>(args, item, kvh, group, reinterpret_cast<int*>(sq));
  }
}
#endif  // STRATA_HAS_WGMMA

template <typename T, int D, bool kFused>
__global__ void __launch_bounds__(128, 2) PartialAttentionKernel(const PartialAttentionArgs args) {
  using Cfg = PartialConfig<D>;
  static_assert(Cfg::kTile == 64, "steps below assume 64-token tiles");
  constexpr int kTile = Cfg::kTile;
  constexpr int kStages = Cfg::kStages;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* const sq = reinterpret_cast<T*>(smem_raw);
  T* const skv = sq + Cfg::kTileElems;

  // Let the merge grid (a programmatic dependent) start once every block of
  // this grid has started; it waits for this grid's completion itself.
  LaunchDependents();
  const WorkItem item = args.items[blockIdx.y];
#if STRATA_HAS_WGMMA
  if (args.wgmma_min_rows > 0 && item.num_rows >= args.wgmma_min_rows) {
    PartialWgmmaItem<T, D, kFused>(args, item, smem_raw);
    return;
  }
#endif
  const int kvh = blockIdx.x;
  const int group = args.num_q_heads / args.num_kv_heads;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int row_warps = item.num_rows <= 16 ? 1 : (item.num_rows <= 32 ? 2 : 4);
  const int token_splits = 4 / row_warps;
  const int rw = warp % row_warps;
  const int ts = warp / row_warps;
  const int num_tiles = (item.num_tokens + kTile - 1) / kTile;

  // Q rows of this tile: first async group.
  LoadItemQ<T, D>(args, item, kvh, group, row_warps * 16, sq);
  const ItemTileLoader<T, D, PrefillSwzLayout<D>> loader(args, item, kvh);
  loader.Prologue(num_tiles, skv);

  uint32_t qf[D / 16][4];
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int pre = tile + kStages - 1;
    if (pre < num_tiles) loader.LoadStage(pre, pre % kStages, skv);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();
    __syncthreads();
    T* sk = skv + (tile % kStages) * 2 * Cfg::kTileElems;
    T* sv = sk + Cfg::kTileElems;
    if (tile == 0) {
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        const int row = rw * 16 + (lane % 16);
        Ldmatrix4(qf[k], SmemAddr(sq + Swz<D>(row, k * 2 + lane / 16)));
      }
    }
    const int tile_tokens = min(kTile, item.num_tokens - tile * kTile);
    if (args.apply_rope) {
      // Rotate this tile's keys in place ("rotate half" convention): 8
      // frequencies of a row per thread at a time, 16-byte vectors, cos / sin
      // from the plan's table (or sincosf), the prefill kernels' rotation
      // (RotateTile: the same angles and roundings, so the same bits). Rows
      // past the item's tokens are left alone (masked below).
      const int pos0 = item.position + tile * kTile;
      RotateTile<T, D, kTile, Cfg::kThreads, PrefillSwzLayout<D>, 4>(
          sk, args.rope_table, args.rope_table_base, args.inv_freq,
          [&](int r) { return r < tile_tokens ? pos0 + r : -1; });
      __syncthreads();
    }

    if (token_splits == 4) {
      // One 16-token step per warp and tile.
      if (ts * 16 < tile_tokens) {
        AttendStep<T, D, 1>(sk, sv, ts * 16, tile_tokens, args.scale_log2, qf, o, m0, m1, l0, l1);
      }
    } else if (token_splits == 2) {
      // One 32-token step per warp and tile.
      if (ts * 32 < tile_tokens) {
        AttendStep<T, D, 2>(sk, sv, ts * 32, tile_tokens, args.scale_log2, qf, o, m0, m1, l0, l1);
      }
    } else {
      // The whole 64-token tile in one step: four independent score chains.
      AttendStep<T, D, 4>(sk, sv, 0, tile_tokens, args.scale_log2, qf, o, m0, m1, l0, l1);
    }
    __syncthreads();  // the stage is refilled by the next iteration
  }
  CpAsyncWait<0>();

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);

  if (token_splits > 1) {  // block-uniform
    float* red_o = reinterpret_cast<float*>(skv);           // [warp][D/8*4][32]
    float* red_ml = red_o + 4 * (D / 8) * 4 * 32;            // [warp][4][32]
    __syncthreads();  // every warp is done with the stages
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) red_o[(warp * (D / 8) * 4 + j * 4 + e) * 32 + lane] = o[j][e];
    }
    red_ml[(warp * 4 + 0) * 32 + lane] = m0;
    red_ml[(warp * 4 + 1) * 32 + lane] = m1;
    red_ml[(warp * 4 + 2) * 32 + lane] = l0;
    red_ml[(warp * 4 + 3) * 32 + lane] = l1;
    __syncthreads();
    if (token_splits == 4) {
      MergeTokenSplits<D, 4>(args, item, kvh, group, rw, ts, row_warps, red_o, red_ml);
    } else {
      MergeTokenSplits<D, 2>(args, item, kvh, group, rw, ts, row_warps, red_o, red_ml);
    }
  } else {
    StorePartialRows<D>(args, item, kvh, group, rw, m0, m1, l0, l1,
                        [&](int half, int j, int e) { return o[j][half * 2 + e]; });
  }
  if constexpr (kFused) {
    FusedMergeEpilogue<T, D>(args, item, kvh, group, reinterpret_cast<int*>(sq));
  }
}

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_ATTENTION_PARTIAL_CUH_
