// Warpgroup-level tensor-core primitives of Hopper (sm_90a PTX): shared-
// memory matrix descriptors (128-byte swizzle), wgmma.mma_async with A in
// registers (m64n64k16 and m64n128k16, fp16 / bf16 in, fp32 accumulate) or
// from shared memory (m64n64k16, m64n128k16),
// its fence / commit / wait, and the proxy fence that orders ordinary
// shared-memory writes before wgmma's reads. No dependencies beyond the CUDA
// headers.
//
// STRATA_HAS_WGMMA is 1 when compiling for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL);
// elsewhere (host pass, compute_90 PTX) the functions are empty and kernels
// using them must not run.
#ifndef STRATA_KERNELS_WGMMA_OPS_CUH_
#define STRATA_KERNELS_WGMMA_OPS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define STRATA_HAS_WGMMA 1
#else
#define STRATA_HAS_WGMMA 0
#endif

namespace strata::kernels::device {

// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading
// and stride byte offsets (all >> 4).
__device__ __forceinline__ uint64_t WgmmaDesc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>((lbo & 0x3FFFF) >> 4) << 16;
  d |= static_cast<uint64_t>((sbo & 0x3FFFF) >> 4) << 32;
  d |= uint64_t{1} << 62;  // SWIZZLE_128B
  return d;
}

__device__ __forceinline__ void WgmmaFence() {
#if STRATA_HAS_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void WgmmaCommit() {
#if STRATA_HAS_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most kPending of this warpgroup's committed groups are
// still running (groups complete in order); 0: all of them.
template <int kPending = 0>
__device__ __forceinline__ void WgmmaWait() {
#if STRATA_HAS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}
__device__ __forceinline__ void WgmmaCommitAndWait() {
  WgmmaCommit();
  WgmmaWait();
}
// Keeps the compiler from moving accumulator registers across the
// asynchronous products (no code).
template <int N>
__device__ __forceinline__ void WgmmaFenceOperands(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for register-A operands (packed pairs), which the products
// read while they run: kept in their registers until this point.
template <int N, int M>
__device__ __forceinline__ void WgmmaFenceOperands(uint32_t (&r)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int j = 0; j < M; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
  }
}
__device__ __forceinline__ void ProxyFenceShared() {
#if STRATA_HAS_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads
// (a multiple of 32): Sync waits for the count, Arrive counts this warp
// without waiting. Used to order two warpgroups' products.
__device__ __forceinline__ void NamedBarrierSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void NamedBarrierArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Per-thread register budget of the executing warpgroup (all its threads
// execute it): lowered for a producer that needs few, raised for the
// consumers, within the block's register file.
template <int kRegs>
__device__ __forceinline__ void SetMaxRegsDec() {
#if STRATA_HAS_WGMMA
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
#endif
}
template <int kRegs>
__device__ __forceinline__ void SetMaxRegsInc() {
#if STRATA_HAS_WGMMA
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
#endif
}

// Shared-memory barriers (mbarrier) of a block: init by one thread (then a
// block barrier), arrive, wait for the completion of the phase of parity
// `parity`, and the arrival that a thread's earlier cp.async copies make
// when they land (noinc: counted in the barrier's expected arrivals).
__device__ __forceinline__ void MbarInit(uint32_t bar, uint32_t count) {
#if STRATA_HAS_WGMMA
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
#if STRATA_HAS_WGMMA
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar)
               : "memory");
#endif
}
__device__ __forceinline__ void MbarWait(uint32_t bar, uint32_t parity) {
#if STRATA_HAS_WGMMA
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (done == 0);
#endif
}
// Arrives on `bar` and adds `bytes` to the transaction count its phase
// waits for (the bytes of the tensor copies that complete on it).
__device__ __forceinline__ void MbarArriveExpectTx(uint32_t bar, uint32_t bytes) {
#if STRATA_HAS_WGMMA
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
#endif
}
// Tensor copies (TMA) of one box of the tensor map at `map` (a kernel
// parameter, __grid_constant__) at the given coordinates (innermost first)
// into shared memory at dst; complete_tx on `bar` when they land.
__device__ __forceinline__ void TmaLoad4(uint32_t dst, const void* map, int c0, int c1, int c2,
                                         int c3, uint32_t bar) {
#if STRATA_HAS_WGMMA
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
#endif
}
__device__ __forceinline__ void TmaLoad5(uint32_t dst, const void* map, int c0, int c1, int c2,
                                         int c3, int c4, uint32_t bar) {
#if STRATA_HAS_WGMMA
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4),
      "r"(bar)
      : "memory");
#endif
}
__device__ __forceinline__ void CpAsyncMbarArrive(uint32_t bar) {
#if STRATA_HAS_WGMMA
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
#endif
}

#define STRATA_WGMMA_ACC8(i)                                                                 \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define STRATA_WGMMA_ACC32(i) \
  STRATA_WGMMA_ACC8(i), STRATA_WGMMA_ACC8(i + 8), STRATA_WGMMA_ACC8(i + 16), STRATA_WGMMA_ACC8(i + 24)
#define STRATA_WGMMA_REGS32                                                            \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                            \
  "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define STRATA_WGMMA_REGS64                                                            \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                            \
  "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                   \
  "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                   \
  "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
// One instruction for dtype string TY ("f16" / "bf16"), written once for
// both dtypes: A in registers (RS) or both operands in shared memory (SS).
#define STRATA_WGMMA_N64_RS(TY)                                                            \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " STRATA_WGMMA_REGS32 \
               ", {%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"                              \
               : STRATA_WGMMA_ACC32(0)                                                     \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate),   \
                 "n"(kTransB))
#define STRATA_WGMMA_N128_RS(TY)                                                            \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                 \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " STRATA_WGMMA_REGS64 \
               ", {%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"                               \
               : STRATA_WGMMA_ACC32(0), STRATA_WGMMA_ACC32(32)                              \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate),    \
                 "n"(kTransB))
#define STRATA_WGMMA_N64_SS(TY)                                                            \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " STRATA_WGMMA_REGS32 \
               ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                           \
               : STRATA_WGMMA_ACC32(0)                                                     \
               : "l"(desc_a), "l"(desc_b), "r"(accumulate))
#define STRATA_WGMMA_N128_SS(TY)                                                            \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                 \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " STRATA_WGMMA_REGS64 \
               ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                            \
               : STRATA_WGMMA_ACC32(0), STRATA_WGMMA_ACC32(32)                              \
               : "l"(desc_a), "l"(desc_b), "r"(accumulate))

// d (m64n64, 32 per thread) (+)= a (registers, m64k16) x B (descriptor,
// k16n64); accumulate = 0 overwrites d. kTransB: B is MN-major.
template <typename T, int kTransB>
__device__ __forceinline__ void WgmmaN64(float (&d)[32], const uint32_t (&a)[4], uint64_t desc,
                                         int accumulate) {
#if STRATA_HAS_WGMMA
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    STRATA_WGMMA_N64_RS("bf16");
  } else {
    STRATA_WGMMA_N64_RS("f16");
  }
#endif
}

// As WgmmaN64 for m64n128 (64 accumulators per thread).
template <typename T, int kTransB>
__device__ __forceinline__ void WgmmaN128(float (&d)[64], const uint32_t (&a)[4], uint64_t desc,
                                          int accumulate) {
#if STRATA_HAS_WGMMA
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    STRATA_WGMMA_N128_RS("bf16");
  } else {
    STRATA_WGMMA_N128_RS("f16");
  }
#endif
}

// d (m64n128) (+)= A (descriptor desc_a, m64k16, K-major) x B (descriptor
// desc_b, k16n128, K-major): both operands from shared memory.
template <typename T>
__device__ __forceinline__ void WgmmaN128SS(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                            int accumulate) {
#if STRATA_HAS_WGMMA
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    STRATA_WGMMA_N128_SS("bf16");
  } else {
    STRATA_WGMMA_N128_SS("f16");
  }
#endif
}

// As WgmmaN128SS for m64n64 (32 accumulators per thread).
template <typename T>
__device__ __forceinline__ void WgmmaN64SS(float (&d)[32], uint64_t desc_a, uint64_t desc_b,
                                           int accumulate) {
#if STRATA_HAS_WGMMA
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    STRATA_WGMMA_N64_SS("bf16");
  } else {
    STRATA_WGMMA_N64_SS("f16");
  }
#endif
}

#undef STRATA_WGMMA_N64_RS
#undef STRATA_WGMMA_N64_SS
#undef STRATA_WGMMA_N128_RS
#undef STRATA_WGMMA_N128_SS
#undef STRATA_WGMMA_REGS32
#undef STRATA_WGMMA_REGS64
#undef STRATA_WGMMA_ACC32
#undef STRATA_WGMMA_ACC8

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_WGMMA_OPS_CUH_
