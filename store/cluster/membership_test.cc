#include "store/cluster/membership.h"

#include "gtest/gtest.h"

namespace strata::cluster {
namespace {

TEST(StaticMembershipTest, ListsPeersSortedWithVersionOne) {
  auto m = CreateStaticMembership("10.0.0.2:7400, 10.0.0.1:7400,node-c:7401");
  ASSERT_TRUE(m.ok()) << m.status();
  MembershipView v = (*m)->Snapshot();
  EXPECT_EQ(v.version, 1u);
  EXPECT_TRUE(v.current);
  EXPECT_EQ(v.NodeIds(), (std::vector<std::string>{"10.0.0.1:7400", "10.0.0.2:7400",
                                                   "node-c:7401"}));
  ASSERT_NE(v.Find("node-c:7401"), nullptr);
  EXPECT_EQ(v.Find("node-c:7401")->grpc_address, "node-c:7401");
  EXPECT_EQ(v.Find("node-d:7401"), nullptr);
}

TEST(StaticMembershipTest, NeverChanges) {
  auto m = CreateStaticMembership("a:1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->WaitForChange(1, absl::Milliseconds(10)).version, 1u);
  EXPECT_EQ((*m)->WaitForChange(0, absl::Hours(1)).version, 1u);  // at once
}

TEST(StaticMembershipTest, RefusesBadLists) {
  EXPECT_EQ(CreateStaticMembership("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateStaticMembership("a").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateStaticMembership("a:0").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateStaticMembership(":80").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateStaticMembership("a:1,a:1").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::cluster
