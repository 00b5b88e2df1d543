#include "client/runtime/worker_cuda.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/cuda_status.h"
#include "store/common/status_macros.h"

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

// Pinned host buffers for save copies, reused (page-locking memory is slow).
// Thread-safe.
class PinnedBuffers {
 public:
  explicit PinnedBuffers(size_t max_bytes) : max_bytes_(max_bytes) {}
  ~PinnedBuffers() {
    for (auto& [ptr, bytes] : free_) cudaFreeHost(ptr);
  }
  // A buffer of at least `bytes`, or null when the cap is reached (the
  // caller copies through pageable memory then).
  std::pair<std::byte*, size_t> Take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].second >= bytes && (best == free_.size() || free_[i].second < free_[best].second)) {
        best = i;
      }
    }
    if (best < free_.size()) {
      auto b = free_[best];
      free_.erase(free_.begin() + best);
      return b;
    }
    // Free smaller buffers first when the cap would be passed.
    while (total_ + bytes > max_bytes_ && !free_.empty()) {
      cudaFreeHost(free_.back().first);
      total_ -= free_.back().second;
      free_.pop_back();
    }
    void* p = nullptr;
    if (total_ + bytes > max_bytes_ || cudaMallocHost(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      return {nullptr, 0};
    }
    total_ += bytes;
    return {static_cast<std::byte*>(p), bytes};
  }
  void Give(std::pair<std::byte*, size_t> b) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(b);
  }

 private:
  const size_t max_bytes_;
  std::mutex mu_;
  size_t total_ = 0;
  std::vector<std::pair<std::byte*, size_t>> free_;
};

// A device-to-host copy on the copy stream into a pinned buffer.
class PinnedHostCopy final : public HostCopy {
 public:
  PinnedHostCopy(std::shared_ptr<PinnedBuffers> buffers, std::pair<std::byte*, size_t> buffer,
                 size_t bytes, cudaEvent_t done)
      : buffers_(std::move(buffers)), buffer_(buffer), bytes_(bytes), done_(done) {}
  ~PinnedHostCopy() override {
    cudaEventSynchronize(done_);
    cudaEventDestroy(done_);
    buffers_->Give(buffer_);
  }
  bool done() override { return cudaEventQuery(done_) != cudaErrorNotReady; }
  absl::Status Wait() override {
    return kernels::CudaStatus(cudaEventSynchronize(done_), "copy chunks to the host");
  }
  std::span<const std::byte> bytes() const override { return {buffer_.first, bytes_}; }

 private:
  std::shared_ptr<PinnedBuffers> buffers_;
  std::pair<std::byte*, size_t> buffer_;
  size_t bytes_;
  cudaEvent_t done_;
};

class CudaKvDevice final : public KvDevice {
 public:
  CudaKvDevice(DeviceFetcher* fetcher, CUstream_st* stream, size_t pinned_save_bytes)
      : fetcher_(fetcher),
        stream_(stream),
        buffers_(std::make_shared<PinnedBuffers>(pinned_save_bytes)) {}
  ~CudaKvDevice() override {
    if (copy_stream_ != nullptr) {
      cudaStreamSynchronize(copy_stream_);
      cudaStreamDestroy(copy_stream_);
    }
  }

  absl::StatusOr<std::unique_ptr<PrefixLoad>> StartLoad(client::Client& client,
                                                        const client::Namespace& ns,
                                                        ChunkPool& pool,
                                                        std::span<const ChunkKey> keys) override {
    auto load = fetcher_->Start(client, ns, pool, keys);
    if (!load.ok()) return load.status();
    return std::unique_ptr<PrefixLoad>(new DeviceLoad(*std::move(load), stream_));
  }

  // The copy runs on a stream of its own (the copy engine beside the next
  // step's kernels), after the model's work queued so far.
  absl::StatusOr<std::unique_ptr<HostCopy>> StartCopyToHost(
      ChunkPool& pool, std::span<const SlotId> slots) override {
    const size_t chunk = pool.chunk_bytes();
    const size_t bytes = slots.size() * chunk;
    std::lock_guard<std::mutex> lock(mu_);
    if (copy_stream_ == nullptr) {
      RETURN_IF_ERROR(kernels::CudaStatus(
          cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "save copy stream"));
    }
    auto buffer = buffers_->Take(bytes);
    cudaEvent_t after_model = nullptr, done = nullptr;
    absl::Status st = kernels::CudaStatus(
        cudaEventCreateWithFlags(&after_model, cudaEventDisableTiming), "cudaEventCreate");
    if (st.ok()) {
      st = kernels::CudaStatus(cudaEventCreateWithFlags(&done, cudaEventDisableTiming),
                               "cudaEventCreate");
    }
    if (st.ok()) st = kernels::CudaStatus(cudaEventRecord(after_model, stream_), "cudaEventRecord");
    if (st.ok()) {
      st = kernels::CudaStatus(cudaStreamWaitEvent(copy_stream_, after_model, 0),
                               "cudaStreamWaitEvent");
    }
    std::vector<std::byte> pageable;
    std::byte* dest = buffer.first;
    if (st.ok() && dest == nullptr) {
      // Over the pinned cap: an ordinary buffer, and the copy waited for.
      pageable.resize(bytes);
      dest = pageable.data();
    }
    for (size_t i = 0; i < slots.size() && st.ok(); ++i) {
      absl::StatusOr<std::byte*> base = pool.SlotBase(slots[i]);
      st = base.ok() ? kernels::CudaStatus(cudaMemcpyAsync(dest + i * chunk, *base, chunk,
                                                           cudaMemcpyDeviceToHost, copy_stream_),
                                           "copy a chunk to the host for saving")
                     : base.status();
    }
    if (st.ok()) st = kernels::CudaStatus(cudaEventRecord(done, copy_stream_), "cudaEventRecord");
    if (after_model != nullptr) cudaEventDestroy(after_model);
    if (st.ok() && buffer.first == nullptr) {
      st = kernels::CudaStatus(cudaEventSynchronize(done), "copy chunks to the host");
      cudaEventDestroy(done);
      if (!st.ok()) return st;
      return std::unique_ptr<HostCopy>(new ReadyHostCopy(std::move(pageable)));
    }
    if (!st.ok()) {
      // Whatever was queued finishes before the buffer is reused.
      cudaStreamSynchronize(copy_stream_);
      if (done != nullptr) cudaEventDestroy(done);
      if (buffer.first != nullptr) buffers_->Give(buffer);
      return st;
    }
    return std::unique_ptr<HostCopy>(new PinnedHostCopy(buffers_, buffer, bytes, done));
  }

 private:
  DeviceFetcher* const fetcher_;
  CUstream_st* const stream_;
  std::shared_ptr<PinnedBuffers> buffers_;
  std::mutex mu_;
  cudaStream_t copy_stream_ = nullptr;
};

}  // namespace

std::unique_ptr<KvDevice> CreateCudaKvDevice(DeviceFetcher* fetcher, CUstream_st* compute_stream,
                                             size_t pinned_save_bytes) {
  return std::make_unique<CudaKvDevice>(fetcher, compute_stream, pinned_save_bytes);
}

}  // namespace strata::runtime
