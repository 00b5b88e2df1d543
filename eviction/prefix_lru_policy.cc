#include "eviction/prefix_lru_policy.h"

namespace strata::eviction {

using internal::kNoSlot;
using internal::Slot;

PrefixLruPolicy::PrefixLruPolicy(Clock* clock)
    : stamps_(clock), candidates_(internal::OlderFirst<Node>{&table_}) {}

void PrefixLruPolicy::OnInsert(EntryId id, EntryId parent) {
  Slot slot = table_.Find(id);
  if (slot == kNoSlot) {
    slot = table_.Add(id);
  } else if (table_.at(slot).resident) {
    return;
  }
  Slot parent_slot = kNoSlot;
  if (parent != kNoEntry && parent != id) {
    parent_slot = table_.Find(parent);
    if (parent_slot == kNoSlot) parent_slot = table_.Add(parent);
    Node& p = table_.at(parent_slot);
    if (p.resident && p.resident_children == 0) candidates_.erase(parent_slot);
    p.resident_children = p.resident_children + 1;
  }
  // Records never move, so `node` stays valid across the Add() above.
  Node& node = table_.at(slot);
  node.parent = parent_slot;
  node.resident = 1;
  node.recency = stamps_.Next();
  ++resident_;
  if (node.resident_children == 0) candidates_.insert(candidates_.end(), slot);
}

void PrefixLruPolicy::OnAccess(EntryId id) {
  const Slot slot = table_.Find(id);
  if (slot == kNoSlot || !table_.at(slot).resident) return;
  Node& node = table_.at(slot);
  if (node.resident_children != 0) {
    node.recency = stamps_.Next();
    return;
  }
  candidates_.erase(slot);
  node.recency = stamps_.Next();
  candidates_.insert(candidates_.end(), slot);
}

void PrefixLruPolicy::OnRemove(EntryId id) {
  const Slot slot = table_.Find(id);
  if (slot == kNoSlot || !table_.at(slot).resident) return;
  Node& node = table_.at(slot);
  if (node.resident_children == 0) candidates_.erase(slot);
  --resident_;
  if (node.parent != kNoSlot) DropChild(node.parent);
  node.parent = kNoSlot;
  node.resident = 0;
  // An entry with resident children keeps its record (and their count).
  if (node.resident_children == 0) table_.Remove(slot);
}

void PrefixLruPolicy::DropChild(Slot parent) {
  Node& p = table_.at(parent);
  p.resident_children = p.resident_children - 1;
  if (p.resident_children != 0) return;
  if (p.resident) {
    candidates_.insert(parent);  // at its own recency, not as the newest
  } else {
    table_.Remove(parent);
  }
}

EntryId PrefixLruPolicy::PickVictim(absl::FunctionRef<bool(EntryId)> evictable) {
  for (const Slot slot : candidates_) {
    const EntryId id = table_.at(slot).id;
    if (evictable(id)) return id;
  }
  return kNoEntry;
}

}  // namespace strata::eviction
