// Prefill attention on Hopper warpgroup MMAs (wgmma, sm_90a): the kernel
// variants PrefillOptions::KernelVariant::kRows128Wgmma (64-token KV tiles)
// and kRows128WgmmaKv128 (128-token KV tiles), described here, and the
// warp-specialized kRows128WgmmaPipelined ("g128p"; TMA or cp.async loads
// by a producer warpgroup, mbarriers), described at its kernel below. Same items,
// arguments, RoPE paths, split-KV output and per-row softmax as the mma.sync
// kernels (prefill.cuh, prefill_wide.cuh); the two matrix products of a KV
// tile run as wgmma.mma_async instead of mma.sync:
//
// - A block is two warpgroups (8 warps, 256 threads) of 64 query rows each
//   (warp w holds rows 16 w .. 16 w + 15 of the 128-row tile, as in the
//   8-warp kernel). S = Q K^T is m64n64k16 (m64n128k16 with 128-token
//   tiles) per 16 of head_dim, A = the Q fragments in registers (ldmatrix
//   from the Q tile in shared memory at every KV tile, see
//   PrefillWgmmaStep), B = the K tile in shared memory (K-major); O += P V
//   is m64n{D}k16 per 16 keys, A = P packed in registers from the S
//   accumulators (the fragment layouts of wgmma's accumulator and register
//   A per warp are those of mma.sync m16n8k16), B = the V tile (MN-major,
//   transposed by the instruction).
// - K / V tiles use the canonical 128-byte-swizzle layout the descriptors
//   describe: head_dim split into 64-element atoms, each atom kTile rows x
//   128 bytes, 16-byte vectors XOR-swizzled by (row & 7), atoms 1024-byte
//   aligned. K descriptor: stride 1024 bytes between 8-row groups, +32 bytes
//   per k16 step inside an atom. V descriptor: 1024 bytes between 8-key
//   groups (+2048 bytes per 16 keys), one atom (kTile x 128 bytes) between
//   64-element atoms along head_dim.
// - Tiles land by cp.async (and keys may be rotated in shared memory), so
//   every thread orders its shared-memory writes before the async proxy
//   that wgmma reads through (fence.proxy.async) ahead of the barrier.
// - Each product is issued, committed and waited for before its
//   accumulators are touched. The two warpgroups ping-pong inside a KV
//   tile: warpgroup 1 issues its S product after warpgroup 0's (a named
//   barrier), so one's softmax runs under the other's MMAs; the block has
//   one __syncthreads per KV tile. Causal skipping is per warpgroup
//   (wgmma is warpgroup-wide), masking per row.
//
// The wgmma primitives are in wgmma_ops.cuh; compiled only for sm_90a
// (STRATA_HAS_WGMMA); elsewhere (the compute_90 PTX) the kernel traps.
#ifndef STRATA_KERNELS_PREFILL_WGMMA_CUH_
#define STRATA_KERNELS_PREFILL_WGMMA_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma_ops.cuh"
#include "kernels/prefill.cuh"
#include "kernels/prefill_item.h"
#include "kernels/prefill_launch.h"
#include "kernels/wgmma_ops.cuh"

namespace strata::kernels::device {

// kTile_ KV tokens per stage: 64 (g128: 3 stages) or 128 (g128x128: 2
// stages, 161 KiB of shared memory at d128). A 128-token tile starts at the
// item's kv_begin, which split pieces place at multiples of 64 only, so its
// keys past kv_end are masked explicitly.
template <int D, int kTile_>
struct PrefillWgmmaConfig {
  static constexpr int kWarpgroups = 2;
  static constexpr int kRows = kWarpgroups * 64;
  static constexpr int kTile = kTile_;
  static constexpr int kThreads = kWarpgroups * 128;
  static constexpr int kStages = kTile == 64 ? 3 : 2;
  static constexpr int kVecs = D / 8;
  static constexpr int kQElems = kRows * D;
  static constexpr int kKvElems = kTile * D;
  // + 1024: the K / V atoms are aligned to 1024 bytes at run time.
  static constexpr int kSmemBytes = (kQElems + kStages * 2 * kKvElems) * 2 + 1024;
  static_assert(kRows == kPrefillWideRowsPerTile, "one Q tile per item");
  static_assert(kTile == 64 || kTile == 128, "m64n64 or m64n128 for S = Q K^T");
  static_assert((kQElems * 2) % 1024 == 0 && (kKvElems * 2) % 1024 == 0, "atom alignment");
};

// The K / V tile layout of the descriptors (elements): atom vec / 8 of
// kTile rows x 64 elements, 16-byte vector (vec % 8) ^ (row % 8) of the row.
template <int kTile>
struct PrefillWgmmaKvLayout {
  static constexpr int kAtomBytes = kTile * 128;
  static __device__ __forceinline__ int Offset(int row, int vec) {
    return (vec / 8) * (kTile * 64) + row * 64 + (((vec % 8) ^ (row & 7)) * 8);
  }
};


// O (+)= P V over a kTile-key tile: one m64n{D}k16 per 16 keys (m64n64 at
// d64, m64n128 at d128), A = P's register fragments, B = the V tile at
// shared address v_addr (PrefillWgmmaKvLayout, MN-major). Issued only: the
// caller fences, commits and waits.
template <typename T, int D, int kTile>
__device__ __forceinline__ void WgmmaPV(float (&o)[D / 2], const uint32_t (&p)[kTile / 16][4],
                                        uint32_t v_addr) {
  constexpr int kAtomBytes = PrefillWgmmaKvLayout<kTile>::kAtomBytes;
#pragma unroll
  for (int sub = 0; sub < kTile / 16; ++sub) {
    const uint64_t desc = WgmmaDesc(v_addr + sub * 2048, kAtomBytes, 1024);
    if constexpr (D == 64) {
      WgmmaN64<T, 1>(o, p[sub], desc, 1);
    } else {
      WgmmaN128<T, 1>(o, p[sub], desc, 1);
    }
  }
}

// The online softmax of a warpgroup's S tile, this thread's part: scores
// s[4 n + e] of rows row_g (e < 2) and row_g + 8 (e >= 2), keys n * 8 +
// (lane % 4) * 2 + (e & 1) of the tile. Masks as PrefillWideStep (M = 1)
// when `mask` (each limit also capped at lim_cap), updates the running max
// (m, base 2, scaled) and sum (l, this thread's share), leaves the
// exponentiated scores (P in fp32) in s and returns the factors alpha that
// rescale O.
template <int kTile>
__device__ __forceinline__ void PrefillWgmmaSoftmaxExp(float (&s)[kTile / 2], bool mask,
                                                       int lim_base, int lim_cap, int row_g,
                                                       int group, float scale_log2, float& m0,
                                                       float& m1, float& l0, float& l1,
                                                       float& alpha0, float& alpha1) {
  constexpr int kN8 = kTile / 8;  // 8-key blocks of S
  static_assert((kN8 & (kN8 - 1)) == 0, "the reduction trees halve kN8");
  const int t4 = (threadIdx.x % 32) % 4;
  if (mask) {
    const int lim0 = min(lim_base + row_g / group, lim_cap);
    const int lim1 = min(lim_base + (row_g + 8) / group, lim_cap);
#pragma unroll
    for (int n = 0; n < kN8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (n * 8 + t4 * 2 + (e & 1) >= (e < 2 ? lim0 : lim1)) s[4 * n + e] = -INFINITY;
      }
    }
  }
  // Row maxima and sums by pairwise trees over t0 / t1 (depth log2(kTile /
  // 4) instead of a chain of kTile / 4 dependent operations: the
  // exponentials wait for the maxima). Leaves the result in t0[0] / t1[0].
  float t0[kN8], t1[kN8];
  const auto tree = [&](auto op) {
#pragma unroll
    for (int lvl = 1; lvl < kN8; lvl *= 2) {
      const int w = kN8 / (2 * lvl);
#pragma unroll
      for (int n = 0; n < w; ++n) {
        t0[n] = op(t0[n], t0[n + w]);
        t1[n] = op(t1[n], t1[n + w]);
      }
    }
  };
#pragma unroll
  for (int n = 0; n < kN8; ++n) {
    t0[n] = fmaxf(s[4 * n], s[4 * n + 1]);
    t1[n] = fmaxf(s[4 * n + 2], s[4 * n + 3]);
  }
  tree([](float a, float b) { return fmaxf(a, b); });
  float mx0 = t0[0], mx1 = t1[0];
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float mn0 = fmaxf(m0, mx0 * scale_log2), mn1 = fmaxf(m1, mx1 * scale_log2);
  const float base0 = mn0 == -INFINITY ? 0.0f : mn0;
  const float base1 = mn1 == -INFINITY ? 0.0f : mn1;
  alpha0 = FastExp2(m0 - base0);
  alpha1 = FastExp2(m1 - base1);
  m0 = mn0;
  m1 = mn1;
#pragma unroll
  for (int n = 0; n < kN8; ++n) {
    s[4 * n] = FastExp2(fmaf(s[4 * n], scale_log2, -base0));
    s[4 * n + 1] = FastExp2(fmaf(s[4 * n + 1], scale_log2, -base0));
    s[4 * n + 2] = FastExp2(fmaf(s[4 * n + 2], scale_log2, -base1));
    s[4 * n + 3] = FastExp2(fmaf(s[4 * n + 3], scale_log2, -base1));
    t0[n] = s[4 * n] + s[4 * n + 1];
    t1[n] = s[4 * n + 2] + s[4 * n + 3];
  }
  tree([](float a, float b) { return a + b; });
  l0 = l0 * alpha0 + t0[0];
  l1 = l1 * alpha1 + t1[0];
}

// P of the exponentiated scores s (PrefillWgmmaSoftmaxExp) packed as the
// register-A fragments of P V (the layout of wgmma's accumulator is that of
// register A per warp).
template <typename T, int kTile>
__device__ __forceinline__ void PrefillWgmmaPackP(const float (&s)[kTile / 2],
                                                  uint32_t (&p)[kTile / 16][4]) {
  using Ops = MmaOps<T>;
#pragma unroll
  for (int sub = 0; sub < kTile / 16; ++sub) {
    p[sub][0] = Ops::Pack(s[8 * sub], s[8 * sub + 1]);
    p[sub][1] = Ops::Pack(s[8 * sub + 2], s[8 * sub + 3]);
    p[sub][2] = Ops::Pack(s[8 * sub + 4], s[8 * sub + 5]);
    p[sub][3] = Ops::Pack(s[8 * sub + 6], s[8 * sub + 7]);
  }
}

// The online softmax of a warpgroup's S tile: PrefillWgmmaSoftmaxExp, then
// PrefillWgmmaPackP into p.
template <typename T, int kTile>
__device__ __forceinline__ void PrefillWgmmaSoftmax(float (&s)[kTile / 2], bool mask,
                                                    int lim_base, int lim_cap, int row_g,
                                                    int group, float scale_log2, float& m0,
                                                    float& m1, float& l0, float& l1,
                                                    float& alpha0, float& alpha1,
                                                    uint32_t (&p)[kTile / 16][4]) {
  PrefillWgmmaSoftmaxExp<kTile>(s, mask, lim_base, lim_cap, row_g, group, scale_log2, m0, m1, l0,
                                l1, alpha0, alpha1);
  PrefillWgmmaPackP<T, kTile>(s, p);
}

// O *= alpha per row, unconditionally (no branch, so it may run while
// products are in flight: g128p rescales under its S product).
template <int D>
__device__ __forceinline__ void PrefillWgmmaRescaleAll(float (&o)[D / 2], float alpha0,
                                                       float alpha1) {
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    o[4 * j] *= alpha0;
    o[4 * j + 1] *= alpha0;
    o[4 * j + 2] *= alpha1;
    o[4 * j + 3] *= alpha1;
  }
}

// O *= alpha per row (skipped when the warp's maxima did not move).
template <int D>
__device__ __forceinline__ void PrefillWgmmaRescale(float (&o)[D / 2], float alpha0,
                                                    float alpha1) {
  if (__any_sync(0xffffffffu, alpha0 != 1.0f || alpha1 != 1.0f)) {
    PrefillWgmmaRescaleAll<D>(o, alpha0, alpha1);
  }
}

// One warpgroup, its 64 rows (this warp's 16 as in PrefillStep), against a
// kTile-token K / V tile at shared addresses k_addr / v_addr (1024-aligned,
// PrefillWgmmaKvLayout). Masking as PrefillWideStep (M = 1), each limit
// also capped at lim_cap (the tile's keys < kv_end). s and o hold the
// accumulators as s[4 n + e] = PrefillStep's s[n][e] (same for o).
template <typename T, int D, int kTile, typename OnScoresIssued>
__device__ __forceinline__ void PrefillWgmmaStep(uint32_t k_addr, uint32_t v_addr, bool mask,
                                                 int lim_base, int lim_cap, int row_g, int group,
                                                 float scale_log2, const T* sq, int wrow0,
                                                 float (&o)[D / 2], float& m0, float& m1,
                                                 float& l0, float& l1,
                                                 OnScoresIssued on_scores_issued) {
  constexpr int kAtomBytes = PrefillWgmmaKvLayout<kTile>::kAtomBytes;
  // The warp's Q fragments, loaded for this tile only: kept live across
  // tiles, the register-A operands of a loop-carried wgmma were reused by
  // ptxas (CUDA 13) for P when S and P V have the same shape (D == kTile),
  // which corrupted every tile after the first.
  const int lane = threadIdx.x % 32;
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int k = 0; k < D / 16; ++k) {
    Ldmatrix4(qf[k], SmemAddr(sq + PrefillSwz<D>(wrow0 + (lane % 16), k * 2 + lane / 16)));
  }
  float s[kTile / 2];
  WgmmaFenceOperands(s);
  WgmmaFence();
#pragma unroll
  for (int k = 0; k < D / 16; ++k) {
    const uint64_t desc = WgmmaDesc(k_addr + (k / 4) * kAtomBytes + (k % 4) * 32, 16, 1024);
    if constexpr (kTile == 64) {
      WgmmaN64<T, 0>(s, qf[k], desc, k > 0 ? 1 : 0);
    } else {
      WgmmaN128<T, 0>(s, qf[k], desc, k > 0 ? 1 : 0);
    }
  }
  WgmmaCommit();
  on_scores_issued();
  WgmmaWait();
  WgmmaFenceOperands(s);
  float alpha0, alpha1;
  uint32_t p[kTile / 16][4];
  PrefillWgmmaSoftmax<T, kTile>(s, mask, lim_base, lim_cap, row_g, group, scale_log2, m0, m1, l0,
                                l1, alpha0, alpha1, p);
  PrefillWgmmaRescale<D>(o, alpha0, alpha1);
  WgmmaFenceOperands(o);
  WgmmaFence();
  WgmmaPV<T, D, kTile>(o, p, v_addr);
  WgmmaCommitAndWait();
  WgmmaFenceOperands(o);
}

template <typename T, int D, int kKvTile>
__global__ void __launch_bounds__(PrefillWgmmaConfig<D, kKvTile>::kThreads, 1)
    PrefillWgmmaKernel(const PrefillArgs args) {
#if STRATA_HAS_WGMMA
  GridDependencyWait();  // launched as a programmatic dependent (LaunchPrefill)
  using Cfg = PrefillWgmmaConfig<D, kKvTile>;
  using KvLayout = PrefillWgmmaKvLayout<kKvTile>;
  constexpr int kRows = Cfg::kRows;
  constexpr int kTile = Cfg::kTile;
  constexpr int kStages = Cfg::kStages;
  constexpr int kThreads = Cfg::kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];  // aligned to 1024 below
  unsigned char* const smem = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  T* const sq = reinterpret_cast<T*>(smem);
  T* const skv = sq + Cfg::kQElems;

  const PrefillBlock<T, D> blk(args);
  const PrefillItem& item = blk.item;
  const int group = blk.group;
  const int kv_end = blk.kv_end;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wg = warp / 4;
  const int lane = tid % 32;
  // Tiles start at kv_begin (a multiple of 64, not always of kTile).
  const int num_tiles = (kv_end - item.kv_begin + kTile - 1) / kTile;

  // Q rows: part of the first async group.
  blk.template LoadQ<kRows, kThreads>(args, sq);
  const PrefillKvSlots<D, kTile, kThreads, KvLayout> slots(blk.tpc);
  auto load_tile = [&](int tile, int stage) {
    T* sk = skv + stage * 2 * Cfg::kKvElems;
    blk.LoadKv(slots, item.kv_begin + tile * kTile, sk, sk + Cfg::kKvElems);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_tiles) load_tile(s, s);
    CpAsyncCommit();
  }

  const int g = lane / 4;
  // This warp's 16 rows; the warpgroup's 64 decide skipping (wgmma is
  // warpgroup-wide), the warp's own first row the masking.
  const int wrow0 = warp * 16;
  const int wrow = item.row_begin + wrow0;
  const int wg_row = item.row_begin + wg * 64;
  const bool wg_active = wg * 64 < item.num_rows;
  const int warp_min_lim = item.history + wrow / group + 1;
  const int wg_max_lim = item.history + min(wg_row + 63, blk.last_row) / group + 1;

  float o[D / 2];
#pragma unroll
  for (int j = 0; j < D / 2; ++j) o[j] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int i = 0; i < num_tiles; ++i) {
    CpAsyncWait<kStages - 2>();
    ProxyFenceShared();  // this thread's landed tiles, before wgmma reads them
    __syncthreads();
    const int pre = i + kStages - 1;
    if (pre < num_tiles) load_tile(pre, pre % kStages);
    CpAsyncCommit();
    T* sk = skv + (i % kStages) * 2 * Cfg::kKvElems;
    T* sv = sk + Cfg::kKvElems;
    const int t0 = item.kv_begin + i * kTile;
    if (i == 0 && args.apply_rope) {
      blk.template RotateQ<kRows, kThreads>(args, sq);
      __syncthreads();
    }
    if (blk.rotate_k) {
      blk.template RotateK<kTile, kThreads, KvLayout, 2>(args, sk, t0);
      ProxyFenceShared();
      __syncthreads();
    }
    // Ping-pong: warpgroup 1 issues its S = Q K^T after warpgroup 0's, so
    // that its product runs while warpgroup 0 computes the softmax, and
    // warpgroup 0's P V while warpgroup 1 computes its own. Both pass the
    // named barrier once per tile, skipped tiles included.
    if (wg == 1) NamedBarrierSync(1, kThreads);
    const auto signal = [wg] {
      if (wg == 0) NamedBarrierArrive(1, kThreads);
    };
    if (wg_active && t0 < wg_max_lim) {
      PrefillWgmmaStep<T, D, kTile>(SmemAddr(sk), SmemAddr(sv),
                                    t0 + kTile > warp_min_lim || t0 + kTile > kv_end,
                                    item.history + 1 - t0, kv_end - t0, wrow + g, group,
                                    args.scale_log2, sq, wrow0, o, m0, m1, l0, l1, signal);
    } else {
      signal();
    }
  }
  CpAsyncWait<0>();

  blk.StoreWarpRows(args, wrow0, m0, m1, l0, l1,
                    [&](int half, int j, int e) { return o[4 * j + half * 2 + e]; });
#else
  __trap();  // wgmma needs sm_90a
#endif
}

// The warp-specialized, pipelined wgmma kernel (PrefillOptions::
// KernelVariant::kRows128WgmmaPipelined, "g128p"): FlashAttention-3's
// structure on the items, tiles and arguments of g128x128 (128 rows,
// 128-key tiles, split pieces masked past kv_end):
//
// - Warps 0-7 are two consumer warpgroups of 64 rows each (232 registers
//   per thread, setmaxnreg); warps 8-11 are the producer warpgroup (40
//   registers), which alone loads K / V tiles (cp.async, kStages stages) and
//   signals each landed tile on a "full" mbarrier (cp.async.mbarrier.
//   arrive); the consumers release each stage on an "empty" mbarrier when
//   their products have read it. No block-wide barrier in the KV loop, so
//   the warpgroups and the loads drift apart as far as the stages allow.
// - K runs one tile ahead of V: consumer iteration j issues S_j = Q K_j^T,
//   then (waiting for V_{j-1} only now, and rescaling O by the factors of
//   the previous softmax while S_j runs) O += P_{j-1} V_{j-1} (P of the
//   previous tile, kept in registers), waits for S_j alone and runs the
//   softmax of S_j while P V runs, then waits for P V and packs P_j
//   (intra-warpgroup overlap).
// - The two warpgroups take turns to issue their products (two named
//   barriers), so one's softmax runs under the other's products.
// - Q is read by the S product from shared memory (both operands by
//   descriptor, Q in the K tiles' 128-byte-swizzle layout), so no Q
//   fragments live in registers.
// - A warpgroup past its rows' causal limit issues nothing but still waits
//   for and releases every stage, which keeps the barriers' phases in step.
template <int D>
struct PrefillWgmmaPipelinedConfig {
  static constexpr int kRows = 128;
  static constexpr int kTile = 128;
  static constexpr int kConsumerThreads = 256;
  static constexpr int kThreads = kConsumerThreads + 128;  // + the producer warpgroup
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
  static constexpr int kQElems = kRows * D;
  static constexpr int kKvElems = kTile * D;
  static constexpr int kStages = 3;
  static constexpr int kTileBytes = (kQElems + kStages * 2 * kKvElems) * 2;
  // + the mbarriers (4 per stage), + 1024: tiles aligned to 1024 at run time.
  static constexpr int kSmemBytes = kTileBytes + 4 * kStages * 8 + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "fits in an SM's shared memory");
};

// kRotateK: the launch rotates keys in the kernel (PrefillBlock::rotate_k;
// the launcher picks the instantiation).
template <typename T, int D, bool kRotateK>
__global__ void __launch_bounds__(PrefillWgmmaPipelinedConfig<D>::kThreads, 1)
    PrefillWgmmaPipelinedKernel(const __grid_constant__ PrefillArgs args) {
#if STRATA_HAS_WGMMA
  using Cfg = PrefillWgmmaPipelinedConfig<D>;
  constexpr int kRows = Cfg::kRows;
  constexpr int kTile = Cfg::kTile;
  using QLayout = PrefillWgmmaKvLayout<kRows>;  // the Q tile's
  using Layout = PrefillWgmmaKvLayout<kTile>;   // the K / V tiles'
  constexpr int kStages = Cfg::kStages;
  constexpr int kConsumers = Cfg::kConsumerThreads;
  constexpr int kAtomBytes = Layout::kAtomBytes;
  constexpr int kQAtomBytes = QLayout::kAtomBytes;
  constexpr int kVecs = D / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];  // aligned to 1024 below
  unsigned char* const smem = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  T* const sq = reinterpret_cast<T*>(smem);
  T* const skv = sq + Cfg::kQElems;
  // Stage s: K at skv + 2 s kKvElems, V after it.
  auto k_stage = [&](int s) { return skv + s * 2 * Cfg::kKvElems; };
  auto v_stage = [&](int s) { return skv + s * 2 * Cfg::kKvElems + Cfg::kKvElems; };
  const uint32_t bars = SmemAddr(smem + Cfg::kTileBytes);
  auto full_k = [&](int s) { return bars + 8 * s; };
  auto full_v = [&](int s) { return bars + 8 * (kStages + s); };
  auto empty_k = [&](int s) { return bars + 8 * (2 * kStages + s); };
  auto empty_v = [&](int s) { return bars + 8 * (3 * kStages + s); };

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  // Tensor maps: whole tiles by TMA (one producer thread arrives, the
  // copies complete the bytes), the tile holding kv_end by cp.async (its
  // rows past kv_end zero-filled). Without: every producer thread arrives
  // as its copies land.
  const bool tma = args.tma_rows > 0;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      MbarInit(full_k(s), tma ? 1 : 128);
      MbarInit(full_v(s), tma ? 1 : 128);
      MbarInit(empty_k(s), kConsumers / 32);  // one lane per consumer warp
      MbarInit(empty_v(s), kConsumers / 32);
    }
    ProxyFenceShared();  // the initialized barriers, visible to the TMA copies
  }
  // Launched as a programmatic dependent (LaunchPrefill): the barriers
  // above are set up while the grid before it finishes.
  GridDependencyWait();
  const PrefillBlock<T, D> blk(args);
  const PrefillItem& item = blk.item;
  const int group = blk.group;
  const int kv_end = blk.kv_end;
  const int num_tiles = (kv_end - item.kv_begin + kTile - 1) / kTile;
  __syncthreads();

  if (warp >= kConsumers / 32) {
    // The producer warpgroup: thread pt handles 16-byte column pt % kVecs
    // of rows pt / kVecs + k * (128 / kVecs).
    SetMaxRegsDec<Cfg::kProducerRegs>();
    constexpr int kRowStep = 128 / kVecs;
    const int pt = tid - kConsumers;
    const int col = pt % kVecs;
    const int r0 = pt / kVecs;
    const FastDiv tpc_div(static_cast<uint32_t>(blk.tpc));
    // A slice's slot in the pool (TMA loads): a multiply-high where the
    // offsets allow, not a 64-bit division (the one thread that issues the
    // copies is on the critical path of every tile).
    const FastDiv slot_div(args.pool_stride16 != 0 ? args.pool_stride16 : 1u);
    const auto slot_of = [&](const T* slice) {
      const uint64_t off = reinterpret_cast<uintptr_t>(slice) -
                           reinterpret_cast<uintptr_t>(args.pool_base);
      return args.pool_stride16 != 0
                 ? static_cast<int>(slot_div.Div(static_cast<uint32_t>(off >> 4)))
                 : static_cast<int>(off / static_cast<uint64_t>(args.pool_stride));
    };
    // Tiles by cp.async (no tensor maps, or the tile holding kv_end):
    // PrefillBlock::LoadKv's addressing, one row at a time, as its slot
    // offsets and source pointers held for 16 rows would not fit the
    // producer's 40 registers.
    const auto load = [&](bool keys, int t0, T* dst) {
      const uint32_t base = SmemAddr(dst);
#pragma unroll 4
      for (int k = 0; k < kTile / kRowStep; ++k) {
        const int r = r0 + k * kRowStep;
        const int t = min(t0 + r, kv_end - 1);
        const int e = static_cast<int>(tpc_div.Div(static_cast<uint32_t>(t)));
        const size_t in_slice = static_cast<size_t>(t - e * blk.tpc) * D + col * 8;
        const T* src = keys && blk.rot_keys != nullptr
                           ? blk.rot_keys + e * blk.rot_stride + in_slice
                           : blk.pages[e] + blk.head_offset + (keys ? 0 : blk.v_offset) + in_slice;
        CpAsync16(base + Layout::Offset(r, col) * 2, src, t0 + r < kv_end);
      }
    };
    // A whole tile by TMA (thread 0): boxes of tma_rows tokens (within one
    // chunk: tma_rows divides 64 and tokens per chunk) x 64 elements.
    const auto load_tma = [&](bool keys, int t0, T* dst, uint32_t bar) {
      MbarArriveExpectTx(bar, kTile * D * 2);
      for (int r = 0; r < kTile; r += args.tma_rows) {
        const int t = t0 + r;
        const int e = static_cast<int>(tpc_div.Div(static_cast<uint32_t>(t)));
        const int row = t - e * blk.tpc;
        if (keys && blk.rot_keys != nullptr) {
#pragma unroll
          for (int a = 0; a < D / 64; ++a) {
            TmaLoad4(SmemAddr(dst) + a * kAtomBytes + r * 128, args.key_map, a * 64, row, blk.kvh,
                     item.page_begin + e, bar);
          }
        } else {
          const int slot = slot_of(blk.pages[e]);
#pragma unroll
          for (int a = 0; a < D / 64; ++a) {
            TmaLoad5(SmemAddr(dst) + a * kAtomBytes + r * 128, args.pool_map, a * 64, row,
                     blk.kvh, keys ? 0 : 1, slot, bar);
          }
        }
      }
    };
    const auto load_tile = [&](bool keys, int t0, T* dst, uint32_t bar) {
      if (tma && t0 + kTile <= kv_end) {
        if (pt == 0) load_tma(keys, t0, dst, bar);
      } else if (tma) {  // cp.async, then one arrival for the warpgroup
        load(keys, t0, dst);
        CpAsyncCommit();
        CpAsyncWait<0>();
        NamedBarrierSync(4, 128);
        if (pt == 0) MbarArrive(bar);
      } else {
        load(keys, t0, dst);
        CpAsyncMbarArrive(bar);
      }
    };
    for (int j = 0; j < num_tiles; ++j) {
      const int s = j % kStages;
      const uint32_t parity = (j / kStages + 1) & 1;  // the phase of tile j - kStages
      const int t0 = item.kv_begin + j * kTile;
      if (j >= kStages) MbarWait(empty_k(s), parity);
      load_tile(true, t0, k_stage(s), full_k(s));
      if (j >= kStages) MbarWait(empty_v(s), parity);
      load_tile(false, t0, v_stage(s), full_v(s));
    }
    CpAsyncCommit();  // every copy landed before the producer exits
    CpAsyncWait<0>();
    return;
  }

  // Consumers. Q: every row, rotated, before the first product.
  SetMaxRegsInc<Cfg::kConsumerRegs>();
  blk.template LoadQ<kRows, kConsumers, QLayout>(args, sq);
  CpAsyncCommit();
  CpAsyncWait<0>();
  if (args.apply_rope) {
    NamedBarrierSync(1, kConsumers);
    blk.template RotateQ<kRows, kConsumers, QLayout>(args, sq);
  }
  ProxyFenceShared();
  NamedBarrierSync(1, kConsumers);

  const int wg = warp / 4;
  const int g = lane / 4;
  const int wrow0 = warp * 16;
  const int wrow = item.row_begin + wrow0;
  const int wg_row = item.row_begin + wg * 64;
  const int warp_min_lim = item.history + wrow / group + 1;
  const int wg_max_lim = item.history + min(wg_row + 63, blk.last_row) / group + 1;
  // KV tiles this warpgroup reads: those starting before its last row's
  // limit (causal), none past its rows.
  const int wg_tiles =
      wg * 64 < item.num_rows
          ? min(num_tiles, max(0, (wg_max_lim - item.kv_begin + kTile - 1) / kTile))
          : 0;
  // This warpgroup's 64 rows of Q, 8 KiB into each 16 KiB atom.
  const uint32_t q_addr = SmemAddr(sq) + wg * 64 * 128;
  // Turns: named barrier 2 + w is warpgroup w's; warpgroup 0 goes first.
  const int my_turn = 2 + wg, other_turn = 3 - wg;
  if (wg == 1) NamedBarrierArrive(2, kConsumers);

  float o[D / 2];
#pragma unroll
  for (int j = 0; j < D / 2; ++j) o[j] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  // P of the previous tile (bf16 / fp16), read by this iteration's P V; it
  // is packed from the new scores only once that product has completed
  // (ptxas serializes every wgmma of a kernel that writes registers a
  // running product reads).
  uint32_t p[kTile / 16][4];
  // The last softmax's rescale factors, applied to O before the next P V.
  float alpha0 = 1.0f, alpha1 = 1.0f;

  for (int j = 0; j <= num_tiles; ++j) {
    const int t0 = item.kv_begin + j * kTile;
    const bool do_s = j < wg_tiles;
    const bool do_pv = j >= 1 && j <= wg_tiles;
    if (j < num_tiles) {
      MbarWait(full_k(j % kStages), (j / kStages) & 1);
      if constexpr (kRotateK) {
        blk.template RotateK<kTile, kConsumers, Layout, 2>(args, k_stage(j % kStages), t0);
        ProxyFenceShared();
        NamedBarrierSync(1, kConsumers);
      }
    }
    ProxyFenceShared();  // the landed K copies, before wgmma reads them
    float s[kTile / 2];
    const auto issue_s = [&] {
      const uint32_t k_addr = SmemAddr(k_stage(j % kStages));
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        WgmmaN128SS<T>(s, WgmmaDesc(q_addr + (k / 4) * kQAtomBytes + (k % 4) * 32, 16, 1024),
                       WgmmaDesc(k_addr + (k / 4) * kAtomBytes + (k % 4) * 32, 16, 1024),
                       k > 0 ? 1 : 0);
      }
      WgmmaCommit();
    };
    // P V, after S is issued: waits for the V tile only now (it lands after
    // its K tile) and rescales O by the previous softmax's factors while S
    // runs (FlashAttention-3's order; measured 1-3% faster than waiting for
    // both tiles first and rescaling after P V completed).
    const auto issue_pv = [&] {
      MbarWait(full_v((j - 1) % kStages), ((j - 1) / kStages) & 1);
      ProxyFenceShared();
      PrefillWgmmaRescaleAll<D>(o, alpha0, alpha1);
      WgmmaFenceOperands(o);
      WgmmaFence();
      WgmmaPV<T, D, kTile>(o, p, SmemAddr(v_stage((j - 1) % kStages)));
      WgmmaCommit();
    };
    const auto softmax = [&] {
      WgmmaFenceOperands(s);
      PrefillWgmmaSoftmaxExp<kTile>(s, t0 + kTile > warp_min_lim || t0 + kTile > kv_end,
                                    item.history + 1 - t0, kv_end - t0, wrow + g, group,
                                    args.scale_log2, m0, m1, l0, l1, alpha0, alpha1);
    };
    // Stage releases, one lane per warp once its products have read them.
    const auto release_k = [&] {
      if (j < num_tiles && lane == 0) MbarArrive(empty_k(j % kStages));
    };
    const auto release_v = [&] {
      if (j >= 1 && lane == 0) MbarArrive(empty_v((j - 1) % kStages));
    };
    NamedBarrierSync(my_turn, kConsumers);
    // Each case issues and waits for its products on one path (ptxas
    // serializes every wgmma of a kernel whose in-flight products cross a
    // branch it cannot prove warpgroup-uniform).
    if (do_s && do_pv) {  // steady state: S_j and P_{j-1} V_{j-1} in flight
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      WgmmaFence();
      issue_s();
      issue_pv();
      NamedBarrierArrive(other_turn, kConsumers);
      WgmmaWait<1>();
      release_k();
      softmax();
      WgmmaWait<0>();
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      release_v();
      PrefillWgmmaPackP<T, kTile>(s, p);
    } else if (do_s) {  // the first tile
      WgmmaFence();
      issue_s();
      NamedBarrierArrive(other_turn, kConsumers);
      WgmmaWait<0>();
      release_k();
      release_v();
      softmax();  // O is still zero: its factors apply from the next P V on
      PrefillWgmmaPackP<T, kTile>(s, p);
    } else if (do_pv) {  // after the last tile
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      WgmmaFence();
      issue_pv();
      NamedBarrierArrive(other_turn, kConsumers);
      WgmmaWait<0>();
      WgmmaFenceOperands(o);
      WgmmaFenceOperands(p);
      release_k();
      release_v();
    } else {  // past this warpgroup's rows: release the stages unread
      NamedBarrierArrive(other_turn, kConsumers);
      release_k();
      release_v();
    }
  }
  if (wg == 0) NamedBarrierSync(2, kConsumers);  // warpgroup 1's last turn

  blk.StoreWarpRows(args, wrow0, m0, m1, l0, l1,
                    [&](int half, int j, int e) { return o[4 * j + half * 2 + e]; });
#else
  __trap();  // wgmma needs sm_90a
#endif
}

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_PREFILL_WGMMA_CUH_
