#include "eviction/lru_policy.h"

namespace strata::eviction {

using internal::kNoSlot;
using internal::Slot;

LruPolicy::LruPolicy(Clock* clock)
    : stamps_(clock), order_(internal::OlderFirst<Node>{&table_}) {}

void LruPolicy::OnInsert(EntryId id, EntryId parent) {
  (void)parent;
  if (table_.Find(id) != kNoSlot) return;
  const Slot slot = table_.Add(id);
  table_.at(slot).recency = stamps_.Next();
  // The newest stamp sorts last unless the clock stepped back; the hint makes
  // the common case an append.
  order_.insert(order_.end(), slot);
}

void LruPolicy::OnAccess(EntryId id) {
  const Slot slot = table_.Find(id);
  if (slot == kNoSlot) return;
  order_.erase(slot);
  table_.at(slot).recency = stamps_.Next();
  order_.insert(order_.end(), slot);
}

void LruPolicy::OnRemove(EntryId id) {
  const Slot slot = table_.Find(id);
  if (slot == kNoSlot) return;
  order_.erase(slot);
  table_.Remove(slot);
}

EntryId LruPolicy::PickVictim(absl::FunctionRef<bool(EntryId)> evictable) {
  for (const Slot slot : order_) {
    const EntryId id = table_.at(slot).id;
    if (evictable(id)) return id;
  }
  return kNoEntry;
}

}  // namespace strata::eviction
