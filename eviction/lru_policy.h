// LruPolicy: least recently used first.
#ifndef STRATA_EVICTION_LRU_POLICY_H_
#define STRATA_EVICTION_LRU_POLICY_H_

#include <cstddef>
#include <string_view>

#include "absl/container/btree_set.h"
#include "absl/functional/function_ref.h"
#include "eviction/entry_table.h"
#include "eviction/eviction_policy.h"
#include "store/common/clock.h"

namespace strata::eviction {

// Evicts the entry whose last OnInsert or OnAccess is oldest by the injected
// clock; stamps with equal times are ordered by call order, so the order is
// deterministic. A clock that steps back makes the entries it stamps older
// than those stamped before the step: the policy trusts its clock. Parents
// and hints are ignored.
//
// Calls that break a REQUIRES of EvictionPolicy (OnInsert of a resident id,
// OnAccess or OnRemove of an id that is not resident) are ignored.
//
// Costs: OnInsert, OnAccess, OnRemove O(log n); PickVictim O(log n + k) for k
// rejected entries. Memory per resident entry: a 20-byte record, 5.7 .. 11.4
// bytes of id index and about 4 .. 8 bytes of ordered set: 30 .. 40 bytes
// computed; tools/bench/eviction measures 34.6 at 1M entries.
//
// Thread-safety: none; the owning tier serialises all calls.
class LruPolicy final : public EvictionPolicy {
 public:
  // `clock` is not owned and must outlive the policy. REQUIRES: clock != null.
  explicit LruPolicy(Clock* clock);
  LruPolicy(const LruPolicy&) = delete;
  LruPolicy& operator=(const LruPolicy&) = delete;

  void OnInsert(EntryId id, EntryId parent) override;
  void OnAccess(EntryId id) override;
  void OnRemove(EntryId id) override;
  // `evictable` must not call back into this policy.
  EntryId PickVictim(absl::FunctionRef<bool(EntryId)> evictable) override;
  size_t size() const override { return table_.size(); }
  std::string_view name() const override { return "lru"; }

 private:
#pragma pack(push, 4)
  struct Node {
    EntryId id = kNoEntry;
    internal::Recency recency;
  };
#pragma pack(pop)
  static_assert(sizeof(Node) == 20);

  internal::RecencySource stamps_;
  internal::EntryTable<Node> table_;
  // Every resident entry, oldest first.
  absl::btree_set<internal::Slot, internal::OlderFirst<Node>> order_;
};

}  // namespace strata::eviction

#endif  // STRATA_EVICTION_LRU_POLICY_H_
