// Checks of the GPU benchmarks: a failed CUDA call or status ends the run
// with the file, line and message (exit status 1).
#ifndef STRATA_TOOLS_BENCH_KERNELS_BENCH_CHECK_H_
#define STRATA_TOOLS_BENCH_KERNELS_BENCH_CHECK_H_

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"

#define CHECK_CUDA(expr)                                                        \
  do {                                                                          \
    cudaError_t e = (expr);                                                     \
    if (e != cudaSuccess) {                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,         \
                   cudaGetErrorString(e));                                      \
      std::exit(1);                                                             \
    }                                                                           \
  } while (0)

#define CHECK_OK(expr)                                                          \
  do {                                                                          \
    absl::Status s = (expr);                                                    \
    if (!s.ok()) {                                                              \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, s.ToString().c_str()); \
      std::exit(1);                                                             \
    }                                                                           \
  } while (0)

#endif  // STRATA_TOOLS_BENCH_KERNELS_BENCH_CHECK_H_
