// EtcdClient's pure parts; the calls themselves are tested against a real
// etcd in tests/cluster_membership_test.cc.
#include "store/cluster/etcd_client.h"

#include "gtest/gtest.h"

namespace strata::cluster {
namespace {

TEST(EtcdClientTest, PrefixRangeEnd) {
  EXPECT_EQ(PrefixRangeEnd("/strata/a/nodes/"), "/strata/a/nodes0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST(EtcdClientTest, ParsesEndpoints) {
  EXPECT_TRUE(EtcdClient::Create("127.0.0.1:2379", absl::Seconds(1)).ok());
  EXPECT_TRUE(EtcdClient::Create("http://10.0.0.1:2379/, etcd-b:2379", absl::Seconds(1)).ok());
  for (const char* bad : {"", "host", "host:", ":2379", "https://host:2379"}) {
    EXPECT_EQ(EtcdClient::Create(bad, absl::Seconds(1)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(EtcdClientTest, UnreachableEtcdIsUnavailable) {
  // Port 1 on loopback: nothing listens there.
  auto etcd = EtcdClient::Create("127.0.0.1:1", absl::Milliseconds(500));
  ASSERT_TRUE(etcd.ok());
  EXPECT_EQ((*etcd)->RangePrefix("/x/").status().code(), absl::StatusCode::kUnavailable);
}

TEST(EtcdClientTest, CancellerStopsWaitsAndLaterCalls) {
  EtcdCanceller c;
  EXPECT_FALSE(c.WaitForCancel(absl::Milliseconds(1)));
  bool aborted = false;
  ASSERT_TRUE(c.Attach([&] { aborted = true; }));
  c.Cancel();
  EXPECT_TRUE(aborted);
  EXPECT_TRUE(c.cancelled());
  EXPECT_TRUE(c.WaitForCancel(absl::Hours(1)));
  EXPECT_FALSE(c.Attach([] {}));
  auto etcd = EtcdClient::Create("127.0.0.1:1", absl::Milliseconds(500));
  ASSERT_TRUE(etcd.ok());
  EXPECT_EQ((*etcd)->KeepAlive(1, absl::Seconds(1), &c).code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace strata::cluster
