// BeladyPolicy: Belady's MIN, the optimal demand-paging policy, as an offline
// oracle for evaluation. It needs the future, so CreatePolicy does not offer
// it: construct it with the reference sequence.
#ifndef STRATA_EVICTION_BELADY_POLICY_H_
#define STRATA_EVICTION_BELADY_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "eviction/eviction_policy.h"

namespace strata::eviction {

// Evicts the resident entry whose next reference is furthest in the future;
// entries never referenced again go first (among them, and among equal next
// references, the smallest id first, so the order is deterministic).
//
// Contract. The policy is built with `future`: every reference the caller
// will serve, in order. The caller owns a cursor: before it serves
// future[i] (and before any PickVictim made to serve it) it calls
// SetPosition(i). OnInsert and OnAccess never move the cursor, so references
// outside `future` (a prefetch, a write the caller chose not to list) are
// allowed: an entry's next use is always its first occurrence in `future` at
// or after the cursor. With the cursor kept this way and every reference of
// `future` loaded on a miss, the misses are the minimum any policy can reach
// on `future` (Belady 1966; checked by brute force in belady_policy_test).
//
// Parents and hints are ignored. Calls that break a REQUIRES of
// EvictionPolicy are ignored.
//
// Costs: construction O(m) for m references (about 12 bytes each, plus a hash
// map entry per distinct id); OnInsert O(log m + log n); OnAccess O(1);
// OnRemove O(log n); SetPosition O(log n + log m) per reference passed over
// that names a resident entry; PickVictim O(log n + k) for k rejected.
//
// Thread-safety: none; the caller serialises all calls.
class BeladyPolicy final : public EvictionPolicy {
 public:
  // Next-use value of an entry never referenced again.
  static constexpr uint32_t kNever = std::numeric_limits<uint32_t>::max();

  // REQUIRES: future.size() < kNever; no element equals kNoEntry.
  explicit BeladyPolicy(std::span<const EntryId> future);
  BeladyPolicy(const BeladyPolicy&) = delete;
  BeladyPolicy& operator=(const BeladyPolicy&) = delete;

  // The next reference to be served is future[position] (position ==
  // future.size(): none is left). REQUIRES: position never decreases and
  // position <= future.size(); a smaller position is ignored.
  void SetPosition(size_t position);
  size_t position() const { return position_; }

  // Index of the first reference to `id` at or after position(), or kNever.
  uint32_t NextUse(EntryId id) const;

  void OnInsert(EntryId id, EntryId parent) override;
  void OnAccess(EntryId id) override;
  void OnRemove(EntryId id) override;
  // `evictable` must not call back into this policy.
  EntryId PickVictim(absl::FunctionRef<bool(EntryId)> evictable) override;
  size_t size() const override { return next_use_.size(); }
  std::string_view name() const override { return "belady"; }

 private:
  // (next use, id), furthest first: kNever sorts first.
  struct FurthestFirst {
    bool operator()(const std::pair<uint32_t, EntryId>& a,
                    const std::pair<uint32_t, EntryId>& b) const {
      if (a.first != b.first) return a.first > b.first;
      return a.second < b.second;
    }
  };

  // Constant after construction.
  std::vector<EntryId> future_;
  // Positions of each id in future_, ascending.
  absl::flat_hash_map<EntryId, std::vector<uint32_t>> positions_;

  size_t position_ = 0;
  // Resident entries -> their next use (>= position_, or kNever).
  absl::flat_hash_map<EntryId, uint32_t> next_use_;
  absl::btree_set<std::pair<uint32_t, EntryId>, FurthestFirst> order_;
};

}  // namespace strata::eviction

#endif  // STRATA_EVICTION_BELADY_POLICY_H_
