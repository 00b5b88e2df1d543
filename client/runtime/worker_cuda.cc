#include "client/runtime/worker_cuda.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "kernels/cuda_status.h"

namespace strata::runtime {
namespace {

class DeviceLoad final : public PrefixLoad {
 public:
  DeviceLoad(std::unique_ptr<LayerwiseDeviceLoad> load, CUstream_st* stream)
      : load_(std::move(load)), stream_(stream) {}
  std::span<const SlotId> slots() const override { return load_->slots(); }
  absl::Status BeforeAttention(int layer) override {
    return load_->WaitLayer(static_cast<uint32_t>(layer), stream_);
  }
  FetchResult Wait() override { return load_->Wait(); }

 private:
  std::unique_ptr<LayerwiseDeviceLoad> load_;
  CUstream_st* const stream_;
};

class CudaKvDevice final : public KvDevice {
 public:
  CudaKvDevice(DeviceFetcher* fetcher, CUstream_st* stream) : fetcher_(fetcher), stream_(stream) {}

  absl::StatusOr<std::unique_ptr<PrefixLoad>> StartLoad(client::Client& client,
                                                        const client::Namespace& ns,
                                                        ChunkPool& pool,
                                                        std::span<const ChunkKey> keys) override {
    auto load = fetcher_->Start(client, ns, pool, keys);
    if (!load.ok()) return load.status();
    return std::unique_ptr<PrefixLoad>(new DeviceLoad(*std::move(load), stream_));
  }

  absl::Status CopyToHost(ChunkPool& pool, std::span<const SlotId> slots,
                          std::span<std::byte> dest) override {
    for (size_t i = 0; i < slots.size(); ++i) {
      absl::StatusOr<std::byte*> base = pool.SlotBase(slots[i]);
      if (!base.ok()) return base.status();
      if (absl::Status st = kernels::CudaStatus(
              cudaMemcpyAsync(dest.data() + i * pool.chunk_bytes(), *base, pool.chunk_bytes(),
                              cudaMemcpyDeviceToHost, stream_),
              "copy a chunk to the host for saving");
          !st.ok()) {
        return st;
      }
    }
    return kernels::CudaStatus(cudaStreamSynchronize(stream_), "copy chunks to the host");
  }

 private:
  DeviceFetcher* const fetcher_;
  CUstream_st* const stream_;
};

}  // namespace

std::unique_ptr<KvDevice> CreateCudaKvDevice(DeviceFetcher* fetcher, CUstream_st* compute_stream) {
  return std::make_unique<CudaKvDevice>(fetcher, compute_stream);
}

}  // namespace strata::runtime
