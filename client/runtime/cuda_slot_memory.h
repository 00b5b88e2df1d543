// Device memory for a ChunkPool (the HBM tier): one cudaMalloc on the current
// device. Built only where a CUDA toolkit is present.
#ifndef STRATA_CLIENT_RUNTIME_CUDA_SLOT_MEMORY_H_
#define STRATA_CLIENT_RUNTIME_CUDA_SLOT_MEMORY_H_

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "client/runtime/slot_memory.h"

namespace strata::runtime {

// `bytes` of device memory on the calling thread's current device, freed
// with the object. InvalidArgument for 0 bytes; the CUDA error otherwise
// (ResourceExhausted when the device is out of memory, Unavailable without
// a usable device). host_accessible() is false.
absl::StatusOr<std::unique_ptr<SlotMemory>> CreateCudaSlotMemory(size_t bytes);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_CUDA_SLOT_MEMORY_H_
