#include "store/cluster/placement.h"

#include <openssl/sha.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace strata::cluster {
namespace {

// Key i: SHA-256 of i as 8 little-endian bytes (real keys are SHA-256 too).
ChunkKey TestKey(uint64_t i) {
  uint8_t in[8];
  for (int b = 0; b < 8; ++b) in[b] = static_cast<uint8_t>(i >> (8 * b));
  ChunkKey key;
  SHA256(in, sizeof(in), key.bytes.data());
  return key;
}

std::vector<std::string> Nodes(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(absl::StrCat("10.0.0.", i + 1, ":7400"));
  return ids;
}

constexpr int kKeys = 100000;

TEST(PlacementTest, ScoreIsXxh3OfNodeIdThenKey) {
  // The library is the XXH3 of the specification (its published value for
  // the empty input)...
  EXPECT_EQ(XXH3_64bits(nullptr, 0), 0x2D06800538D394C2ull);
  // ...and the score hashes node_id || key, nothing else.
  const ChunkKey key = TestKey(7);
  std::string input = "node-a";
  input.append(key.AsStringView());
  EXPECT_EQ(RendezvousScore("node-a", key), XXH3_64bits(input.data(), input.size()));
  // Long ids take the same path.
  const std::string long_id(300, 'x');
  std::string long_input = long_id;
  long_input.append(key.AsStringView());
  EXPECT_EQ(RendezvousScore(long_id, key), XXH3_64bits(long_input.data(), long_input.size()));
}

TEST(PlacementTest, PinnedVectors) {
  // Fixed forever: a change here moves every key of every cluster.
  const ChunkKey zero{};
  EXPECT_EQ(RendezvousScore("node-a", zero), 17973366837061523883ull);
  EXPECT_EQ(RendezvousScore("10.0.0.1:7400", TestKey(1)), 13766242043998727871ull);
  const std::vector<std::string> ids = Nodes(5);
  std::vector<size_t> got = PlaceReplicas(TestKey(42), ids, 3);
  EXPECT_EQ(got, (std::vector<size_t>{4, 1, 0}));
}

TEST(PlacementTest, EdgeCases) {
  const std::vector<std::string> none;
  EXPECT_TRUE(PlaceReplicas(TestKey(1), none, 3).empty());
  const std::vector<std::string> ids = Nodes(3);
  EXPECT_TRUE(PlaceReplicas(TestKey(1), ids, 0).empty());
  std::vector<size_t> all = PlaceReplicas(TestKey(1), ids, 10);
  EXPECT_EQ(all.size(), 3u);
  EXPECT_EQ(std::set<size_t>(all.begin(), all.end()).size(), 3u);
}

TEST(PlacementTest, IndependentOfListOrderAndPrefixConsistent) {
  std::vector<std::string> ids = Nodes(8);
  std::vector<std::string> reversed(ids.rbegin(), ids.rend());
  for (uint64_t i = 0; i < 2000; ++i) {
    const ChunkKey key = TestKey(i);
    std::vector<size_t> a = PlaceReplicas(key, ids, 3);
    std::vector<size_t> b = PlaceReplicas(key, reversed, 3);
    ASSERT_EQ(a.size(), 3u);
    for (size_t r = 0; r < 3; ++r) ASSERT_EQ(ids[a[r]], reversed[b[r]]);
    // Distinct replicas; the first is the single replica of R = 1.
    ASSERT_EQ(std::set<size_t>(a.begin(), a.end()).size(), 3u);
    ASSERT_EQ(a[0], PlacePrimary(key, ids));
    ASSERT_EQ(PlaceReplicas(key, ids, 2), std::vector<size_t>(a.begin(), a.begin() + 2));
  }
}

TEST(PlacementTest, Balance) {
  for (size_t replicas : {1, 3}) {
    const std::vector<std::string> ids = Nodes(10);
    std::vector<int> load(ids.size());
    for (uint64_t i = 0; i < kKeys; ++i) {
      for (size_t n : PlaceReplicas(TestKey(i), ids, replicas)) ++load[n];
    }
    const double mean = static_cast<double>(kKeys) * replicas / ids.size();
    const int max = *std::max_element(load.begin(), load.end());
    const int min = *std::min_element(load.begin(), load.end());
    std::printf("R=%zu: 10 nodes, %d keys: max/mean %.4f, min/mean %.4f\n", replicas, kKeys,
                max / mean, min / mean);
    // Binomial spread: one standard deviation is about 1% of the mean here.
    EXPECT_LT(max / mean, 1.05);
    EXPECT_GT(min / mean, 0.95);
  }
}

TEST(PlacementTest, JoiningNodeTakesAboutOneNthAndNothingElseMoves) {
  std::vector<std::string> ids = Nodes(10);
  std::vector<std::string> grown = ids;
  grown.push_back("10.0.0.11:7400");
  int moved = 0;
  for (uint64_t i = 0; i < kKeys; ++i) {
    const ChunkKey key = TestKey(i);
    const std::string& before = ids[PlacePrimary(key, ids)];
    const std::string& after = grown[PlacePrimary(key, grown)];
    if (before != after) {
      ++moved;
      ASSERT_EQ(after, grown.back()) << "a key moved between two old nodes";
    }
  }
  const double fraction = static_cast<double>(moved) / kKeys;
  std::printf("10 -> 11 nodes: %.4f of keys moved (1/11 = %.4f)\n", fraction, 1.0 / 11);
  EXPECT_GT(fraction, 0.85 / 11);
  EXPECT_LT(fraction, 1.15 / 11);
}

TEST(PlacementTest, LeavingNodeGivesAwayOnlyItsKeys) {
  std::vector<std::string> ids = Nodes(10);
  std::vector<std::string> shrunk = ids;
  const std::string gone = shrunk[3];
  shrunk.erase(shrunk.begin() + 3);
  int moved = 0;
  for (uint64_t i = 0; i < kKeys; ++i) {
    const ChunkKey key = TestKey(i);
    const std::string& before = ids[PlacePrimary(key, ids)];
    const std::string& after = shrunk[PlacePrimary(key, shrunk)];
    if (before != after) {
      ++moved;
      ASSERT_EQ(before, gone) << "a key of a surviving node moved";
    }
  }
  const double fraction = static_cast<double>(moved) / kKeys;
  std::printf("10 -> 9 nodes: %.4f of keys moved (1/10)\n", fraction);
  EXPECT_GT(fraction, 0.085);
  EXPECT_LT(fraction, 0.115);
}

TEST(PlacementTest, ReplicaSetsChangeOnlyByTheJoiningNode) {
  std::vector<std::string> ids = Nodes(10);
  std::vector<std::string> grown = ids;
  grown.push_back("10.0.0.11:7400");
  int changed = 0;
  for (uint64_t i = 0; i < kKeys / 4; ++i) {
    const ChunkKey key = TestKey(i);
    std::set<std::string> before, after;
    for (size_t n : PlaceReplicas(key, ids, 3)) before.insert(ids[n]);
    for (size_t n : PlaceReplicas(key, grown, 3)) after.insert(grown[n]);
    if (before == after) continue;
    ++changed;
    // The new node replaced exactly one old replica.
    ASSERT_TRUE(after.count(grown.back()));
    std::set<std::string> common;
    std::set_intersection(before.begin(), before.end(), after.begin(), after.end(),
                          std::inserter(common, common.begin()));
    ASSERT_EQ(common.size(), 2u);
  }
  const double fraction = static_cast<double>(changed) / (kKeys / 4);
  std::printf("R=3, 10 -> 11 nodes: %.4f of replica sets changed (3/11 = %.4f)\n", fraction,
              3.0 / 11);
  EXPECT_GT(fraction, 0.9 * 3 / 11);
  EXPECT_LT(fraction, 1.1 * 3 / 11);
}

TEST(PlacementTest, SameAnswerInAnotherProcess) {
  const std::vector<std::string> ids = Nodes(7);
  auto digest = [&] {
    uint64_t h = 0;
    for (uint64_t i = 0; i < 5000; ++i) {
      for (size_t n : PlaceReplicas(TestKey(i), ids, 2)) h = h * 31 + n;
    }
    return h;
  };
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    uint64_t h = digest();
    _exit(write(fds[1], &h, sizeof(h)) == sizeof(h) ? 0 : 1);
  }
  close(fds[1]);
  uint64_t child = 0;
  ASSERT_EQ(read(fds[0], &child, sizeof(child)), static_cast<ssize_t>(sizeof(child)));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(child, digest());
}

}  // namespace
}  // namespace strata::cluster
