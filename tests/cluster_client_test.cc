// The cluster client against a real cluster: the test starts etcd and three
// `strata serve --etcd` processes on 127.0.0.1 and drives them through
// client::ClusterClient:
//   - a chain spread over three nodes loads with one Get per node, layer by
//     layer across nodes; the cached prefix is computed across nodes;
//   - SIGKILL of a node in the middle of loads (R = 1): its chunks are
//     reported missing, never wrong; routing to it stops once its lease
//     expires (the view drops it within the TTL);
//   - R = 2: a killed node loses no chunk, loads and saves keep succeeding;
//   - a node stopped and started again with its data directory rejoins and
//     serves what it persisted;
//   - etcd stopped: nodes keep serving, the client keeps its last view and
//     says so, and both recover when etcd returns;
//   - another cluster name on the same etcd sees none of it.
#include "client/cluster_client.h"

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/etcd_process.h"
#include "tests/server_process.h"
#include "tests/test_data.h"

namespace strata {
namespace {

using client::ClusterClient;
using client::ClusterNamespace;

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

constexpr absl::Duration kLeaseTtl = absl::Seconds(2);

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "cluster-client";
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 16;  // 4 x 2 x 2 x 16 x 64 x 2 B = 32 KiB
  return spec;
}

// A saved chain: its keys and the bytes of its chunks.
struct Chain {
  std::vector<ChunkKey> keys;
  std::vector<std::byte> bytes;
};

Chain MakeChain(const ClusterNamespace& ns, size_t chunks, uint32_t seed) {
  Chain c;
  c.keys = ns.Keys(testing::Tokens(chunks * ns.spec.tokens_per_chunk, seed));
  c.bytes = testing::Bytes(chunks * ns.chunk_bytes, seed);
  return c;
}

// What one load of a chain gave.
struct LoadOutcome {
  absl::Status status;
  std::vector<size_t> missing;
  size_t wrong = 0;  // chunks not reported missing whose bytes differ
};

LoadOutcome LoadAndCheck(ClusterClient& c, const ClusterNamespace& ns, const Chain& chain) {
  LoadOutcome out;
  std::vector<std::byte> dest(chain.bytes.size(), std::byte{0x5a});
  auto t = c.Load(ns, chain.keys, dest);
  if (!t.ok()) {
    out.status = t.status();
    return out;
  }
  out.status = (*t)->Wait();
  out.missing = (*t)->missing();
  EXPECT_EQ(out.status.ok(), out.missing.empty()) << out.status;
  const std::set<size_t> missing(out.missing.begin(), out.missing.end());
  for (size_t i = 0; i < chain.keys.size(); ++i) {
    if (missing.contains(i)) continue;
    if (std::memcmp(dest.data() + i * ns.chunk_bytes, chain.bytes.data() + i * ns.chunk_bytes,
                    ns.chunk_bytes) != 0) {
      ++out.wrong;
    }
  }
  return out;
}

class ClusterClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    etcd_ = new testing::EtcdProcess(TmpDir() + "/etcd");
    etcd_->Start();
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(etcd_, nullptr);
    ASSERT_FALSE(etcd_->endpoint().empty()) << "etcd did not start";
  }

  // A cluster client of `cluster`, once etcd answers.
  // Hot-chunk replication is off unless `hot` is given: these tests watch
  // exactly R replicas.
  static std::unique_ptr<ClusterClient> Connect(
      const testing::EtcdProcess& etcd, const std::string& cluster,
      client::SameHost same_host = client::SameHost::kAuto,
      std::optional<client::HotChunkOptions> hot = std::nullopt, bool lease_free = true) {
    client::ClusterClientOptions options;
    options.etcd_endpoints = etcd.endpoint();
    options.cluster = cluster;
    options.etcd_rpc_timeout = absl::Seconds(1);
    options.node.rpc_timeout = absl::Seconds(2);
    options.node.transfer_timeout = absl::Seconds(4);
    options.node.same_host = same_host;
    options.node.lease_free = lease_free;
    options.hot.reads = 0;
    if (hot) options.hot = *hot;
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (true) {
      auto c = ClusterClient::Create(options);
      if (c.ok()) return *std::move(c);
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "etcd at " << etcd.endpoint() << " does not answer: " << c.status();
        return nullptr;
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }

  // A `strata serve` of `cluster`; with `data_dir` its NVMe tier is there.
  std::unique_ptr<testing::ServerProcess> Node(const testing::EtcdProcess& etcd,
                                               const std::string& cluster, const std::string& id,
                                               const std::string& data_dir = "") {
    std::vector<std::string> args = {"--node_id=" + id, "--dram=32MiB", "--etcd=" + etcd.endpoint(),
                                     "--cluster=" + cluster,
                                     "--etcd_lease_ttl=" + absl::FormatDuration(kLeaseTtl)};
    if (data_dir.empty()) {
      args.push_back("--no_nvme");
    } else {
      args.push_back("--data_dir=" + data_dir);
      args.push_back("--nvme=64MiB");
    }
    return std::make_unique<testing::ServerProcess>(
        args, absl::StrCat(TmpDir(), "/", cluster, "-", id, "-", ++starts_, ".port"));
  }

  // Three started nodes n0, n1, n2 of `cluster`.
  std::vector<std::unique_ptr<testing::ServerProcess>> ThreeNodes(const testing::EtcdProcess& etcd,
                                                                  const std::string& cluster,
                                                                  bool nvme = false) {
    std::vector<std::unique_ptr<testing::ServerProcess>> nodes;
    for (int i = 0; i < 3; ++i) {
      const std::string id = absl::StrCat("n", i);
      nodes.push_back(Node(etcd, cluster, id, nvme ? DataDir(cluster, id) : ""));
      nodes.back()->Start();
    }
    return nodes;
  }

  static std::string DataDir(const std::string& cluster, const std::string& id) {
    return absl::StrCat(TmpDir(), "/data-", cluster, "-", id);
  }

  // Waits up to `timeout` for `done(view)`; returns whether it came.
  template <typename Pred>
  static bool WaitForView(const ClusterClient& c, absl::Duration timeout, Pred done) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done(c.View())) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }

  static bool Has(const cluster::MembershipView& v, const std::string& id) {
    return v.Find(id) != nullptr;
  }

  static testing::EtcdProcess* etcd_;
  int starts_ = 0;
};

testing::EtcdProcess* ClusterClientTest::etcd_ = nullptr;

TEST_F(ClusterClientTest, SpreadLoadAndSigkillCostsMissesOnly) {
  std::unique_ptr<ClusterClient> c = Connect(*etcd_, "spread");  // etcd answers
  ASSERT_NE(c, nullptr);
  auto nodes = ThreeNodes(*etcd_, "spread");
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 3; }));

  EXPECT_EQ(c->RegisterNamespace(Spec(), "t", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->RegisterNamespace(Spec(), "t", 17).status().code(),
            absl::StatusCode::kInvalidArgument);
  NamespaceSpec bad = Spec();
  bad.num_layers = 0;
  EXPECT_EQ(c->RegisterNamespace(bad, "t").status().code(), absl::StatusCode::kInvalidArgument);
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();

  const Chain chain = MakeChain(*ns, 48, 1);
  std::vector<std::string> primary;
  std::map<std::string, size_t> per_node;
  for (const ChunkKey& k : chain.keys) {
    const std::vector<std::string> r = c->Replicas(*ns, k);
    ASSERT_EQ(r.size(), 1u);
    primary.push_back(r[0]);
    ++per_node[r[0]];
  }
  ASSERT_EQ(per_node.size(), 3u) << "the chain should spread over the three nodes";

  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());
  EXPECT_TRUE((*save)->missing().empty());

  // The cached prefix across nodes, and where each chunk is.
  const Chain tail = MakeChain(*ns, 52, 1);  // the same tokens, 4 chunks more
  ASSERT_EQ(std::vector<ChunkKey>(tail.keys.begin(), tail.keys.begin() + 48), chain.keys);
  auto lookup = c->Lookup(*ns, tail.keys);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_chunks, 48u);
  EXPECT_TRUE(lookup->unreachable.empty());
  for (size_t i = 0; i < 48; ++i) {
    EXPECT_EQ(lookup->holders[i], primary[i]);
    EXPECT_EQ(lookup->tiers[i], client::Tier::kDram);
  }
  for (size_t i = 48; i < 52; ++i) EXPECT_EQ(lookup->tiers[i], client::Tier::kMissing);

  // One load over the three nodes: layers reported once each, in order.
  std::vector<std::byte> dest(chain.bytes.size());
  std::vector<uint32_t> layers;
  absl::Mutex layers_mu;
  auto load = c->Load(*ns, chain.keys, dest, [&](uint32_t l) {
    absl::MutexLock lock(&layers_mu);
    layers.push_back(l);
  });
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_TRUE((*load)->WaitLayer(3).ok());
  EXPECT_EQ((*load)->WaitLayer(4).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*load)->Wait().ok());
  EXPECT_EQ(dest, chain.bytes);
  {
    absl::MutexLock lock(&layers_mu);
    EXPECT_EQ(layers, (std::vector<uint32_t>{0, 1, 2, 3}));
  }
  EXPECT_EQ(c->Load(*ns, chain.keys, std::span<std::byte>(dest).first(100)).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Hints go to the nodes that hold the chain: each gets the last key of
  // every run of consecutive chunks it holds, and walks each run back.
  size_t runs = 0;
  for (size_t i = 0; i < primary.size(); ++i)
    runs += i + 1 == primary.size() || primary[i + 1] != primary[i];
  client::ClusterHintJob job;
  job.chain = chain.keys;
  EXPECT_EQ(c->Hint(*ns, "", std::span(&job, 1), absl::Seconds(30)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(c->Hint(*ns, "sched", std::span(&job, 1), absl::Seconds(30)).ok());
  auto summed = [&](const char* key) {
    int64_t sum = 0;
    for (const auto& [id, s] : c->NodeStats())
      sum += s.ok() ? static_cast<int64_t>(s->at(key)) : -1000;
    return sum;
  };
  const absl::Time hint_deadline = absl::Now() + absl::Seconds(10);
  while (summed("hinted_chunks") != 48 && absl::Now() < hint_deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(summed("hinted_chunks"), 48);
  EXPECT_EQ(summed("hint_jobs"), static_cast<int64_t>(runs));
  ASSERT_TRUE(c->Hint(*ns, "sched", {}, absl::Seconds(30)).ok());  // withdrawn everywhere
  while (summed("hinted_chunks") != 0 && absl::Now() < hint_deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(summed("hinted_chunks"), 0);

  // Loads run while n1 is SIGKILLed: every chunk arrives right or is
  // reported missing.
  std::atomic<bool> stop{false};
  std::atomic<int> loads{0}, failed{0}, wrong{0};
  std::thread loader([&] {
    for (int i = 0; i < 10000 && !stop.load(); ++i) {
      const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
      ++loads;
      if (!o.status.ok()) ++failed;
      wrong += static_cast<int>(o.wrong);
    }
  });
  while (loads.load() < 3) absl::SleepFor(absl::Milliseconds(5));
  const absl::Time killed = absl::Now();
  nodes[1]->Kill();
  const bool dropped =
      WaitForView(*c, kLeaseTtl + absl::Seconds(10), [](const auto& v) { return !Has(v, "n1"); });
  const absl::Duration after = absl::Now() - killed;
  stop = true;
  loader.join();
  std::printf(
      "SIGKILL of n1: dropped from the client's view after %.0f ms (lease TTL %s); "
      "%d loads meanwhile, %d with missing chunks, %d wrong chunks\n",
      absl::ToDoubleMilliseconds(after), absl::FormatDuration(kLeaseTtl).c_str(), loads.load(),
      failed.load(), wrong.load());
  ASSERT_TRUE(dropped) << "n1 still routed to 10 s past its lease TTL";
  EXPECT_EQ(wrong.load(), 0);

  // Routed around n1: its chunks are missing (no other node had them), the
  // rest load, and n1 is not contacted any more.
  const uint64_t errors = c->Stats()["cluster.node_errors"];
  const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kNotFound) << o.status;
  EXPECT_EQ(o.wrong, 0u);
  std::vector<size_t> expected;
  for (size_t i = 0; i < primary.size(); ++i) {
    if (primary[i] == "n1") expected.push_back(i);
  }
  EXPECT_EQ(o.missing, expected);
  EXPECT_EQ(c->Stats()["cluster.node_errors"], errors);
  lookup = c->Lookup(*ns, chain.keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_chunks, expected.front());

  // Another cluster name on the same etcd sees none of it.
  std::unique_ptr<ClusterClient> other = Connect(*etcd_, "spread-other");
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(other->View().nodes.empty());
  auto other_ns = other->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(other_ns.ok()) << other_ns.status();
  lookup = other->Lookup(*other_ns, chain.keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_chunks, 0u);
  const LoadOutcome none = LoadAndCheck(*other, *other_ns, chain);
  EXPECT_EQ(none.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(none.missing.size(), chain.keys.size());

  EXPECT_EQ(nodes[0]->Stop(), 0);
  EXPECT_EQ(nodes[2]->Stop(), 0);
}

TEST_F(ClusterClientTest, TwoReplicasLoseNothingWhenANodeDies) {
  // Over UCX (not the nodes' shared pools), so that loads in flight when
  // the node dies fail and are completed from the other replica.
  std::unique_ptr<ClusterClient> c = Connect(*etcd_, "replicated", client::SameHost::kOff);
  ASSERT_NE(c, nullptr);
  auto nodes = ThreeNodes(*etcd_, "replicated");
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 3; }));
  auto ns = c->RegisterNamespace(Spec(), "t", 2);
  ASSERT_TRUE(ns.ok()) << ns.status();
  const Chain chain = MakeChain(*ns, 48, 2);
  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());
  size_t on_n2 = 0;
  for (const ChunkKey& k : chain.keys) {
    const std::vector<std::string> r = c->Replicas(*ns, k);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_NE(r[0], r[1]);
    on_n2 += (r[0] == "n2" || r[1] == "n2");
  }
  ASSERT_GT(on_n2, 0u);

  // Killed while loads run back to back: every load still succeeds, the
  // chunks of a load cut short coming from their other replica.
  std::atomic<bool> stop{false};
  std::atomic<int> loads{0}, failed{0}, wrong{0};
  std::thread loader([&] {
    for (int i = 0; i < 10000 && !stop.load(); ++i) {
      const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
      ++loads;
      if (!o.status.ok()) {
        ++failed;
        ADD_FAILURE() << o.status;
      }
      wrong += static_cast<int>(o.wrong);
    }
  });
  while (loads.load() < 3) absl::SleepFor(absl::Milliseconds(5));
  nodes[2]->Kill();
  const int at_kill = loads.load();
  while (loads.load() < at_kill + 20) absl::SleepFor(absl::Milliseconds(5));
  stop = true;
  loader.join();
  std::printf("R=2, n2 SIGKILLed: %d loads, %d failed, %d wrong chunks, %llu retries\n",
              loads.load(), failed.load(), wrong.load(),
              static_cast<unsigned long long>(c->Stats()["cluster.load_retries"]));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);

  // Dead but still listed (its lease runs): the other replica serves.
  for (int i = 0; i < 5; ++i) {
    const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.wrong, 0u);
  }
  EXPECT_GT(c->Stats()["cluster.node_errors"], 0u);
  // A save meanwhile commits on the live replica of each chunk.
  const Chain more = MakeChain(*ns, 16, 3);
  save = c->Save(*ns, more.keys, more.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  EXPECT_TRUE((*save)->Wait().ok());

  // Dropped from the view: keys whose replica set changed are found on the
  // surviving replica.
  ASSERT_TRUE(
      WaitForView(*c, kLeaseTtl + absl::Seconds(10), [](const auto& v) { return !Has(v, "n2"); }));
  for (const Chain* ch : {&chain, &more}) {
    auto lookup = c->Lookup(*ns, ch->keys);
    ASSERT_TRUE(lookup.ok());
    EXPECT_EQ(lookup->prefix_chunks, ch->keys.size());
    const LoadOutcome o = LoadAndCheck(*c, *ns, *ch);
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.wrong, 0u);
  }
  EXPECT_GT(c->Stats()["cluster.load_retries"], 0u);
  EXPECT_EQ(nodes[0]->Stop(), 0);
  EXPECT_EQ(nodes[1]->Stop(), 0);
}

// Waits (up to 5 s) until process `pid` is stopped by a signal (state T in
// /proc/PID/stat: a SIGSTOP takes effect asynchronously).
bool WaitUntilStopped(pid_t pid) {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T') {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

// A node that stops answering without closing anything (SIGSTOP: its
// sockets stay open, as behind a partition): the client's calls to it time
// out (rpc_timeout 2 s) and go to the other replica; it leaves the view when
// its lease expires, and comes back (registering again) when it resumes.
TEST_F(ClusterClientTest, SilentNodeTimesOutAndIsRoutedAround) {
  std::unique_ptr<ClusterClient> c = Connect(*etcd_, "silent");
  ASSERT_NE(c, nullptr);
  auto nodes = ThreeNodes(*etcd_, "silent");
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 3; }));
  auto ns = c->RegisterNamespace(Spec(), "t", 2);
  ASSERT_TRUE(ns.ok()) << ns.status();
  const Chain chain = MakeChain(*ns, 24, 9);
  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());

  ASSERT_EQ(kill(nodes[0]->pid(), SIGSTOP), 0);
  ASSERT_TRUE(WaitUntilStopped(nodes[0]->pid()));
  const absl::Time stopped = absl::Now();
  LoadOutcome o = LoadAndCheck(*c, *ns, chain);
  const absl::Duration first = absl::Now() - stopped;
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.wrong, 0u);
  for (const client::ClusterMember& m : c->Members()) {
    if (m.record.node_id == "n0") {
      EXPECT_TRUE(m.suspect) << "n0 should be skipped now";
    }
  }
  o = LoadAndCheck(*c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;
  const bool dropped =
      WaitForView(*c, kLeaseTtl + absl::Seconds(10), [](const auto& v) { return !Has(v, "n0"); });
  std::printf(
      "n0 silent: first load done after %.0f ms (rpc_timeout 2 s), dropped from the view "
      "after %.0f ms (lease TTL %s)\n",
      absl::ToDoubleMilliseconds(first), absl::ToDoubleMilliseconds(absl::Now() - stopped),
      absl::FormatDuration(kLeaseTtl).c_str());
  EXPECT_TRUE(dropped);
  o = LoadAndCheck(*c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;

  // It resumes: registers again (its lease expired) and serves its chunks.
  ASSERT_EQ(kill(nodes[0]->pid(), SIGCONT), 0);
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(10), [](const auto& v) { return Has(v, "n0"); }));
  auto lookup = c->Lookup(*ns, chain.keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_chunks, chain.keys.size());
  EXPECT_TRUE(lookup->unreachable.empty());
  EXPECT_NE(std::count(lookup->holders.begin(), lookup->holders.end(), "n0"), 0);
  o = LoadAndCheck(*c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;
  for (auto& n : nodes) EXPECT_EQ(n->Stop(), 0);
}

TEST_F(ClusterClientTest, NodeBackWithItsDataRejoinsAndServesIt) {
  std::unique_ptr<ClusterClient> c = Connect(*etcd_, "rejoin");
  ASSERT_NE(c, nullptr);
  auto nodes = ThreeNodes(*etcd_, "rejoin", /*nvme=*/true);
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 3; }));
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const Chain chain = MakeChain(*ns, 32, 4);
  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());
  std::vector<size_t> on_n0;
  for (size_t i = 0; i < chain.keys.size(); ++i) {
    if (c->Replicas(*ns, chain.keys[i])[0] == "n0") on_n0.push_back(i);
  }
  ASSERT_FALSE(on_n0.empty());

  // Stopped (it deregisters, flushes and closes its data directory).
  const int64_t first_start = c->View().Find("n0")->start_unix_ms;
  EXPECT_EQ(nodes[0]->Stop(), 0);
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return !Has(v, "n0"); }));
  LoadOutcome o = LoadAndCheck(*c, *ns, chain);
  EXPECT_EQ(o.missing, on_n0);
  EXPECT_EQ(o.wrong, 0u);

  // Back, at another port, with the same data directory.
  auto again = Node(*etcd_, "rejoin", "n0", DataDir("rejoin", "n0"));
  again->Start();
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return Has(v, "n0"); }));
  EXPECT_EQ(c->View().Find("n0")->grpc_address, again->address());
  EXPECT_NE(c->View().Find("n0")->start_unix_ms, first_start);
  auto lookup = c->Lookup(*ns, chain.keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_chunks, chain.keys.size());
  o = LoadAndCheck(*c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.wrong, 0u);
  EXPECT_EQ(again->Stop(), 0);
  EXPECT_EQ(nodes[1]->Stop(), 0);
  EXPECT_EQ(nodes[2]->Stop(), 0);
}

TEST_F(ClusterClientTest, EtcdDownNodesKeepServingAndAllRecover) {
  testing::EtcdProcess etcd(TmpDir() + "/etcd-down");
  etcd.Start();
  ASSERT_FALSE(etcd.endpoint().empty());
  std::unique_ptr<ClusterClient> c = Connect(etcd, "etcd-down");
  ASSERT_NE(c, nullptr);
  auto nodes = ThreeNodes(etcd, "etcd-down");
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 3; }));
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const Chain chain = MakeChain(*ns, 24, 5);
  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());
  EXPECT_EQ(c->Stats()["cluster.view_current"], 1u);

  etcd.Kill();
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(15), [](const auto& v) { return !v.current; }));
  EXPECT_EQ(c->Stats()["cluster.view_current"], 0u);
  EXPECT_EQ(c->View().nodes.size(), 3u);  // the last view
  // Well past the nodes' lease TTL: they and the client carry on.
  absl::SleepFor(kLeaseTtl + absl::Seconds(1));
  for (int i = 0; i < 3; ++i) {
    const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.wrong, 0u);
  }
  for (const auto& [id, health] : c->NodeHealth()) EXPECT_TRUE(health.ok()) << id << ": " << health;

  // etcd back on the same endpoint with its data: the view is current
  // again and every node registered.
  etcd.Start();
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(20),
                          [](const auto& v) { return v.current && v.nodes.size() == 3; }))
      << "membership did not recover (etcd log: " << etcd.log_path() << ")";
  EXPECT_EQ(c->Stats()["cluster.view_current"], 1u);
  const Chain more = MakeChain(*ns, 8, 6);
  save = c->Save(*ns, more.keys, more.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  EXPECT_TRUE((*save)->Wait().ok());
  const LoadOutcome o = LoadAndCheck(*c, *ns, more);
  EXPECT_TRUE(o.status.ok()) << o.status;
  for (auto& n : nodes) EXPECT_EQ(n->Stop(), 0);
}

// A chunk read often enough turns hot: this client copies it to two more
// nodes and spreads its reads over them, so that with R = 1 it survives its
// primary's death; once it cools (the test's clock moves on) it is read from
// its one replica again.
TEST_F(ClusterClientTest, HotChunksGetExtraReplicasAndLoseThemWhenTheyCool) {
  std::atomic<int64_t> skew_s{0};
  client::HotChunkOptions hot;
  hot.reads = 8;
  hot.window = absl::Seconds(10);
  hot.now = [&skew_s] { return absl::Now() + absl::Seconds(skew_s.load()); };
  // Leased loads only: each node's reads_dram counts the reads it served.
  std::unique_ptr<ClusterClient> c =
      Connect(*etcd_, "hot", client::SameHost::kAuto, hot, /*lease_free=*/false);
  ASSERT_NE(c, nullptr);
  auto nodes = ThreeNodes(*etcd_, "hot");
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 3; }));
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const Chain chain = MakeChain(*ns, 6, 11);
  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());
  auto summed = [&](const char* key) {
    int64_t sum = 0;
    for (const auto& [id, s] : c->NodeStats()) {
      sum += s.ok() ? static_cast<int64_t>(s->at(key)) : -1000;
    }
    return sum;
  };
  EXPECT_EQ(summed("chunks_in_dram"), 6);

  // Seven reads: still cold, one copy each.
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(LoadAndCheck(*c, *ns, chain).status.ok());
  EXPECT_EQ(c->Stats()["cluster.hot_chunks"], 0u);
  EXPECT_EQ(summed("chunks_in_dram"), 6);
  // The eighth makes them hot; its copies go to the two other nodes.
  ASSERT_TRUE(LoadAndCheck(*c, *ns, chain).status.ok());
  EXPECT_EQ(c->Stats()["cluster.hot_chunks"], 6u);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (c->Stats()["cluster.hot_copies"] < 12 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(c->Stats()["cluster.hot_copies"], 12u);
  EXPECT_EQ(summed("chunks_in_dram"), 18);
  // The reads spread over the three copies: every node serves some.
  auto per_node_reads = [&] {
    std::map<std::string, uint64_t> reads;
    for (const auto& [id, s] : c->NodeStats()) reads[id] = s.ok() ? s->at("reads_dram") : 0;
    return reads;
  };
  const std::map<std::string, uint64_t> reads_before = per_node_reads();
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(LoadAndCheck(*c, *ns, chain).status.ok());
  uint64_t total = 0;
  for (const auto& [id, n] : per_node_reads()) {
    EXPECT_GT(n, reads_before.at(id)) << id << " served none of the hot chunks";
    total += n - reads_before.at(id);
  }
  EXPECT_EQ(total, 36u);
  EXPECT_EQ(c->Stats()["cluster.hot_copies"], 12u);  // once per window
  auto lookup = c->Lookup(*ns, chain.keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_chunks, 6u);

  // n0 dies: every chunk is still served, its own from the extra copies.
  std::vector<size_t> on_n0;
  for (size_t i = 0; i < chain.keys.size(); ++i) {
    if (c->Replicas(*ns, chain.keys[i])[0] == "n0") on_n0.push_back(i);
  }
  ASSERT_FALSE(on_n0.empty());
  nodes[0]->Kill();
  for (int i = 0; i < 4; ++i) {
    const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.wrong, 0u);
  }

  // Once n0 has left the view, the rest of each of its chunks' ranking
  // moves up: their new single replica is the node that was second, which
  // holds a hot copy. Cooled (no read for two windows), every chunk is read
  // from that one replica only.
  ASSERT_TRUE(
      WaitForView(*c, kLeaseTtl + absl::Seconds(10), [](const auto& v) { return !Has(v, "n0"); }));
  skew_s = 25;
  EXPECT_EQ(c->Stats()["cluster.hot_chunks"], 0u);
  std::map<std::string, uint64_t> expected;
  for (const ChunkKey& k : chain.keys) ++expected[c->Replicas(*ns, k)[0]];
  const std::map<std::string, uint64_t> cool_before = per_node_reads();
  const LoadOutcome o = LoadAndCheck(*c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.wrong, 0u);
  for (const auto& [id, n] : per_node_reads()) {
    EXPECT_EQ(n - cool_before.at(id), expected[id]) << id;
  }
  EXPECT_EQ(nodes[1]->Stop(), 0);
  EXPECT_EQ(nodes[2]->Stop(), 0);
}

// Runs `strata ARGS` and returns its exit code, with stdout and stderr in
// `*out`.
int RunStrata(const std::string& args, std::string* out) {
  const std::string cmd =
      absl::StrCat(std::getenv("TEST_SRCDIR"), "/strata/tools/strata ", args, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  out->clear();
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The value of "key: value" in `text`, or -1.
int64_t Counter(const std::string& text, const std::string& key) {
  const size_t at = text.find("\n" + key + ": ");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + key.size() + 3));
}

TEST_F(ClusterClientTest, CliListsMembersAndSumsCountersAndStaticPeersWork) {
  std::unique_ptr<ClusterClient> c = Connect(*etcd_, "cli");
  ASSERT_NE(c, nullptr);
  auto n0 = Node(*etcd_, "cli", "n0");
  auto n1 = Node(*etcd_, "cli", "n1");
  n0->Start();
  n1->Start();
  ASSERT_TRUE(WaitForView(*c, absl::Seconds(5), [](const auto& v) { return v.nodes.size() == 2; }));
  auto ns = c->RegisterNamespace(Spec(), "t");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const Chain chain = MakeChain(*ns, 20, 7);
  auto save = c->Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());

  const std::string etcd = absl::StrCat("--etcd=", etcd_->endpoint(), " --cluster=cli");
  std::string out;
  ASSERT_EQ(RunStrata("cluster " + etcd, &out), 0) << out;
  EXPECT_NE(out.find("cluster cli: 2 members"), std::string::npos) << out;
  for (const auto* n : {n0.get(), n1.get()}) {
    EXPECT_NE(out.find(n->address()), std::string::npos) << out;
  }
  EXPECT_NE(out.find("32MiB"), std::string::npos) << out;  // each node's DRAM capacity
  ASSERT_EQ(RunStrata("stats " + etcd, &out), 0) << out;
  out = "\n" + out;
  EXPECT_EQ(Counter(out, "puts_committed"), 20) << out;
  EXPECT_EQ(Counter(out, "chunks_in_dram"), 20) << out;
  EXPECT_EQ(Counter(out, "dram_capacity_bytes"), 2 * (32 << 20)) << out;
  EXPECT_EQ(Counter(out, "cluster.nodes_answered"), 2) << out;
  EXPECT_EQ(Counter(out, "cluster.view_current"), 1) << out;
  const std::string peers = absl::StrCat("--peers=", n0->address(), ",", n1->address());
  ASSERT_EQ(RunStrata("stats " + peers, &out), 0) << out;
  out = "\n" + out;
  EXPECT_EQ(Counter(out, "puts_committed"), 20) << out;

  // bench over the cluster: gets of 8 chunks fan out to both nodes.
  ASSERT_EQ(RunStrata("bench " + peers +
                          " --replicas 2 --clients 2 --chunk_bytes 64KiB --keys 32 "
                          "--chunks_per_get 8 --get_ratio 0.9 --duration 1s --warmup 0s",
                      &out),
            0)
      << out;
  EXPECT_NE(out.find("a cluster of 2 nodes (R=2)"), std::string::npos) << out;
  EXPECT_NE(out.find("0 corrupt, 0 errors"), std::string::npos) << out;
  EXPECT_EQ(RunStrata("bench " + peers + " --replicas 0", &out), 2) << out;
  EXPECT_EQ(RunStrata("bench " + peers + " --chunks_per_get 0", &out), 2) << out;

  // Usage errors.
  EXPECT_EQ(RunStrata("cluster", &out), 2) << out;
  EXPECT_EQ(RunStrata("cluster " + etcd + " " + peers, &out), 2) << out;
  EXPECT_EQ(RunStrata("stats " + etcd + " " + peers, &out), 2) << out;
  EXPECT_EQ(RunStrata("cluster --etcd=" + etcd_->endpoint() + " --cluster=no/slash", &out), 1)
      << out;

  // A cluster client on the static list: its own placement (node ids are
  // the addresses), the same guarantees.
  client::ClusterClientOptions options;
  options.peers = absl::StrCat(n0->address(), ",", n1->address());
  auto fixed = ClusterClient::Create(options);
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ((*fixed)->View().nodes.size(), 2u);
  auto fixed_ns = (*fixed)->RegisterNamespace(Spec(), "t", 2);
  ASSERT_TRUE(fixed_ns.ok()) << fixed_ns.status();
  const Chain other = MakeChain(*fixed_ns, 10, 8);
  save = (*fixed)->Save(*fixed_ns, other.keys, other.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());
  LoadOutcome o = LoadAndCheck(**fixed, *fixed_ns, other);
  EXPECT_TRUE(o.status.ok()) << o.status;

  // A member that does not answer: listed as such, exit status 1; with two
  // replicas the static client still loads everything.
  n1->Kill();
  ASSERT_EQ(RunStrata("cluster " + etcd, &out), 1) << out;
  EXPECT_NE(out.find("Unavailable"), std::string::npos) << out;
  ASSERT_EQ(RunStrata("stats " + peers, &out), 1) << out;
  o = LoadAndCheck(**fixed, *fixed_ns, other);
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.wrong, 0u);
  EXPECT_EQ(n0->Stop(), 0);
}

TEST(ClusterClientOptionsTest, NeedsExactlyOneMembershipSource) {
  client::ClusterClientOptions options;
  EXPECT_EQ(ClusterClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.peers = "127.0.0.1:1";
  options.etcd_endpoints = "127.0.0.1:2";
  options.cluster = "x";
  EXPECT_EQ(ClusterClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.etcd_endpoints.clear();
  options.peers = "127.0.0.1";
  EXPECT_EQ(ClusterClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata
