// Helpers shared by the GPU tests (tag `gpu`): a device buffer, the
// tolerances of fp16 / bf16 results and the comparison with a reference.
#ifndef STRATA_KERNELS_GPU_TESTING_H_
#define STRATA_KERNELS_GPU_TESTING_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/attention_types.h"

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

namespace strata::kernels::testing {

// cudaMalloc'ed bytes (null if the allocation failed), freed on destruction.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes) != cudaSuccess) ptr_ = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

struct Tolerance {
  double rel, abs, lse;
};
Tolerance TolFor(KvDtype dtype);

// Compares a GPU result (dtype bits, float lse; lse may be empty) with a
// reference, prints the errors and expects them within TolFor(dtype); every
// output must be written and finite.
void ExpectClose(KvDtype dtype, const std::vector<uint16_t>& out, const std::vector<float>& lse,
                 const ReferenceOutput& ref, const std::string& what);

}  // namespace strata::kernels::testing

#endif  // STRATA_KERNELS_GPU_TESTING_H_
