#include "eviction/belady_policy.h"

#include <algorithm>

namespace strata::eviction {

BeladyPolicy::BeladyPolicy(std::span<const EntryId> future)
    : future_(future.begin(), future.end()) {
  for (size_t i = 0; i < future_.size(); ++i) {
    positions_[future_[i]].push_back(static_cast<uint32_t>(i));
  }
}

uint32_t BeladyPolicy::NextUse(EntryId id) const {
  auto it = positions_.find(id);
  if (it == positions_.end()) return kNever;
  const std::vector<uint32_t>& at = it->second;
  auto next = std::lower_bound(at.begin(), at.end(), position_);
  return next == at.end() ? kNever : *next;
}

void BeladyPolicy::SetPosition(size_t position) {
  if (position <= position_ || position > future_.size()) return;
  const size_t from = position_;
  position_ = position;
  // Only the entries referenced in [from, position) have a next use that the
  // move passed; each finds its next one.
  for (size_t i = from; i < position; ++i) {
    auto it = next_use_.find(future_[i]);
    if (it == next_use_.end() || it->second != i) continue;
    order_.erase({it->second, it->first});
    it->second = NextUse(it->first);
    order_.insert({it->second, it->first});
  }
}

void BeladyPolicy::OnInsert(EntryId id, EntryId parent) {
  (void)parent;
  const uint32_t next = NextUse(id);
  if (!next_use_.try_emplace(id, next).second) return;
  order_.insert({next, id});
}

void BeladyPolicy::OnAccess(EntryId id) {
  // The next use depends on the cursor only.
  (void)id;
}

void BeladyPolicy::OnRemove(EntryId id) {
  auto it = next_use_.find(id);
  if (it == next_use_.end()) return;
  order_.erase({it->second, id});
  next_use_.erase(it);
}

EntryId BeladyPolicy::PickVictim(absl::FunctionRef<bool(EntryId)> evictable) {
  for (const auto& [next, id] : order_) {
    if (evictable(id)) return id;
  }
  return kNoEntry;
}

}  // namespace strata::eviction
