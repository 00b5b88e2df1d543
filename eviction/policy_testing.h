// Helpers shared by the eviction policies' tests.
#ifndef STRATA_EVICTION_POLICY_TESTING_H_
#define STRATA_EVICTION_POLICY_TESTING_H_

#include <vector>

#include "eviction/eviction_policy.h"
#include "gtest/gtest.h"

namespace strata::eviction::testing {

inline bool Any(EntryId) { return true; }

// Candidates in the order PickVictim offers them (every one rejected).
inline std::vector<EntryId> Order(EvictionPolicy& policy) {
  std::vector<EntryId> seen;
  EXPECT_EQ(policy.PickVictim([&](EntryId id) {
    seen.push_back(id);
    return false;
  }),
            kNoEntry);
  return seen;
}

// Picks and removes victims until none is left (at most size() of them, so
// that a broken policy fails instead of looping); returns them in order.
inline std::vector<EntryId> Drain(EvictionPolicy& policy) {
  std::vector<EntryId> victims;
  for (size_t n = policy.size(); n > 0; --n) {
    const EntryId v = policy.PickVictim(Any);
    if (v == kNoEntry) break;
    victims.push_back(v);
    policy.OnRemove(v);
  }
  return victims;
}

}  // namespace strata::eviction::testing

#endif  // STRATA_EVICTION_POLICY_TESTING_H_
