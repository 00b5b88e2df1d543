// EntryTable over a packed record whose id is not 8-byte aligned, built with
// UBSan (see BUILD): reading a record's fields must never bind a reference to
// a misaligned field. tools/fuzz/server_fuzzer found the id hash doing so
// on its first seed (corpus: server/put-get-plain).
#include "eviction/entry_table.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace strata::eviction::internal {
namespace {

#pragma pack(push, 4)
struct PackedNode {
  uint32_t tag = 0;
  EntryId id = kNoEntry;  // at offset 4: misaligned for a 64-bit field
};
#pragma pack(pop)
static_assert(sizeof(PackedNode) == 12);

TEST(EntryTableTest, AddFindRemoveWithMisalignedIds) {
  EntryTable<PackedNode> table;
  std::vector<Slot> slots;
  for (EntryId id = 1; id <= 100; ++id) {
    const Slot slot = table.Add(id * 7919);
    table.at(slot).tag = static_cast<uint32_t>(id);
    slots.push_back(slot);
  }
  ASSERT_EQ(table.size(), 100u);
  for (EntryId id = 1; id <= 100; ++id) {
    const Slot slot = table.Find(id * 7919);
    ASSERT_NE(slot, kNoSlot);
    EXPECT_EQ(table.at(slot).tag, id);
  }
  EXPECT_EQ(table.Find(3), kNoSlot);
  for (EntryId id = 1; id <= 100; id += 2) table.Remove(table.Find(id * 7919));
  EXPECT_EQ(table.size(), 50u);
  EXPECT_EQ(table.Find(7919), kNoSlot);
  EXPECT_NE(table.Find(2 * 7919), kNoSlot);
  // Removed slots are handed out again.
  const Slot again = table.Add(12345);
  EXPECT_EQ(table.Find(12345), again);
  EXPECT_EQ(table.size(), 51u);
}

}  // namespace
}  // namespace strata::eviction::internal
