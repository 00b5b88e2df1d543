#include "store/range_allocator.h"

#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace strata::store {
namespace {

TEST(RangeAllocatorTest, AllocatesUntilFullThenReusesFreedRanges) {
  RangeAllocator a(4096, 256);
  std::vector<uint64_t> offs;
  for (int i = 0; i < 4; ++i) offs.push_back(a.Allocate(1000).value());  // 1024 each
  EXPECT_EQ(a.used(), 4096u);
  EXPECT_FALSE(a.Allocate(1).has_value());
  a.Free(offs[1], 1000);
  EXPECT_EQ(a.Allocate(1024).value(), offs[1]);
}

TEST(RangeAllocatorTest, CoalescesNeighbours) {
  RangeAllocator a(4096, 1024);
  uint64_t x = *a.Allocate(1024), y = *a.Allocate(1024), z = *a.Allocate(1024);
  (void)z;
  a.Free(x, 1024);
  a.Free(y, 1024);
  EXPECT_EQ(a.LargestFree(), 2048u);  // x+y merged; z still used; tail 1024 separate
  EXPECT_TRUE(a.Allocate(2048).has_value());
}

TEST(RangeAllocatorTest, RandomOperationsNeverOverlap) {
  RangeAllocator a(1 << 20, 256);
  std::mt19937 rng(7);
  std::map<uint64_t, uint64_t> live;  // offset -> rounded length
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      uint64_t size = 1 + rng() % 20000;
      auto off = a.Allocate(size);
      if (!off) continue;
      uint64_t len = a.RoundUp(size);
      ASSERT_LE(*off + len, a.capacity());
      auto next = live.lower_bound(*off);
      if (next != live.end()) {
        ASSERT_LE(*off + len, next->first);
      }
      if (next != live.begin()) {
        ASSERT_LE(std::prev(next)->first + std::prev(next)->second, *off);
      }
      live[*off] = len;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      a.Free(it->first, it->second);
      live.erase(it);
    }
  }
  uint64_t used = 0;
  for (auto& [o, l] : live) used += l;
  EXPECT_EQ(a.used(), used);
  for (auto& [o, l] : live) a.Free(o, l);
  EXPECT_EQ(a.LargestFree(), a.capacity());
}

}  // namespace
}  // namespace strata::store
