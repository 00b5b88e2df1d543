#include "eviction/scheduler_aware_policy.h"

#include <iterator>
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
  auto hint = hints_.find(id);
  if (hint != hints_.end() && hint->second >= ExpiryCutoffNs()) {
    node.needed_ns = hint->second;
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
  const int64_t cutoff = ExpiryCutoffNs();
  absl::flat_hash_map<EntryId, int64_t> next;
  next.reserve(hints.size());
  for (const HintedEntry& hint : hints) {
    if (hint.id == kNoEntry || hint.needed_at == absl::InfiniteFuture()) continue;
    const int64_t ns = absl::ToUnixNanos(hint.needed_at);
    if (ns < cutoff) continue;  // already expired
    auto [it, inserted] = next.try_emplace(hint.id, ns);
    if (!inserted && ns < it->second) it->second = ns;
  }
  // Resident entries whose hint was withdrawn (or has expired) go back to
  // the unhinted order.
  std::vector<Slot> withdrawn;
  for (const Slot slot : hinted_) {
    if (!next.contains(table_.at(slot).id)) withdrawn.push_back(slot);
  }
  for (const Slot slot : withdrawn) MakeUnhinted(slot);
  // Resident entries named by the new set take their new needed_at.
  for (const auto& [id, ns] : next) {
    const Slot slot = table_.Find(id);
    if (slot == kNoSlot) continue;
    Node& node = table_.at(slot);
    if (node.needed_ns == ns) continue;
    if (node.needed_ns == kUnhinted) {
      MakeHinted(slot, ns);
    } else {
      hinted_.erase(slot);
      node.needed_ns = ns;
      hinted_.insert(slot);
    }
  }
  hints_ = std::move(next);
}

absl::Time SchedulerAwarePolicy::NeededAt(EntryId id) const {
  auto hint = hints_.find(id);
  if (hint == hints_.end() || hint->second < ExpiryCutoffNs()) return absl::InfiniteFuture();
  return absl::FromUnixNanos(hint->second);
}

}  // namespace strata::eviction
