// Cluster membership on a real etcd: the test starts etcd and several
// `strata serve --etcd` processes on 127.0.0.1 and watches the membership
// through store/cluster (the client's view):
//   - every node is listed, with its address and record;
//   - SIGTERM deregisters a node at once (long before its lease could expire);
//   - SIGKILL leaves the node listed until its lease expires, then removes it
//     within the TTL (measured, for the test TTL and the default 5 s);
//   - a restarted node reappears as a new incarnation;
//   - another cluster name on the same etcd sees none of it;
//   - a second node with a live node's id at another address is refused.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "store/cluster/etcd_membership.h"
#include "store/cluster/etcd_registration.h"
#include "store/cluster/membership.h"
#include "tests/etcd_process.h"
#include "tests/server_process.h"

namespace strata {
namespace {

using cluster::Membership;
using cluster::MembershipView;

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

class ClusterMembershipTest : public ::testing::Test {
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

  // The membership of `cluster`, once etcd answers (it elects itself first).
  std::unique_ptr<Membership> Watch(const std::string& cluster) {
    cluster::EtcdMembershipOptions options;
    options.endpoints = etcd_->endpoint();
    options.cluster = cluster;
    options.rpc_timeout = absl::Seconds(1);
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (true) {
      auto m = cluster::CreateEtcdMembership(options);
      if (m.ok()) return *std::move(m);
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "etcd at " << etcd_->endpoint() << " does not answer: " << m.status()
                      << " (log: " << etcd_->log_path() << ")";
        return nullptr;
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }

  // A `strata serve` in `cluster` with node id `id`.
  std::unique_ptr<testing::ServerProcess> Node(const std::string& cluster, const std::string& id,
                                               absl::Duration ttl) {
    std::vector<std::string> args = {"--node_id=" + id, "--no_nvme", "--dram=16MiB",
                                     "--etcd=" + etcd_->endpoint(), "--cluster=" + cluster};
    if (ttl != absl::ZeroDuration()) {
      args.push_back("--etcd_lease_ttl=" + absl::FormatDuration(ttl));
    }
    return std::make_unique<testing::ServerProcess>(
        args, absl::StrCat(TmpDir(), "/", cluster, "-", id, "-", ++starts_, ".port"));
  }

  // Waits up to `timeout` for `done(view)`; returns the last view.
  template <typename Pred>
  static MembershipView WaitFor(const Membership& m, absl::Duration timeout, Pred done) {
    const absl::Time deadline = absl::Now() + timeout;
    MembershipView v = m.Snapshot();
    while (!done(v) && absl::Now() < deadline) {
      v = m.WaitForChange(v.version, deadline - absl::Now());
    }
    return v;
  }

  static testing::EtcdProcess* etcd_;
  int starts_ = 0;
};

testing::EtcdProcess* ClusterMembershipTest::etcd_ = nullptr;

bool Has(const MembershipView& v, const std::string& id) { return v.Find(id) != nullptr; }

TEST_F(ClusterMembershipTest, NodesJoinLeaveOnSigtermAndRejoin) {
  std::unique_ptr<Membership> m = Watch("c1");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Membership> other = Watch("c1-other");
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(m->Snapshot().nodes.empty());

  // A long lease, so that only deregistration can remove a node quickly.
  const absl::Duration ttl = absl::Seconds(20);
  std::vector<std::unique_ptr<testing::ServerProcess>> nodes;
  for (const char* id : {"n1", "n2", "n3"}) {
    nodes.push_back(Node("c1", id, ttl));
    nodes.back()->Start();
    ASSERT_FALSE(nodes.back()->address().empty());
  }
  MembershipView v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) {
    return v.nodes.size() == 3;
  });
  ASSERT_EQ(v.NodeIds(), (std::vector<std::string>{"n1", "n2", "n3"}));
  EXPECT_TRUE(v.current);
  for (size_t i = 0; i < 3; ++i) {
    const cluster::NodeRecord& r = v.nodes[i];
    EXPECT_EQ(r.grpc_address, nodes[i]->address());
    EXPECT_EQ(r.dram_bytes, 16u << 20);
    EXPECT_EQ(r.nvme_capacity_bytes, 0u);
    EXPECT_FALSE(r.server_version.empty());
    EXPECT_GT(r.start_unix_ms, absl::ToUnixMillis(absl::Now() - absl::Minutes(1)));
  }
  // Another cluster on the same etcd sees none of them.
  EXPECT_TRUE(other->Snapshot().nodes.empty());

  // SIGTERM: the node revokes its lease before it drains.
  const int64_t n2_start = v.Find("n2")->start_unix_ms;
  const absl::Time term = absl::Now();
  kill(nodes[1]->pid(), SIGTERM);
  v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) { return !Has(v, "n2"); });
  const absl::Duration gone_after = absl::Now() - term;
  std::printf("SIGTERM: n2 left the membership after %.0f ms (lease TTL %s)\n",
              absl::ToDoubleMilliseconds(gone_after), absl::FormatDuration(ttl).c_str());
  EXPECT_FALSE(Has(v, "n2"));
  EXPECT_LT(gone_after, absl::Seconds(2));
  EXPECT_EQ(v.NodeIds(), (std::vector<std::string>{"n1", "n3"}));
  EXPECT_EQ(nodes[1]->Stop(), 0);

  // Restarted: it comes back as a new incarnation at its new address.
  auto again = Node("c1", "n2", ttl);
  again->Start();
  v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) { return Has(v, "n2"); });
  ASSERT_TRUE(Has(v, "n2"));
  EXPECT_EQ(v.Find("n2")->grpc_address, again->address());
  EXPECT_GT(v.Find("n2")->start_unix_ms, n2_start);
  EXPECT_EQ(v.nodes.size(), 3u);
  EXPECT_TRUE(other->Snapshot().nodes.empty());

  for (auto& n : nodes) {
    if (n->pid() > 0) {
      EXPECT_EQ(n->Stop(), 0);
    }
  }
  EXPECT_EQ(again->Stop(), 0);
  v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) { return v.nodes.empty(); });
  EXPECT_TRUE(v.nodes.empty());
}

// SIGKILL: nobody deregisters; the record goes when the lease expires.
// The lease was renewed at most ttl/3 before the kill, so the node stays
// listed for at least 2/3 of the TTL and is gone by the TTL plus etcd's
// expiry sweep (500 ms) and the watch's delivery.
void KillAndMeasure(Membership& m, testing::ServerProcess& node,
                    const std::string& id, absl::Duration ttl) {
  MembershipView v = m.Snapshot();
  ASSERT_TRUE(Has(v, id));
  const absl::Time killed = absl::Now();
  node.Kill();
  v = m.WaitForChange(v.version, ttl / 3);
  EXPECT_TRUE(Has(v, id)) << "removed before its lease could have expired";
  v = m.Snapshot();
  const absl::Time deadline = killed + ttl + absl::Seconds(10);
  while (Has(v, id) && absl::Now() < deadline) {
    v = m.WaitForChange(v.version, deadline - absl::Now());
  }
  const absl::Duration gone_after = absl::Now() - killed;
  std::printf("SIGKILL: %s left the membership after %.0f ms (lease TTL %s)\n", id.c_str(),
              absl::ToDoubleMilliseconds(gone_after), absl::FormatDuration(ttl).c_str());
  ASSERT_FALSE(Has(v, id)) << "still listed 10 s past its lease TTL";
  EXPECT_GE(gone_after, ttl * 2 / 3 - absl::Milliseconds(300));
  EXPECT_LE(gone_after, ttl + absl::Milliseconds(1500));
}

TEST_F(ClusterMembershipTest, SigkilledNodeLeavesWithinLeaseTtl) {
  std::unique_ptr<Membership> m = Watch("c2");
  ASSERT_NE(m, nullptr);
  auto short_lease = Node("c2", "short", absl::Seconds(2));
  auto default_lease = Node("c2", "default", absl::ZeroDuration());  // --etcd_lease_ttl 5s
  auto survivor = Node("c2", "survivor", absl::Seconds(2));
  short_lease->Start();
  default_lease->Start();
  survivor->Start();
  MembershipView v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) {
    return v.nodes.size() == 3;
  });
  ASSERT_EQ(v.nodes.size(), 3u);
  // Let a few renewals go by first.
  absl::SleepFor(absl::Seconds(2));
  KillAndMeasure(*m, *short_lease, "short", absl::Seconds(2));
  KillAndMeasure(*m, *default_lease, "default", absl::Seconds(5));
  // The survivor kept renewing all along.
  v = m->Snapshot();
  EXPECT_EQ(v.NodeIds(), std::vector<std::string>{"survivor"});
  EXPECT_EQ(survivor->Stop(), 0);
}

TEST_F(ClusterMembershipTest, SameIdAtAnotherAddressIsRefused) {
  std::unique_ptr<Membership> m = Watch("c3");
  ASSERT_NE(m, nullptr);
  cluster::EtcdRegistrationOptions options;
  options.endpoints = etcd_->endpoint();
  options.cluster = "c3";
  options.lease_ttl = absl::Seconds(3);
  options.record.node_id = "twin";
  options.record.grpc_address = "127.0.0.1:1001";
  auto first = cluster::EtcdRegistration::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  options.record.grpc_address = "127.0.0.1:1002";
  EXPECT_EQ(cluster::EtcdRegistration::Start(options).status().code(),
            absl::StatusCode::kAlreadyExists);
  // The same address is a restart of the same node: it takes the key over.
  options.record.grpc_address = "127.0.0.1:1001";
  options.record.start_unix_ms = 7;
  auto restarted = cluster::EtcdRegistration::Start(options);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  MembershipView v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) {
    return v.Find("twin") != nullptr && v.Find("twin")->start_unix_ms == 7;
  });
  ASSERT_NE(v.Find("twin"), nullptr);
  EXPECT_EQ(v.Find("twin")->start_unix_ms, 7);
  // The old lease going does not take the new incarnation's record with it.
  ASSERT_TRUE((*first)->Deregister().ok());
  v = m->WaitForChange(v.version, absl::Seconds(1));
  EXPECT_TRUE(Has(v, "twin"));
  ASSERT_TRUE((*restarted)->Deregister().ok());
  v = WaitFor(*m, absl::Seconds(5), [](const MembershipView& v) { return v.nodes.empty(); });
  EXPECT_TRUE(v.nodes.empty());
}

}  // namespace
}  // namespace strata
