// A network partition between the client and one node of a cluster: the
// test creates a network namespace of its own with a veth pair between it
// and this one (addresses from 198.18.0.0/15, the range set aside for
// network tests; nothing outside this machine is reached), starts one
// `strata serve` inside it and two on 127.0.0.1, and drives them through a
// static-peer client::ClusterClient with R = 2. Taking the namespace's end of
// the veth down drops every packet between the client and that node without
// any reset, as a cut cable would:
//   - the first load after the cut fails over within rpc_timeout (plus
//     slack) and returns every chunk from its other replica, bytes checked;
//   - a direct call to the cut node fails (DeadlineExceeded or Unavailable)
//     within the same bound;
//   - loads, lookups and saves keep succeeding while the cut lasts;
//   - once the link is back the node answers again and serves its chunks.
// Needs root (ip netns, veth); skipped with a message otherwise. The
// namespace and the veth pair are removed on every way out of the test, and
// ones left by a killed earlier run (named with its pid) are removed first.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/cluster_client.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"
#include "tests/test_data.h"

extern char** environ;

namespace strata {
namespace {

using client::ClusterClient;
using client::ClusterNamespace;

constexpr char kNetnsPrefix[] = "strata-part-";
constexpr absl::Duration kRpcTimeout = absl::Seconds(2);
// What a call may take beyond rpc_timeout before the bound below fails: the
// failover to the other replica, process scheduling on a busy 2-core
// machine. Deliberately generous: this bounds a hang, it does not measure.
constexpr absl::Duration kSlack = absl::Seconds(6);

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

// The `ip` binary, or empty.
std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// Runs `ip ARGS...`; returns its exit status and, in `out`, what it printed
// (stdout and stderr).
int Ip(const std::vector<std::string>& args, std::string* out = nullptr) {
  const std::string ip = IpBinary();
  if (ip.empty()) return 127;
  const std::string log = absl::StrCat(TmpDir(), "/ip.out");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<std::string> all = {ip};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, ip.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return 127;
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  if (out != nullptr) *out = text.str();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string HostVeth(pid_t pid) { return absl::StrCat("spt", pid, "h"); }  // <= 15 chars

// Removes namespaces (and their veth pairs) left by earlier runs of this
// test whose process is gone (a run killed before its cleanup).
void RemoveStaleNamespaces() {
  std::string list;
  if (Ip({"netns", "list"}, &list) != 0) return;
  for (absl::string_view line : absl::StrSplit(list, '\n', absl::SkipEmpty())) {
    const absl::string_view name = line.substr(0, line.find(' '));
    if (!absl::StartsWith(name, kNetnsPrefix)) continue;
    int pid = 0;
    if (!absl::SimpleAtoi(name.substr(std::strlen(kNetnsPrefix)), &pid) || pid <= 0) continue;
    if (pid == getpid() || kill(pid, 0) == 0) continue;
    Ip({"link", "del", HostVeth(pid)});
    Ip({"netns", "del", std::string(name)});
  }
}

// A network namespace of this test's own, joined to this one by a veth
// pair: HostAddress() here, NodeAddress() in there. Removed (pair, then
// namespace) when destroyed.
class TestNetns {
 public:
  // Empty on success, else why it could not be made.
  std::string Create() {
    if (geteuid() != 0) return "not root";
    if (IpBinary().empty()) return "no `ip` binary (Debian's iproute2)";
    RemoveStaleNamespaces();
    const pid_t pid = getpid();
    name_ = absl::StrCat(kNetnsPrefix, pid);
    host_veth_ = HostVeth(pid);
    node_veth_ = absl::StrCat("spt", pid, "n");
    // A /30 of 198.18.0.0/15 picked by pid, so that concurrent runs differ.
    const uint32_t subnet = (198u << 24) | (18u << 16) | ((static_cast<uint32_t>(pid) % 32768) << 2);
    auto dotted = [](uint32_t a) {
      return absl::StrCat(a >> 24, ".", (a >> 16) & 255, ".", (a >> 8) & 255, ".", a & 255);
    };
    host_address_ = dotted(subnet + 1);
    node_address_ = dotted(subnet + 2);
    std::string out;
    if (Ip({"netns", "add", name_}, &out) != 0) return "ip netns add: " + out;
    created_ = true;
    const std::vector<std::vector<std::string>> steps = {
        {"link", "add", host_veth_, "type", "veth", "peer", "name", node_veth_},
        {"link", "set", node_veth_, "netns", name_},
        {"addr", "add", host_address_ + "/30", "dev", host_veth_},
        {"link", "set", host_veth_, "up"},
        {"netns", "exec", name_, IpBinary(), "link", "set", "lo", "up"},
        {"netns", "exec", name_, IpBinary(), "addr", "add", node_address_ + "/30", "dev",
         node_veth_},
        {"netns", "exec", name_, IpBinary(), "link", "set", node_veth_, "up"},
    };
    for (const auto& step : steps) {
      if (Ip(step, &out) != 0) return absl::StrCat("ip ", absl::StrJoin(step, " "), ": ", out);
    }
    return "";
  }

  ~TestNetns() {
    if (!created_) return;
    // Deleting the host end removes the pair at once; the namespace itself
    // may outlive its name while sockets in it close.
    Ip({"link", "del", host_veth_});
    Ip({"netns", "del", name_});
  }

  // The namespace's end of the veth down (a partition) or up (healed).
  bool SetNodeLink(bool up) {
    std::string out;
    const int rc = Ip({"netns", "exec", name_, IpBinary(), "link", "set", node_veth_,
                       up ? "up" : "down"},
                      &out);
    EXPECT_EQ(rc, 0) << out;
    return rc == 0;
  }

  const std::string& name() const { return name_; }
  const std::string& host_veth() const { return host_veth_; }
  const std::string& node_address() const { return node_address_; }

 private:
  bool created_ = false;
  std::string name_, host_veth_, node_veth_, host_address_, node_address_;
};

// A `strata serve` inside `netns`, listening on its address.
class NetnsServer {
 public:
  NetnsServer(const TestNetns& netns, std::vector<std::string> args)
      : netns_(netns), args_(std::move(args)) {}
  ~NetnsServer() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

  void Start() {
    const std::string bin = std::string(std::getenv("TEST_SRCDIR")) + "/strata/tools/strata";
    const std::string port_file = TmpDir() + "/netns-node.port";
    std::filesystem::remove(port_file);
    // `ip netns exec` enters the namespace and execs the server: pid_ is
    // the server's.
    std::vector<std::string> all = {IpBinary(), "netns", "exec", netns_.name(), bin, "serve",
                                    "--listen=" + netns_.node_address() + ":0",
                                    "--port_file=" + port_file};
    all.insert(all.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, all[0].c_str(), nullptr, nullptr, argv.data(), environ), 0);
    for (int i = 0; i < 300 && !std::filesystem::exists(port_file); ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    std::ifstream in(port_file);
    int port = 0;
    in >> port;
    ASSERT_GT(port, 0) << "the server in " << netns_.name() << " did not start";
    address_ = absl::StrCat(netns_.node_address(), ":", port);
  }

  // SIGTERM and wait: the exit code.
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  const std::string& address() const { return address_; }

 private:
  const TestNetns& netns_;
  const std::vector<std::string> args_;
  std::string address_;
  pid_t pid_ = -1;
};

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "partition";
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 16;  // 32 KiB chunks
  return spec;
}

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

struct LoadOutcome {
  absl::Status status;
  std::vector<size_t> missing;
  size_t wrong = 0;  // chunks not reported missing whose bytes differ
  absl::Duration took;
};

LoadOutcome LoadAndCheck(ClusterClient& c, const ClusterNamespace& ns, const Chain& chain) {
  LoadOutcome out;
  std::vector<std::byte> dest(chain.bytes.size(), std::byte{0x5a});
  const absl::Time start = absl::Now();
  auto t = c.Load(ns, chain.keys, dest);
  if (!t.ok()) {
    out.status = t.status();
    out.took = absl::Now() - start;
    return out;
  }
  out.status = (*t)->Wait();
  out.took = absl::Now() - start;
  out.missing = (*t)->missing();
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

bool Cut(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kUnavailable;
}

TEST(PartitionTest, CutNodeTimesOutWithinRpcTimeoutAndIsRoutedAround) {
  TestNetns netns;
  if (const std::string why = netns.Create(); !why.empty()) {
    GTEST_SKIP() << "cannot make a network namespace with a veth pair (" << why
                 << "): the partition test needs root and iproute2";
  }
  std::vector<std::unique_ptr<testing::ServerProcess>> local;
  for (int i = 0; i < 2; ++i) {
    local.push_back(std::make_unique<testing::ServerProcess>(
        std::vector<std::string>{"--dram=32MiB", "--no_nvme"},
        absl::StrCat(TmpDir(), "/local-", i, ".port")));
    local.back()->Start();
  }
  NetnsServer far(netns, {"--dram=32MiB", "--no_nvme"});
  far.Start();
  if (::testing::Test::HasFatalFailure()) return;
  const std::string cut_id = far.address();

  // This process's UCX opens loopback (the local nodes) and the veth (the
  // far node) only: a connection from another interface's address would be
  // answered through a route the namespace does not have.
  setenv("UCX_NET_DEVICES", absl::StrCat("lo,", netns.host_veth()).c_str(), 1);
  client::ClusterClientOptions options;
  options.peers = absl::StrCat(local[0]->address(), ",", local[1]->address(), ",", cut_id);
  options.node.rpc_timeout = kRpcTimeout;
  options.node.transfer_timeout = absl::Seconds(4);
  // UCX over tcp for every load, so the far node's bytes cross the veth
  // too. Not UCX's shared memory: it takes the far node for this host (it
  // is) but its wire-up signals over abstract unix sockets, which a network
  // namespace does not share, so it never completes.
  options.node.same_host = client::SameHost::kOff;
  options.node.ucx_transports = "tcp";
  options.hot.reads = 0;  // exactly R replicas
  options.suspect_for = absl::Seconds(1);
  auto created = ClusterClient::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  ClusterClient& c = **created;
  auto ns = c.RegisterNamespace(Spec(), "t", 2);
  ASSERT_TRUE(ns.ok()) << ns.status();

  const Chain chain = MakeChain(*ns, 48, 1);
  size_t far_primary = 0, far_replica = 0;
  for (const ChunkKey& k : chain.keys) {
    const std::vector<std::string> r = c.Replicas(*ns, k);
    ASSERT_EQ(r.size(), 2u);
    far_primary += r[0] == cut_id;
    far_replica += r[0] == cut_id || r[1] == cut_id;
  }
  ASSERT_GT(far_primary, 0u) << "some chunks should be read from the far node first";
  auto save = c.Save(*ns, chain.keys, chain.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  ASSERT_TRUE((*save)->Wait().ok());

  // Before the cut: everything loads, part of it from the far node.
  LoadOutcome o = LoadAndCheck(c, *ns, chain);
  ASSERT_TRUE(o.status.ok()) << o.status;
  ASSERT_EQ(o.wrong, 0u);
  auto far_stats = c.NodeStats()[cut_id];
  ASSERT_TRUE(far_stats.ok()) << far_stats.status();
  EXPECT_EQ((*far_stats)["chunks_in_dram"], far_replica);
  EXPECT_GE((*far_stats)["reads_dram"], far_primary) << "the far node should serve its chunks";
  std::map<std::string, uint64_t> before = c.Stats();

  // The cut: the client's open connection to the far node now leads nowhere.
  ASSERT_TRUE(netns.SetNodeLink(false));

  // The first load after it: the far node's Get times out within
  // rpc_timeout, its chunks come from their other replica.
  o = LoadAndCheck(c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_TRUE(o.missing.empty());
  EXPECT_EQ(o.wrong, 0u);
  EXPECT_LT(o.took, kRpcTimeout + kSlack);
  std::printf("first load after the cut: %s (rpc_timeout %s), %s\n",
              absl::FormatDuration(o.took).c_str(), absl::FormatDuration(kRpcTimeout).c_str(),
              o.status.ToString().c_str());
  std::map<std::string, uint64_t> after = c.Stats();
  EXPECT_GT(after["cluster.node_errors"], before["cluster.node_errors"]);
  EXPECT_GE(after["cluster.load_retries"] - before["cluster.load_retries"], 1u);
  bool suspect = false;
  for (const auto& m : c.Members()) suspect |= m.record.node_id == cut_id && m.suspect;
  EXPECT_TRUE(suspect) << "the cut node should be skipped for suspect_for";

  // A call of its own to the cut node fails within the same bound.
  {
    client::ClientOptions direct;
    direct.server_address = cut_id;
    direct.rpc_timeout = kRpcTimeout;
    direct.same_host = client::SameHost::kOff;
    direct.ucx_transports = "tcp";
    const absl::Time start = absl::Now();
    auto node = client::Client::Connect(direct);
    absl::Status s = node.ok() ? (*node)->Health() : node.status();
    const absl::Duration took = absl::Now() - start;
    EXPECT_TRUE(Cut(s)) << s;
    EXPECT_LT(took, kRpcTimeout + kSlack) << s;
  }

  // While the cut lasts (several suspect_for periods, so the client tries
  // the far node again and times out again): loads, lookups and saves keep
  // succeeding, each within the bound, never with wrong bytes.
  const Chain fresh = MakeChain(*ns, 24, 2);
  save = c.Save(*ns, fresh.keys, fresh.bytes);
  ASSERT_TRUE(save.ok()) << save.status();
  EXPECT_TRUE((*save)->Wait().ok()) << (*save)->Wait();
  EXPECT_TRUE((*save)->missing().empty());
  const absl::Time cut_until = absl::Now() + absl::Seconds(5);
  int loads = 0;
  while (absl::Now() < cut_until || loads < 4) {
    const Chain& which = loads % 2 == 0 ? chain : fresh;
    o = LoadAndCheck(c, *ns, which);
    EXPECT_TRUE(o.status.ok()) << "load " << loads << ": " << o.status;
    EXPECT_EQ(o.wrong, 0u) << "load " << loads;
    EXPECT_LT(o.took, kRpcTimeout + kSlack) << "load " << loads;
    ++loads;
    const absl::Time start = absl::Now();
    auto lookup = c.Lookup(*ns, which.keys);
    ASSERT_TRUE(lookup.ok()) << lookup.status();
    EXPECT_LT(absl::Now() - start, kRpcTimeout + kSlack);
    EXPECT_EQ(lookup->prefix_chunks, which.keys.size());
    for (const std::string& id : lookup->unreachable) EXPECT_EQ(id, cut_id);
  }
  after = c.Stats();
  EXPECT_EQ(after["cluster.chunks_missing"], before["cluster.chunks_missing"]);

  // Healed: the far node answers again (the client reconnects once
  // suspect_for has passed) and serves what it held, plus nothing of the
  // chunks saved during the cut.
  ASSERT_TRUE(netns.SetNodeLink(true));
  absl::Status health;
  const absl::Time heal_deadline = absl::Now() + absl::Seconds(30);
  while (!(health = c.NodeHealth()[cut_id]).ok() && absl::Now() < heal_deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(health.ok()) << health;
  // Its last failure may still have it skipped for up to suspect_for.
  auto is_suspect = [&] {
    for (const auto& m : c.Members()) {
      if (m.record.node_id == cut_id) return m.suspect;
    }
    return true;
  };
  const absl::Time trusted_deadline = absl::Now() + absl::Seconds(10);
  while (is_suspect() && absl::Now() < trusted_deadline) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_FALSE(is_suspect());
  far_stats = c.NodeStats()[cut_id];
  ASSERT_TRUE(far_stats.ok()) << far_stats.status();
  EXPECT_EQ((*far_stats)["chunks_in_dram"], far_replica);
  const uint64_t far_gets = (*far_stats)["reads_dram"];
  o = LoadAndCheck(c, *ns, chain);
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.wrong, 0u);
  far_stats = c.NodeStats()[cut_id];
  ASSERT_TRUE(far_stats.ok()) << far_stats.status();
  EXPECT_GT((*far_stats)["reads_dram"], far_gets) << "the healed node should serve loads again";

  EXPECT_EQ(far.Stop(), 0);
  for (auto& n : local) EXPECT_EQ(n->Stop(), 0);
}

}  // namespace
}  // namespace strata
