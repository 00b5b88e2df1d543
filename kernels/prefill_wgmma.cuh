// Prefill attention on Hopper warpgroup MMAs (wgmma, sm_90a): the kernel
// variants PrefillOptions::KernelVariant::kRows128Wgmma (64-token KV tiles)
// and kRows128WgmmaKv128 (128-token KV tiles). Same items,
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


// O (+)= P V with N = D: m64n64 or m64n128.
template <typename T, int D>
__device__ __forceinline__ void WgmmaPV(float (&o)[D / 2], const uint32_t (&a)[4], uint64_t desc) {
  if constexpr (D == 64) {
    WgmmaN64<T, 1>(o, a, desc, 1);
  } else {
    WgmmaN128<T, 1>(o, a, desc, 1);
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
  using Ops = MmaOps<T>;
  constexpr int kAtomBytes = PrefillWgmmaKvLayout<kTile>::kAtomBytes;
  constexpr int kN8 = kTile / 8;  // 8-key blocks of S
  const int t4 = (threadIdx.x % 32) % 4;
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
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int n = 0; n < kN8; ++n) {
    mx0 = fmaxf(mx0, fmaxf(s[4 * n], s[4 * n + 1]));
    mx1 = fmaxf(mx1, fmaxf(s[4 * n + 2], s[4 * n + 3]));
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
  for (int n = 0; n < kN8; ++n) {
    s[4 * n] = FastExp2(fmaf(s[4 * n], scale_log2, -base0));
    s[4 * n + 1] = FastExp2(fmaf(s[4 * n + 1], scale_log2, -base0));
    s[4 * n + 2] = FastExp2(fmaf(s[4 * n + 2], scale_log2, -base1));
    s[4 * n + 3] = FastExp2(fmaf(s[4 * n + 3], scale_log2, -base1));
    sum0 += s[4 * n] + s[4 * n + 1];
    sum1 += s[4 * n + 2] + s[4 * n + 3];
  }
  l0 = l0 * alpha0 + sum0;
  l1 = l1 * alpha1 + sum1;
  if (__any_sync(0xffffffffu, alpha0 != 1.0f || alpha1 != 1.0f)) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[4 * j] *= alpha0;
      o[4 * j + 1] *= alpha0;
      o[4 * j + 2] *= alpha1;
      o[4 * j + 3] *= alpha1;
    }
  }
  uint32_t p[kTile / 16][4];
#pragma unroll
  for (int sub = 0; sub < kTile / 16; ++sub) {
    p[sub][0] = Ops::Pack(s[8 * sub], s[8 * sub + 1]);
    p[sub][1] = Ops::Pack(s[8 * sub + 2], s[8 * sub + 3]);
    p[sub][2] = Ops::Pack(s[8 * sub + 4], s[8 * sub + 5]);
    p[sub][3] = Ops::Pack(s[8 * sub + 6], s[8 * sub + 7]);
  }
  WgmmaFenceOperands(o);
  WgmmaFence();
#pragma unroll
  for (int sub = 0; sub < kTile / 16; ++sub) {
    WgmmaPV<T, D>(o, p[sub], WgmmaDesc(v_addr + sub * 2048, kAtomBytes, 1024));
  }
  WgmmaCommitAndWait();
  WgmmaFenceOperands(o);
}

template <typename T, int D, int kKvTile>
__global__ void __launch_bounds__(PrefillWgmmaConfig<D, kKvTile>::kThreads, 1)
    PrefillWgmmaKernel(const PrefillArgs args) {
#if STRATA_HAS_WGMMA
  using Cfg = PrefillWgmmaConfig<D, kKvTile>;
  using Ops = MmaOps<T>;
  using KvLayout = PrefillWgmmaKvLayout<kKvTile>;
  constexpr int kRows = Cfg::kRows;
  constexpr int kTile = Cfg::kTile;
  constexpr int kStages = Cfg::kStages;
  constexpr int kVecs = Cfg::kVecs;
  constexpr int kThreads = Cfg::kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];  // aligned to 1024 below
  unsigned char* const smem = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  T* const sq = reinterpret_cast<T*>(smem);
  T* const skv = sq + Cfg::kQElems;

  const PrefillItem item = args.items[blockIdx.x];
  const int kvh = blockIdx.y;
  const int group = args.num_q_heads / args.num_kv_heads;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wg = warp / 4;
  const int lane = tid % 32;
  const int tpc = args.tokens_per_chunk;
  const size_t head_offset = static_cast<size_t>(kvh) * tpc * D;
  const size_t v_offset = static_cast<size_t>(args.num_kv_heads) * tpc * D;
  const T* const* pages = reinterpret_cast<const T* const*>(args.pages) + item.page_begin;
  const T* const rot_keys =
      args.rotated_keys == nullptr
          ? nullptr
          : static_cast<const T*>(args.rotated_keys) +
                (static_cast<size_t>(item.page_begin) * args.num_kv_heads + kvh) * tpc * D;
  const size_t rot_stride = static_cast<size_t>(args.num_kv_heads) * tpc * D;
  const bool rotate_k = args.apply_rope && rot_keys == nullptr;
  const int32_t* positions = args.positions + item.page_begin;
  const int last_row = item.row_begin + item.num_rows - 1;
  const int kv_end = min(item.kv_stop, item.history + last_row / group + 1);
  // Tiles start at kv_begin (a multiple of 64, not always of kTile).
  const int num_tiles = (kv_end - item.kv_begin + kTile - 1) / kTile;

  // Q rows (zero-filled past num_rows): part of the first async group.
  {
    const T* q = static_cast<const T*>(args.queries);
    for (int i = tid; i < kRows * kVecs; i += kThreads) {
      const int r = i / kVecs, c = i % kVecs;
      const bool valid = r < item.num_rows;
      const T* src = q;
      if (valid) {
        const int row = item.row_begin + r;
        const int qh = kvh * group + row % group;
        src = q + (static_cast<size_t>(item.q_offset + row / group) * args.num_q_heads + qh) * D +
              c * 8;
      }
      CpAsync16(SmemAddr(sq + PrefillSwz<D>(r, c)), src, valid);
    }
  }
  constexpr int kRowStep = kThreads / kVecs;
  constexpr int kRowsPerThread = kTile / kRowStep;
  const int col = tid % kVecs;
  const int r0 = tid / kVecs;
  auto load_tile = [&](int tile, int stage) {
    T* sk = skv + stage * 2 * Cfg::kKvElems;
    T* sv = sk + Cfg::kKvElems;
    const int t0 = item.kv_begin + tile * kTile;
    const T* src[kRowsPerThread];
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {  // independent pointer loads first
      const int t = min(t0 + r0 + k * kRowStep, kv_end - 1);
      src[k] = pages[t / tpc] + head_offset + static_cast<size_t>(t % tpc) * D + col * 8;
    }
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int r = r0 + k * kRowStep;
      const bool valid = t0 + r < kv_end;
      const T* ksrc = src[k];
      if (rot_keys != nullptr) {
        const int t = min(t0 + r, kv_end - 1);
        ksrc = rot_keys + (t / tpc) * rot_stride + static_cast<size_t>(t % tpc) * D + col * 8;
      }
      CpAsync16(SmemAddr(sk + KvLayout::Offset(r, col)), ksrc, valid);
      CpAsync16(SmemAddr(sv + KvLayout::Offset(r, col)), src[k] + v_offset, valid);
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_tiles) load_tile(s, s);
    CpAsyncCommit();
  }

  const int g = lane / 4;
  const int t4 = lane % 4;
  // This warp's 16 rows; the warpgroup's 64 decide skipping (wgmma is
  // warpgroup-wide), the warp's own first row the masking.
  const int wrow0 = warp * 16;
  const int wrow = item.row_begin + wrow0;
  const int wg_row = item.row_begin + wg * 64;
  const bool wg_active = wg * 64 < item.num_rows;
  const int warp_min_lim = item.history + wrow / group + 1;
  const int wg_max_lim = item.history + min(wg_row + 63, last_row) / group + 1;

  float o[D / 2];
#pragma unroll
  for (int j = 0; j < D / 2; ++j) o[j] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  const float2* const table = args.rope_table;
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
      RotateTile<T, D, kRows, kThreads>(sq, table, args.rope_table_base, args.inv_freq,
                                        [&](int r) {
                                          if (r >= item.num_rows) return -1;
                                          const int t = item.history + (item.row_begin + r) / group;
                                          return positions[t / tpc] + t % tpc;
                                        });
      __syncthreads();
    }
    if (rotate_k) {
      RotateTile<T, D, kTile, kThreads, KvLayout>(sk, table, args.rope_table_base, args.inv_freq,
                                                  [&](int r) {
                                                    const int t = t0 + r;
                                                    if (t >= kv_end) return -1;
                                                    return positions[t / tpc] + t % tpc;
                                                  });
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

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r_local = wrow0 + g + half * 8;
    if (r_local >= item.num_rows) continue;
    const float l = half ? l1 : l0;
    const float m = half ? m1 : m0;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    if (item.partial_row >= 0) {  // one piece of a split tile: fp32 state
      const size_t prow = static_cast<size_t>(kvh) * args.partial_rows + item.partial_row + r_local;
      float* dst = args.partial_out + prow * D + t4 * 2;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        *reinterpret_cast<float2*>(dst + j * 8) =
            make_float2(o[4 * j + half * 2] * inv, o[4 * j + half * 2 + 1] * inv);
      }
      if (t4 == 0) args.partial_lse[prow] = l > 0.0f ? m + log2f(l) : -INFINITY;
      continue;
    }
    const int row = item.row_begin + r_local;
    const int qh = kvh * group + row % group;
    const size_t dst_row = static_cast<size_t>(item.q_offset + row / group) * args.num_q_heads + qh;
    T* dst = static_cast<T*>(args.out) + dst_row * D + t4 * 2;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const uint32_t packed = Ops::Pack(o[4 * j + half * 2] * inv, o[4 * j + half * 2 + 1] * inv);
      *reinterpret_cast<uint32_t*>(dst + j * 8) = packed;
    }
    if (t4 == 0 && args.lse != nullptr) args.lse[dst_row] = l > 0.0f ? m + log2f(l) : -INFINITY;
  }
#else
  __trap();  // wgmma needs sm_90a
#endif
}

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_PREFILL_WGMMA_CUH_
