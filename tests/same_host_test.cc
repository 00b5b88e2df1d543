// A real store node whose DRAM pool is shared (a memfd) and real clients in
// one process, so on one host: loads copy the leased chunks out of the pool
// mapped read-only, verified as over UCX; same_host = kOff and a node without
// a shared pool keep loads on UCX.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
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
using testing::Finish;

namespace pb = ::strata::v1;

NamespaceSpec Spec() { return testing::SmallSpec("same-host-test"); }

class SameHostTest : public testing::InProcessNodeTest {
 protected:
  // `listen`: the gRPC address (port 0 picks one); `nvme_dir`: an NVMe tier
  // there (chunks survive a restart), none if empty.
  void StartNode(bool shared, const std::string& listen = "127.0.0.1:0",
                 const std::string& nvme_dir = "") {
    store::EngineOptions eo;
    eo.dram_bytes = 16 << 20;
    eo.shared_dram = shared;
    if (!nvme_dir.empty()) {
      eo.nvme_path = nvme_dir;
      eo.nvme_capacity_bytes = 64 << 20;
    }
    InProcessNodeTest::StartNode(eo, listen);
    if (server_ != nullptr) last_ = {shared, server_->address(), nvme_dir};
  }
  // A shared-pool node with an NVMe tier in a fresh directory `name` (removed
  // at the end of the test): what it stored survives StopNode and
  // StartNodeAgain.
  void StartPersistentNode(const std::string& name) {
    nvme_dir_ = ::testing::TempDir() + "/" + name;
    std::filesystem::remove_all(nvme_dir_);
    StartNode(true, "127.0.0.1:0", nvme_dir_);
  }
  // The node of the last StartNode again, after StopNode: same address (its
  // clients' channels find it there), same pool kind, same data directory.
  void StartNodeAgain() { StartNode(last_.shared, last_.address, last_.nvme_dir); }
  void TearDown() override {
    InProcessNodeTest::TearDown();
    if (!nvme_dir_.empty()) std::filesystem::remove_all(nvme_dir_);
  }
  client::Client* NewClient(client::SameHost same_host, bool reconnect = true) {
    return InProcessNodeTest::NewClient([same_host, reconnect](client::ClientOptions& o) {
      o.same_host = same_host;
      o.reconnect = reconnect;
    });
  }
  // Saves `n` chunks of one chain through `c` (over UCX) and returns the keys.
  static std::vector<ChunkKey> Save(client::Client* c, const client::Namespace& ns, size_t n,
                                    uint64_t seed, std::vector<std::byte>* bytes) {
    return SaveChain(c, ns, n, seed, bytes);
  }
  uint64_t OpenReadLeases(client::Client* c) { return NodeStat(c, "active_read_leases"); }
  // Runs `op` until it gives the answer of a restarted node (Unavailable,
  // "restarted"): the gRPC channel may first need a moment to reconnect.
  static absl::Status UntilRestartAnswer(const std::function<absl::Status()>& op) {
    return testing::RetryWhile(op, [](const absl::Status& s) {
      return s.code() == absl::StatusCode::kUnavailable &&
             s.message().find("restarted") == std::string::npos;
    });
  }


 private:
  struct Started {
    bool shared = true;
    std::string address;
    std::string nvme_dir;
  };
  Started last_;  // the last StartNode's
  std::string nvme_dir_;  // StartPersistentNode's, removed at TearDown
};

TEST_F(SameHostTest, LoadsCopyOutOfTheSharedPoolLayerByLayer) {
  StartNode(/*shared=*/true);
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->data_path(), "shm");
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = Save(c, *ns, 5, 1, &bytes);

  std::vector<std::byte> out(bytes.size(), std::byte{0});
  absl::Mutex mu;
  std::vector<uint32_t> layers_seen;
  auto t = c->Load(*ns, keys, out, [&](uint32_t l) {
    absl::MutexLock lock(&mu);
    layers_seen.push_back(l);
  });
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->WaitLayer(0).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    const size_t off = i * ns->chunk_bytes;
    EXPECT_TRUE(std::equal(out.begin() + off, out.begin() + off + ns->layer_bytes,
                           bytes.begin() + off));
  }
  ASSERT_TRUE((*t)->Wait().ok());
  EXPECT_EQ(out, bytes);
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(layers_seen, (std::vector<uint32_t>{0, 1, 2, 3}));  // in order, once each
  }
  // A slice of the chain, and a miss that moves nothing.
  std::vector<std::byte> two(2 * ns->chunk_bytes);
  ASSERT_TRUE(Finish(c->Load(*ns, std::span<const ChunkKey>(keys).subspan(2, 2), two)).ok());
  EXPECT_TRUE(std::equal(two.begin(), two.end(), bytes.begin() + 2 * ns->chunk_bytes));
  std::vector<ChunkKey> missing = {keys[0]};
  missing[0].bytes[0] ^= 1;
  std::vector<std::byte> one(ns->chunk_bytes);
  EXPECT_EQ(c->Load(*ns, missing, one).status().code(), absl::StatusCode::kNotFound);
  // The read leases are released behind the loads.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (OpenReadLeases(c) != 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(OpenReadLeases(c), 0u);
}

TEST_F(SameHostTest, NodeInfoNamesAPrivatePoolThatGoesAtShutdown) {
  StartNode(/*shared=*/true);
  const pb::NodeInfo info = Info();
  ASSERT_FALSE(info.shm_path().empty());
  EXPECT_EQ(info.node_pid(), static_cast<uint32_t>(getpid()));
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  std::getline(boot, boot_id);
  EXPECT_EQ(info.host_boot_id(), boot_id);
  EXPECT_EQ(info.shm_bytes(), region_.size());
  struct stat st{};
  ASSERT_EQ(stat(info.shm_path().c_str(), &st), 0) << info.shm_path();
  EXPECT_EQ(st.st_mode & 07777, 0600u);  // only the node's user
  EXPECT_EQ(st.st_uid, getuid());
  EXPECT_EQ(st.st_ino, info.shm_inode());
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), info.shm_bytes());

  ASSERT_NO_FATAL_FAILURE(StopNode());
  // The memfd is closed: the path names nothing, or another file.
  struct stat after{};
  EXPECT_TRUE(stat(info.shm_path().c_str(), &after) != 0 || after.st_ino != info.shm_inode());
}

TEST_F(SameHostTest, SameHostOffAndUnsharedPoolsLoadOverUcx) {
  StartNode(/*shared=*/true);
  client::Client* off = NewClient(client::SameHost::kOff);
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(off->data_path(), "ucx");
  auto ns = off->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = Save(off, *ns, 3, 2, &bytes);
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(Finish(off->Load(*ns, keys, out)).ok());
  EXPECT_EQ(out, bytes);
}

TEST_F(SameHostTest, ANodeWithoutASharedPoolIsReadOverUcx) {
  StartNode(/*shared=*/false);
  EXPECT_TRUE(Info().shm_path().empty());
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->data_path(), "ucx");
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = Save(c, *ns, 2, 3, &bytes);
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(Finish(c->Load(*ns, keys, out)).ok());
  EXPECT_EQ(out, bytes);
}

TEST_F(SameHostTest, ACorruptByteInThePoolFailsTheLoadWithDataLoss) {
  StartNode(/*shared=*/true);
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->data_path(), "shm");
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = Save(c, *ns, 2, 4, &bytes);
  // Find chunk 1 in the pool and flip one byte of its last layer.
  const std::span<const std::byte> chunk1(bytes.data() + ns->chunk_bytes, ns->chunk_bytes);
  auto at = std::search(region_.begin(), region_.end(), chunk1.begin(), chunk1.end());
  ASSERT_NE(at, region_.end());
  at[ns->chunk_bytes - 100] ^= std::byte{0x10};

  std::vector<std::byte> out(bytes.size());
  auto t = c->Load(*ns, keys, out);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Wait().code(), absl::StatusCode::kDataLoss);
  // Chunk 0 alone is intact and still loads.
  std::vector<std::byte> first(ns->chunk_bytes);
  ASSERT_TRUE(Finish(c->Load(*ns, std::span<const ChunkKey>(keys).first(1), first)).ok());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), bytes.begin()));
}

// LeaseMapped: the leased chunks in place in the mapped pool (what the GPU
// runtime copies from), verified on demand; refused without a mapping.
TEST_F(SameHostTest, LeasedChunksAreSeenInPlaceAndVerifiedOnDemand) {
  StartNode(/*shared=*/true);
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->data_path(), "shm");
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = Save(c, *ns, 3, 7, &bytes);
  auto mapped = c->LeaseMapped(*ns, keys);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  ASSERT_EQ((*mapped)->size(), 3u);
  const std::span<const std::byte> pool = c->shared_pool();
  for (size_t i = 0; i < 3; ++i) {
    const std::span<const std::byte> chunk = (*mapped)->chunk(i);
    EXPECT_TRUE(chunk.data() >= pool.data() && chunk.data() + chunk.size() <= pool.data() + pool.size());
    EXPECT_TRUE(std::equal(chunk.begin(), chunk.end(), bytes.begin() + i * ns->chunk_bytes));
    EXPECT_TRUE((*mapped)->Verify(i).ok());
  }
  // A byte flipped in the pool: that chunk fails its check, the others pass.
  const size_t offset = static_cast<size_t>((*mapped)->chunk(1).data() - pool.data());
  region_[offset + 5] ^= std::byte{0x01};
  EXPECT_EQ((*mapped)->Verify(1).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE((*mapped)->Verify(2).ok());
  mapped->reset();  // releases the lease

  std::vector<ChunkKey> absent = keys;
  absent[2].bytes[0] ^= 0xff;
  EXPECT_EQ(c->LeaseMapped(*ns, absent).status().code(), absl::StatusCode::kNotFound);
  client::Client* off = NewClient(client::SameHost::kOff);
  ASSERT_NE(off, nullptr);
  EXPECT_TRUE(off->shared_pool().empty());
  EXPECT_EQ(off->LeaseMapped(*ns, keys).status().code(), absl::StatusCode::kFailedPrecondition);
}

// A client that connected before the node restarted, and does not
// reconnect, must not read the new pool through its old mapping (or the old
// UCX key): its loads say so (Unavailable), never DataLoss or wrong bytes; a
// new client loads fine.
TEST_F(SameHostTest, AClientOfARestartedNodeIsToldToReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartPersistentNode("same_host_restart"));
  client::Client* c = NewClient(client::SameHost::kAuto, /*reconnect=*/false);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->data_path(), "shm");
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(c, *ns, 2, 21, &bytes);
  ASSERT_NO_FATAL_FAILURE(StopNode());
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // same port, same data
  std::vector<std::byte> out(bytes.size());
  const absl::Status s = UntilRestartAnswer([&] { return Finish(c->Load(*ns, keys, out)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("restarted"), std::string::npos) << s;
  client::Client* fresh = NewClient(client::SameHost::kAuto);
  ASSERT_NE(fresh, nullptr);
  auto ns2 = fresh->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns2.ok()) << ns2.status();
  ASSERT_TRUE(Finish(fresh->Load(*ns2, keys, out)).ok());
  EXPECT_EQ(out, bytes);
}

// Saves through a client that connected before the node restarted and does
// not reconnect: the new node's write slots are not in the pool the client
// imported, so the save is refused (Unavailable, "restarted"; it was
// OutOfRange from the transport), its write lease is given back, and nothing
// the node holds changes.
TEST_F(SameHostTest, ASaveToARestartedNodeIsToldToReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartPersistentNode("same_host_restart_save"));
  uint32_t first_token = 7000;  // new chunks each round
  for (client::SameHost mode : {client::SameHost::kOff, client::SameHost::kAuto}) {
    first_token += 1000;
    if (server_ == nullptr) {
      ASSERT_NO_FATAL_FAILURE(StartNodeAgain());
    }
    client::Client* c = NewClient(mode, /*reconnect=*/false);
    ASSERT_NE(c, nullptr);
    auto ns = c->RegisterNamespace(Spec(), "t");
    ASSERT_TRUE(ns.ok()) << ns.status();
    std::vector<std::byte> bytes;
    const std::vector<ChunkKey> kept = Save(c, *ns, 2, 31, &bytes);
    ASSERT_NO_FATAL_FAILURE(StopNode());
    ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // same port, same data

    std::vector<uint32_t> tokens(3 * 16);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = first_token + static_cast<uint32_t>(i);
    const std::vector<ChunkKey> keys = ns->Keys(tokens);
    const std::vector<std::byte> fresh_bytes = Bytes(keys.size() * ns->chunk_bytes, 32);
    const absl::Status s =
        UntilRestartAnswer([&] { return Finish(c->Save(*ns, keys, fresh_bytes)); });
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find("restarted"), std::string::npos) << s;

    client::Client* fresh = NewClient(mode);
    ASSERT_NE(fresh, nullptr);
    auto ns2 = fresh->RegisterNamespace(Spec(), "t");
    ASSERT_TRUE(ns2.ok()) << ns2.status();
    EXPECT_EQ(NodeStat(fresh, "active_write_leases"), 0u);  // the refused save's was aborted
    // What was stored before is intact, and a new client saves fine.
    std::vector<std::byte> out(bytes.size());
    ASSERT_TRUE(Finish(fresh->Load(*ns2, kept, out)).ok());
    EXPECT_EQ(out, bytes);
    ASSERT_TRUE(Finish(fresh->Save(*ns2, keys, fresh_bytes)).ok());
    out.assign(fresh_bytes.size(), std::byte{0});
    ASSERT_TRUE(Finish(fresh->Load(*ns2, keys, out)).ok());
    EXPECT_EQ(out, fresh_bytes);
    clients_.clear();
  }
}

// A client that does not reconnect and has learnt that its node restarted
// (here from a lookup): its loads and saves say Unavailable ("restarted")
// from then on, even where the new node refused the old namespace id first
// (NotFound "unknown namespace id" would say the namespace is gone), and
// none reads the old pool lease-free through the old node's read index.
TEST_F(SameHostTest, LoadsAndSavesAfterALearntRestartAreToldToReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartNode(true));
  client::Client* c = NewClient(client::SameHost::kAuto, /*reconnect=*/false);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->data_path(), "shm");
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(c, *ns, 2, 71, &bytes);
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(Finish(c->Load(*ns, keys, out)).ok());  // leased: admits the namespace
  ASSERT_TRUE(Finish(c->Load(*ns, keys, out)).ok());  // lease-free
  ASSERT_EQ(c->counters().lease_free_loads, 1u);
  ASSERT_NO_FATAL_FAILURE(StopNode());
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // DRAM only: namespace id 1 unknown
  testing::RetryWhile(
      [&] {
        (void)c->Lookup(*ns, keys);
        return c->node_restarted();
      },
      [](bool restarted) { return !restarted; });
  ASSERT_TRUE(c->node_restarted());
  for (int round = 0; round < 2; ++round) {
    const absl::Status load = Finish(c->Load(*ns, keys, out));
    EXPECT_EQ(load.code(), absl::StatusCode::kUnavailable) << load;
    EXPECT_NE(load.message().find("restarted"), std::string::npos) << load;
    const absl::Status save = Finish(c->Save(*ns, keys, bytes));
    EXPECT_EQ(save.code(), absl::StatusCode::kUnavailable) << save;
    EXPECT_NE(save.message().find("restarted"), std::string::npos) << save;
  }
  EXPECT_EQ(c->counters().lease_free_loads, 1u);
  EXPECT_EQ(c->LeaseMapped(*ns, keys).status().code(), absl::StatusCode::kUnavailable);
}

// A client (reconnect on, the default) whose node restarted with its NVMe
// tier: the next call finds out, connects anew and is retried, so loads and
// saves go on with the same namespace, over shared memory and over UCX; the
// pool it maps is the new node's, and Stats count the reconnect.
TEST_F(SameHostTest, AClientReconnectsToARestartedNode) {
  ASSERT_NO_FATAL_FAILURE(StartPersistentNode("same_host_reconnect"));
  client::Client* shm = NewClient(client::SameHost::kAuto);
  client::Client* ucx = NewClient(client::SameHost::kOff);
  ASSERT_NE(shm, nullptr);
  ASSERT_NE(ucx, nullptr);
  ASSERT_EQ(shm->data_path(), "shm");
  auto ns = shm->RegisterNamespace(Spec(), "t");
  auto ns_ucx = ucx->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  ASSERT_TRUE(ns_ucx.ok()) << ns_ucx.status();
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(shm, *ns, 3, 41, &bytes);
  const uint64_t first = shm->node().incarnation;
  const std::byte* old_pool = shm->shared_pool().data();
  ASSERT_NO_FATAL_FAILURE(StopNode());
  EXPECT_EQ(Finish(shm->Load(*ns, keys, std::span<std::byte>(bytes))).code(),
            absl::StatusCode::kUnavailable);  // down: nothing to reconnect to
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // same port, same data

  for (client::Client* c : {shm, ucx}) {
    const client::Namespace& n = c == shm ? *ns : *ns_ucx;
    std::vector<std::byte> out(bytes.size());
    // The gRPC channel may need a moment to reconnect to the new node.
    const absl::Status s =
        testing::WhileUnavailable([&] { return Finish(c->Load(n, keys, out)); });
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(out, bytes);
    EXPECT_FALSE(c->node_restarted());
    EXPECT_NE(c->node().incarnation, first);
    EXPECT_EQ(c->counters().reconnects, 1u);
    EXPECT_EQ(NodeStat(c, "client_reconnects"), 1u);
    // Saves go on too, and read back through a new client.
    std::vector<std::byte> more;
    const std::vector<ChunkKey> more_keys = Save(c, n, 2, c == shm ? 42 : 43, &more);
    client::Client* fresh = NewClient(client::SameHost::kOff);
    ASSERT_NE(fresh, nullptr);
    auto ns2 = fresh->RegisterNamespace(Spec(), "t");
    ASSERT_TRUE(ns2.ok()) << ns2.status();
    std::vector<std::byte> back(more.size());
    ASSERT_TRUE(Finish(fresh->Load(*ns2, more_keys, back)).ok());
    EXPECT_EQ(back, more);
  }
  EXPECT_EQ(shm->data_path(), "shm");
  EXPECT_NE(shm->shared_pool().data(), old_pool);  // the new node's pool
}

// A node restarted without NVMe holds nothing, not even the namespace: the
// reconnecting client registers it again under the same id for its caller;
// its chunks are misses (NotFound), and saving them again works. A namespace
// never registered through the client stays NotFound.
TEST_F(SameHostTest, AReconnectRegistersTheNamespaceAgain) {
  ASSERT_NO_FATAL_FAILURE(StartNode(true));
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(c, *ns, 2, 51, &bytes);
  ASSERT_NO_FATAL_FAILURE(StopNode());
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // DRAM only: empty
  // Another tenant's namespace takes the first id on the new node.
  client::Client* other = NewClient(client::SameHost::kAuto);
  ASSERT_NE(other, nullptr);
  auto other_ns = other->RegisterNamespace(testing::SmallSpec("another-model"), "u");
  ASSERT_TRUE(other_ns.ok()) << other_ns.status();

  const absl::StatusOr<client::LookupResult> found =
      testing::WhileUnavailable([&] { return c->Lookup(*ns, keys); });
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->prefix_chunks, 0u);
  EXPECT_EQ(c->counters().reconnects, 1u);
  std::vector<std::byte> out(bytes.size());
  EXPECT_EQ(Finish(c->Load(*ns, keys, out)).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(Finish(c->Save(*ns, keys, bytes)).ok());
  ASSERT_TRUE(Finish(c->Load(*ns, keys, out)).ok());
  EXPECT_EQ(out, bytes);
  // Registering the same namespace again keeps its id.
  auto again = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id, ns->id);
  // The other tenant's namespace is untouched by this client's chunks.
  auto theirs = other->Lookup(*other_ns, keys);
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(theirs->prefix_chunks, 0u);
  client::Namespace unknown = *ns;
  unknown.id = 999;
  EXPECT_EQ(c->Lookup(unknown, keys).status().code(), absl::StatusCode::kNotFound);
}

// A namespace the caller removed through the client is not registered
// again by a reconnect: after a restart its old value is NotFound as before
// (a save through it stores nothing), until the caller registers it again,
// which gives it back its id.
TEST_F(SameHostTest, ARemovedNamespaceIsNotRegisteredAgainByAReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartNode(true));
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(c, *ns, 2, 81, &bytes);
  auto removed = c->RemoveNamespace(Spec(), "t");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, keys.size());
  EXPECT_EQ(Finish(c->Save(*ns, keys, bytes)).code(), absl::StatusCode::kNotFound);
  ASSERT_NO_FATAL_FAILURE(StopNode());
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // DRAM only
  const absl::Status health =
      testing::WhileUnavailable([&] { return c->Health(); });
  ASSERT_TRUE(health.ok()) << health;
  const absl::Status s = Finish(c->Save(*ns, keys, bytes));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(Finish(c->Load(*ns, keys, std::span<std::byte>(bytes))).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(NodeStat(c, "namespaces"), 0u);
  auto again = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id, ns->id);
  EXPECT_EQ(c->counters().reconnects, 1u);
  ASSERT_TRUE(Finish(c->Save(*ns, keys, bytes)).ok());
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(Finish(c->Load(*ns, keys, out)).ok());
  EXPECT_EQ(out, bytes);
}

// Namespace values of another client (ids the node gave it) go through a
// reconnecting client as they are, even where the id equals one this client
// handed out for a namespace of its own before a restart: the client
// translates only its own namespaces.
TEST_F(SameHostTest, AnotherClientsNamespaceIsNotTakenForOneOfItsOwn) {
  ASSERT_NO_FATAL_FAILURE(StartNode(true));
  client::Client* x = NewClient(client::SameHost::kAuto);
  ASSERT_NE(x, nullptr);
  auto mine = x->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_NO_FATAL_FAILURE(StopNode());
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());  // DRAM only: empty
  client::Client* y = NewClient(client::SameHost::kAuto);
  ASSERT_NE(y, nullptr);
  auto theirs = y->RegisterNamespace(testing::SmallSpec("another-model"), "t");
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  ASSERT_EQ(theirs->id, mine->id);  // the first id of each node
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(y, *theirs, 2, 91, &bytes);
  const absl::StatusOr<client::LookupResult> found =
      testing::WhileUnavailable([&] { return x->Lookup(*theirs, keys); });
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->prefix_chunks, keys.size());
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(Finish(x->Load(*theirs, keys, out)).ok());
  EXPECT_EQ(out, bytes);
  // Its own namespace is still its own, empty on the new node.
  auto own = x->Lookup(*mine, keys);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->prefix_chunks, 0u);
}

// A transfer started before the restart finishes on its own connection (it
// is held until the transfer goes), and the client goes on afterwards.
TEST_F(SameHostTest, ATransferOutlivesTheReconnectOfItsClient) {
  ASSERT_NO_FATAL_FAILURE(StartPersistentNode("same_host_reconnect_held"));
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(c, *ns, 2, 61, &bytes);
  std::vector<std::byte> out(bytes.size());
  auto held = c->Load(*ns, keys, out);
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_TRUE((*held)->Wait().ok());
  auto mapped = c->LeaseMapped(*ns, keys);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  ASSERT_NO_FATAL_FAILURE(StopNode());
  ASSERT_NO_FATAL_FAILURE(StartNodeAgain());
  const absl::Status s =
      testing::WhileUnavailable([&] { return Finish(c->Load(*ns, keys, out)); });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c->counters().reconnects, 1u);
  // The old connection's objects still work: its mapping of the old pool is
  // still there, with the bytes it had.
  EXPECT_TRUE((*held)->done());
  EXPECT_TRUE((*held)->Wait().ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE((*mapped)->Verify(i).ok());
    EXPECT_TRUE(std::equal((*mapped)->chunk(i).begin(), (*mapped)->chunk(i).end(),
                           bytes.begin() + i * ns->chunk_bytes));
  }
  mapped->reset();
  held->reset();
  ASSERT_TRUE(Finish(c->Load(*ns, keys, out)).ok());  // closes the old one
  EXPECT_EQ(out, bytes);
}

// One namespace written twice with its extra keys in another order is one
// namespace to the node, and one id to the (reconnecting) client too.
TEST_F(SameHostTest, ExtraKeysInAnotherOrderAreTheSameNamespace) {
  ASSERT_NO_FATAL_FAILURE(StartNode(true));
  client::Client* c = NewClient(client::SameHost::kAuto);
  ASSERT_NE(c, nullptr);
  NamespaceSpec ab = Spec();
  ab.extra_keys = {{"adapter", "lora-7"}, {"build", "2"}};
  NamespaceSpec ba = Spec();
  ba.extra_keys = {{"build", "2"}, {"adapter", "lora-7"}};
  auto first = c->RegisterNamespace(ab, "t");
  auto second = c->RegisterNamespace(ba, "t");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->id, second->id);
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = Save(c, *first, 2, 71, &bytes);
  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE(Finish(c->Load(*second, keys, out)).ok());
  EXPECT_EQ(out, bytes);
}

}  // namespace
}  // namespace strata
