#include "eviction/scheduler_aware_policy.h"

#include <iterator>
#include <limits>
#include <optional>
#include <vector>

namespace strata::eviction {

using internal::kNoSlot;
using internal::Slot;

bool SchedulerAwarePolicy::LatestNeededFirst::operator()(Slot a, Slot b) const {
  // Packed records: read fields by value.
  const Node x = table->at(a);
  const Node y = table->at(b);
  if (x.needed_ns != y.needed_ns) return x.needed_ns > y.needed_ns;
  const internal::Recency u = x.last_use;
  const internal::Recency v = y.last_use;
  if (u.time_ns != v.time_ns) return u.time_ns > v.time_ns;
  if (u.seq != v.seq) return u.seq > v.seq;
  return a < b;
}

absl::Time SchedulerAwarePolicy::PinnableClock::Now() const {
  const int64_t pinned = pinned_ns_.load(std::memory_order_relaxed);
  return pinned == kNotPinned ? base_->Now() : absl::FromUnixNanos(pinned);
}

SchedulerAwarePolicy::SchedulerAwarePolicy(Clock* clock) : SchedulerAwarePolicy(clock, Options{}) {}

SchedulerAwarePolicy::SchedulerAwarePolicy(Clock* clock, const Options& options)
    : clock_(clock),
      hint_grace_(options.hint_grace),
      unhinted_clock_(clock),
      stamps_(clock),
      unhinted_(&unhinted_clock_),
      hinted_(LatestNeededFirst{&table_}) {}

int64_t SchedulerAwarePolicy::ExpiryCutoffNs() const {
  // ToUnixNanos saturates: an infinite grace gives INT64_MIN (never expires).
  return absl::ToUnixNanos(clock_->Now() - hint_grace_);
}

void SchedulerAwarePolicy::MakeHinted(Slot slot, int64_t needed_ns) {
  Node& node = table_.at(slot);
  unhinted_.OnRemove(node.id);
  node.needed_ns = needed_ns;
  hinted_.insert(slot);
}

void SchedulerAwarePolicy::MakeUnhinted(Slot slot) {
  hinted_.erase(slot);
  Node& node = table_.at(slot);
  node.needed_ns = kUnhinted;
  unhinted_clock_.Pin(node.last_use.time_ns);
  unhinted_.OnInsert(node.id, node.parent);
  unhinted_clock_.Unpin();
}

void SchedulerAwarePolicy::ExpireHints() {
  if (hinted_.empty()) return;
  const int64_t cutoff = ExpiryCutoffNs();
  while (!hinted_.empty()) {
    const Slot soonest = *std::prev(hinted_.end());
    if (table_.at(soonest).needed_ns >= cutoff) break;
    MakeUnhinted(soonest);
  }
}

void SchedulerAwarePolicy::OnInsert(EntryId id, EntryId parent) {
  if (table_.Find(id) != kNoSlot) return;
  const Slot slot = table_.Add(id);
  Node& node = table_.at(slot);
  node.parent = parent == id ? kNoEntry : parent;
  node.last_use = stamps_.Next();
  // While a new set is staged, an entry it names takes its new hint.
  std::optional<int64_t> needed;
  if (auto staged = staged_.find(id); staging_ && staged != staged_.end()) {
    needed = staged->second;
  } else if (auto hint = hints_.find(id); hint != hints_.end()) {
    needed = hint->second;
  }
  if (needed.has_value() && *needed >= ExpiryCutoffNs()) {
    node.needed_ns = *needed;
    hinted_.insert(slot);
  } else {
    unhinted_.OnInsert(id, node.parent);
  }
}

void SchedulerAwarePolicy::OnAccess(EntryId id) {
  const Slot slot = table_.Find(id);
  if (slot == kNoSlot) return;
  Node& node = table_.at(slot);
  if (node.needed_ns == kUnhinted) {
    node.last_use = stamps_.Next();
    unhinted_.OnAccess(id);
    return;
  }
  hinted_.erase(slot);
  node.last_use = stamps_.Next();
  hinted_.insert(slot);
}

void SchedulerAwarePolicy::OnRemove(EntryId id) {
  const Slot slot = table_.Find(id);
  if (slot == kNoSlot) return;
  if (table_.at(slot).needed_ns == kUnhinted) {
    unhinted_.OnRemove(id);
  } else {
    hinted_.erase(slot);
  }
  table_.Remove(slot);
}

EntryId SchedulerAwarePolicy::PickVictim(absl::FunctionRef<bool(EntryId)> evictable) {
  ExpireHints();
  const EntryId victim = unhinted_.PickVictim(evictable);
  if (victim != kNoEntry) return victim;
  for (const Slot slot : hinted_) {
    const EntryId id = table_.at(slot).id;
    if (evictable(id)) return id;
  }
  return kNoEntry;
}

void SchedulerAwarePolicy::OnHints(std::span<const HintedEntry> hints) {
  BeginHints();
  AddHints(hints);
  while (!EndHints(std::numeric_limits<size_t>::max())) {
  }
}

void SchedulerAwarePolicy::BeginHints() {
  staging_ = true;
  withdrawn_listed_ = false;
  staged_.clear();
  withdrawn_.clear();
}

void SchedulerAwarePolicy::AddHints(std::span<const HintedEntry> hints) {
  if (!staging_) BeginHints();
  const int64_t cutoff = ExpiryCutoffNs();
  for (const HintedEntry& hint : hints) {
    if (hint.id == kNoEntry || hint.needed_at == absl::InfiniteFuture()) continue;
    const int64_t ns = absl::ToUnixNanos(hint.needed_at);
    if (ns < cutoff) continue;  // already expired
    auto [it, inserted] = staged_.try_emplace(hint.id, ns);
    if (!inserted) {
      if (ns >= it->second) continue;
      it->second = ns;
    }
    const Slot slot = table_.Find(hint.id);
    if (slot == kNoSlot) continue;
    Node& node = table_.at(slot);
    if (node.needed_ns == it->second) continue;
    if (node.needed_ns == kUnhinted) {
      MakeHinted(slot, it->second);
    } else {
      hinted_.erase(slot);
      node.needed_ns = it->second;
      hinted_.insert(slot);
    }
  }
}

bool SchedulerAwarePolicy::EndHints(size_t budget) {
  if (!staging_) BeginHints();
  if (!withdrawn_listed_) {
    // Resident entries whose hint the new set withdraws (or that expired)
    // go back to the unhinted order. Listed by id: slots may be reused by
    // the time they are moved.
    for (const Slot slot : hinted_) {
      const EntryId id = table_.at(slot).id;
      if (!staged_.contains(id)) withdrawn_.push_back(id);
    }
    withdrawn_listed_ = true;
  }
  for (; budget > 0 && !withdrawn_.empty(); --budget) {
    const EntryId id = withdrawn_.back();
    withdrawn_.pop_back();
    const Slot slot = table_.Find(id);
    if (slot == kNoSlot || table_.at(slot).needed_ns == kUnhinted || staged_.contains(id)) {
      continue;
    }
    MakeUnhinted(slot);
  }
  if (!withdrawn_.empty()) return false;
  hints_ = std::move(staged_);
  staged_ = {};
  staging_ = false;
  return true;
}

absl::Time SchedulerAwarePolicy::NeededAt(EntryId id) const {
  auto hint = hints_.find(id);
  if (hint == hints_.end() || hint->second < ExpiryCutoffNs()) return absl::InfiniteFuture();
  return absl::FromUnixNanos(hint->second);
}

}  // namespace strata::eviction
