// EvictionPolicy: the order in which one tier of a store node gives up its
// chunks. Pure code: no I/O, time only through an injected Clock.
#ifndef STRATA_EVICTION_EVICTION_POLICY_H_
#define STRATA_EVICTION_EVICTION_POLICY_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/common/clock.h"

namespace strata::eviction {

// Identifies an entry of the store's index. The store never reuses an id for
// another chunk, so a policy may keep ids of entries that have gone.
using EntryId = uint64_t;
inline constexpr EntryId kNoEntry = ~uint64_t{0};

// A scheduler's statement that `id` will be needed at `needed_at` (the start
// of the job that reads it). Policies that do not use hints ignore them.
struct HintedEntry {
  EntryId id = kNoEntry;
  absl::Time needed_at = absl::InfiniteFuture();
};

// Tracks the entries resident in one tier and names victims.
//
// Thread-safety: none; the owning tier serialises all calls.
class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;

  // `id` became resident. `parent` is the entry holding the previous chunk of
  // the same key chain, or kNoEntry for a first chunk or an unknown parent;
  // the parent need not be resident in this tier.
  // REQUIRES: `id` is not resident.
  virtual void OnInsert(EntryId id, EntryId parent) = 0;

  // `id` was read or written. REQUIRES: `id` is resident.
  virtual void OnAccess(EntryId id) = 0;

  // `id` left the tier (evicted, demoted or deleted). REQUIRES: resident.
  virtual void OnRemove(EntryId id) = 0;

  // Returns the first entry, in this policy's eviction order, for which
  // `evictable(id)` is true (the store passes a predicate that rejects
  // entries under a lease). Does not remove it: the caller calls OnRemove
  // once it has freed the entry. kNoEntry when no entry qualifies.
  virtual EntryId PickVictim(absl::FunctionRef<bool(EntryId)> evictable) = 0;

  // Replaces the scheduler hints known to this policy. Default: ignored.
  virtual void OnHints(std::span<const HintedEntry> hints) { (void)hints; }

  // The same replacement in pieces, so that the caller can let other work in
  // between: BeginHints(), AddHints() any number of times, then EndHints()
  // until it returns true. Other calls may come between the pieces; until
  // EndHints() returns true, entries not yet named keep their old hints.
  // `budget` bounds the entries one EndHints() call moves. Default: the
  // pieces are gathered and given to OnHints() at the end.
  virtual void BeginHints() { staged_hints_.clear(); }
  virtual void AddHints(std::span<const HintedEntry> hints) {
    staged_hints_.insert(staged_hints_.end(), hints.begin(), hints.end());
  }
  virtual bool EndHints(size_t budget) {
    (void)budget;
    OnHints(staged_hints_);
    staged_hints_.clear();
    staged_hints_.shrink_to_fit();
    return true;
  }

  // Number of resident entries.
  virtual size_t size() const = 0;
  virtual std::string_view name() const = 0;

 private:
  std::vector<HintedEntry> staged_hints_;  // default staged hints
};

// The policies in this package, by the names used in flags and stats.
//   "lru":        least recently used first.
//   "prefix-lru": least recently used first among entries with no resident
//                 descendants (a chunk whose descendants are cached is
//                 evicted after them).
//   "scheduler":  entries no hinted job needs first (in prefix-lru order),
//                 then hinted ones, the one needed latest first
//                 (scheduler_aware_policy.h).
// An unknown name is InvalidArgument. `clock` must outlive the policy.
absl::StatusOr<std::unique_ptr<EvictionPolicy>> CreatePolicy(std::string_view name,
                                                             Clock* clock);

}  // namespace strata::eviction

#endif  // STRATA_EVICTION_EVICTION_POLICY_H_
