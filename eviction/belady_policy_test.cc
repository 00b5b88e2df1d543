#include "eviction/belady_policy.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace strata::eviction {
namespace {

bool Any(EntryId) { return true; }

// Serves `trace` through a cache of `capacity` entries run by a BeladyPolicy
// under its documented contract; returns the misses.
int BeladyMisses(const std::vector<EntryId>& trace, size_t capacity) {
  BeladyPolicy policy(trace);
  std::set<EntryId> cache;
  int misses = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    policy.SetPosition(i);
    const EntryId id = trace[i];
    if (cache.contains(id)) {
      policy.OnAccess(id);
      continue;
    }
    ++misses;
    if (cache.size() == capacity) {
      const EntryId victim = policy.PickVictim(Any);
      EXPECT_TRUE(cache.contains(victim));
      policy.OnRemove(victim);
      cache.erase(victim);
    }
    policy.OnInsert(id, kNoEntry);
    cache.insert(id);
    EXPECT_EQ(policy.size(), cache.size());
  }
  return misses;
}

// The fewest misses of any demand-paging policy (a miss loads the entry,
// evicting any one resident entry when full): every eviction choice tried.
int OptimalMisses(const std::vector<EntryId>& trace, size_t capacity) {
  std::map<std::pair<size_t, std::set<EntryId>>, int> memo;
  std::function<int(size_t, const std::set<EntryId>&)> best = [&](size_t i,
                                                                  const std::set<EntryId>& cache) {
    if (i == trace.size()) return 0;
    auto key = std::make_pair(i, cache);
    if (auto it = memo.find(key); it != memo.end()) return it->second;
    int result;
    if (cache.contains(trace[i])) {
      result = best(i + 1, cache);
    } else if (cache.size() < capacity) {
      std::set<EntryId> next = cache;
      next.insert(trace[i]);
      result = 1 + best(i + 1, next);
    } else {
      result = static_cast<int>(trace.size()) + 1;
      for (const EntryId victim : cache) {
        std::set<EntryId> next = cache;
        next.erase(victim);
        next.insert(trace[i]);
        result = std::min(result, 1 + best(i + 1, next));
      }
    }
    memo[key] = result;
    return result;
  };
  return best(0, {});
}

TEST(BeladyPolicyTest, EvictsFurthestNextUseAndNeverUsedFirst) {
  //                          0  1  2  3  4  5  6
  std::vector<EntryId> trace{1, 2, 3, 4, 2, 1, 3};
  BeladyPolicy policy(trace);
  EXPECT_EQ(policy.name(), "belady");
  EXPECT_EQ(policy.PickVictim(Any), kNoEntry);
  for (size_t i = 0; i < 3; ++i) {
    policy.SetPosition(i);
    policy.OnInsert(trace[i], kNoEntry);
  }
  policy.SetPosition(3);  // serving 4: next uses 1 -> 5, 2 -> 4, 3 -> 6
  EXPECT_EQ(policy.NextUse(1), 5u);
  EXPECT_EQ(policy.PickVictim(Any), 3u);
  EXPECT_EQ(policy.PickVictim([](EntryId id) { return id != 3; }), 1u);
  policy.OnRemove(3);
  policy.OnInsert(4, kNoEntry);
  EXPECT_EQ(policy.NextUse(4), 3u);  // at or after the cursor: itself
  policy.SetPosition(4);             // 4 is never used again: first to go
  EXPECT_EQ(policy.NextUse(4), BeladyPolicy::kNever);
  EXPECT_EQ(policy.PickVictim(Any), 4u);
  policy.SetPosition(5);  // 2 was used at 4 and never again: before 4 by id
  EXPECT_EQ(policy.NextUse(2), BeladyPolicy::kNever);
  EXPECT_EQ(policy.PickVictim(Any), 2u);
  policy.OnRemove(2);
  policy.OnRemove(4);
  EXPECT_EQ(policy.PickVictim(Any), 1u);
  EXPECT_EQ(policy.size(), 1u);
}

TEST(BeladyPolicyTest, ReferencesOutsideTheFutureAndBackwardCursorAreHarmless) {
  std::vector<EntryId> trace{1, 2, 1};
  BeladyPolicy policy(trace);
  policy.OnInsert(9, kNoEntry);  // e.g. a prefetch of an entry not in the trace
  policy.OnInsert(1, kNoEntry);
  policy.OnInsert(2, kNoEntry);
  policy.SetPosition(2);
  policy.SetPosition(1);  // ignored
  EXPECT_EQ(policy.position(), 2u);
  policy.SetPosition(7);  // past the end: ignored
  EXPECT_EQ(policy.position(), 2u);
  EXPECT_EQ(policy.PickVictim(Any), 2u);  // 2 and 9 never again: smaller id first
  policy.OnRemove(2);
  EXPECT_EQ(policy.PickVictim(Any), 9u);
  policy.OnInsert(1, kNoEntry);  // resident: ignored
  EXPECT_EQ(policy.size(), 2u);
}

TEST(BeladyPolicyTest, MatchesBruteForceOnAllSmallTraces) {
  // Every trace of length 8 over 4 ids, capacities 1..3.
  int traces = 0;
  for (uint32_t code = 0; code < (1u << 16); code += 3) {  // every third one
    std::vector<EntryId> trace;
    for (int i = 0; i < 8; ++i) trace.push_back(1 + ((code >> (2 * i)) & 3));
    for (size_t capacity = 1; capacity <= 3; ++capacity) {
      ASSERT_EQ(BeladyMisses(trace, capacity), OptimalMisses(trace, capacity))
          << "code " << code << " capacity " << capacity;
    }
    ++traces;
  }
  EXPECT_GT(traces, 20000);
}

TEST(BeladyPolicyTest, MatchesBruteForceOnRandomTraces) {
  std::mt19937 rng(11);
  for (int round = 0; round < 400; ++round) {
    const size_t length = 1 + rng() % 10;
    const EntryId ids = 2 + rng() % 5;
    std::vector<EntryId> trace;
    for (size_t i = 0; i < length; ++i) trace.push_back(100 + rng() % ids);
    for (size_t capacity = 1; capacity <= 4; ++capacity) {
      ASSERT_EQ(BeladyMisses(trace, capacity), OptimalMisses(trace, capacity))
          << "round " << round << " capacity " << capacity;
    }
  }
}

}  // namespace
}  // namespace strata::eviction
