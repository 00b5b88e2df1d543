// The CUDA build of the module: loads and saves through the client's
// GpuStager (one per device, its pinned staging buffer grown to the largest
// transfer), each on a thread of its own so that Python gets a transfer
// object at once.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/gpu_transfer.h"
#include "client/python/device_transfers.h"
#include "kernels/cuda_status.h"

namespace strata::python {
namespace {

using kernels::CudaStatus;

// A transfer run by a thread of its own; layers are reported as the work
// reaches them. Thread-safe.
class ThreadTransfer final : public client::Transfer {
 public:
  using Work = std::function<absl::Status(std::function<void(uint32_t)> on_layer)>;

  explicit ThreadTransfer(uint32_t layers) : layers_(layers) {}
  ~ThreadTransfer() override {
    if (thread_.joinable()) thread_.join();
  }

  // REQUIRES: called once, right after construction.
  void Start(Work work) {
    thread_ = std::thread([this, work = std::move(work)] {
      absl::Status s = work([this](uint32_t layer) {
        absl::MutexLock lock(&mu_);
        layers_done_ = std::max(layers_done_, layer + 1);
      });
      absl::MutexLock lock(&mu_);
      status_ = std::move(s);
      done_ = true;
    });
  }

  absl::Status Wait() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }

  absl::Status WaitLayer(uint32_t layer) override {
    if (layer >= layers_) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " out of range"));
    }
    absl::MutexLock lock(&mu_);
    auto reached = [this, layer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return layers_done_ > layer || done_;
    };
    mu_.Await(absl::Condition(&reached));
    if (layers_done_ > layer) return absl::OkStatus();
    return status_;  // a save (no layers reported) or a load that failed first
  }

  bool done() const override {
    absl::MutexLock lock(&mu_);
    return done_;
  }

 private:
  const uint32_t layers_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  uint32_t layers_done_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// One device's stager; transfers on the device take turns.
struct DeviceSlot {
  absl::Mutex mu;
  std::unique_ptr<client::GpuStager> stager ABSL_GUARDED_BY(mu);
  size_t bytes ABSL_GUARDED_BY(mu) = 0;

  // The stager, its staging buffer at least `needed` bytes (grown to twice
  // the previous size at least, so that growing loads reallocate rarely).
  absl::StatusOr<client::GpuStager*> Get(int device, size_t needed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (stager != nullptr && bytes >= needed) return stager.get();
    const size_t size = std::max(needed, 2 * bytes);
    stager.reset();
    bytes = 0;
    auto s = client::GpuStager::Create(device, size);
    if (!s.ok()) return s.status();
    stager = *std::move(s);
    bytes = size;
    return stager.get();
  }
};

class CudaDeviceTransfers final : public DeviceTransfers {
 public:
  absl::StatusOr<std::shared_ptr<client::Transfer>> Load(std::shared_ptr<client::Client> client,
                                                         const client::Namespace& ns,
                                                         std::vector<ChunkKey> keys,
                                                         const DeviceArray& dest) override {
    if (dest.readonly) {
      return absl::InvalidArgumentError("the destination device array is read-only");
    }
    auto device = Check("load", ns, keys.size(), dest);
    if (!device.ok()) return device.status();
    std::shared_ptr<DeviceSlot> slot = Slot(*device);
    auto t = std::make_shared<ThreadTransfer>(ns.spec.num_layers);
    const size_t bytes = dest.bytes;
    void* ptr = reinterpret_cast<void*>(dest.ptr);
    t->Start([client, ns, keys = std::move(keys), slot, device = *device, bytes,
              ptr](std::function<void(uint32_t)> on_layer) {
      absl::MutexLock lock(&slot->mu);
      auto stager = slot->Get(device, bytes);
      if (!stager.ok()) return stager.status();
      return (*stager)->LoadToDevice(*client, ns, keys, ptr, std::move(on_layer));
    });
    return std::shared_ptr<client::Transfer>(std::move(t));
  }

  absl::StatusOr<std::shared_ptr<client::Transfer>> Save(std::shared_ptr<client::Client> client,
                                                         const client::Namespace& ns,
                                                         std::vector<ChunkKey> keys,
                                                         const DeviceArray& src,
                                                         std::optional<ChunkKey> parent) override {
    auto device = Check("save", ns, keys.size(), src);
    if (!device.ok()) return device.status();
    std::shared_ptr<DeviceSlot> slot = Slot(*device);
    auto t = std::make_shared<ThreadTransfer>(ns.spec.num_layers);
    const size_t bytes = src.bytes;
    const void* ptr = reinterpret_cast<const void*>(src.ptr);
    t->Start([client, ns, keys = std::move(keys), slot, device = *device, bytes, ptr,
              parent](std::function<void(uint32_t)>) {
      absl::MutexLock lock(&slot->mu);
      auto stager = slot->Get(device, bytes);
      if (!stager.ok()) return stager.status();
      return (*stager)->SaveFromDevice(*client, ns, keys, ptr, parent);
    });
    return std::shared_ptr<client::Transfer>(std::move(t));
  }

 private:
  // The size, the pointer's device, then the producer's stream drained.
  // Returns the device.
  static absl::StatusOr<int> Check(const char* op, const client::Namespace& ns, size_t chunks,
                                   const DeviceArray& a) {
    if (chunks == 0) return absl::InvalidArgumentError(absl::StrCat(op, ": no keys"));
    if (a.bytes != chunks * ns.chunk_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": the device array holds ", a.bytes, " bytes; ", chunks,
                       " chunks are ", chunks * ns.chunk_bytes, " bytes"));
    }
    cudaPointerAttributes attr{};
    absl::Status s = CudaStatus(cudaPointerGetAttributes(&attr, reinterpret_cast<void*>(a.ptr)),
                                "cudaPointerGetAttributes");
    if (!s.ok()) {
      (void)cudaGetLastError();
      return s;
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": the pointer is not device memory (pass host memory as a buffer, not as a "
              "device array)"));
    }
    if (a.device >= 0 && a.device != attr.device) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": the tensor says device ", a.device,
                                                     " but its memory is on device ",
                                                     attr.device));
    }
    // The work queued on the producer's stream (that writes `a` before a
    // save, or still reads it before a load) ends before the copies start.
    cudaStream_t stream = nullptr;
    switch (a.stream_kind) {
      case StreamKind::kNone:
        return attr.device;
      case StreamKind::kHandle:
        stream = reinterpret_cast<cudaStream_t>(a.stream);
        break;
      case StreamKind::kLegacy:
        stream = cudaStreamLegacy;
        break;
      case StreamKind::kPerThread:
        stream = cudaStreamPerThread;
        break;
      case StreamKind::kTorchCurrent:
        return absl::InternalError("torch's current stream was not resolved");
    }
    // The default streams are the device's: make it current for the wait,
    // then give the caller's thread its device back (the current device is
    // the driver's, shared with torch).
    int previous = 0;
    if (s = CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"); !s.ok()) return s;
    if (s = CudaStatus(cudaSetDevice(attr.device), "cudaSetDevice"); !s.ok()) return s;
    s = CudaStatus(cudaStreamSynchronize(stream), "cudaStreamSynchronize of the array's stream");
    if (previous != attr.device) (void)cudaSetDevice(previous);
    if (!s.ok()) return s;
    return attr.device;
  }

  std::shared_ptr<DeviceSlot> Slot(int device) {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<DeviceSlot>& slot = slots_[device];
    if (slot == nullptr) slot = std::make_shared<DeviceSlot>();
    return slot;
  }

  absl::Mutex mu_;
  absl::flat_hash_map<int, std::shared_ptr<DeviceSlot>> slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<DeviceTransfers> DeviceTransfers::Create() {
  return std::make_unique<CudaDeviceTransfers>();
}

absl::Status DeviceTransfers::Availability() { return absl::OkStatus(); }

}  // namespace strata::python
