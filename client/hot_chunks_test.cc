#include "client/hot_chunks.h"

#include <memory>

#include "gtest/gtest.h"

namespace strata::client {
namespace {

ChunkKey Key(uint8_t b) {
  ChunkKey k;
  k.bytes.fill(b);
  return k;
}

class HotChunksTest : public ::testing::Test {
 protected:
  std::unique_ptr<HotChunks> Make(uint32_t reads, size_t max_tracked = 1024) {
    HotChunkOptions o;
    o.reads = reads;
    o.window = absl::Seconds(10);
    o.max_tracked = max_tracked;
    o.now = [this] { return now_; };
    return std::make_unique<HotChunks>(o);
  }
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(HotChunksTest, TurnsHotAtTheThresholdWithinOneWindow) {
  auto hp = Make(4);
  HotChunks& h = *hp;
  for (int i = 0; i < 3; ++i) {
    const HotChunks::Read r = h.RecordRead(Key(1));
    EXPECT_FALSE(r.hot);
    EXPECT_EQ(r.sequence, static_cast<uint64_t>(i));
  }
  EXPECT_FALSE(h.IsHot(Key(1)));
  EXPECT_TRUE(h.RecordRead(Key(1)).hot);
  EXPECT_TRUE(h.IsHot(Key(1)));
  EXPECT_FALSE(h.IsHot(Key(2)));
  EXPECT_EQ(h.HotCount(), 1u);
}

TEST_F(HotChunksTest, ReadsSpreadOverWindowsDoNotAddUp) {
  auto hp = Make(4);
  HotChunks& h = *hp;
  for (int w = 0; w < 5; ++w) {
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(h.RecordRead(Key(1)).hot);
    now_ += absl::Seconds(10);
  }
  EXPECT_EQ(h.HotCount(), 0u);
}

TEST_F(HotChunksTest, StaysHotWithHalfTheReadsAndCoolsBelow) {
  auto hp = Make(4);
  HotChunks& h = *hp;
  for (int i = 0; i < 4; ++i) h.RecordRead(Key(1));
  ASSERT_TRUE(h.IsHot(Key(1)));
  // Next window: 2 reads (half) keep it hot through the window after.
  now_ += absl::Seconds(10);
  h.RecordRead(Key(1));
  h.RecordRead(Key(1));
  now_ += absl::Seconds(10);
  EXPECT_TRUE(h.IsHot(Key(1)));
  // One read in this window: at its end it cools.
  h.RecordRead(Key(1));
  now_ += absl::Seconds(10);
  EXPECT_FALSE(h.IsHot(Key(1)));
}

TEST_F(HotChunksTest, AnIdleWindowCoolsIt) {
  auto hp = Make(4);
  HotChunks& h = *hp;
  for (int i = 0; i < 8; ++i) h.RecordRead(Key(1));
  ASSERT_TRUE(h.IsHot(Key(1)));
  now_ += absl::Seconds(25);  // the reads' window ended and a whole one passed empty
  EXPECT_FALSE(h.IsHot(Key(1)));
  EXPECT_EQ(h.HotCount(), 0u);
}

TEST_F(HotChunksTest, OneCopyClaimPerHotWindow) {
  auto hp = Make(2);
  HotChunks& h = *hp;
  h.RecordRead(Key(1));
  EXPECT_FALSE(h.ClaimCopy(Key(1)));  // not hot yet
  h.RecordRead(Key(1));
  EXPECT_TRUE(h.ClaimCopy(Key(1)));
  EXPECT_FALSE(h.ClaimCopy(Key(1)));
  now_ += absl::Seconds(10);
  h.RecordRead(Key(1));
  EXPECT_TRUE(h.ClaimCopy(Key(1)));   // a new window: copy again (a replica may have gone)
  EXPECT_FALSE(h.ClaimCopy(Key(9)));  // never read
}

TEST_F(HotChunksTest, OffWhenReadsIsZero) {
  auto hp = Make(0);
  HotChunks& h = *hp;
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(h.RecordRead(Key(1)).hot);
  EXPECT_FALSE(h.IsHot(Key(1)));
  EXPECT_FALSE(h.ClaimCopy(Key(1)));
  EXPECT_EQ(h.tracked(), 0u);
}

TEST_F(HotChunksTest, TrackingIsBounded) {
  auto hp = Make(2, /*max_tracked=*/4);
  HotChunks& h = *hp;
  for (uint8_t b = 0; b < 4; ++b) h.RecordRead(Key(b));
  h.RecordRead(Key(0));  // hot
  EXPECT_EQ(h.tracked(), 4u);
  // Full of this window's keys: a new one is not tracked.
  EXPECT_FALSE(h.RecordRead(Key(50)).hot);
  EXPECT_EQ(h.tracked(), 4u);
  // A window later the cold ones make room; the hot one stays.
  now_ += absl::Seconds(10);
  h.RecordRead(Key(50));
  EXPECT_EQ(h.tracked(), 2u);
  EXPECT_TRUE(h.IsHot(Key(0)));  // two reads last window: half the threshold keeps it
}

}  // namespace
}  // namespace strata::client
