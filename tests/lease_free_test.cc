// Lease-free same-host loads against a real store node (shared pool and read
// index) and real clients in one process: loads after the first in a
// namespace skip the Get round trip, fall back to a lease when a chunk is
// absent or changed, and never return bytes of a chunk that was evicted or
// replaced while they copied.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/engine.h"
#include "store/server.h"
#include "tests/node_fixture.h"
#include "tests/test_data.h"

namespace strata {
namespace {

using testing::Bytes;

namespace pb = ::strata::v1;

NamespaceSpec Spec() { return testing::SmallSpec("lease-free-test"); }

class LeaseFreeTest : public testing::InProcessNodeTest {
 protected:
  void StartNode(uint64_t dram_bytes, bool read_index = true) {
    store::EngineOptions eo;
    eo.dram_bytes = dram_bytes;
    eo.shared_dram = true;
    eo.read_index = read_index;
    InProcessNodeTest::StartNode(eo);
  }
  client::Client* NewClient(bool lease_free = true) {
    return InProcessNodeTest::NewClient(
        [lease_free](client::ClientOptions& o) { o.lease_free = lease_free; });
  }

  // Saves chunk `i` of a set of single-chunk chains (keys from `i`) with
  // the bytes of `seed`; a key already stored keeps its bytes.
  static ChunkKey KeyOf(const client::Namespace& ns, uint32_t i) {
    return ns.Keys(testing::Tokens(16, i))[0];
  }
  static absl::Status SaveOne(client::Client* c, const client::Namespace& ns, const ChunkKey& key,
                              const std::vector<std::byte>& bytes) {
    return testing::Finish(c->Save(ns, std::span<const ChunkKey>(&key, 1), bytes));
  }
};

TEST_F(LeaseFreeTest, LoadsAfterTheFirstInANamespaceSkipTheLease) {
  StartNode(16 << 20);
  const pb::NodeInfo info = Info();
  ASSERT_FALSE(info.read_index_path().empty());
  struct stat st{};
  ASSERT_EQ(stat(info.read_index_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);  // the node's user only, as the pool
  EXPECT_EQ(st.st_ino, info.read_index_inode());

  client::Client* c = NewClient();
  ASSERT_NE(c, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<ChunkKey> keys;
  std::vector<std::byte> bytes;
  for (uint32_t i = 0; i < 3; ++i) {
    keys.push_back(KeyOf(*ns, i));
    std::vector<std::byte> b = Bytes(ns->chunk_bytes, 100 + i);
    ASSERT_TRUE(SaveOne(c, *ns, keys.back(), b).ok());
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  EXPECT_EQ(NodeStat(c, "read_index_published"), 3u);
  std::vector<std::byte> out(bytes.size());
  // The first load takes a lease: the node authorises the namespace.
  ASSERT_TRUE(LoadInto(c, *ns, keys, out).ok());
  EXPECT_EQ(out, bytes);
  EXPECT_EQ(c->counters().lease_free_loads, 0u);
  const uint64_t leased_reads = NodeStat(c, "reads_dram");
  // Then no Get: plain and layer by layer.
  std::fill(out.begin(), out.end(), std::byte{0});
  ASSERT_TRUE(LoadInto(c, *ns, keys, out).ok());
  EXPECT_EQ(out, bytes);
  std::fill(out.begin(), out.end(), std::byte{0});
  absl::Mutex mu;
  std::vector<uint32_t> layers_seen;
  auto t = c->Load(*ns, keys, out, [&](uint32_t l) {
    absl::MutexLock lock(&mu);
    layers_seen.push_back(l);
  });
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Wait().ok());
  EXPECT_EQ(out, bytes);
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(layers_seen, (std::vector<uint32_t>{0, 1, 2, 3}));
  }
  EXPECT_EQ(c->counters().lease_free_loads, 2u);
  EXPECT_EQ(c->counters().lease_free_fallbacks, 0u);
  EXPECT_EQ(NodeStat(c, "reads_dram"), leased_reads);  // no Get reached the node
  EXPECT_EQ(NodeStat(c, "client_lease_free_loads"), 2u);
  // The node hears of the reads (Touch, batched) for eviction.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (NodeStat(c, "lease_free_reads") < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(NodeStat(c, "lease_free_reads"), 3u);  // each key once per batch
  // Another tenant's namespace with the same keys finds nothing of these.
  auto other = c->RegisterNamespace(Spec(), "tenant-b");
  ASSERT_TRUE(other.ok()) << other.status();
  std::vector<std::byte> one(ns->chunk_bytes);
  EXPECT_EQ(LoadInto(c, *other, std::span(keys).first(1), one).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LeaseFreeTest, AnEvictedChunkFallsBackToALease) {
  StartNode(1 << 20);  // 32 chunks of 32 KiB
  client::Client* c = NewClient();
  ASSERT_NE(c, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const ChunkKey key = KeyOf(*ns, 0);
  const std::vector<std::byte> bytes = Bytes(ns->chunk_bytes, 7);
  ASSERT_TRUE(SaveOne(c, *ns, key, bytes).ok());
  std::vector<std::byte> out(ns->chunk_bytes);
  ASSERT_TRUE(LoadInto(c, *ns, std::span(&key, 1), out).ok());
  ASSERT_TRUE(LoadInto(c, *ns, std::span(&key, 1), out).ok());
  EXPECT_EQ(out, bytes);
  ASSERT_EQ(c->counters().lease_free_loads, 1u);
  // The lease-free read reaches the node in the client's next Touch batch
  // (within 50 ms) and makes the chunk young: every filler after it is
  // younger still.
  absl::SleepFor(absl::Milliseconds(300));
  // Fill the pool: the chunk is evicted (no NVMe tier) and withdrawn.
  for (uint32_t i = 1; i <= 40; ++i) {
    ASSERT_TRUE(SaveOne(c, *ns, KeyOf(*ns, i), Bytes(ns->chunk_bytes, 1000 + i)).ok());
  }
  EXPECT_GT(NodeStat(c, "dram_evictions"), 0u);
  EXPECT_LE(NodeStat(c, "read_index_published"), 32u);
  EXPECT_EQ(LoadInto(c, *ns, std::span(&key, 1), out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->counters().lease_free_fallbacks, 1u);
  // Stored again with other bytes: the load returns those.
  const std::vector<std::byte> again = Bytes(ns->chunk_bytes, 8);
  ASSERT_TRUE(SaveOne(c, *ns, key, again).ok());
  ASSERT_TRUE(LoadInto(c, *ns, std::span(&key, 1), out).ok());
  EXPECT_EQ(out, again);
  EXPECT_EQ(c->counters().lease_free_loads, 2u);
}

TEST_F(LeaseFreeTest, TheClientOptionAndTheNodeFlagTurnItOff) {
  StartNode(16 << 20);
  client::Client* off = NewClient(/*lease_free=*/false);
  ASSERT_NE(off, nullptr);
  auto ns = off->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const ChunkKey key = KeyOf(*ns, 0);
  const std::vector<std::byte> bytes = Bytes(ns->chunk_bytes, 9);
  ASSERT_TRUE(SaveOne(off, *ns, key, bytes).ok());
  std::vector<std::byte> out(ns->chunk_bytes);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(LoadInto(off, *ns, std::span(&key, 1), out).ok());
  EXPECT_EQ(out, bytes);
  EXPECT_EQ(off->counters().lease_free_loads, 0u);
  EXPECT_EQ(off->counters().lease_free_fallbacks, 0u);
  EXPECT_EQ(NodeStat(off, "reads_dram"), 3u);  // each load took a lease

  clients_.clear();
  ASSERT_NO_FATAL_FAILURE(StopNode());
  StartNode(16 << 20, /*read_index=*/false);
  const pb::NodeInfo info = Info();
  EXPECT_FALSE(info.shm_path().empty());
  EXPECT_TRUE(info.read_index_path().empty());
  client::Client* c = NewClient();
  ASSERT_NE(c, nullptr);
  auto ns2 = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns2.ok()) << ns2.status();
  ASSERT_TRUE(SaveOne(c, *ns2, key, bytes).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(LoadInto(c, *ns2, std::span(&key, 1), out).ok());
  EXPECT_EQ(c->data_path(), "shm");
  EXPECT_EQ(c->counters().lease_free_loads, 0u);
  EXPECT_EQ(NodeStat(c, "reads_dram"), 3u);
}

// A byte of a stored chunk that changes in the pool behind the read index
// (no new generation: corruption) fails every kind of load with DataLoss:
// layer by layer lease-free (each slice hashed as it is copied) and under a
// lease, and whole (lease-free, then under a lease).
TEST_F(LeaseFreeTest, ACorruptByteInThePoolFailsEveryLoadWithDataLoss) {
  StartNode(16 << 20);
  client::Client* c = NewClient();
  client::Client* leased = NewClient(/*lease_free=*/false);
  ASSERT_NE(c, nullptr);
  ASSERT_NE(leased, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  auto leased_ns = leased->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(leased_ns.ok()) << leased_ns.status();
  std::vector<ChunkKey> keys;
  std::vector<std::byte> bytes;
  for (uint32_t i = 0; i < 2; ++i) {
    keys.push_back(KeyOf(*ns, 40 + i));
    std::vector<std::byte> b = Bytes(ns->chunk_bytes, 400 + i);
    ASSERT_TRUE(SaveOne(c, *ns, keys.back(), b).ok());
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(LoadInto(c, *ns, keys, out).ok());  // authorises the namespace
  ASSERT_TRUE(LoadInto(c, *ns, keys, out, /*layer_wise=*/true).ok());
  EXPECT_EQ(out, bytes);
  EXPECT_EQ(c->counters().lease_free_loads, 1u);
  // Chunk 1's second layer, in the pool.
  const std::span<const std::byte> chunk1(bytes.data() + ns->chunk_bytes, ns->chunk_bytes);
  auto at = std::search(region_.begin(), region_.end(), chunk1.begin(), chunk1.end());
  ASSERT_NE(at, region_.end());
  at[ns->layer_bytes + 17] ^= std::byte{0x01};

  EXPECT_EQ(LoadInto(c, *ns, keys, out, /*layer_wise=*/true).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(c->counters().lease_free_fallbacks, 0u);  // found by the lease-free copy itself
  EXPECT_EQ(LoadInto(c, *ns, keys, out).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(LoadInto(leased, *leased_ns, keys, out, /*layer_wise=*/true).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(LoadInto(leased, *leased_ns, keys, out).code(), absl::StatusCode::kDataLoss);
  // Chunk 0 alone is intact and still loads, layer by layer and whole.
  std::vector<std::byte> first(ns->chunk_bytes);
  ASSERT_TRUE(LoadInto(c, *ns, std::span(keys).first(1), first, /*layer_wise=*/true).ok());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), bytes.begin()));
  std::fill(first.begin(), first.end(), std::byte{0});
  ASSERT_TRUE(LoadInto(leased, *leased_ns, std::span(keys).first(1), first, true).ok());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), bytes.begin()));
  EXPECT_EQ(leased->counters().lease_free_loads, 0u);
}

// A writer evicts chunks (fillers into a small pool) and stores evicted keys
// again with new bytes while readers load them, plain and layer by layer:
// every load that succeeds returns one whole version of each chunk.
TEST_F(LeaseFreeTest, ReadersNeverGetBytesOfAnEvictedOrReplacedChunk) {
  StartNode(2 << 20);  // 64 chunks of 32 KiB
  client::Client* writer = NewClient();
  ASSERT_NE(writer, nullptr);
  auto ns = writer->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  constexpr uint32_t kHot = 8;
  constexpr uint32_t kRounds = 15;
  auto content = [&](uint32_t i, uint32_t version) {
    return Bytes(ns->chunk_bytes, uint64_t{i} * 100000 + version);
  };
  std::vector<ChunkKey> hot;
  std::vector<std::atomic<uint32_t>> version(kHot);
  for (uint32_t i = 0; i < kHot; ++i) {
    hot.push_back(KeyOf(*ns, i));
    ASSERT_TRUE(SaveOne(writer, *ns, hot[i], content(i, 0)).ok());
  }
  std::atomic<bool> done{false};
  std::atomic<uint64_t> good{0}, bad{0}, other_errors{0}, missed{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    client::Client* c = NewClient();
    ASSERT_NE(c, nullptr);
    readers.emplace_back([&, c, r] {
      std::vector<std::byte> out(ns->chunk_bytes);
      for (uint64_t n = 0; !done.load(); ++n) {
        const uint32_t i = static_cast<uint32_t>((n + r) % kHot);
        absl::Status s = LoadInto(c, *ns, std::span(&hot[i], 1), out, /*layer_wise=*/n % 2 == 1);
        if (s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kAborted) {
          missed.fetch_add(1);
          continue;  // evicted; or replaced after layers were reported
        }
        if (!s.ok()) {
          other_errors.fetch_add(1);
          continue;
        }
        bool whole = false;
        for (uint32_t v = 0; !whole && v <= version[i].load(); ++v) {
          whole = out == content(i, v);
        }
        (whole ? good : bad).fetch_add(1);
      }
    });
  }
  for (uint32_t round = 0; round < kRounds; ++round) {
    // More than the pool holds, in one save (a chain of 72 chunks, a few
    // milliseconds): all newer than the readers' last Touch batch, so the
    // hot keys go too; then store them anew.
    const std::vector<ChunkKey> fillers = ns->Keys(testing::Tokens(72 * 16, 5000 + round));
    std::vector<std::byte> filler_bytes;
    for (uint32_t f = 0; f < fillers.size(); ++f) {
      const std::vector<std::byte> b = content(1000 + round * 100 + f, 0);
      filler_bytes.insert(filler_bytes.end(), b.begin(), b.end());
    }
    // Three saves of 24 chunks (768 KiB: under the node's per-caller limit
    // of open puts).
    for (size_t first = 0; first < fillers.size(); first += 24) {
      auto t = writer->Save(*ns, std::span(fillers).subspan(first, 24),
                            std::span(filler_bytes).subspan(first * ns->chunk_bytes,
                                                            24 * ns->chunk_bytes),
                            first > 0 ? std::optional(fillers[first - 1]) : std::nullopt);
      ASSERT_TRUE(t.ok()) << t.status();
      ASSERT_TRUE((*t)->Wait().ok());
    }
    for (uint32_t i = 0; i < kHot; ++i) {
      const uint32_t v = version[i].load() + 1;
      version[i].store(v);  // before the save: readers accept it from now on
      ASSERT_TRUE(SaveOne(writer, *ns, hot[i], content(i, v)).ok());
    }
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0u) << "a load returned bytes of no whole version";
  EXPECT_EQ(other_errors.load(), 0u);
  EXPECT_GT(good.load(), 0u);
  uint64_t lease_free = 0, fallbacks = 0;
  for (size_t k = 1; k < clients_.size(); ++k) {
    lease_free += clients_[k]->counters().lease_free_loads;
    fallbacks += clients_[k]->counters().lease_free_fallbacks;
  }
  EXPECT_GT(lease_free, 0u);
  // Hot keys were evicted under the readers: some loads found them gone (or
  // replaced mid-copy and fell back to a lease); how many of each depends on
  // timing.
  EXPECT_GT(fallbacks + missed.load(), 0u);
  EXPECT_GT(NodeStat(writer, "dram_evictions"), 0u);
  std::printf("loads: %llu whole, %llu evicted or replaced, lease-free %llu, fell back %llu\n",
              static_cast<unsigned long long>(good.load()),
              static_cast<unsigned long long>(missed.load()),
              static_cast<unsigned long long>(lease_free),
              static_cast<unsigned long long>(fallbacks));
}

}  // namespace
}  // namespace strata
