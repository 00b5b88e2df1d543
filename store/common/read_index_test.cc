#include "store/common/read_index.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "store/common/checksum.h"

namespace strata {
namespace {

ChunkKey KeyOf(uint64_t home, uint8_t tag) {
  ChunkKey k;
  std::memcpy(k.bytes.data(), &home, 8);
  k.bytes[31] = tag;
  k.bytes[8] = 1;  // never the all-zero key
  return k;
}

struct Table {
  explicit Table(uint32_t entries)
      : words(ReadIndexLayout::Bytes(entries) / 8, 0),
        writer(Region(), entries) {}
  std::span<std::byte> Region() {
    return {reinterpret_cast<std::byte*>(words.data()), words.size() * 8};
  }
  ReadIndexView View() {
    auto v = ReadIndexView::Open(Region());
    EXPECT_TRUE(v.ok()) << v.status();
    return *v;
  }
  std::vector<uint64_t> words;
  ReadIndexWriter writer;
};

TEST(ReadIndexTest, PublishFindWithdraw) {
  Table t(64);
  ReadIndexView view = t.View();
  const ChunkKey a = KeyOf(5, 1);
  EXPECT_FALSE(view.Find(a, 1).has_value());
  ASSERT_TRUE(t.writer.Publish(a, 1, 4096, 1000, 77));
  auto hit = view.Find(a, 1);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->offset, 4096u);
  EXPECT_EQ(hit->size, 1000u);
  EXPECT_EQ(hit->checksum, 77u);
  EXPECT_EQ(hit->seq % 2, 0u);
  EXPECT_TRUE(view.Unchanged(*hit));
  // Another namespace's chunk of the same key is not this namespace's.
  EXPECT_FALSE(view.Find(a, 2).has_value());
  EXPECT_EQ(t.writer.published(), 1u);
  EXPECT_TRUE(t.writer.Withdraw(a));
  EXPECT_FALSE(t.writer.Withdraw(a));
  EXPECT_FALSE(view.Find(a, 1).has_value());
  ASSERT_TRUE(t.writer.Publish(a, 1, 4096, 1000, 77));
  t.writer.Close();  // a stopping node: nothing is found any more
  EXPECT_FALSE(view.Find(a, 1).has_value());
  EXPECT_EQ(t.writer.published(), 1u);
  EXPECT_FALSE(view.Unchanged(*hit));
}

TEST(ReadIndexTest, RepublishedAtTheSamePlaceIsAChange) {
  Table t(64);
  ReadIndexView view = t.View();
  const ChunkKey a = KeyOf(9, 1);
  ASSERT_TRUE(t.writer.Publish(a, 1, 0, 256, 5));
  auto hit = view.Find(a, 1);
  ASSERT_TRUE(hit.has_value());
  ASSERT_TRUE(t.writer.Withdraw(a));
  ASSERT_TRUE(t.writer.Publish(a, 1, 0, 256, 5));  // same key, offset, checksum
  EXPECT_FALSE(view.Unchanged(*hit));
  auto again = view.Find(a, 1);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(view.Unchanged(*again));
}

TEST(ReadIndexTest, FullProbeWindowIsNotPublished) {
  Table t(64);
  ReadIndexView view = t.View();
  std::vector<ChunkKey> keys;
  for (uint8_t i = 0; i < ReadIndexLayout::kProbe; ++i) {
    keys.push_back(KeyOf(3, i));
    ASSERT_TRUE(t.writer.Publish(keys.back(), 1, i * 256, 256, i));
  }
  const ChunkKey extra = KeyOf(3, 200);
  EXPECT_FALSE(t.writer.Publish(extra, 1, 9999, 256, 1));
  EXPECT_FALSE(view.Find(extra, 1).has_value());
  for (uint8_t i = 0; i < ReadIndexLayout::kProbe; ++i) {
    auto hit = view.Find(keys[i], 1);
    ASSERT_TRUE(hit.has_value());
    EXPECT_EQ(hit->offset, i * 256u);
  }
  // A freed entry in the window takes it; updating a key keeps one entry.
  ASSERT_TRUE(t.writer.Withdraw(keys[4]));
  EXPECT_TRUE(t.writer.Publish(extra, 1, 9999, 256, 1));
  EXPECT_TRUE(t.writer.Publish(extra, 1, 8888, 256, 2));
  EXPECT_EQ(t.writer.published(), ReadIndexLayout::kProbe);
  EXPECT_EQ(view.Find(extra, 1)->offset, 8888u);
}

TEST(ReadIndexTest, OpenRefusesWhatIsNotATable) {
  std::vector<uint64_t> zeros(64, 0);
  std::span<const std::byte> region(reinterpret_cast<const std::byte*>(zeros.data()), 512);
  EXPECT_EQ(ReadIndexView::Open(region).status().code(), absl::StatusCode::kInvalidArgument);
  Table t(64);
  // Shorter than its entry count says.
  EXPECT_EQ(ReadIndexView::Open(t.Region().first(1024)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadIndexView::Open(t.Region().first(16)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A writer evicts and overwrites slots while readers copy: a copy the index
// vouches for (Unchanged) is always one whole version of its chunk.
TEST(ReadIndexTest, ReadersNeverKeepBytesOfAReplacedChunk) {
  constexpr uint32_t kSlots = 4;
  constexpr size_t kWords = 2048;  // 16 KiB chunks
  Table t(64);
  std::vector<uint64_t> pool(kSlots * kWords);
  std::vector<ChunkKey> keys;
  auto fill = [&](uint32_t slot, uint64_t version) {
    // Plain stores, as a UCX put or a memcpy into a reused slot would.
    uint64_t* w = pool.data() + slot * kWords;
    for (size_t i = 0; i < kWords; ++i) w[i] = version * 0x9e3779b97f4a7c15ull + i;
  };
  auto checksum = [&](uint32_t slot) {
    return ChunkChecksum(std::span<const std::byte>(
        reinterpret_cast<const std::byte*>(pool.data() + slot * kWords), kWords * 8));
  };
  for (uint32_t s = 0; s < kSlots; ++s) {
    keys.push_back(KeyOf(s * 7, static_cast<uint8_t>(s)));
    fill(s, s + 1);
    ASSERT_TRUE(t.writer.Publish(keys[s], 1, s * kWords * 8, kWords * 8, checksum(s)));
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> vouched{0}, changed{0}, bad{0};
  std::vector<std::thread> readers;
  ReadIndexView view = t.View();
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::vector<uint64_t> copy(kWords);
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const ChunkKey& key = keys[(n++ + r) % kSlots];
        auto hit = view.Find(key, 1);
        if (!hit) continue;
        std::memcpy(copy.data(), reinterpret_cast<const std::byte*>(pool.data()) + hit->offset,
                    hit->size);
        if (!view.Unchanged(*hit)) {
          changed.fetch_add(1);
          continue;
        }
        vouched.fetch_add(1);
        const uint64_t version = copy[0] * 0xf1de83e19937733dull;  // inverse of the multiplier
        bool whole = ChunkChecksum(std::span<const std::byte>(
                         reinterpret_cast<const std::byte*>(copy.data()), kWords * 8)) ==
                     hit->checksum;
        for (size_t i = 0; whole && i < kWords; ++i) {
          whole = copy[i] == version * 0x9e3779b97f4a7c15ull + i;
        }
        if (!whole) bad.fetch_add(1);
      }
    });
  }
  // Evict and overwrite: withdraw, write a new version in place, publish.
  uint64_t version = 100;
  for (int round = 0; round < 20000 && bad.load() == 0; ++round) {
    const uint32_t s = round % kSlots;
    ASSERT_TRUE(t.writer.Withdraw(keys[s]));
    fill(s, ++version);
    ASSERT_TRUE(t.writer.Publish(keys[s], 1, s * kWords * 8, kWords * 8, checksum(s)));
    if (round % 64 == 0) std::this_thread::yield();
  }
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(bad.load(), 0u) << "a vouched copy mixed versions or failed its checksum";
  EXPECT_GT(vouched.load(), 0u);
  std::printf("vouched %llu, changed under the reader %llu\n",
              static_cast<unsigned long long>(vouched.load()),
              static_cast<unsigned long long>(changed.load()));
}

}  // namespace
}  // namespace strata
