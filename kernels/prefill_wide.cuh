// Prefill attention with 128 query rows per block: the kernel variants
// PrefillOptions::KernelVariant::kRows128 and kRows128Wide. Same items,
// arguments, RoPE paths (table or sincosf, keys in the kernel or rotated
// ahead), split-KV partial output and numerics per row as PrefillKernel
// (prefill.cuh); what changes is the shape of a block:
//
// - kWarps warps of kMTiles x 16 query rows each (kRows = 128 rows per
//   block), so every K / V tile that lands in shared memory serves twice as
//   many query rows as in the 64-row kernel: half the L2 -> SM traffic and
//   half the in-kernel key rotations per query row. With kMTiles = 2 every
//   K / V fragment a warp loads with ldmatrix feeds two MMAs (one per
//   16-row m-tile), halving shared-memory reads per MMA; the Q fragments
//   then come from shared memory at each step when holding them would take
//   more than 32 registers (d128).
// - A kStages-stage cp.async pipeline with one __syncthreads per KV tile:
//   the block waits for tile i, synchronises (so every warp is done with
//   tile i - 1), and only then refills tile i - 1's stage with tile
//   i + kStages - 1; in-kernel key rotation adds a second barrier between
//   the rotation and the MMAs.
//
// Shared memory: Q tile kRows x D, then kStages x (K, V) tiles of 64 x D,
// XOR-swizzled as in prefill.cuh.
#ifndef STRATA_KERNELS_PREFILL_WIDE_CUH_
#define STRATA_KERNELS_PREFILL_WIDE_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma_ops.cuh"
#include "kernels/prefill.cuh"
#include "kernels/prefill_item.h"
#include "kernels/prefill_launch.h"

namespace strata::kernels::device {

template <int D, int kWarps_, int kMTiles_, int kStages_, int kMinBlocks_>
struct PrefillWideConfig {
  static constexpr int kWarps = kWarps_;
  static constexpr int kMTiles = kMTiles_;    // 16-row m-tiles per warp
  static constexpr int kStages = kStages_;
  static constexpr int kMinBlocks = kMinBlocks_;  // blocks per SM (launch bounds)
  static constexpr int kRows = kWarps * kMTiles * 16;
  static constexpr int kTile = kPrefillKvTile;  // KV tokens per stage
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kVecs = D / 8;
  static constexpr int kQElems = kRows * D;
  static constexpr int kKvElems = kTile * D;
  static constexpr int kSmemBytes = (kQElems + kStages * 2 * kKvElems) * 2;
  // Q fragments held in registers for the whole block (32 or fewer).
  static constexpr bool kQInRegs = kMTiles * (D / 16) * 4 <= 32;
  static_assert(kRows == kPrefillWideRowsPerTile, "one Q tile per item");
  static_assert(kStages >= 2, "the refill of a stage needs a second one");
  static_assert(kThreads % kVecs == 0 && kTile % (kThreads / kVecs) == 0, "tile loads");
};

// kRows128: 8 warps x 16 rows, 3 stages, 1 block of 8 warps per SM
// (128 KiB of shared memory at d128).
template <int D>
using PrefillRows128Config = PrefillWideConfig<D, 8, 1, 3, 1>;
// kRows128Wide: 4 warps x 32 rows, 2 stages, 2 blocks of 4 warps per SM
// (96 KiB each at d128).
template <int D>
using PrefillRows128WideConfig = PrefillWideConfig<D, 4, 2, 2, 2>;

// One warp, its M m-tiles of 16 rows, against a 64-token K / V tile. The A
// fragments of m-tile mt and k-step k are qf[mt][k] (kQInRegs) or loaded
// from the Q tile sq at rows q_row0 + mt * 16 ..; when mask, row r (of
// the sequence) among them sees tile tokens < lim_base + r / group, where
// this lane's rows are row_g + mt * 16 and row_g + mt * 16 + 8 (computed only
// in masked tiles). The arithmetic of each row is that of PrefillStep.
template <typename T, int D, int M, bool kQInRegs>
__device__ __forceinline__ void PrefillWideStep(const T* sq, int q_row0, const T* sk,
                                                const T* sv, bool mask, int lim_base, int row_g,
                                                int group, float scale_log2,
                                                const uint32_t (&qf)[kQInRegs ? M : 1][D / 16][4],
                                                float (&o)[M][D / 8][4], float (&m)[M][2],
                                                float (&l)[M][2]) {
  using Ops = MmaOps<T>;
  const int lane = threadIdx.x % 32;
  const int t4 = lane % 4;
  const int mi = lane / 8;
  float s[M][8][4];
#pragma unroll
  for (int mt = 0; mt < M; ++mt) {
#pragma unroll
    for (int n = 0; n < 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
  }
#pragma unroll
  for (int k = 0; k < D / 16; ++k) {
    uint32_t a[M][4];
#pragma unroll
    for (int mt = 0; mt < M; ++mt) {
      if constexpr (kQInRegs) {
#pragma unroll
        for (int e = 0; e < 4; ++e) a[mt][e] = qf[mt][k][e];
      } else {
        Ldmatrix4(a[mt],
                  SmemAddr(sq + PrefillSwz<D>(q_row0 + mt * 16 + lane % 16, k * 2 + lane / 16)));
      }
    }
#pragma unroll
    for (int sub = 0; sub < 4; ++sub) {
      uint32_t b[4];
      Ldmatrix4(b, SmemAddr(sk + PrefillSwz<D>(sub * 16 + (mi / 2) * 8 + lane % 8,
                                               k * 2 + (mi % 2))));
#pragma unroll
      for (int mt = 0; mt < M; ++mt) {
        Ops::Mma(s[mt][2 * sub], a[mt], b[0], b[1]);
        Ops::Mma(s[mt][2 * sub + 1], a[mt], b[2], b[3]);
      }
    }
  }
#pragma unroll
  for (int mt = 0; mt < M; ++mt) {
    if (mask) {
      const int lim0 = lim_base + (row_g + mt * 16) / group;
      const int lim1 = lim_base + (row_g + mt * 16 + 8) / group;
#pragma unroll
      for (int n = 0; n < 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (n * 8 + t4 * 2 + (e & 1) >= (e < 2 ? lim0 : lim1)) s[mt][n][e] = -INFINITY;
        }
      }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      mx0 = fmaxf(mx0, fmaxf(s[mt][n][0], s[mt][n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[mt][n][2], s[mt][n][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m[mt][0], mx0 * scale_log2);
    const float mn1 = fmaxf(m[mt][1], mx1 * scale_log2);
    const float base0 = mn0 == -INFINITY ? 0.0f : mn0;
    const float base1 = mn1 == -INFINITY ? 0.0f : mn1;
    const float alpha0 = FastExp2(m[mt][0] - base0), alpha1 = FastExp2(m[mt][1] - base1);
    m[mt][0] = mn0;
    m[mt][1] = mn1;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      s[mt][n][0] = FastExp2(fmaf(s[mt][n][0], scale_log2, -base0));
      s[mt][n][1] = FastExp2(fmaf(s[mt][n][1], scale_log2, -base0));
      s[mt][n][2] = FastExp2(fmaf(s[mt][n][2], scale_log2, -base1));
      s[mt][n][3] = FastExp2(fmaf(s[mt][n][3], scale_log2, -base1));
      sum0 += s[mt][n][0] + s[mt][n][1];
      sum1 += s[mt][n][2] + s[mt][n][3];
    }
    l[mt][0] = l[mt][0] * alpha0 + sum0;
    l[mt][1] = l[mt][1] * alpha1 + sum1;
    if (__any_sync(0xffffffffu, alpha0 != 1.0f || alpha1 != 1.0f)) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        o[mt][j][0] *= alpha0;
        o[mt][j][1] *= alpha0;
        o[mt][j][2] *= alpha1;
        o[mt][j][3] *= alpha1;
      }
    }
  }
#pragma unroll
  for (int sub = 0; sub < 4; ++sub) {
    uint32_t p[M][4];
#pragma unroll
    for (int mt = 0; mt < M; ++mt) {
      p[mt][0] = Ops::Pack(s[mt][2 * sub][0], s[mt][2 * sub][1]);
      p[mt][1] = Ops::Pack(s[mt][2 * sub][2], s[mt][2 * sub][3]);
      p[mt][2] = Ops::Pack(s[mt][2 * sub + 1][0], s[mt][2 * sub + 1][1]);
      p[mt][3] = Ops::Pack(s[mt][2 * sub + 1][2], s[mt][2 * sub + 1][3]);
    }
#pragma unroll
    for (int j2 = 0; j2 < D / 16; ++j2) {
      uint32_t b[4];
      Ldmatrix4Trans(b, SmemAddr(sv + PrefillSwz<D>(sub * 16 + (mi % 2) * 8 + lane % 8,
                                                    j2 * 2 + mi / 2)));
#pragma unroll
      for (int mt = 0; mt < M; ++mt) {
        Ops::Mma(o[mt][2 * j2], p[mt], b[0], b[1]);
        Ops::Mma(o[mt][2 * j2 + 1], p[mt], b[2], b[3]);
      }
    }
  }
}

template <typename T, int D, typename Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    PrefillWideKernel(const PrefillArgs args) {
  GridDependencyWait();  // launched as a programmatic dependent (LaunchPrefill)
  using Layout = PrefillSwzLayout<D>;
  constexpr int kRows = Cfg::kRows;
  constexpr int kTile = Cfg::kTile;
  constexpr int kStages = Cfg::kStages;
  constexpr int kThreads = Cfg::kThreads;
  constexpr int M = Cfg::kMTiles;
  constexpr bool kQInRegs = Cfg::kQInRegs;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* const sq = reinterpret_cast<T*>(smem_raw);
  T* const skv = sq + Cfg::kQElems;

  const PrefillBlock<T, D> blk(args);
  const PrefillItem& item = blk.item;
  const int group = blk.group;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int first_tile = item.kv_begin / kTile;
  const int num_tiles = (blk.kv_end + kTile - 1) / kTile - first_tile;

  // Q rows: part of the first async group.
  blk.template LoadQ<kRows, kThreads>(args, sq);
  // The K / V tile loader is PrefillBlock::LoadKv written out (as is the
  // epilogue, PrefillBlock::StoreRow): through the helpers, ptxas spills
  // this kernel at d128 with 4 warps x 32 rows (at 255 registers).
  constexpr int kVecs = Cfg::kVecs;
  constexpr int kRowStep = kThreads / kVecs;
  constexpr int kRowsPerThread = kTile / kRowStep;
  const int col = tid % kVecs;
  const int r0 = tid / kVecs;
  auto load_tile = [&](int tile, int stage) {
    T* sk = skv + stage * 2 * Cfg::kKvElems;
    T* sv = sk + Cfg::kKvElems;
    const int t0 = tile * kTile;
    const T* src[kRowsPerThread];
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {  // independent pointer loads first
      const int t = min(t0 + r0 + k * kRowStep, blk.kv_end - 1);
      src[k] = blk.pages[t / blk.tpc] + blk.head_offset + static_cast<size_t>(t % blk.tpc) * D +
               col * 8;
    }
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int r = r0 + k * kRowStep;
      const bool valid = t0 + r < blk.kv_end;
      const T* ksrc = src[k];
      if (blk.rot_keys != nullptr) {
        const int t = min(t0 + r, blk.kv_end - 1);
        ksrc = blk.rot_keys + (t / blk.tpc) * blk.rot_stride +
               static_cast<size_t>(t % blk.tpc) * D + col * 8;
      }
      CpAsync16(SmemAddr(sk + PrefillSwz<D>(r, col)), ksrc, valid);
      CpAsync16(SmemAddr(sv + PrefillSwz<D>(r, col)), src[k] + blk.v_offset, valid);
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_tiles) load_tile(first_tile + s, s);
    CpAsyncCommit();
  }

  const int g = lane / 4;
  const int t4 = lane % 4;
  // This warp's rows (local wrow0 .. wrow0 + 16 M); the causal limits
  // (exclusive KV index) of its first and last rows.
  const int wrow0 = warp * 16 * M;
  const int wrow = item.row_begin + wrow0;
  const bool warp_active = wrow0 < item.num_rows;
  const int warp_min_lim = item.history + wrow / group + 1;
  const int warp_max_lim = item.history + min(wrow + 16 * M - 1, blk.last_row) / group + 1;

  uint32_t qf[kQInRegs ? M : 1][D / 16][4];
  float o[M][D / 8][4];
  float m[M][2], l[M][2];
#pragma unroll
  for (int mt = 0; mt < M; ++mt) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }

  for (int i = 0; i < num_tiles; ++i) {
    // Tile i has landed (at most kStages - 2 younger groups in flight) and
    // every warp is done with tile i - 1, whose stage is refilled below.
    CpAsyncWait<kStages - 2>();
    __syncthreads();
    const int pre = i + kStages - 1;
    if (pre < num_tiles) load_tile(first_tile + pre, pre % kStages);
    CpAsyncCommit();
    T* sk = skv + (i % kStages) * 2 * Cfg::kKvElems;
    T* sv = sk + Cfg::kKvElems;
    const int t0 = (first_tile + i) * kTile;
    if (i == 0) {
      if (args.apply_rope) {
        blk.template RotateQ<kRows, kThreads>(args, sq);
        __syncthreads();
      }
      if constexpr (kQInRegs) {
#pragma unroll
        for (int mt = 0; mt < M; ++mt) {
#pragma unroll
          for (int k = 0; k < D / 16; ++k) {
            Ldmatrix4(qf[mt][k], SmemAddr(sq + PrefillSwz<D>(wrow0 + mt * 16 + (lane % 16),
                                                             k * 2 + lane / 16)));
          }
        }
      }
    }
    if (blk.rotate_k) {
      blk.template RotateK<kTile, kThreads, Layout>(args, sk, t0);
      __syncthreads();
    }
    if (warp_active && t0 < warp_max_lim) {
      PrefillWideStep<T, D, M, kQInRegs>(sq, wrow0, sk, sv, t0 + kTile > warp_min_lim,
                                         item.history + 1 - t0, wrow + g, group,
                                         args.scale_log2, qf, o, m, l);
    }
  }
  CpAsyncWait<0>();

#pragma unroll
  for (int mt = 0; mt < M; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float lsum = l[mt][half];
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
      const int r_local = wrow0 + mt * 16 + g + half * 8;
      if (r_local >= item.num_rows) continue;
      const float mx = m[mt][half];
      const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
      if (item.partial_row >= 0) {  // one piece of a split tile: fp32 state
        const size_t prow =
            static_cast<size_t>(blk.kvh) * args.partial_rows + item.partial_row + r_local;
        float* dst = args.partial_out + prow * D + t4 * 2;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          *reinterpret_cast<float2*>(dst + j * 8) =
              make_float2(o[mt][j][half * 2] * inv, o[mt][j][half * 2 + 1] * inv);
        }
        if (t4 == 0) args.partial_lse[prow] = lsum > 0.0f ? mx + log2f(lsum) : -INFINITY;
        continue;
      }
      const int row = item.row_begin + r_local;
      const int qh = blk.kvh * group + row % group;
      const size_t dst_row =
          static_cast<size_t>(item.q_offset + row / group) * args.num_q_heads + qh;
      T* dst = static_cast<T*>(args.out) + dst_row * D + t4 * 2;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        const uint32_t packed =
            MmaOps<T>::Pack(o[mt][j][half * 2] * inv, o[mt][j][half * 2 + 1] * inv);
        *reinterpret_cast<uint32_t*>(dst + j * 8) = packed;
      }
      if (t4 == 0 && args.lse != nullptr) {
        args.lse[dst_row] = lsum > 0.0f ? mx + log2f(lsum) : -INFINITY;
      }
    }
  }
}

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_PREFILL_WIDE_CUH_
