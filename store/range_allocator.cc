#include "store/range_allocator.h"

#include <cassert>

namespace strata::store {

RangeAllocator::RangeAllocator(uint64_t capacity, uint64_t granule)
    : capacity_(capacity), granule_(granule) {
  assert(granule > 0 && (granule & (granule - 1)) == 0);
  assert(capacity % granule == 0);
  if (capacity > 0) Insert(0, capacity);
}

void RangeAllocator::Insert(uint64_t offset, uint64_t len) {
  by_offset_.emplace(offset, len);
  by_size_.emplace(len, offset);
}

void RangeAllocator::Erase(absl::btree_map<uint64_t, uint64_t>::iterator it) {
  by_size_.erase({it->second, it->first});
  by_offset_.erase(it);
}

std::optional<uint64_t> RangeAllocator::Allocate(uint64_t size) {
  const uint64_t need = RoundUp(size);
  auto fit = by_size_.lower_bound({need, 0});
  if (fit == by_size_.end()) return std::nullopt;
  const uint64_t offset = fit->second;
  const uint64_t len = fit->first;
  Erase(by_offset_.find(offset));
  if (len > need) Insert(offset + need, len - need);
  used_ += need;
  return offset;
}

void RangeAllocator::Free(uint64_t offset, uint64_t size) {
  uint64_t len = RoundUp(size);
  used_ -= len;
  // btree erasure invalidates iterators: look each neighbour up afresh.
  if (auto next = by_offset_.find(offset + len); next != by_offset_.end()) {
    len += next->second;
    Erase(next);
  }
  if (auto it = by_offset_.lower_bound(offset); it != by_offset_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      len += prev->second;
      Erase(prev);
    }
  }
  Insert(offset, len);
}

uint64_t RangeAllocator::LargestFree() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first;
}

}  // namespace strata::store
