#include "client/gpu_transfer.h"

#include <cuda_runtime_api.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cuda_status.h"

namespace strata::client {
namespace {

using kernels::CudaStatus;

class GpuStagerImpl final : public GpuStager {
 public:
  ~GpuStagerImpl() override {
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    if (staging_ != nullptr) cudaFreeHost(staging_);
  }

  absl::Status Init(int device, size_t bytes) {
    device_ = device;
    if (absl::Status s = CudaStatus(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) {
      return absl::UnavailableError(s.message());
    }
    if (absl::Status s = CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                  "cudaStreamCreate");
        !s.ok()) {
      return s;
    }
    void* p = nullptr;
    if (absl::Status s = CudaStatus(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "cudaHostAlloc");
        !s.ok()) {
      return s;
    }
    staging_ = static_cast<std::byte*>(p);
    bytes_ = bytes;
    return absl::OkStatus();
  }

  // Device memory of this stager's device (or managed memory): a pointer
  // elsewhere would make the copies fail midway or land on another GPU.
  absl::Status CheckPointer(const void* ptr, const char* what) const {
    cudaPointerAttributes attr{};
    if (absl::Status s = CudaStatus(cudaPointerGetAttributes(&attr, ptr), "cudaPointerGetAttributes");
        !s.ok()) {
      (void)cudaGetLastError();
      return s;
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is not device memory"));
    }
    if (attr.type == cudaMemoryTypeDevice && attr.device != device_) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is on device ", attr.device,
                                                     "; this stager was created for device ",
                                                     device_));
    }
    return absl::OkStatus();
  }

  absl::Status LoadToDevice(Client& client, const Namespace& ns, std::span<const ChunkKey> keys,
                            void* device_dest, std::function<void(uint32_t)> on_layer) override {
    const size_t total = keys.size() * ns.chunk_bytes;
    if (total > bytes_) {
      return absl::InvalidArgumentError(absl::StrCat("load of ", total,
                                                     " bytes exceeds the staging buffer of ",
                                                     bytes_));
    }
    if (absl::Status s = CheckPointer(device_dest, "the load's destination"); !s.ok()) return s;
    if (absl::Status s = CudaStatus(cudaSetDevice(device_), "cudaSetDevice"); !s.ok()) return s;
    std::span<std::byte> staging(staging_, total);
    auto* dest = static_cast<std::byte*>(device_dest);
    absl::Mutex mu;
    absl::Status copy_status;
    std::vector<cudaEvent_t> events(ns.spec.num_layers, nullptr);
    // As each layer lands in the staging buffer, copy it (one strided 2-D
    // copy across the chunks) and record an event behind it.
    auto copy_layer = [&](uint32_t l) {
      absl::Status s = CudaStatus(
          cudaMemcpy2DAsync(dest + l * ns.layer_bytes, ns.chunk_bytes,
                            staging_ + l * ns.layer_bytes, ns.chunk_bytes, ns.layer_bytes,
                            keys.size(), cudaMemcpyHostToDevice, stream_),
          "cudaMemcpy2DAsync");
      cudaEvent_t ev = nullptr;
      if (s.ok()) s = CudaStatus(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event");
      if (s.ok()) s = CudaStatus(cudaEventRecord(ev, stream_), "cudaEventRecord");
      absl::MutexLock lock(&mu);
      events[l] = ev;
      if (!s.ok() && copy_status.ok()) copy_status = s;
    };
    auto transfer = client.Load(ns, keys, staging, copy_layer);
    if (!transfer.ok()) return transfer.status();
    absl::Status status;
    for (uint32_t l = 0; l < ns.spec.num_layers; ++l) {
      status = (*transfer)->WaitLayer(l);
      if (!status.ok()) break;
      cudaEvent_t ev;
      {
        absl::MutexLock lock(&mu);
        // The event is recorded by the callback that reported the layer.
        auto recorded = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
          return events[l] != nullptr || !copy_status.ok();
        };
        mu.Await(absl::Condition(&recorded));
        ev = events[l];
        if (!copy_status.ok()) break;
      }
      if (on_layer) {
        if (absl::Status s = CudaStatus(cudaEventSynchronize(ev), "cudaEventSynchronize"); !s.ok()) {
          status = s;
          break;
        }
        on_layer(l);
      }
    }
    absl::Status final_status = (*transfer)->Wait();  // checksums of the staged bytes
    absl::Status sync = CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    for (cudaEvent_t ev : events) {
      if (ev != nullptr) cudaEventDestroy(ev);
    }
    absl::MutexLock lock(&mu);
    for (const absl::Status& s : {final_status, status, copy_status, sync}) {
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status SaveFromDevice(Client& client, const Namespace& ns, std::span<const ChunkKey> keys,
                              const void* device_src, std::optional<ChunkKey> parent) override {
    const size_t total = keys.size() * ns.chunk_bytes;
    if (total > bytes_) {
      return absl::InvalidArgumentError(absl::StrCat("save of ", total,
                                                     " bytes exceeds the staging buffer of ",
                                                     bytes_));
    }
    if (absl::Status s = CheckPointer(device_src, "the save's source"); !s.ok()) return s;
    if (absl::Status s = CudaStatus(cudaSetDevice(device_), "cudaSetDevice"); !s.ok()) return s;
    if (absl::Status s = CudaStatus(
            cudaMemcpyAsync(staging_, device_src, total, cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        !s.ok()) {
      return s;
    }
    auto transfer = client.Save(ns, keys, std::span<const std::byte>(staging_, total), parent);
    if (!transfer.ok()) return transfer.status();
    return (*transfer)->Wait();
  }

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::byte* staging_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuStager>> GpuStager::Create(int device, size_t staging_bytes) {
  if (staging_bytes == 0) return absl::InvalidArgumentError("staging_bytes must be positive");
  auto stager = std::make_unique<GpuStagerImpl>();
  if (absl::Status s = stager->Init(device, staging_bytes); !s.ok()) return s;
  return std::unique_ptr<GpuStager>(std::move(stager));
}

}  // namespace strata::client
