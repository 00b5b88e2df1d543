// The worker's KvDevice for a chunk pool in GPU memory: loads through a
// DeviceFetcher (the same-host path straight from the node's pool, or
// pinned staging), the model's stream waiting for each layer's copies.
#ifndef STRATA_CLIENT_RUNTIME_WORKER_CUDA_H_
#define STRATA_CLIENT_RUNTIME_WORKER_CUDA_H_

#include <cstddef>
#include <memory>

#include "client/runtime/device_fetch.h"
#include "client/runtime/worker.h"

struct CUstream_st;

namespace strata::runtime {

// `fetcher` must outlive the device; `compute_stream` is the model's. Saves
// copy chunks to pinned host buffers on a stream of their own, after the
// model's queued work, without blocking the next step; the buffers are
// reused, up to `pinned_save_bytes` in all (a copy beyond that goes through
// ordinary memory and is waited for).
std::unique_ptr<KvDevice> CreateCudaKvDevice(DeviceFetcher* fetcher, CUstream_st* compute_stream,
                                             size_t pinned_save_bytes = size_t{4} << 30);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_WORKER_CUDA_H_
