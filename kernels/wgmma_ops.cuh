// Warpgroup-level tensor-core primitives of Hopper (sm_90a PTX): shared-
// memory matrix descriptors (128-byte swizzle), wgmma.mma_async with A in
// registers (m64n64k16 and m64n128k16, fp16 / bf16 in, fp32 accumulate),
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
// Waits for every committed group of this warpgroup.
__device__ __forceinline__ void WgmmaWait() {
#if STRATA_HAS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
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

#define STRATA_WGMMA_ACC8(i)                                                                 \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])

// d (m64n64, 32 per thread) (+)= a (registers, m64k16) x B (descriptor,
// k16n64); accumulate = 0 overwrites d. kTransB: B is MN-major.
template <typename T, int kTransB>
__device__ __forceinline__ void WgmmaN64(float (&d)[32], const uint32_t (&a)[4], uint64_t desc,
                                         int accumulate) {
#if STRATA_HAS_WGMMA
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
        "{%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
        : STRATA_WGMMA_ACC8(0), STRATA_WGMMA_ACC8(8), STRATA_WGMMA_ACC8(16), STRATA_WGMMA_ACC8(24)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(kTransB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
        "{%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
        : STRATA_WGMMA_ACC8(0), STRATA_WGMMA_ACC8(8), STRATA_WGMMA_ACC8(16), STRATA_WGMMA_ACC8(24)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(kTransB));
  }
#endif
}

// As WgmmaN64 for m64n128 (64 accumulators per thread).
template <typename T, int kTransB>
__device__ __forceinline__ void WgmmaN128(float (&d)[64], const uint32_t (&a)[4], uint64_t desc,
                                          int accumulate) {
#if STRATA_HAS_WGMMA
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "{%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"
        : STRATA_WGMMA_ACC8(0), STRATA_WGMMA_ACC8(8), STRATA_WGMMA_ACC8(16), STRATA_WGMMA_ACC8(24),
          STRATA_WGMMA_ACC8(32), STRATA_WGMMA_ACC8(40), STRATA_WGMMA_ACC8(48),
          STRATA_WGMMA_ACC8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(kTransB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "{%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"
        : STRATA_WGMMA_ACC8(0), STRATA_WGMMA_ACC8(8), STRATA_WGMMA_ACC8(16), STRATA_WGMMA_ACC8(24),
          STRATA_WGMMA_ACC8(32), STRATA_WGMMA_ACC8(40), STRATA_WGMMA_ACC8(48),
          STRATA_WGMMA_ACC8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(kTransB));
  }
#endif
}

#undef STRATA_WGMMA_ACC8

}  // namespace strata::kernels::device

#endif  // STRATA_KERNELS_WGMMA_OPS_CUH_
