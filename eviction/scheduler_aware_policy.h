// SchedulerAwarePolicy: AttentionStore's scheduler-aware eviction. What no
// upcoming job needs goes first (prefix-aware LRU among it); then what the
// job queue needs latest.
#ifndef STRATA_EVICTION_SCHEDULER_AWARE_POLICY_H_
#define STRATA_EVICTION_SCHEDULER_AWARE_POLICY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "eviction/entry_table.h"
#include "eviction/eviction_policy.h"
#include "eviction/prefix_lru_policy.h"
#include "store/common/clock.h"

namespace strata::eviction {

// Eviction order:
//   1. Unhinted resident entries, in PrefixLruPolicy's order (least recently
//      used leaf first; a chunk whose descendants are cached goes after them).
//      The parent links are those given to OnInsert; an entry whose children
//      are all hinted is a leaf of the unhinted set.
//   2. Hinted resident entries, latest needed_at first. Ties (typically the
//      chunks of one job) go most recently used first: a job reads its chain
//      from the root, so this takes the deepest chunk of the chain first.
//
// Hints. OnHints replaces the whole hint set. An id named by several hints
// (a chunk shared by several jobs) counts at its soonest needed_at. Hints for
// ids that are not resident are kept and apply when the id is inserted (e.g.
// by a prefetch). A hint expires when needed_at + Options::hint_grace is
// before the clock's now: its entry then counts as unhinted. Hints with id
// kNoEntry or needed_at = InfiniteFuture are ignored (no need is no hint).
//
// An entry that loses its hint (replaced, withdrawn or expired) rejoins the
// unhinted order at the time of its last OnInsert / OnAccess, not as the
// newest: the unhinted order is a PrefixLruPolicy (the same code, not a copy)
// driven by a clock that this policy sets back to that time for the move.
//
// Calls that break a REQUIRES of EvictionPolicy are ignored.
//
// Costs: OnInsert, OnAccess, OnRemove O(log n); PickVictim O(log n + k) for k
// rejected entries, plus O(log n) per hint found expired; OnHints O((h_old +
// h_new) log n) for the old and new hint sets. Memory per resident entry: a
// 36-byte record and 5.7 .. 11.4 bytes of id index here, plus either the
// PrefixLruPolicy's 34 .. 48 bytes (unhinted) or 4 .. 8 bytes of ordered set
// (hinted): at most about 96 bytes. Per hinted id: 16 bytes in a hash map
// (18 .. 37 bytes with its load factor), whether resident or not.
//
// Thread-safety: none; the owning tier serialises all calls.
class SchedulerAwarePolicy final : public EvictionPolicy {
 public:
  struct Options {
    // How long after its needed_at a hint still counts. InfiniteDuration:
    // hints never expire. REQUIRES: >= 0.
    absl::Duration hint_grace = absl::Seconds(30);
  };

  // `clock` is not owned and must outlive the policy. REQUIRES: clock != null.
  explicit SchedulerAwarePolicy(Clock* clock);
  SchedulerAwarePolicy(Clock* clock, const Options& options);
  SchedulerAwarePolicy(const SchedulerAwarePolicy&) = delete;
  SchedulerAwarePolicy& operator=(const SchedulerAwarePolicy&) = delete;

  void OnInsert(EntryId id, EntryId parent) override;
  void OnAccess(EntryId id) override;
  void OnRemove(EntryId id) override;
  // `evictable` must not call back into this policy.
  EntryId PickVictim(absl::FunctionRef<bool(EntryId)> evictable) override;
  void OnHints(std::span<const HintedEntry> hints) override;
  // Staged replacement: AddHints applies each named entry's new hint at
  // once (O(log n) per entry); EndHints moves up to `budget` entries whose
  // hint was withdrawn back to the unhinted order per call.
  void BeginHints() override;
  void AddHints(std::span<const HintedEntry> hints) override;
  bool EndHints(size_t budget) override;
  size_t size() const override { return table_.size(); }
  std::string_view name() const override { return "scheduler"; }

  // The soonest needed_at among the live (unexpired) hints for `id`, resident
  // or not; InfiniteFuture when it has none.
  absl::Time NeededAt(EntryId id) const;
  // Resident entries that count as hinted, as of the last expiry check (made
  // by PickVictim and OnHints).
  size_t hinted_size() const { return hinted_.size(); }

 private:
  // Sentinel of Node::needed_ns for an unhinted entry.
  static constexpr int64_t kUnhinted = std::numeric_limits<int64_t>::max();

#pragma pack(push, 4)
  struct Node {
    EntryId id = kNoEntry;
    EntryId parent = kNoEntry;
    internal::Recency last_use;     // stamp of the last OnInsert / OnAccess
    int64_t needed_ns = kUnhinted;  // needed_at of a hinted entry
  };
#pragma pack(pop)
  static_assert(sizeof(Node) == 36);

  // Hinted slots: latest needed first, then most recent use first (stamps
  // order the calls made at one clock time), then slot.
  // REQUIRES: a record's needed_ns and last_use do not change while its
  // slot is in the set.
  struct LatestNeededFirst {
    bool operator()(internal::Slot a, internal::Slot b) const;
    const internal::EntryTable<Node>* table;
  };

  // The clock of the unhinted PrefixLruPolicy: the policy's clock, except
  // while this policy pins it to a past time to re-insert an entry at its
  // last use. Only read inside calls into `unhinted_`, which this policy
  // serialises; the atomic keeps Clock's thread-safety contract anyway.
  class PinnableClock final : public Clock {
   public:
    explicit PinnableClock(Clock* base) : base_(base) {}
    absl::Time Now() const override;
    void Pin(int64_t unix_ns) { pinned_ns_.store(unix_ns, std::memory_order_relaxed); }
    void Unpin() { pinned_ns_.store(kNotPinned, std::memory_order_relaxed); }

   private:
    static constexpr int64_t kNotPinned = std::numeric_limits<int64_t>::min();
    Clock* const base_;
    std::atomic<int64_t> pinned_ns_{kNotPinned};
  };

  // Hints with needed_ns below this have expired.
  int64_t ExpiryCutoffNs() const;
  // Moves resident hinted entries whose hint has expired to the unhinted set.
  void ExpireHints();
  // Moves a resident entry between the sets; `needed_ns` is its new hint.
  void MakeHinted(internal::Slot slot, int64_t needed_ns);
  void MakeUnhinted(internal::Slot slot);

  Clock* const clock_;
  const absl::Duration hint_grace_;
  PinnableClock unhinted_clock_;
  internal::RecencySource stamps_;

  // Every resident entry.
  internal::EntryTable<Node> table_;
  // The resident entries that are not hinted (declared after its clock).
  PrefixLruPolicy unhinted_;
  // The resident entries that are hinted.
  absl::btree_set<internal::Slot, LatestNeededFirst> hinted_;
  // The current hint set: id -> soonest needed_at (unix ns), resident or not.
  absl::flat_hash_map<EntryId, int64_t> hints_;
  // The set being staged (BeginHints .. EndHints), and the entries whose
  // hint it withdraws, once EndHints has listed them.
  bool staging_ = false;
  bool withdrawn_listed_ = false;
  absl::flat_hash_map<EntryId, int64_t> staged_;
  std::vector<EntryId> withdrawn_;
};

}  // namespace strata::eviction

#endif  // STRATA_EVICTION_SCHEDULER_AWARE_POLICY_H_
