// Random fill of 16-bit device buffers (fp16 or bf16 values, about N(0, 1)).
#ifndef STRATA_TOOLS_BENCH_KERNELS_FILL_H_
#define STRATA_TOOLS_BENCH_KERNELS_FILL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace strata::bench {

cudaError_t FillRandom16(void* data, size_t elements, uint64_t seed, bool bf16,
                         cudaStream_t stream);

}  // namespace strata::bench

#endif  // STRATA_TOOLS_BENCH_KERNELS_FILL_H_
