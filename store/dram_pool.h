// DramPool: one large page-aligned host region, carved into chunk slots.
// The region is a single mapping so that it can be registered with the
// transport (UCX) once. A shared pool lives in a memfd (mode 0600) mapped
// MAP_SHARED, so that a client of the same user on the same host can map it
// read-only through /proc/<pid>/fd/<fd> (share_path()); the memory goes when
// the pool and every such mapping are gone, so nothing is left behind.
#ifndef STRATA_STORE_DRAM_POOL_H_
#define STRATA_STORE_DRAM_POOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/range_allocator.h"

namespace strata::store {

enum class PrefaultMethod {
  // madvise(MADV_POPULATE_WRITE), falling back to kTouch where the kernel
  // lacks it (before Linux 5.14).
  kAuto,
  // Write one byte of each page (the bytes keep their values). A page the
  // kernel cannot provide is a SIGBUS or an OOM kill, not an error: only
  // kAuto reports that case.
  kTouch,
};

// Faults in every page of `region` (a writable, page-aligned mapping: private
// anonymous, or shared over a memfd or shm file) for writing, so that later
// first writes to it take no page fault. ResourceExhausted, with the size and
// the errno text, when the kernel cannot commit the memory (ENOMEM, or EFAULT
// where an access would raise SIGBUS). Safe to call while nothing else uses
// the region.
absl::Status PrefaultRegion(std::span<std::byte> region,
                            PrefaultMethod method = PrefaultMethod::kAuto);

// The memory this host can give a new allocation now, in bytes: MemAvailable
// of /proc/meminfo, lowered to the memory limit of this process's cgroup
// (v2 or v1) when that is smaller. NotFound when /proc/meminfo cannot be read.
absl::StatusOr<uint64_t> AvailableHostMemory();

// OK when a pool of `bytes` fits in `available` bytes of host memory;
// otherwise ResourceExhausted naming both sizes. A pool that does not fit
// would not fail cleanly when its pages are committed: the kernel's OOM
// killer ends this process (or another one) instead.
absl::Status CheckPoolFits(uint64_t bytes, uint64_t available);

// Move-only owner of the mapping. Allocation is not thread-safe (the engine
// serialises it); the bytes of distinct slots may be touched concurrently.
class DramPool {
 public:
  static constexpr uint64_t kSlotAlignment = 256;

  // `bytes` is rounded up to whole pages. InvalidArgument for 0;
  // ResourceExhausted when the mapping (or, with `shared`, the memfd) fails,
  // and, with `shared` (whose pages are all allocated here), when the pool
  // is larger than AvailableHostMemory().
  static absl::StatusOr<std::unique_ptr<DramPool>> Create(uint64_t bytes, bool shared = false);
  ~DramPool();
  DramPool(const DramPool&) = delete;
  DramPool& operator=(const DramPool&) = delete;

  std::optional<uint64_t> Allocate(uint64_t size) { return allocator_.Allocate(size); }
  void Free(uint64_t offset, uint64_t size) { allocator_.Free(offset, size); }

  std::span<std::byte> Slot(uint64_t offset, uint64_t size) const {
    return {base_ + offset, static_cast<size_t>(size)};
  }
  std::span<std::byte> region() const { return {base_, static_cast<size_t>(capacity())}; }
  uint64_t capacity() const { return allocator_.capacity(); }
  uint64_t used() const { return allocator_.used(); }
  uint64_t LargestFree() const { return allocator_.LargestFree(); }
  // Where another process of this user may open the shared pool
  // ("/proc/<pid>/fd/<fd>"); empty for a private pool.
  const std::string& share_path() const { return share_path_; }

  // Populates every page of the pool now (PrefaultRegion(region())), so that
  // the first write to a slot does not page-fault. Call before the pool is
  // shared or in use; see PrefaultRegion for errors. A private pool larger
  // than AvailableHostMemory() is ResourceExhausted before any page is
  // touched (a shared one was checked at Create).
  absl::Status Prefault();

 private:
  DramPool(std::byte* base, uint64_t bytes, int fd, std::string share_path)
      : base_(base), fd_(fd), share_path_(std::move(share_path)),
        allocator_(bytes, kSlotAlignment) {}

  std::byte* const base_;
  const int fd_;  // the memfd of a shared pool; -1 otherwise
  const std::string share_path_;
  RangeAllocator allocator_;
};

}  // namespace strata::store

#endif  // STRATA_STORE_DRAM_POOL_H_
