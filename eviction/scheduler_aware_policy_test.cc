#include "eviction/scheduler_aware_policy.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "eviction/eviction_policy.h"
#include "eviction/policy_testing.h"
#include "gtest/gtest.h"
#include "store/common/clock.h"

namespace strata::eviction {
namespace {

using ::strata::eviction::testing::Any;
using ::strata::eviction::testing::Drain;
using ::strata::eviction::testing::Order;

class SchedulerAwarePolicyTest : public ::testing::Test {
 protected:
  // Inserts `id` under `parent`, then moves the clock on by a second.
  void Insert(EntryId id, EntryId parent = kNoEntry) {
    policy_.OnInsert(id, parent);
    clock_.Advance(absl::Seconds(1));
  }
  void Access(EntryId id) {
    policy_.OnAccess(id);
    clock_.Advance(absl::Seconds(1));
  }
  // A hint for `id` needed `in` from now.
  HintedEntry In(EntryId id, absl::Duration in) { return HintedEntry{id, clock_.Now() + in}; }
  void Hint(std::vector<HintedEntry> hints) { policy_.OnHints(hints); }

  FakeClock clock_;
  SchedulerAwarePolicy policy_{&clock_};  // grace 30 s
};

TEST_F(SchedulerAwarePolicyTest, EmptyHasNoVictim) {
  EXPECT_EQ(policy_.size(), 0u);
  EXPECT_EQ(policy_.PickVictim(Any), kNoEntry);
  EXPECT_EQ(policy_.name(), "scheduler");
}

TEST_F(SchedulerAwarePolicyTest, WithoutHintsIsLru) {
  Insert(1);
  Insert(2);
  Insert(3);
  Access(1);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 3, 1}));
}

TEST_F(SchedulerAwarePolicyTest, UnhintedGoBeforeHintedHoweverRecent) {
  Insert(1);
  Insert(2);
  Insert(3);
  Hint({In(1, absl::Seconds(10))});  // 1 is the oldest but a job needs it
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 3, 1}));
  EXPECT_EQ(policy_.hinted_size(), 1u);
}

TEST_F(SchedulerAwarePolicyTest, HintedGoLatestNeededFirst) {
  Insert(1);
  Insert(2);
  Insert(3);
  Insert(4);  // unhinted
  Hint({In(1, absl::Seconds(10)), In(2, absl::Seconds(20)), In(3, absl::Seconds(5))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{4, 2, 1, 3}));
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{4, 2, 1, 3}));
}

TEST_F(SchedulerAwarePolicyTest, SharedEntryCountsAtItsSoonestJob) {
  Insert(1);
  Insert(2);
  // 1 is shared by a job in 50 s and one in 10 s: it counts at 10 s.
  Hint({In(1, absl::Seconds(50)), In(2, absl::Seconds(20)), In(1, absl::Seconds(10))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 1}));
  EXPECT_EQ(policy_.NeededAt(1), clock_.Now() + absl::Seconds(10));
}

TEST_F(SchedulerAwarePolicyTest, ChunksOfOneJobGoDeepestFirst) {
  // One job's chain 1 -> 2 -> 3, read root first at one clock time.
  policy_.OnInsert(1, kNoEntry);
  policy_.OnInsert(2, 1);
  policy_.OnInsert(3, 2);
  Hint({In(1, absl::Seconds(10)), In(2, absl::Seconds(10)), In(3, absl::Seconds(10))});
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{3, 2, 1}));
}

TEST_F(SchedulerAwarePolicyTest, NewHintSetReplacesTheOldOne) {
  Insert(1);
  Insert(2);
  Insert(3);
  Insert(4);
  Hint({In(1, absl::Seconds(10)), In(2, absl::Seconds(20))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 4, 2, 1}));
  Hint({In(3, absl::Seconds(10))});
  // 1 and 2 lost their hints and rejoin the LRU order at their last use,
  // before 4, not as the newest entries.
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2, 4, 3}));
  EXPECT_EQ(policy_.NeededAt(1), absl::InfiniteFuture());
  Hint({});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2, 3, 4}));
  EXPECT_EQ(policy_.hinted_size(), 0u);
}

TEST_F(SchedulerAwarePolicyTest, ReplacementMovesNeededAt) {
  Insert(1);
  Insert(2);
  Hint({In(1, absl::Seconds(10)), In(2, absl::Seconds(20))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 1}));
  Hint({In(1, absl::Seconds(30)), In(2, absl::Seconds(20))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2}));
}

TEST_F(SchedulerAwarePolicyTest, HintsForAbsentIdsApplyWhenTheyArrive) {
  Hint({In(5, absl::Seconds(10)), In(6, absl::Seconds(20))});
  Insert(5);  // e.g. prefetched
  Insert(4);
  Insert(6);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{4, 6, 5}));
  EXPECT_EQ(policy_.hinted_size(), 2u);
  // Removed and re-inserted: still hinted.
  policy_.OnRemove(5);
  Insert(5);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{4, 6, 5}));
}

TEST_F(SchedulerAwarePolicyTest, HintsExpireAfterGrace) {
  Insert(1);
  Insert(2);
  Hint({In(1, absl::Seconds(10))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 1}));
  clock_.Advance(absl::Seconds(40));  // needed_at + grace == now: still counts
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 1}));
  EXPECT_NE(policy_.NeededAt(1), absl::InfiniteFuture());
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(policy_.NeededAt(1), absl::InfiniteFuture());
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2}));  // back at its own recency
  EXPECT_EQ(policy_.hinted_size(), 0u);
}

TEST_F(SchedulerAwarePolicyTest, StaleHintsAreIgnored) {
  Insert(1);
  Insert(2);
  Hint({In(1, -absl::Seconds(31)), In(2, -absl::Seconds(29))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2}));  // 2 still counts
  // A remembered hint for an absent id that expires before it arrives.
  Hint({In(7, absl::Seconds(1))});
  clock_.Advance(absl::Seconds(32));
  Insert(7);
  Insert(8);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2, 7, 8}));
}

TEST_F(SchedulerAwarePolicyTest, MalformedHintsAreIgnored) {
  Insert(1);
  Insert(2);
  Hint({HintedEntry{kNoEntry, clock_.Now()}, HintedEntry{1, absl::InfiniteFuture()}});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2}));
  EXPECT_EQ(policy_.hinted_size(), 0u);
}

TEST_F(SchedulerAwarePolicyTest, NeverExpiringGrace) {
  SchedulerAwarePolicy policy(&clock_, {.hint_grace = absl::InfiniteDuration()});
  policy.OnInsert(1, kNoEntry);
  policy.OnInsert(2, kNoEntry);
  std::vector<HintedEntry> hints = {In(1, -absl::Hours(1000))};
  policy.OnHints(hints);
  clock_.Advance(absl::Hours(1000));
  EXPECT_EQ(Order(policy), (std::vector<EntryId>{2, 1}));
}

TEST_F(SchedulerAwarePolicyTest, PinnedEntriesAreSkipped) {
  Insert(1);
  Insert(2);
  Insert(3);
  Hint({In(2, absl::Seconds(10)), In(3, absl::Seconds(20))});
  auto not_1_or_3 = [](EntryId id) { return id != 1 && id != 3; };
  EXPECT_EQ(policy_.PickVictim(not_1_or_3), 2u);
  EXPECT_EQ(policy_.PickVictim([](EntryId) { return false; }), kNoEntry);
  EXPECT_EQ(policy_.size(), 3u);  // PickVictim removes nothing
}

TEST_F(SchedulerAwarePolicyTest, PrefixOrderAmongUnhinted) {
  Insert(1);
  Insert(2, 1);
  Insert(3, 2);
  Insert(10);
  Hint({In(10, absl::Seconds(5))});
  Access(1);  // the root is the most recent, yet the chain goes leaf first
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 10}));
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{3, 2, 1, 10}));
}

TEST_F(SchedulerAwarePolicyTest, ParentOfAHintedChildIsAnUnhintedLeaf) {
  Insert(1);
  Insert(2, 1);
  Insert(3);
  Hint({In(2, absl::Seconds(5))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 3, 2}));
  // Withdrawn: 2 is again 1's child, so 1 waits for it.
  Hint({});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 3}));
}

TEST_F(SchedulerAwarePolicyTest, AccessAndRemoveOfHintedEntries) {
  Insert(1);
  Insert(2);
  Insert(3);
  Hint({In(1, absl::Seconds(10)), In(2, absl::Seconds(10))});
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 2, 1}));
  Access(1);  // equal needed_at: the most recently used goes first
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 1, 2}));
  policy_.OnRemove(1);
  policy_.OnRemove(3);
  EXPECT_EQ(policy_.size(), 1u);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2}));
  // Ignored: not resident.
  policy_.OnRemove(1);
  policy_.OnAccess(1);
  policy_.OnInsert(2, kNoEntry);
  EXPECT_EQ(policy_.size(), 1u);
}

// A set staged in pieces, with inserts and removals between the pieces,
// ends in the same order as the same set given at once.
TEST(SchedulerAwareStagedTest, StagedHintsMatchOnHints) {
  FakeClock clock;
  SchedulerAwarePolicy whole(&clock), staged(&clock);
  for (EntryId id = 1; id <= 40; ++id) {
    whole.OnInsert(id, id % 5 == 1 ? kNoEntry : id - 1);
    staged.OnInsert(id, id % 5 == 1 ? kNoEntry : id - 1);
    clock.Advance(absl::Seconds(1));
  }
  std::vector<HintedEntry> first, second;
  for (EntryId id = 1; id <= 40; id += 2) first.push_back({id, clock.Now() + absl::Seconds(id)});
  for (EntryId id = 10; id <= 50; id += 3) {
    second.push_back({id, clock.Now() + absl::Seconds(60 - id)});
  }
  whole.OnHints(first);
  staged.OnHints(first);
  staged.BeginHints();
  whole.OnRemove(13);
  staged.OnRemove(13);
  for (size_t i = 0; i < second.size(); i += 3) {
    staged.AddHints(std::span<const HintedEntry>(second).subspan(i, std::min<size_t>(3, second.size() - i)));
  }
  whole.OnHints(second);
  // 43 arrives before the staged set ends: it takes its new hint.
  whole.OnInsert(43, kNoEntry);
  staged.OnInsert(43, kNoEntry);
  int calls = 0;
  while (!staged.EndHints(/*budget=*/1)) ++calls;
  EXPECT_GT(calls, 1);  // the withdrawn entries moved one per call
  EXPECT_EQ(Order(staged), Order(whole));
  EXPECT_EQ(staged.hinted_size(), whole.hinted_size());
  EXPECT_EQ(staged.NeededAt(43), whole.NeededAt(43));
}

TEST(SchedulerAwareFactoryTest, CreatePolicyKnowsScheduler) {
  FakeClock clock;
  auto policy = CreatePolicy("scheduler", &clock);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->name(), "scheduler");
  (*policy)->OnInsert(1, kNoEntry);
  (*policy)->OnInsert(2, kNoEntry);
  std::vector<HintedEntry> hints = {{1, clock.Now() + absl::Seconds(1)}};
  (*policy)->OnHints(hints);
  EXPECT_EQ((*policy)->PickVictim(Any), 2u);

  auto unknown = CreatePolicy("belady", &clock);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("lru, prefix-lru, scheduler"), std::string::npos)
      << unknown.status();
}

// Random operations: the victim is an evictable unhinted leaf (no unhinted
// resident child) when one exists, else the evictable hinted entry with the
// latest live needed_at, else none; the resident count matches a model.
TEST(SchedulerAwarePolicyRandomTest, VictimRespectsHintClasses) {
  std::mt19937 rng(7);
  FakeClock clock;
  const absl::Duration grace = absl::Seconds(5);
  SchedulerAwarePolicy policy(&clock, {.hint_grace = grace});
  std::map<EntryId, EntryId> parent_of;  // every id ever created; parent < id
  std::set<EntryId> resident;
  std::map<EntryId, absl::Time> hints;  // soonest needed_at
  EntryId next_id = 1;
  auto random_resident = [&] { return *std::next(resident.begin(), rng() % resident.size()); };
  for (int step = 0; step < 20000; ++step) {
    const int op = rng() % 10;
    if (op < 3) {
      EntryId id;
      if (rng() % 4 == 0 && next_id > 1) {
        id = 1 + rng() % (next_id - 1);  // an id seen before, same parent
      } else {
        id = next_id++;
        parent_of[id] = id == 1 || rng() % 3 == 0 ? kNoEntry : 1 + rng() % (id - 1);
      }
      if (!resident.contains(id)) {
        policy.OnInsert(id, parent_of[id]);
        resident.insert(id);
      }
    } else if (op < 5 && !resident.empty()) {
      policy.OnAccess(random_resident());
    } else if (op < 6 && !resident.empty()) {
      const EntryId id = random_resident();
      policy.OnRemove(id);
      resident.erase(id);
    } else if (op < 7) {
      std::vector<HintedEntry> set;
      hints.clear();
      for (int n = rng() % 12; n > 0; --n) {
        const HintedEntry h{1 + rng() % next_id,
                            clock.Now() + absl::Seconds(static_cast<int>(rng() % 40) - 10)};
        set.push_back(h);
        auto [it, inserted] = hints.try_emplace(h.id, h.needed_at);
        if (!inserted) it->second = std::min(it->second, h.needed_at);
      }
      policy.OnHints(set);
    } else if (op < 8) {
      clock.Advance(absl::Seconds(rng() % 3));
    } else {
      std::set<EntryId> pinned;
      for (const EntryId id : resident) {
        if (rng() % 4 == 0) pinned.insert(id);
      }
      auto live = [&](EntryId id) {
        auto it = hints.find(id);
        return it != hints.end() && it->second + grace >= clock.Now();
      };
      std::set<EntryId> has_unhinted_child;
      for (const EntryId id : resident) {
        if (!live(id) && parent_of[id] != kNoEntry) has_unhinted_child.insert(parent_of[id]);
      }
      std::set<EntryId> unhinted_candidates;
      absl::Time latest = absl::InfinitePast();
      for (const EntryId id : resident) {
        if (pinned.contains(id)) continue;
        if (!live(id)) {
          if (!has_unhinted_child.contains(id)) unhinted_candidates.insert(id);
        } else {
          latest = std::max(latest, hints[id]);
        }
      }
      const EntryId victim = policy.PickVictim([&](EntryId id) { return !pinned.contains(id); });
      if (!unhinted_candidates.empty()) {
        ASSERT_TRUE(unhinted_candidates.contains(victim)) << step;
      } else if (latest != absl::InfinitePast()) {
        ASSERT_TRUE(resident.contains(victim) && !pinned.contains(victim) && live(victim)) << step;
        ASSERT_EQ(hints[victim], latest) << step;
      } else {
        ASSERT_EQ(victim, kNoEntry) << step;
      }
    }
    ASSERT_EQ(policy.size(), resident.size()) << step;
  }
}

}  // namespace
}  // namespace strata::eviction
