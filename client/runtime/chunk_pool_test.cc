#include "client/runtime/chunk_pool.h"

#include <cstring>

#include "gtest/gtest.h"
#include "store/common/clock.h"

namespace strata::runtime {
namespace {

using ::absl::StatusCode;

constexpr uint64_t kChunk = 4096;
constexpr uint64_t kLayer = 1024;

ChunkKey Key(int i) {
  ChunkKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  k.bytes[31] = 0x5a;
  return k;
}

class ChunkPoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChunkPool> MakePool(size_t slots, std::string policy = "prefix-lru") {
    auto mem = CreateHostSlotMemory(slots * kChunk);
    EXPECT_TRUE(mem.ok());
    ChunkPool::Options o;
    o.chunk_bytes = kChunk;
    o.layer_bytes = kLayer;
    o.policy = policy;
    o.clock = &clock_;
    auto pool = ChunkPool::Create(o, *std::move(mem));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? *std::move(pool) : nullptr;
  }
  // Allocates and marks ready `key` (parent: `parent` if >= 0).
  SlotId Ready(ChunkPool& pool, int key, int parent = -1) {
    auto s = pool.Allocate(Key(key), parent >= 0 ? std::optional(Key(parent)) : std::nullopt);
    EXPECT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(pool.MarkReady(*s).ok());
    clock_.Advance(absl::Seconds(1));
    return *s;
  }
  FakeClock clock_;
};

TEST_F(ChunkPoolTest, CreateRejectsBadSizesAndPolicies) {
  ChunkPool::Options o;
  o.chunk_bytes = 0;
  EXPECT_EQ(ChunkPool::Create(o, *CreateHostSlotMemory(kChunk)).status().code(), StatusCode::kInvalidArgument);
  o.chunk_bytes = kChunk;
  o.layer_bytes = 1000;  // does not divide
  EXPECT_EQ(ChunkPool::Create(o, *CreateHostSlotMemory(kChunk)).status().code(), StatusCode::kInvalidArgument);
  o.layer_bytes = kLayer;
  EXPECT_EQ(ChunkPool::Create(o, *CreateHostSlotMemory(kChunk - 1)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ChunkPool::Create(o, nullptr).status().code(), StatusCode::kInvalidArgument);
  o.policy = "no-such-policy";
  EXPECT_EQ(ChunkPool::Create(o, *CreateHostSlotMemory(kChunk)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHostSlotMemory(0).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ChunkPoolTest, CarvesSlotsAndLayerSlices) {
  auto pool = MakePool(3);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->capacity(), 3u);
  EXPECT_EQ(pool->num_layers(), 4u);
  EXPECT_EQ(pool->policy_name(), "prefix-lru");
  std::byte* b0 = *pool->SlotBase(0);
  EXPECT_EQ(*pool->SlotBase(2), b0 + 2 * kChunk);
  EXPECT_EQ(*pool->LayerSlice(1, 3), b0 + kChunk + 3 * kLayer);
  EXPECT_EQ(pool->LayerSlice(1, 4).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->SlotBase(3).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->SlotBase(-1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->HostBytes(1)->size(), kChunk);
}

// Memory the host must not touch (as device memory): a pointer is handed out
// but never dereferenced.
class FakeDeviceMemory final : public SlotMemory {
 public:
  std::byte* base() const override { return reinterpret_cast<std::byte*>(uintptr_t{1} << 40); }
  size_t bytes() const override { return 4 * kChunk; }
  bool host_accessible() const override { return false; }
};

TEST_F(ChunkPoolTest, DeviceMemoryHasSlicesButNoHostBytes) {
  ChunkPool::Options o;
  o.chunk_bytes = kChunk;
  o.layer_bytes = kLayer;
  auto pool = ChunkPool::Create(o, std::make_unique<FakeDeviceMemory>());
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_FALSE((*pool)->host_accessible());
  EXPECT_EQ(*(*pool)->LayerSlice(2, 1), reinterpret_cast<std::byte*>(uintptr_t{1} << 40) + 2 * kChunk + kLayer);
  EXPECT_EQ((*pool)->HostBytes(0).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ChunkPoolTest, MarkReadyCanHoldAtOnce) {
  auto pool = MakePool(1);
  auto s = pool->Allocate(Key(1), std::nullopt);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(pool->MarkReady(*s, /*hold=*/true).ok());
  EXPECT_EQ(*pool->HoldCount(*s), 1);
  EXPECT_EQ(pool->Allocate(Key(2), std::nullopt).status().code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(pool->Release(*s).ok());
  EXPECT_TRUE(pool->Allocate(Key(2), std::nullopt).ok());
}

TEST_F(ChunkPoolTest, LoadingSlotIsNeverServedAndAFailedLoadFreesIt) {
  auto pool = MakePool(2);
  auto s = pool->Allocate(Key(1), std::nullopt);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*pool->State(*s), SlotState::kLoading);
  EXPECT_EQ(*pool->Find(Key(1)), *s);
  EXPECT_EQ(pool->Acquire(Key(1)).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->Pin(*s).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->Allocate(Key(1), std::nullopt).status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(pool->FailLoad(*s).ok());
  EXPECT_EQ(*pool->State(*s), SlotState::kFree);
  EXPECT_EQ(pool->Find(Key(1)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(pool->Acquire(Key(1)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(pool->FailLoad(*s).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->MarkReady(*s).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->Stats().free, 2u);
}

TEST_F(ChunkPoolTest, ReferenceCountErrors) {
  auto pool = MakePool(2);
  SlotId s = Ready(*pool, 1);
  EXPECT_EQ(pool->Release(s).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->Unpin(s).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->Acquire(SlotId{1}).code(), StatusCode::kFailedPrecondition);  // free slot
  EXPECT_EQ(pool->Acquire(SlotId{7}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->Release(SlotId{7}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->MarkReady(s).code(), StatusCode::kFailedPrecondition);  // already ready
  ASSERT_TRUE(pool->Acquire(s).ok());
  ASSERT_TRUE(pool->Pin(s).ok());
  ASSERT_TRUE(pool->Pin(s).ok());
  EXPECT_EQ(*pool->HoldCount(s), 1);
  EXPECT_EQ(*pool->PinCount(s), 2);
  EXPECT_TRUE(pool->Unpin(s).ok());
  EXPECT_TRUE(pool->Unpin(s).ok());
  EXPECT_TRUE(pool->Release(s).ok());
  EXPECT_EQ(pool->Unpin(s).code(), StatusCode::kFailedPrecondition);
}

TEST_F(ChunkPoolTest, FullPoolEvictsOnlyUnusedChunksInPrefixOrder) {
  auto pool = MakePool(3);
  // A chain 1 -> 2 -> 3, used oldest first.
  SlotId s1 = Ready(*pool, 1);
  SlotId s2 = Ready(*pool, 2, 1);
  SlotId s3 = Ready(*pool, 3, 2);
  EXPECT_TRUE(pool->full());
  // The root was used most recently, yet prefix-lru takes the leaf first.
  ASSERT_TRUE(pool->Acquire(s1).ok());
  ASSERT_TRUE(pool->Release(s1).ok());
  auto s4 = pool->Allocate(Key(4), std::nullopt);
  ASSERT_TRUE(s4.ok()) << s4.status();
  EXPECT_EQ(*s4, s3);
  EXPECT_EQ(pool->Find(Key(3)).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(pool->MarkReady(*s4).ok());
  EXPECT_EQ(pool->Stats().evictions, 1u);
  // Hold 2, pin 4: 1 is a parent of a resident chunk, so nothing goes.
  ASSERT_TRUE(pool->Acquire(s2).ok());
  ASSERT_TRUE(pool->Pin(*s4).ok());
  auto s5 = pool->Allocate(Key(5), std::nullopt);
  ASSERT_EQ(s5.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s5.status().message().find("3 slots"), std::string::npos) << s5.status();
  EXPECT_NE(s5.status().message().find("1 held"), std::string::npos) << s5.status();
  EXPECT_NE(s5.status().message().find("1 pinned"), std::string::npos) << s5.status();
  // Nothing was damaged: every chunk is still there.
  EXPECT_EQ(*pool->Find(Key(1)), s1);
  EXPECT_EQ(*pool->Find(Key(2)), s2);
  EXPECT_EQ(*pool->Find(Key(4)), *s4);
  // Unpinning 4 makes it the victim.
  ASSERT_TRUE(pool->Unpin(*s4).ok());
  auto s6 = pool->Allocate(Key(6), std::nullopt);
  ASSERT_TRUE(s6.ok());
  EXPECT_EQ(*s6, *s4);
}

TEST_F(ChunkPoolTest, LoadingSlotsAreNotEvicted) {
  auto pool = MakePool(1);
  ASSERT_TRUE(pool->Allocate(Key(1), std::nullopt).ok());
  EXPECT_EQ(pool->Allocate(Key(2), std::nullopt).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->AllocatePrivate().status().code(), StatusCode::kResourceExhausted);
}

TEST_F(ChunkPoolTest, PrivateSlotsAreHeldAndFreedByTheirLastRelease) {
  auto pool = MakePool(2);
  auto p = pool->AllocatePrivate();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*pool->HoldCount(*p), 1);
  Ready(*pool, 1);
  // Full, and the private slot is not a candidate.
  auto s = pool->Allocate(Key(2), std::nullopt);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(pool->Find(Key(1)).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(pool->Pin(*p).ok());
  ASSERT_TRUE(pool->Release(*p).ok());
  EXPECT_EQ(*pool->State(*p), SlotState::kReady);  // still pinned
  ASSERT_TRUE(pool->Unpin(*p).ok());
  EXPECT_EQ(*pool->State(*p), SlotState::kFree);
  EXPECT_FALSE(pool->full());
}

TEST_F(ChunkPoolTest, AFullPrivateChunkIsPublishedUnderItsKey) {
  auto pool = MakePool(2);
  const SlotId one = Ready(*pool, 1);
  auto p = pool->AllocatePrivate();
  ASSERT_TRUE(p.ok());
  // Another chunk's key is refused and the slot stays private.
  EXPECT_EQ(pool->Publish(*p, Key(1), std::nullopt).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(pool->Publish(one, Key(3), std::nullopt).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(pool->Publish(*p, Key(2), Key(1)).ok());
  EXPECT_EQ(*pool->Find(Key(2)), *p);
  EXPECT_EQ(pool->Publish(*p, Key(4), std::nullopt).code(), StatusCode::kFailedPrecondition);
  // Others can hold it; once its first holder lets go it is an ordinary
  // chunk: kept while held, evictable after.
  ASSERT_TRUE(pool->Acquire(Key(2)).ok());
  ASSERT_TRUE(pool->Release(*p).ok());
  EXPECT_EQ(*pool->State(*p), SlotState::kReady);
  ASSERT_TRUE(pool->Release(*p).ok());
  EXPECT_EQ(*pool->State(*p), SlotState::kReady);
  ASSERT_TRUE(pool->Allocate(Key(5), std::nullopt).ok());  // evicts one of them
  ASSERT_TRUE(pool->Allocate(Key(6), std::nullopt).ok());
  EXPECT_EQ(pool->Find(Key(2)).status().code(), StatusCode::kNotFound);
}

TEST_F(ChunkPoolTest, SchedulerHintsKeepTheChunkNeededSoonest) {
  auto pool = MakePool(2, "scheduler");
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->policy_name(), "scheduler");
  SlotId a = Ready(*pool, 1);
  SlotId b = Ready(*pool, 2);
  // Without hints 1 (least recently used) would go; hint it soon, 2 later.
  const KeyHint hints[] = {{Key(1), clock_.Now() + absl::Seconds(5)},
                           {Key(2), clock_.Now() + absl::Seconds(50)}};
  pool->OnHints(hints);
  auto c = pool->Allocate(Key(3), std::nullopt);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, b);
  EXPECT_EQ(*pool->Find(Key(1)), a);
  ASSERT_TRUE(pool->MarkReady(*c).ok());
  // Staged: now 1 is needed latest, 3 soonest; hints for a key not yet
  // resident (4) are accepted.
  pool->BeginHints();
  const KeyHint staged[] = {{Key(1), clock_.Now() + absl::Seconds(90)},
                            {Key(3), clock_.Now() + absl::Seconds(5)},
                            {Key(4), clock_.Now() + absl::Seconds(1)}};
  pool->AddHints(staged);
  while (!pool->EndHints(1)) {
  }
  auto d = pool->Allocate(Key(5), std::nullopt);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, a);
}

}  // namespace
}  // namespace strata::runtime
