// SlotMemory: the one allocation a ChunkPool carves into chunk slots. The
// seam between the pool's bookkeeping (plain C++) and where the bytes live:
// host memory here (CPU tests, host-side pools), device memory in
// cuda_slot_memory.h (GPU builds only).
#ifndef STRATA_CLIENT_RUNTIME_SLOT_MEMORY_H_
#define STRATA_CLIENT_RUNTIME_SLOT_MEMORY_H_

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"

namespace strata::runtime {

// Owns one contiguous allocation. Move-only through unique_ptr; the base
// pointer and size are constant for the object's life.
//
// Thread-safety: the accessors are safe for concurrent use; the bytes
// themselves are synchronised by their users.
class SlotMemory {
 public:
  virtual ~SlotMemory() = default;
  // Start of the allocation: a host pointer, or a device pointer when
  // host_accessible() is false (never dereference it on the host then).
  virtual std::byte* base() const = 0;
  virtual size_t bytes() const = 0;
  // True when base() may be read and written by host code.
  virtual bool host_accessible() const = 0;
};

// Page-aligned host memory (zeroed). InvalidArgument for 0 bytes;
// ResourceExhausted when the allocation fails.
absl::StatusOr<std::unique_ptr<SlotMemory>> CreateHostSlotMemory(size_t bytes);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_SLOT_MEMORY_H_
