// PrefixLruPolicy: prefix-aware LRU; a chunk whose descendants are cached is
// evicted after them.
#ifndef STRATA_EVICTION_PREFIX_LRU_POLICY_H_
#define STRATA_EVICTION_PREFIX_LRU_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/container/btree_set.h"
#include "absl/functional/function_ref.h"
#include "eviction/entry_table.h"
#include "eviction/eviction_policy.h"
#include "store/common/clock.h"

namespace strata::eviction {

// Candidates for eviction are the resident entries with no resident child
// (an entry is a child of the `parent` it was inserted with); among them the
// least recently used goes first, recency as in LruPolicy (injected clock,
// call order among equal times). Removing a leaf makes its parent a candidate
// again at the parent's own recency, so a chain a->b->c goes c, b, a however
// its members were used. A resident entry whose only resident descendants sit
// below a non-resident child is a candidate: the chain is already broken.
//
// A parent need not be resident: the policy counts the resident children of
// every id that has any, so a parent inserted after its children starts with
// them; an entry removed while it has resident children keeps the count and
// has them again if it is re-inserted. Ids are never reused by the store, so a
// re-inserted id is the same chunk with the same parent.
//
// A leaf that `evictable` rejects (under a lease) also holds back its
// ancestors. Calls that break a REQUIRES of EvictionPolicy are ignored, as is
// a parent equal to the entry itself. REQUIRES: parent links form no cycle
// (key chains cannot).
//
// Costs: every call O(log n), PickVictim O(log n + k) for k rejected
// candidates. Memory per resident entry: a 28-byte record, 5.7 .. 11.4 bytes
// of id index and, for candidates only, about 4 .. 8 bytes of ordered set:
// 34 .. 48 bytes computed; tools/bench/eviction measures 38.3 at 1M
// entries in chains of 16. A non-resident parent with resident children costs
// one more record until its last resident child goes.
//
// Thread-safety: none; the owning tier serialises all calls.
class PrefixLruPolicy final : public EvictionPolicy {
 public:
  // `clock` is not owned and must outlive the policy. REQUIRES: clock != null.
  explicit PrefixLruPolicy(Clock* clock);
  PrefixLruPolicy(const PrefixLruPolicy&) = delete;
  PrefixLruPolicy& operator=(const PrefixLruPolicy&) = delete;

  void OnInsert(EntryId id, EntryId parent) override;
  void OnAccess(EntryId id) override;
  void OnRemove(EntryId id) override;
  // `evictable` must not call back into this policy.
  EntryId PickVictim(absl::FunctionRef<bool(EntryId)> evictable) override;
  size_t size() const override { return resident_; }
  std::string_view name() const override { return "prefix-lru"; }

 private:
#pragma pack(push, 4)
  // One per resident entry, and one per non-resident id that has resident
  // children (resident == 0, parent == kNoSlot).
  struct Node {
    EntryId id = kNoEntry;
    internal::Recency recency;
    internal::Slot parent = internal::kNoSlot;  // record of the parent, if any
    uint32_t resident_children : 31 = 0;        // resident records with parent == this
    uint32_t resident : 1 = 0;
  };
#pragma pack(pop)
  static_assert(sizeof(Node) == 28);

  // One resident child of `parent` went away.
  void DropChild(internal::Slot parent);

  internal::RecencySource stamps_;
  internal::EntryTable<Node> table_;
  // Resident records with no resident children, oldest first.
  absl::btree_set<internal::Slot, internal::OlderFirst<Node>> candidates_;
  size_t resident_ = 0;
};

}  // namespace strata::eviction

#endif  // STRATA_EVICTION_PREFIX_LRU_POLICY_H_
