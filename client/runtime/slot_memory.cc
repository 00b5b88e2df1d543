#include "client/runtime/slot_memory.h"

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace strata::runtime {
namespace {

constexpr size_t kPageBytes = 4096;

class HostSlotMemory final : public SlotMemory {
 public:
  HostSlotMemory(std::byte* base, size_t bytes) : base_(base), bytes_(bytes) {}
  ~HostSlotMemory() override { std::free(base_); }
  HostSlotMemory(const HostSlotMemory&) = delete;
  HostSlotMemory& operator=(const HostSlotMemory&) = delete;

  std::byte* base() const override { return base_; }
  size_t bytes() const override { return bytes_; }
  bool host_accessible() const override { return true; }

 private:
  std::byte* const base_;
  const size_t bytes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SlotMemory>> CreateHostSlotMemory(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("slot memory of 0 bytes");
  const size_t rounded = (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  void* p = std::aligned_alloc(kPageBytes, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes of host slot memory"));
  }
  std::memset(p, 0, rounded);
  return std::unique_ptr<SlotMemory>(new HostSlotMemory(static_cast<std::byte*>(p), bytes));
}

}  // namespace strata::runtime
