#include "client/runtime/cuda_slot_memory.h"

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/cuda_status.h"

namespace strata::runtime {
namespace {

class CudaSlotMemory final : public SlotMemory {
 public:
  CudaSlotMemory(std::byte* base, size_t bytes, int device)
      : base_(base), bytes_(bytes), device_(device) {}
  ~CudaSlotMemory() override {
    int current = 0;
    if (cudaGetDevice(&current) == cudaSuccess && current != device_) cudaSetDevice(device_);
    cudaFree(base_);
    if (current != device_) cudaSetDevice(current);
  }
  CudaSlotMemory(const CudaSlotMemory&) = delete;
  CudaSlotMemory& operator=(const CudaSlotMemory&) = delete;

  std::byte* base() const override { return base_; }
  size_t bytes() const override { return bytes_; }
  bool host_accessible() const override { return false; }

 private:
  std::byte* const base_;
  const size_t bytes_;
  const int device_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SlotMemory>> CreateCudaSlotMemory(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("slot memory of 0 bytes");
  int device = 0;
  absl::Status s = kernels::CudaStatus(cudaGetDevice(&device), "cudaGetDevice");
  if (!s.ok()) return s;
  void* p = nullptr;
  s = kernels::CudaStatus(cudaMalloc(&p, bytes), "cudaMalloc of the chunk pool");
  if (!s.ok()) return s;
  return std::unique_ptr<SlotMemory>(new CudaSlotMemory(static_cast<std::byte*>(p), bytes, device));
}

}  // namespace strata::runtime
