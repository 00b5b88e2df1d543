// Random fill of 16-bit device buffers (fp16 or bf16 values, about N(0, 1)).
#ifndef STRATA_TOOLS_BENCH_KERNELS_FILL_H_
#define STRATA_TOOLS_BENCH_KERNELS_FILL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace strata::bench {

cudaError_t FillRandom16(void* data, size_t elements, uint64_t seed, bool bf16,
                         cudaStream_t stream);

// Reads `bytes` (a multiple of 16, 16-byte aligned) once, loads_per_thread
// (4 or 16) 16-byte loads per thread in one pass of 256-thread blocks, and
// writes a word to `sink` only if the data XOR to a value random data never
// gives: a kernel that does nothing but stream the bytes, the practical
// floor under a kernel that must read them. cudaErrorInvalidValue for
// another loads_per_thread.
cudaError_t StreamRead(const void* data, size_t bytes, uint32_t* sink, int loads_per_thread,
                       cudaStream_t stream);

}  // namespace strata::bench

#endif  // STRATA_TOOLS_BENCH_KERNELS_FILL_H_
