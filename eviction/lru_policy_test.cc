#include "eviction/lru_policy.h"

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
using ::strata::eviction::testing::Order;

class LruPolicyTest : public ::testing::Test {
 protected:
  // Inserts `id`, then moves the clock on by a second.
  void InsertAndTick(EntryId id) {
    policy_.OnInsert(id, kNoEntry);
    clock_.Advance(absl::Seconds(1));
  }

  FakeClock clock_;
  LruPolicy policy_{&clock_};
};

TEST_F(LruPolicyTest, EmptyHasNoVictim) {
  EXPECT_EQ(policy_.size(), 0u);
  EXPECT_EQ(policy_.PickVictim(Any), kNoEntry);
  EXPECT_EQ(policy_.name(), "lru");
}

TEST_F(LruPolicyTest, OldestFirst) {
  InsertAndTick(7);
  InsertAndTick(3);
  InsertAndTick(5);
  EXPECT_EQ(policy_.size(), 3u);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{7, 3, 5}));
  EXPECT_EQ(policy_.PickVictim(Any), 7u);
}

TEST_F(LruPolicyTest, PickVictimDoesNotRemove) {
  InsertAndTick(1);
  InsertAndTick(2);
  EXPECT_EQ(policy_.PickVictim(Any), 1u);
  EXPECT_EQ(policy_.PickVictim(Any), 1u);
  EXPECT_EQ(policy_.size(), 2u);
  policy_.OnRemove(1);
  EXPECT_EQ(policy_.size(), 1u);
  EXPECT_EQ(policy_.PickVictim(Any), 2u);
  policy_.OnRemove(2);
  EXPECT_EQ(policy_.PickVictim(Any), kNoEntry);
}

TEST_F(LruPolicyTest, EqualTimestampsKeepCallOrder) {
  // The clock does not move: ids are not in numeric order on purpose.
  policy_.OnInsert(30, kNoEntry);
  policy_.OnInsert(10, kNoEntry);
  policy_.OnInsert(20, kNoEntry);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{30, 10, 20}));
  policy_.OnAccess(30);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{10, 20, 30}));
}

TEST_F(LruPolicyTest, AccessRefreshesRecency) {
  InsertAndTick(1);
  InsertAndTick(2);
  InsertAndTick(3);
  policy_.OnAccess(1);
  EXPECT_EQ(policy_.PickVictim(Any), 2u);
  clock_.Advance(absl::Seconds(1));
  policy_.OnAccess(2);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{3, 1, 2}));
}

TEST_F(LruPolicyTest, PinnedEntriesAreSkipped) {
  InsertAndTick(1);
  InsertAndTick(2);
  InsertAndTick(3);
  EXPECT_EQ(policy_.PickVictim([](EntryId id) { return id != 1; }), 2u);
  EXPECT_EQ(policy_.PickVictim([](EntryId id) { return id == 3; }), 3u);
}

TEST_F(LruPolicyTest, AllPinnedHasNoVictim) {
  InsertAndTick(1);
  InsertAndTick(2);
  int asked = 0;
  EXPECT_EQ(policy_.PickVictim([&](EntryId) {
    ++asked;
    return false;
  }),
            kNoEntry);
  EXPECT_EQ(asked, 2);
}

TEST_F(LruPolicyTest, OrderFollowsTheClockNotTheCalls) {
  // A clock that steps back stamps 2 as older than 1, although 2 came later.
  InsertAndTick(1);                    // t0
  clock_.Advance(absl::Seconds(-10));  // t0 - 9s
  policy_.OnInsert(2, kNoEntry);
  clock_.Advance(absl::Seconds(20));  // t0 + 11s
  policy_.OnInsert(3, kNoEntry);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 1, 3}));
}

TEST_F(LruPolicyTest, ReinsertedEntryIsNew) {
  InsertAndTick(1);
  InsertAndTick(2);
  policy_.OnRemove(1);
  InsertAndTick(1);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{2, 1}));
}

TEST_F(LruPolicyTest, ParentsAreIgnored) {
  policy_.OnInsert(1, kNoEntry);
  clock_.Advance(absl::Seconds(1));
  policy_.OnInsert(2, 1);
  EXPECT_EQ(policy_.PickVictim(Any), 1u);
}

TEST_F(LruPolicyTest, CallsBreakingRequiresAreIgnored) {
  InsertAndTick(1);
  InsertAndTick(2);
  policy_.OnInsert(1, kNoEntry);  // already resident: no refresh
  policy_.OnAccess(99);
  policy_.OnRemove(99);
  EXPECT_EQ(policy_.size(), 2u);
  EXPECT_EQ(Order(policy_), (std::vector<EntryId>{1, 2}));
}

TEST_F(LruPolicyTest, HintsAreIgnored) {
  InsertAndTick(1);
  InsertAndTick(2);
  const HintedEntry hints[] = {{2, absl::UnixEpoch()}, {1, absl::InfiniteFuture()}};
  policy_.OnHints(hints);
  EXPECT_EQ(policy_.PickVictim(Any), 1u);
}

// Random operations against a plain reference model: a map from a global
// access counter to the id. The clock moves forward by 0 or 1 ms at a time, so
// equal timestamps are frequent and the reference order is the call order.
TEST(LruPolicyRandomTest, MatchesReference) {
  FakeClock clock;
  LruPolicy policy(&clock);
  std::map<uint64_t, EntryId> by_access;           // access counter -> id
  std::map<EntryId, uint64_t> last_access;         // id -> access counter
  std::vector<EntryId> resident;
  std::mt19937_64 rng(42);
  uint64_t counter = 0;
  EntryId next_id = 0;
  for (int step = 0; step < 200000; ++step) {
    if (rng() % 2 == 0) clock.Advance(absl::Milliseconds(1));
    const int op = rng() % 10;
    if (op < 3 || resident.size() < 2) {
      const EntryId id = next_id++;
      policy.OnInsert(id, kNoEntry);
      last_access[id] = counter;
      by_access[counter++] = id;
      resident.push_back(id);
    } else if (op < 6) {
      const EntryId id = resident[rng() % resident.size()];
      policy.OnAccess(id);
      by_access.erase(last_access[id]);
      last_access[id] = counter;
      by_access[counter++] = id;
    } else if (op < 8) {
      const size_t i = rng() % resident.size();
      const EntryId id = resident[i];
      policy.OnRemove(id);
      by_access.erase(last_access[id]);
      last_access.erase(id);
      resident[i] = resident.back();
      resident.pop_back();
    } else {
      // Pin a random third of the ids; the victim is the oldest unpinned.
      const uint64_t salt = rng();
      auto evictable = [&](EntryId id) { return (id * 0x9E3779B97F4A7C15ull ^ salt) % 3 != 0; };
      EntryId expected = kNoEntry;
      for (const auto& [access, id] : by_access) {
        if (evictable(id)) {
          expected = id;
          break;
        }
      }
      ASSERT_EQ(policy.PickVictim(evictable), expected) << "step " << step;
      if (expected != kNoEntry && rng() % 2 == 0) {
        policy.OnRemove(expected);
        by_access.erase(last_access[expected]);
        last_access.erase(expected);
        resident.erase(std::find(resident.begin(), resident.end(), expected));
      }
    }
    ASSERT_EQ(policy.size(), resident.size());
  }
}

}  // namespace
}  // namespace strata::eviction
