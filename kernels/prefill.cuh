// Prefill attention over chunk slices (FlashAttention-2 style) with tensor
// cores: mma.sync m16n8k16, fp16/bf16 in, fp32 accumulate.
//
// One block (4 warps) computes one PrefillItem for one KV head: up to 64
// query rows of one sequence (new tokens x GQA group, 16 rows per warp)
// against the sequence's KV tokens [0, kv_end), read straight from its chunk
// slices through a cp.async pipeline of 64-token tiles. Online softmax in
// base 2; the causal mask (row of new token i sees KV tokens < history + i
// + 1) is applied only in the tiles that reach past the warp's first row's
// limit, and a warp skips the tiles wholly past its last row's limit.
// RoPE (when enabled): each K tile is rotated in shared memory after it
// lands, the Q tile once before its fragments are loaded, 16 bytes at a
// time, with cos / sin from the launch's table (PrefillRopeTableKernel) or,
// without one, from sincosf (same values). With keys rotated ahead
// (PrefillRotateKeysKernel, for launches whose keys are read by several
// query tiles) K tiles come rotated from the workspace copy and only Q is
// rotated here; V is never rotated.
// Output: normalised rows in the dtype and their base-2 log-sum-exp or, for
// a piece of a split tile, fp32 partial states that PrefillMergeKernel
// combines.
//
// Shared memory (D = head_dim): Q tile 64 x D, then kStages x (K, V) tiles of
// 64 x D, 16-byte vectors XOR-swizzled by (row & 7) (conflict-free ldmatrix).
#ifndef STRATA_KERNELS_PREFILL_CUH_
#define STRATA_KERNELS_PREFILL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/merge_state.cuh"
#include "kernels/fast_div.h"
#include "kernels/mma_ops.cuh"
#include "kernels/prefill_item.h"
#include "kernels/prefill_launch.h"

namespace strata::kernels::device {

template <int D>
struct PrefillConfig {
  static constexpr int kTile = 64;      // KV tokens per stage, Q rows per block
  static constexpr int kThreads = 128;  // 4 warps x 16 rows
  static constexpr int kStages = 2;
  static constexpr int kVecs = D / 8;   // 16-byte vectors per row
  static constexpr int kTileElems = kTile * D;
  static constexpr int kSmemBytes = (kTileElems + kStages * 2 * kTileElems) * 2;
  static_assert(kTile == kPrefillRowsPerTile, "one Q tile per item");
  static_assert(kTile == kPrefillKvTile, "split pieces start at whole KV tiles");
  static_assert(kThreads % (D / 2) == 0, "each thread rotates one frequency");
};

template <int D>
__device__ __forceinline__ int PrefillSwz(int row, int vec) {
  return (row * (D / 8) + (vec ^ (row & 7))) * 8;
}

// RoPE cos/sin table (PrefillRopeTableKernel, prefill.cu: defined once, as
// this header is also included by attention.cu): row p - base holds
// (cos f, sin f) of f = (float) p * inv_freq_i for i < D / 2, computed with
// sincosf exactly as the kernels would (so the table changes no result).

// cos / sin of 8 frequencies j * 8 .. j * 8 + 8 at position `pos`: from
// `table` (rows indexed by position - base) or, without a table, from
// sincosf (the table's values: PrefillRopeTableKernel).
template <int D>
__device__ __forceinline__ void RopeAngles(float (&cs)[8], float (&sn)[8], int pos, int j,
                                           const float2* __restrict__ table, int base,
                                           const float* __restrict__ inv_freq) {
  if (table != nullptr) {
    const float4* t = reinterpret_cast<const float4*>(
        table + static_cast<size_t>(pos - base) * (D / 2) + j * 8);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float4 v = __ldg(t + k);
      cs[2 * k] = v.x;
      sn[2 * k] = v.y;
      cs[2 * k + 1] = v.z;
      sn[2 * k + 1] = v.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      sincosf(__fmul_rn(static_cast<float>(pos), __ldg(inv_freq + j * 8 + k)), &sn[k], &cs[k]);
    }
  }
}

// Rotates 8 frequencies of one row by cs / sn (RopeAngles): a holds
// elements j * 8 .. j * 8 + 8 of the first half, b the same of the second
// half. Explicit fp32 roundings (no contraction choices left to the
// compiler), so every caller produces the same bits.
template <typename T>
__device__ __forceinline__ void RotateVectorsBy(uint4& a, uint4& b, const float (&cs)[8],
                                                const float (&sn)[8]) {
  using Ops = MmaOps<T>;
  T* x1 = reinterpret_cast<T*>(&a);
  T* x2 = reinterpret_cast<T*>(&b);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float f1 = Ops::ToFloat(x1[k]), f2 = Ops::ToFloat(x2[k]);
    x1[k] = Ops::FromFloat(__fmaf_rn(f1, cs[k], -__fmul_rn(f2, sn[k])));
    x2[k] = Ops::FromFloat(__fmaf_rn(f2, cs[k], __fmul_rn(f1, sn[k])));
  }
}

// Rotates 8 frequencies of one row at position `pos` (RopeAngles, then
// RotateVectorsBy).
template <typename T, int D>
__device__ __forceinline__ void RotateVectors(uint4& a, uint4& b, int pos, int j,
                                              const float2* __restrict__ table, int base,
                                              const float* __restrict__ inv_freq) {
  float cs[8], sn[8];
  RopeAngles<D>(cs, sn, pos, j, table, base, inv_freq);
  RotateVectorsBy<T>(a, b, cs, sn);
}

// The shared-memory layout of the mma.sync kernels' tiles (PrefillSwz):
// Offset(row, vec) is the element offset of a row's 16-byte vector.
template <int D>
struct PrefillSwzLayout {
  static __device__ __forceinline__ int Offset(int row, int vec) { return PrefillSwz<D>(row, vec); }
};

// Rotates the rows r in [0, kRows) of a tile in `Layout` with
// position_of(r) >= 0 (a position; < 0: row left alone), by the block's
// kThreads threads. A thread's unit is one row's 16-byte vector j of the
// first half and vector j + D / 16 of the second half (8 frequencies).
template <typename T, int D, int kRows, int kThreads = PrefillConfig<D>::kThreads,
          typename Layout = PrefillSwzLayout<D>, int kBatch = 1, typename PositionOf>
__device__ __forceinline__ void RotateTile(T* tile, const float2* __restrict__ table, int base,
                                           const float* __restrict__ inv_freq,
                                           PositionOf position_of) {
  constexpr int kPairs = D / 16;
  constexpr int kUnits = kRows * kPairs;
  if constexpr (kBatch == 1) {  // one unit at a time (the wide kernel spills with batches)
    for (int u = threadIdx.x; u < kUnits; u += kThreads) {
      const int r = u / kPairs;
      const int j = u % kPairs;
      const int pos = position_of(r);
      if (pos < 0) continue;
      uint4* p1 = reinterpret_cast<uint4*>(tile + Layout::Offset(r, j));
      uint4* p2 = reinterpret_cast<uint4*>(tile + Layout::Offset(r, j + kPairs));
      uint4 a = *p1, b = *p2;
      RotateVectors<T, D>(a, b, pos, j, table, base, inv_freq);
      *p1 = a;
      *p2 = b;
    }
  } else {
    // kBatch units at a time: their positions, then their cos / sin, are
    // loaded before any is used, so a tile waits for two rounds of loads per
    // batch rather than per unit (the rotation sits between a K tile's
    // arrival and its product); 16 more registers per unit of the batch.
    for (int u0 = threadIdx.x; u0 < kUnits; u0 += kBatch * kThreads) {
      int pos[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int u = u0 + i * kThreads;
        pos[i] = u < kUnits ? position_of(u / kPairs) : -1;
      }
      float cs[kBatch][8], sn[kBatch][8];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        if (pos[i] >= 0) {
          RopeAngles<D>(cs[i], sn[i], pos[i], (u0 + i * kThreads) % kPairs, table, base, inv_freq);
        }
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        if (pos[i] < 0) continue;
        const int u = u0 + i * kThreads;
        const int r = u / kPairs;
        const int j = u % kPairs;
        uint4* p1 = reinterpret_cast<uint4*>(tile + Layout::Offset(r, j));
        uint4* p2 = reinterpret_cast<uint4*>(tile + Layout::Offset(r, j + kPairs));
        uint4 a = *p1, b = *p2;
        RotateVectorsBy<T>(a, b, cs[i], sn[i]);
        *p1 = a;
        *p2 = b;
      }
    }
  }
}

// One block's work, as every prefill kernel (PrefillKernel, PrefillWideKernel,
// PrefillWgmmaKernel) sets it up: the item args.items[blockIdx.x] for KV
// head blockIdx.y, where its K / V tokens are, and the loads, rotations and
// row epilogue the kernels share. Per thread; constant after construction.
// Chunk slices: page table entry e of the sequence (pages[e]) holds
// [num_kv_heads][tpc][D] keys then as many values (v_offset further).
// A thread's share of every K / V tile load (PrefillBlock::LoadKv): its
// 16-byte column, first row and the shared-memory byte offsets of its rows
// in Layout, computed once per block and kept in registers across the KV
// loop (recomputed per tile, they cost the wgmma kernel 3% at long
// prefills), and the division by tokens per chunk that finds a token's
// chunk entry (FastDiv: a multiply-high instead of an integer division per
// row and tile). Not in PrefillBlock: the wide kernel, at 255 registers,
// spills with them.
template <int D, int kTile, int kThreads, typename Layout>
struct PrefillKvSlots {
  static constexpr int kVecs = D / 8;
  static constexpr int kRowStep = kThreads / kVecs;
  static constexpr int kRowsPerThread = kTile / kRowStep;
  static_assert(kThreads % kVecs == 0 && kTile % kRowStep == 0, "whole rows per pass");
  int col, r0;
  uint32_t offset[kRowsPerThread];
  FastDiv tpc_div;
  __device__ __forceinline__ explicit PrefillKvSlots(int tokens_per_chunk)
      : col(static_cast<int>(threadIdx.x) % kVecs),
        r0(static_cast<int>(threadIdx.x) / kVecs),
        tpc_div(static_cast<uint32_t>(tokens_per_chunk)) {
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      offset[k] = static_cast<uint32_t>(Layout::Offset(r0 + k * kRowStep, col) * 2);
    }
  }
  // The chunk entry of KV token t (t / tokens per chunk; t >= 0).
  __device__ __forceinline__ int Entry(int t) const {
    return static_cast<int>(tpc_div.Div(static_cast<uint32_t>(t)));
  }
};

template <typename T, int D>
struct PrefillBlock {
  static constexpr int kVecs = D / 8;  // 16-byte vectors per row

  __device__ __forceinline__ explicit PrefillBlock(const PrefillArgs& a)
      : item(a.items[blockIdx.x]),
        kvh(blockIdx.y),
        group(a.num_q_heads / a.num_kv_heads),
        tpc(a.tokens_per_chunk),
        head_offset(static_cast<size_t>(kvh) * tpc * D),
        v_offset(static_cast<size_t>(a.num_kv_heads) * tpc * D),
        pages(reinterpret_cast<const T* const*>(a.pages) + item.page_begin),
        rot_keys(a.rotated_keys == nullptr
                     ? nullptr
                     : static_cast<const T*>(a.rotated_keys) +
                           (static_cast<size_t>(item.page_begin) * a.num_kv_heads + kvh) * tpc *
                               D),
        rot_stride(static_cast<size_t>(a.num_kv_heads) * tpc * D),
        rotate_k(a.apply_rope && rot_keys == nullptr),
        positions(a.positions + item.page_begin),
        last_row(item.row_begin + item.num_rows - 1),
        kv_end(min(item.kv_stop, item.history + last_row / group + 1)) {}

  // Position of the sequence's KV token t: its entry's position + slot.
  __device__ __forceinline__ int Position(int t) const { return positions[t / tpc] + t % tpc; }

  // Q rows r < kRows of the tile (zero-filled past num_rows) by cp.async
  // into sq (in Layout; PrefillSwz by default), by kThreads threads;
  // uncommitted (they go with the first KV tile's async group).
  template <int kRows, int kThreads, typename Layout = PrefillSwzLayout<D>>
  __device__ __forceinline__ void LoadQ(const PrefillArgs& args, T* sq) const {
    const T* q = static_cast<const T*>(args.queries);
    for (int i = threadIdx.x; i < kRows * kVecs; i += kThreads) {
      const int r = i / kVecs, c = i % kVecs;
      const bool valid = r < item.num_rows;
      const T* src = q;
      if (valid) {
        const int row = item.row_begin + r;
        const int qh = kvh * group + row % group;
        src = q + (static_cast<size_t>(item.q_offset + row / group) * args.num_q_heads + qh) * D +
              c * 8;
      }
      CpAsync16(SmemAddr(sq + Layout::Offset(r, c)), src, valid);
    }
  }

  // KV tokens t0 .. t0 + kTile - 1 by cp.async, by the kThreads threads of
  // `slots` (each one 16-byte column of every kThreads / kVecs-th row): K
  // into sk (from rot_keys when rotated ahead), V into sv, both at the
  // slots' Layout offsets; rows at or past kv_end zero-filled (addresses
  // clamped to kv_end - 1). Uncommitted. kLoadK / kLoadV: only the keys
  // (sv unused) or only the values (sk unused).
  template <bool kLoadK = true, bool kLoadV = true, typename Slots>
  __device__ __forceinline__ void LoadKv(const Slots& slots, int t0, T* sk, T* sv) const {
    constexpr int kRowStep = Slots::kRowStep;
    constexpr int kRowsPerThread = Slots::kRowsPerThread;
    const T* src[kRowsPerThread];
    // Keys alone, rotated ahead: no chunk slice is read.
    const bool need_pages = kLoadV || rot_keys == nullptr;
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {  // independent pointer loads first
      const int t = min(t0 + slots.r0 + k * kRowStep, kv_end - 1);
      const int e = slots.Entry(t);
      src[k] = need_pages
                   ? pages[e] + head_offset + static_cast<size_t>(t - e * tpc) * D + slots.col * 8
                   : nullptr;
    }
    const uint32_t k_base = SmemAddr(sk), v_base = SmemAddr(sv);
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int r = slots.r0 + k * kRowStep;
      const bool valid = t0 + r < kv_end;
      if constexpr (kLoadK) {
        const T* ksrc = src[k];
        if (rot_keys != nullptr) {
          const int t = min(t0 + r, kv_end - 1);
          const int e = slots.Entry(t);
          ksrc = rot_keys + e * rot_stride + static_cast<size_t>(t - e * tpc) * D + slots.col * 8;
        }
        CpAsync16(k_base + slots.offset[k], ksrc, valid);
      }
      if constexpr (kLoadV) CpAsync16(v_base + slots.offset[k], src[k] + v_offset, valid);
    }
  }

  // RoPE of the Q tile sq (kRows rows in Layout): row r at the
  // position of its token, history + (row_begin + r) / group; rows past
  // num_rows left alone.
  template <int kRows, int kThreads, typename Layout = PrefillSwzLayout<D>>
  __device__ __forceinline__ void RotateQ(const PrefillArgs& args, T* sq) const {
    RotateTile<T, D, kRows, kThreads, Layout>(sq, args.rope_table, args.rope_table_base, args.inv_freq,
                                      [&](int r) {
                                        if (r >= item.num_rows) return -1;
                                        return Position(item.history +
                                                        (item.row_begin + r) / group);
                                      });
  }

  // RoPE of the K tile sk (in Layout) holding tokens t0 ..; tokens at or
  // past kv_end left alone; kBatch as RotateTile's.
  template <int kTile, int kThreads, typename Layout, int kBatch = 1>
  __device__ __forceinline__ void RotateK(const PrefillArgs& args, T* sk, int t0) const {
    RotateTile<T, D, kTile, kThreads, Layout, kBatch>(sk, args.rope_table, args.rope_table_base,
                                              args.inv_freq, [&](int r) {
                                                const int t = t0 + r;
                                                if (t >= kv_end) return -1;
                                                return Position(t);
                                              });
  }

  // The epilogue of the tile's row r_local (skipped past num_rows), this
  // lane's columns j * 8 + (lane % 4) * 2 + e (j < D / 8, e < 2; the mma
  // accumulator layout) holding the unnormalised o(j, e), with the row's
  // running max m and whole sum l (reduced over the lane quad): for a piece
  // of a split tile its fp32 partial state, otherwise the normalised row in
  // the dtype and, when args.lse, its base-2 log-sum-exp.
  template <typename RowValues>
  __device__ __forceinline__ void StoreRow(const PrefillArgs& args, int r_local, float m, float l, RowValues o) const {
    if (r_local >= item.num_rows) return;
    const int t4 = threadIdx.x % 4;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    if (item.partial_row >= 0) {  // one piece of a split tile: fp32 state
      const size_t prow = static_cast<size_t>(kvh) * args.partial_rows + item.partial_row + r_local;
      float* dst = args.partial_out + prow * D + t4 * 2;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        *reinterpret_cast<float2*>(dst + j * 8) = make_float2(o(j, 0) * inv, o(j, 1) * inv);
      }
      if (t4 == 0) args.partial_lse[prow] = l > 0.0f ? m + log2f(l) : -INFINITY;
      return;
    }
    const int row = item.row_begin + r_local;
    const int qh = kvh * group + row % group;
    const size_t dst_row = static_cast<size_t>(item.q_offset + row / group) * args.num_q_heads + qh;
    T* dst = static_cast<T*>(args.out) + dst_row * D + t4 * 2;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const uint32_t packed = MmaOps<T>::Pack(o(j, 0) * inv, o(j, 1) * inv);
      *reinterpret_cast<uint32_t*>(dst + j * 8) = packed;
    }
    if (t4 == 0 && args.lse != nullptr) args.lse[dst_row] = l > 0.0f ? m + log2f(l) : -INFINITY;
  }

  // The epilogue of a warp's 16 rows, row0 + lane / 4 and 8 below it:
  // their sums reduced over the lane quad, then StoreRow for each; o(half,
  // j, e) is the accumulator of column j * 8 + (lane % 4) * 2 + e of row
  // half (0: the first, 1: 8 below).
  template <typename Values>
  __device__ __forceinline__ void StoreWarpRows(const PrefillArgs& args, int row0, float m0,
                                                float m1, float l0, float l1, Values o) const {
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const int g = (threadIdx.x % 32) / 4;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      StoreRow(args, row0 + g + half * 8, half ? m1 : m0, half ? l1 : l0,
               [&](int j, int e) { return o(half, j, e); });
    }
  }

  const PrefillItem item;
  const int kvh;
  const int group;  // query heads per KV head
  const int tpc;    // tokens per chunk slice
  const size_t head_offset;  // this head's keys in an entry's slice
  const size_t v_offset;     // values after keys in a slice
  const T* const* const pages;  // the sequence's entries
  // Keys rotated ahead: this sequence's entries for this head, entry stride
  // rot_stride; nullptr when not rotated ahead.
  const T* const rot_keys;
  const size_t rot_stride;
  const bool rotate_k;  // RoPE on, keys rotated in the kernel
  const int32_t* const positions;  // the sequence's entries' first positions
  const int last_row;              // the tile's last row (of the sequence)
  const int kv_end;                // KV tokens [kv_begin, kv_end) are read
};

// Keys rotated ahead (PrefillArgs::rotated_keys): every token slot of every
// page-table entry and KV head, rotated at positions[entry] + slot, written
// to rotated_keys [num_pages][num_kv_heads][tokens_per_chunk][D]. Slots past
// a sequence's kv length are rotated too (never read). One thread per token
// slot, 8-frequency unit and group of kPrefillRotateHeads KV heads,
// grid-stride: it reads that unit's cos / sin once for the group's heads (a
// warp covers 4 slots x 16 units of one head, 1 KiB of contiguous keys).
// Lets the attention kernel, launched as its programmatic dependent
// (GridDependencyWait before its first read), be scheduled as the last
// rotation blocks run.
inline constexpr int kPrefillRotateThreads = 256;
inline constexpr int kPrefillRotateHeads = 4;

template <typename T, int D>
__global__ void __launch_bounds__(kPrefillRotateThreads)
    PrefillRotateKeysKernel(const PrefillArgs args) {
  LaunchDependents();
  constexpr int kPairs = D / 16;
  const int tpc = args.tokens_per_chunk;
  const int heads = args.num_kv_heads;
  const int head_groups = (heads + kPrefillRotateHeads - 1) / kPrefillRotateHeads;
  const int64_t units = static_cast<int64_t>(args.num_pages) * head_groups * tpc * kPairs;
  const T* const* pages = reinterpret_cast<const T* const*>(args.pages);
  T* const out = static_cast<T*>(args.rotated_keys);
  const size_t head_stride = static_cast<size_t>(tpc) * D;
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(u % kPairs);
    const int64_t r = u / kPairs;  // ((entry, head group), slot)
    const int slot = static_cast<int>(r % tpc);
    const int64_t eg = r / tpc;
    const int e = static_cast<int>(eg / head_groups);
    const int h0 = static_cast<int>(eg - static_cast<int64_t>(e) * head_groups) *
                   kPrefillRotateHeads;
    float cs[8], sn[8];
    RopeAngles<D>(cs, sn, args.positions[e] + slot, j, args.rope_table, args.rope_table_base,
                  args.inv_freq);
    const size_t in_head = static_cast<size_t>(slot) * D + j * 8;
    const T* src = pages[e] + in_head;
    T* dst = out + static_cast<size_t>(e) * heads * head_stride + in_head;
#pragma unroll
    for (int h = h0; h < h0 + kPrefillRotateHeads; ++h) {
      if (h < heads) {
        uint4 a = *reinterpret_cast<const uint4*>(src + h * head_stride);
        uint4 b = *reinterpret_cast<const uint4*>(src + h * head_stride + kPairs * 8);
        RotateVectorsBy<T>(a, b, cs, sn);
        *reinterpret_cast<uint4*>(dst + h * head_stride) = a;
        *reinterpret_cast<uint4*>(dst + h * head_stride + kPairs * 8) = b;
      }
    }
  }
}

// One warp, its 16 rows (A fragments qf) against a 64-token K / V tile;
// row g sees tile tokens < lim0, row g + 8 tokens < lim1 (when mask).
template <typename T, int D>
__device__ __forceinline__ void PrefillStep(const T* sk, const T* sv, bool mask, int lim0,
                                            int lim1, float scale_log2,
                                            const uint32_t (&qf)[D / 16][4], float (&o)[D / 8][4],
                                            float& m0, float& m1, float& l0, float& l1) {
  using Ops = MmaOps<T>;
  const int lane = threadIdx.x % 32;
  const int t4 = lane % 4;
  const int mi = lane / 8;
  float s[8][4];
#pragma unroll
  for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int k = 0; k < D / 16; ++k) {
#pragma unroll
    for (int sub = 0; sub < 4; ++sub) {
      uint32_t b[4];
      Ldmatrix4(b, SmemAddr(sk + PrefillSwz<D>(sub * 16 + (mi / 2) * 8 + lane % 8, k * 2 + (mi % 2))));
      Ops::Mma(s[2 * sub], qf[k], b[0], b[1]);
      Ops::Mma(s[2 * sub + 1], qf[k], b[2], b[3]);
    }
  }
  if (mask) {
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (n * 8 + t4 * 2 + (e & 1) >= (e < 2 ? lim0 : lim1)) s[n][e] = -INFINITY;
      }
    }
  }
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int n = 0; n < 8; ++n) {
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
  for (int n = 0; n < 8; ++n) {
    s[n][0] = FastExp2(fmaf(s[n][0], scale_log2, -base0));
    s[n][1] = FastExp2(fmaf(s[n][1], scale_log2, -base0));
    s[n][2] = FastExp2(fmaf(s[n][2], scale_log2, -base1));
    s[n][3] = FastExp2(fmaf(s[n][3], scale_log2, -base1));
    sum0 += s[n][0] + s[n][1];
    sum1 += s[n][2] + s[n][3];
  }
  l0 = l0 * alpha0 + sum0;
  l1 = l1 * alpha1 + sum1;
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
  for (int sub = 0; sub < 4; ++sub) {
    const uint32_t a[4] = {Ops::Pack(s[2 * sub][0], s[2 * sub][1]),
                           Ops::Pack(s[2 * sub][2], s[2 * sub][3]),
                           Ops::Pack(s[2 * sub + 1][0], s[2 * sub + 1][1]),
                           Ops::Pack(s[2 * sub + 1][2], s[2 * sub + 1][3])};
#pragma unroll
    for (int j2 = 0; j2 < D / 16; ++j2) {
      uint32_t b[4];
      Ldmatrix4Trans(b, SmemAddr(sv + PrefillSwz<D>(sub * 16 + (mi % 2) * 8 + lane % 8, j2 * 2 + mi / 2)));
      Ops::Mma(o[2 * j2], a, b[0], b[1]);
      Ops::Mma(o[2 * j2 + 1], a, b[2], b[3]);
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(128, 2) PrefillKernel(const PrefillArgs args) {
  GridDependencyWait();  // launched as a programmatic dependent (LaunchPrefill)
  using Cfg = PrefillConfig<D>;
  using Layout = PrefillSwzLayout<D>;
  constexpr int kTile = Cfg::kTile;
  constexpr int kStages = Cfg::kStages;
  constexpr int kThreads = Cfg::kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* const sq = reinterpret_cast<T*>(smem_raw);
  T* const skv = sq + Cfg::kTileElems;

  const PrefillBlock<T, D> blk(args);
  const PrefillItem& item = blk.item;
  const int group = blk.group;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int first_tile = item.kv_begin / kTile;
  const int num_tiles = (blk.kv_end + kTile - 1) / kTile - first_tile;

  // Q rows: the first async group.
  blk.template LoadQ<kTile, kThreads>(args, sq);
  const PrefillKvSlots<D, kTile, kThreads, Layout> slots(blk.tpc);
  auto load_tile = [&](int tile, int stage) {
    T* sk = skv + stage * 2 * Cfg::kTileElems;
    blk.LoadKv(slots, tile * kTile, sk, sk + Cfg::kTileElems);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_tiles) load_tile(first_tile + s, s);
    CpAsyncCommit();
  }

  const int g = lane / 4;
  // This warp's rows and their causal limits (exclusive KV index).
  const int wrow = item.row_begin + warp * 16;
  const bool warp_active = warp * 16 < item.num_rows;
  const int lim_row0 = item.history + (wrow + g) / group + 1;
  const int lim_row1 = item.history + (wrow + g + 8) / group + 1;
  const int warp_min_lim = item.history + wrow / group + 1;
  const int warp_max_lim = item.history + min(wrow + 15, blk.last_row) / group + 1;

  uint32_t qf[D / 16][4];
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int i = 0; i < num_tiles; ++i) {
    const int pre = i + kStages - 1;
    if (pre < num_tiles) load_tile(first_tile + pre, pre % kStages);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();
    __syncthreads();
    T* sk = skv + (i % kStages) * 2 * Cfg::kTileElems;
    T* sv = sk + Cfg::kTileElems;
    const int t0 = (first_tile + i) * kTile;
    if (i == 0) {
      if (args.apply_rope) {
        blk.template RotateQ<kTile, kThreads>(args, sq);
        __syncthreads();
      }
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        Ldmatrix4(qf[k], SmemAddr(sq + PrefillSwz<D>(warp * 16 + (lane % 16), k * 2 + lane / 16)));
      }
    }
    if (blk.rotate_k) {
      blk.template RotateK<kTile, kThreads, Layout, 2>(args, sk, t0);
      __syncthreads();
    }
    if (warp_active && t0 < warp_max_lim) {
      PrefillStep<T, D>(sk, sv, t0 + kTile > warp_min_lim, lim_row0 - t0, lim_row1 - t0,
                        args.scale_log2, qf, o, m0, m1, l0, l1);
    }
    __syncthreads();  // the stage is refilled by the next iteration
  }
  CpAsyncWait<0>();

  blk.StoreWarpRows(args, warp * 16, m0, m1, l0, l1,
                    [&](int half, int j, int e) { return o[j][half * 2 + e]; });
}

// Merges the pieces of split tiles (PrefillMerge): D / 32 elements per lane,
// the pieces' states combined by MergeStatesWarp (merge_state.cuh); writes
// the row's output in the dtype and its base-2 LSE.
inline constexpr int kPrefillMergeThreads = 128;
// Blocks per (merge, KV head): one warp per row of the largest query tile.
inline constexpr int kPrefillMergeRowBlocks = kPrefillWideRowsPerTile / (kPrefillMergeThreads / 32);

// One warp per (split query tile, row, KV head) merges the row's piece
// states (MergeStatesWarp) into the output row. Grid (num_merges x
// kPrefillMergeRowBlocks, num_kv_heads); launched as a programmatic
// dependent of the attention kernel, it reads the plan's merge record
// before waiting for that grid.
template <typename T, int D>
__global__ void __launch_bounds__(kPrefillMergeThreads) PrefillMergeKernel(const PrefillArgs args) {
  constexpr int kPer = D / 32;
  constexpr int kWarps = kPrefillMergeThreads / 32;
  const PrefillMerge mg = args.merges[blockIdx.x / kPrefillMergeRowBlocks];
  const int r = (blockIdx.x % kPrefillMergeRowBlocks) * kWarps + threadIdx.x / 32;
  if (r >= mg.num_rows) return;
  const int kvh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  // Piece p's state of this row: partial row (head kvh) partial_row +
  // p * num_rows + r.
  const size_t row0 = static_cast<size_t>(kvh) * args.partial_rows + mg.partial_row + r;
  const auto slot_of = [&](int p) { return row0 + static_cast<size_t>(p) * mg.num_rows; };
  const size_t first_slot = lane < mg.num_pieces ? slot_of(lane) : 0;
  GridDependencyWait();
  float v[kPer];
  const float lse =
      MergeStatesWarp<D>(args.partial_out, args.partial_lse, mg.num_pieces, first_slot, slot_of, v);
  const int group = args.num_q_heads / args.num_kv_heads;
  const int row = mg.row_begin + r;
  const int qh = kvh * group + row % group;
  const size_t dst_row = static_cast<size_t>(mg.q_offset + row / group) * args.num_q_heads + qh;
  T* dst = static_cast<T*>(args.out) + dst_row * D + lane * kPer;
#pragma unroll
  for (int k = 0; k < kPer; ++k) dst[k] = MmaOps<T>::FromFloat(v[k]);
  if (lane == 0 && args.lse != nullptr) args.lse[dst_row] = lse;
}

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_PREFILL_CUH_
