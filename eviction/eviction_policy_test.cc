#include "eviction/eviction_policy.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "store/common/clock.h"

namespace strata::eviction {
namespace {

bool Any(EntryId) { return true; }

TEST(CreatePolicyTest, Lru) {
  FakeClock clock;
  auto policy = CreatePolicy("lru", &clock);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->name(), "lru");
  (*policy)->OnInsert(1, kNoEntry);
  clock.Advance(absl::Seconds(1));
  (*policy)->OnInsert(2, 1);
  EXPECT_EQ((*policy)->size(), 2u);
  EXPECT_EQ((*policy)->PickVictim(Any), 1u);  // parents do not matter
}

TEST(CreatePolicyTest, PrefixLru) {
  FakeClock clock;
  auto policy = CreatePolicy("prefix-lru", &clock);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->name(), "prefix-lru");
  (*policy)->OnInsert(1, kNoEntry);
  clock.Advance(absl::Seconds(1));
  (*policy)->OnInsert(2, 1);
  EXPECT_EQ((*policy)->PickVictim(Any), 2u);  // the child goes first
}

TEST(CreatePolicyTest, UnknownNameIsInvalidArgumentListingValidNames) {
  FakeClock clock;
  for (const char* name : {"", "LRU", "fifo", "prefix_lru", "lru "}) {
    auto policy = CreatePolicy(name, &clock);
    ASSERT_FALSE(policy.ok()) << name;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << name;
    const std::string message(policy.status().message());
    EXPECT_NE(message.find("\"" + std::string(name) + "\""), std::string::npos) << message;
    EXPECT_NE(message.find("lru, prefix-lru"), std::string::npos) << message;
  }
}

TEST(CreatePolicyTest, NullClockIsInvalidArgument) {
  auto policy = CreatePolicy("lru", nullptr);
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::eviction
