// RangeAllocator: best-fit allocation of byte ranges inside [0, capacity),
// in multiples of a granule, with coalescing of freed neighbours.
#ifndef STRATA_STORE_RANGE_ALLOCATOR_H_
#define STRATA_STORE_RANGE_ALLOCATOR_H_

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"

namespace strata::store {

// Not thread-safe: the owner serialises calls.
class RangeAllocator {
 public:
  // REQUIRES: granule is a power of two; capacity is a multiple of granule.
  RangeAllocator(uint64_t capacity, uint64_t granule);

  // Returns the offset of a free range of at least `size` bytes (rounded up to
  // the granule), or nullopt when no free range is large enough.
  // REQUIRES: size > 0.
  std::optional<uint64_t> Allocate(uint64_t size);
  // Returns a range obtained from Allocate(size). REQUIRES: not freed before.
  void Free(uint64_t offset, uint64_t size);

  uint64_t capacity() const { return capacity_; }
  uint64_t used() const { return used_; }
  uint64_t RoundUp(uint64_t size) const { return (size + granule_ - 1) & ~(granule_ - 1); }
  // Size of the largest free range.
  uint64_t LargestFree() const;

 private:
  void Insert(uint64_t offset, uint64_t len);
  void Erase(absl::btree_map<uint64_t, uint64_t>::iterator it);

  const uint64_t capacity_;
  const uint64_t granule_;
  uint64_t used_ = 0;
  absl::btree_map<uint64_t, uint64_t> by_offset_;               // offset -> length
  absl::btree_set<std::pair<uint64_t, uint64_t>> by_size_;      // (length, offset)
};

}  // namespace strata::store

#endif  // STRATA_STORE_RANGE_ALLOCATOR_H_
