// The one converter from cudaError_t to absl::Status, shared by the kernels'
// host API and every other host code that calls the CUDA runtime.
#ifndef STRATA_KERNELS_CUDA_STATUS_H_
#define STRATA_KERNELS_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace strata::kernels {

// OK for cudaSuccess; otherwise the most specific code (ResourceExhausted for
// an allocation failure, InvalidArgument for bad values, devices or
// pointers, Unavailable when there is no usable device or driver, Internal
// otherwise), the message being "`what`: <CUDA's description>".
absl::Status CudaStatus(cudaError_t err, const char* what);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_CUDA_STATUS_H_
