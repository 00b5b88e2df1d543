// Helpers of the GPU benchmarks: checks (a failed CUDA call or status ends
// the run with the file, line and message, exit status 1) and the timing of
// launches replayed from CUDA graphs.
#ifndef STRATA_TOOLS_BENCH_KERNELS_BENCH_UTIL_H_
#define STRATA_TOOLS_BENCH_KERNELS_BENCH_UTIL_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

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

namespace strata::bench {

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Captures what `launch()` enqueues on `stream` into an executable graph.
template <typename Launch>
cudaGraphExec_t CaptureGraph(cudaStream_t stream, Launch launch) {
  cudaGraph_t g;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  launch();
  CHECK_CUDA(cudaStreamEndCapture(stream, &g));
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaGraphInstantiate(&exec, g, 0));
  CHECK_CUDA(cudaGraphDestroy(g));
  return exec;
}

// Microseconds per launch: every graph once to warm up, then 5 repetitions of
// `iters` launches cycling over `graphs` (so that replays of copies miss in
// L2), timed with CUDA events; the median of the 5.
inline double TimeGraphsUs(cudaStream_t stream, const std::vector<cudaGraphExec_t>& graphs,
                           int iters) {
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  for (cudaGraphExec_t g : graphs) CHECK_CUDA(cudaGraphLaunch(g, stream));
  std::vector<double> t;
  for (int rep = 0; rep < 5; ++rep) {
    CHECK_CUDA(cudaEventRecord(e0, stream));
    for (int i = 0; i < iters; ++i) CHECK_CUDA(cudaGraphLaunch(graphs[i % graphs.size()], stream));
    CHECK_CUDA(cudaEventRecord(e1, stream));
    CHECK_CUDA(cudaEventSynchronize(e1));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms * 1e3 / iters);
  }
  CHECK_CUDA(cudaEventDestroy(e0));
  CHECK_CUDA(cudaEventDestroy(e1));
  return Median(t);
}

}  // namespace strata::bench

#endif  // STRATA_TOOLS_BENCH_KERNELS_BENCH_UTIL_H_
