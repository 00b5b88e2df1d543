#include "eviction/prefix_lru_policy.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "eviction/policy_testing.h"
#include "gtest/gtest.h"
#include "store/common/clock.h"

namespace strata::eviction {
namespace {

using ::strata::eviction::testing::Any;
using ::strata::eviction::testing::Drain;
using ::strata::eviction::testing::Order;

class PrefixLruPolicyTest : public ::testing::Test {
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

  FakeClock clock_;
  PrefixLruPolicy policy_{&clock_};
};

TEST_F(PrefixLruPolicyTest, EmptyHasNoVictim) {
  EXPECT_EQ(policy_.size(), 0u);
  EXPECT_EQ(policy_.PickVictim(Any), kNoEntry);
  EXPECT_EQ(policy_.name(), "prefix-lru");
}

TEST_F(PrefixLruPolicyTest, UnrelatedEntriesAreLru) {
  Insert(1);
  Insert(2);
  Insert(3);
  Access(1);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 3, 1}));
}

TEST_F(PrefixLruPolicyTest, ChainEvictsDeepestFirstAlthoughRootIsOldest) {
  Insert(1);     // a
  Insert(2, 1);  // b
  Insert(3, 2);  // c
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3}));
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{3, 2, 1}));
  EXPECT_EQ(policy_.size(), 0u);
}

TEST_F(PrefixLruPolicyTest, ChainOrderHoldsWhateverTheAccesses) {
  Insert(1);
  Insert(2, 1);
  Insert(3, 2);
  Access(3);
  Access(2);
  Access(1);  // the root is now the most recently used
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{3, 2, 1}));
}

TEST_F(PrefixLruPolicyTest, ParentBecomesCandidateAtItsOwnRecency) {
  Insert(1);      // r, oldest
  Insert(2, 1);   // x
  Insert(10);     // y, unrelated, newer than r
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 10}));
  policy_.OnRemove(2);
  // r goes back in front of the newer y, not behind it.
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 10}));
}

TEST_F(PrefixLruPolicyTest, BranchingTree) {
  // 1 -> {2, 3}; 2 -> {4, 5}; 3 -> {6}.
  Insert(1);
  Insert(2, 1);
  Insert(3, 1);
  Insert(4, 2);
  Insert(5, 2);
  Insert(6, 3);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{4, 5, 6}));
  Access(4);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{5, 6, 4}));
  policy_.OnRemove(5);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{6, 4}));  // 2 still has 4
  policy_.OnRemove(4);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 6}));  // 2 older than 6
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{2, 6, 3, 1}));
}

TEST_F(PrefixLruPolicyTest, PinnedCandidatesAreSkipped) {
  Insert(1);
  Insert(2, 1);
  Insert(3);
  Insert(4);
  EXPECT_EQ(policy_.PickVictim([](EntryId id) { return id != 2; }), 3u);
  EXPECT_EQ(policy_.PickVictim([](EntryId id) { return id == 4; }), 4u);
}

TEST_F(PrefixLruPolicyTest, PinnedLeafHoldsBackItsAncestors) {
  Insert(1);
  Insert(2, 1);
  int asked = 0;
  EXPECT_EQ(policy_.PickVictim([&](EntryId) {
    ++asked;
    return false;
  }),
            kNoEntry);
  EXPECT_EQ(asked, 1);  // only the leaf is a candidate
  EXPECT_EQ(policy_.PickVictim([](EntryId id) { return id != 2; }), kNoEntry);
  EXPECT_EQ(policy_.size(), 2u);
}

TEST_F(PrefixLruPolicyTest, TiesKeepCallOrder) {
  // The clock never moves.
  policy_.OnInsert(30, kNoEntry);
  policy_.OnInsert(10, kNoEntry);
  policy_.OnInsert(20, 30);
  policy_.OnInsert(40, kNoEntry);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{10, 20, 40}));
  policy_.OnRemove(20);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{30, 10, 40}));
}

TEST_F(PrefixLruPolicyTest, OrderFollowsTheClock) {
  Insert(1);
  Insert(2);
  clock_.Advance(absl::Seconds(-10));  // steps back before 1
  Insert(3);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 1, 2}));
}

TEST_F(PrefixLruPolicyTest, ParentInsertedAfterItsChild) {
  Insert(2, 1);  // 1 is not resident yet
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2}));
  clock_.Advance(absl::Seconds(-100));
  Insert(1);  // stamped older than 2, yet it has a resident child
  EXPECT_EQ(policy_.size(), 2u);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2}));
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{2, 1}));
}

TEST_F(PrefixLruPolicyTest, ChildOfAbsentParentGoneBeforeParentArrives) {
  Insert(2, 1);
  policy_.OnRemove(2);
  Insert(1);
  Insert(3);
  // 1 has no resident child any more, so it is an ordinary (oldest) candidate.
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 3}));
}

TEST_F(PrefixLruPolicyTest, RemovingInteriorNodeKeepsItsChildren) {
  Insert(1);     // a
  Insert(2, 1);  // b
  Insert(3, 2);  // c
  policy_.OnRemove(2);  // b demoted while c is resident
  EXPECT_EQ(policy_.size(), 2u);
  // a lost its only resident child; c is still a leaf.
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 3}));
  Insert(2, 1);  // b comes back: it has c again, and a has b again
  EXPECT_EQ(policy_.size(), 3u);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3}));
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{3, 2, 1}));
}

TEST_F(PrefixLruPolicyTest, RemovedInteriorNodeLosesChildrenThatLeave) {
  Insert(1);
  Insert(2, 1);
  policy_.OnRemove(1);  // 1 keeps a count of one resident child
  policy_.OnRemove(2);  // now none
  Insert(1);
  Insert(5);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 5}));
}

TEST_F(PrefixLruPolicyTest, AccessRefreshesInteriorRecency) {
  Insert(1);
  Insert(2, 1);
  Insert(3);
  Access(1);  // 1 is now newer than 3
  policy_.OnRemove(2);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 1}));
}

TEST_F(PrefixLruPolicyTest, CallsBreakingRequiresAreIgnored) {
  Insert(1);
  Insert(2, 1);
  policy_.OnInsert(2, kNoEntry);  // already resident
  policy_.OnInsert(3, 3);         // its own parent: treated as none
  policy_.OnAccess(99);
  policy_.OnRemove(99);
  policy_.OnRemove(98);
  EXPECT_EQ(policy_.size(), 3u);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 3}));
  EXPECT_EQ(Drain(policy_), (std::vector<EntryId>{2, 1, 3}));
}

// Random operations on a forest of chains against a brute-force reference:
// candidates are resident ids that no resident id names as parent; the victim
// is the least recently used evictable candidate. Each id has one parent for
// life (ids are never reused), and removed ids come back at times.
TEST(PrefixLruPolicyRandomTest, MatchesReference) {
  FakeClock clock;
  PrefixLruPolicy policy(&clock);
  std::mt19937_64 rng(7);
  std::vector<EntryId> parent_of;           // by id; kNoEntry for none
  std::map<EntryId, uint64_t> resident;     // id -> last access counter
  uint64_t counter = 0;
  auto random_resident = [&] {
    auto it = resident.begin();
    std::advance(it, rng() % resident.size());
    return it->first;
  };
  for (int step = 0; step < 20000; ++step) {
    if (rng() % 2 == 0) clock.Advance(absl::Milliseconds(1));
    const int op = rng() % 10;
    if (op < 3 || resident.size() < 2) {
      // A new id: a root, or a child of any earlier id (resident or not).
      const EntryId id = parent_of.size();
      const EntryId parent =
          (id == 0 || rng() % 4 == 0) ? kNoEntry : EntryId{rng() % id};
      parent_of.push_back(parent);
      policy.OnInsert(id, parent);
      resident[id] = counter++;
    } else if (op < 4) {
      // An id that went away comes back, with its parent.
      const EntryId id = rng() % parent_of.size();
      if (resident.count(id) != 0) continue;
      policy.OnInsert(id, parent_of[id]);
      resident[id] = counter++;
    } else if (op < 6) {
      const EntryId id = random_resident();
      policy.OnAccess(id);
      resident[id] = counter++;
    } else if (op < 7) {
      const EntryId id = random_resident();
      policy.OnRemove(id);
      resident.erase(id);
    } else {
      const uint64_t salt = rng();
      auto evictable = [&](EntryId id) { return (id * 0x9E3779B97F4A7C15ull ^ salt) % 4 != 0; };
      std::vector<bool> has_child(parent_of.size(), false);
      for (const auto& [id, access] : resident) {
        if (parent_of[id] != kNoEntry) has_child[parent_of[id]] = true;
      }
      EntryId expected = kNoEntry;
      uint64_t oldest = ~uint64_t{0};
      for (const auto& [id, access] : resident) {
        if (!has_child[id] && evictable(id) && access < oldest) {
          expected = id;
          oldest = access;
        }
      }
      ASSERT_EQ(policy.PickVictim(evictable), expected) << "step " << step;
      if (expected != kNoEntry) {
        policy.OnRemove(expected);
        resident.erase(expected);
      }
    }
    ASSERT_EQ(policy.size(), resident.size());
  }
}

}  // namespace
}  // namespace strata::eviction
