#include "store/cluster/node_record.h"

#include "gtest/gtest.h"

namespace strata::cluster {
namespace {

TEST(NodeRecordTest, RoundTrips) {
  NodeRecord r;
  r.node_id = "node-a";
  r.grpc_address = "10.0.0.1:7400";
  r.dram_bytes = 1ull << 30;
  r.nvme_capacity_bytes = 16ull << 30;
  r.start_unix_ms = 1764489600123;
  r.server_version = "strata-0.2";
  r.ucx_transports = "tcp";
  auto decoded = DecodeNodeRecord(EncodeNodeRecord(r));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, r);
}

TEST(NodeRecordTest, RefusesGarbageAndIncompleteRecords) {
  EXPECT_EQ(DecodeNodeRecord("\xff\xff\xff").status().code(), absl::StatusCode::kDataLoss);
  // An empty message parses, but has no format version, id or address.
  EXPECT_EQ(DecodeNodeRecord("").status().code(), absl::StatusCode::kInvalidArgument);
  NodeRecord no_address;
  no_address.node_id = "a";
  EXPECT_EQ(DecodeNodeRecord(EncodeNodeRecord(no_address)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NodeRecordTest, KeysAndNames) {
  EXPECT_EQ(NodeKey("prod", "127.0.0.1:7400"), "/strata/prod/nodes/127.0.0.1:7400");
  EXPECT_EQ(NodesPrefix("prod"), "/strata/prod/nodes/");
  EXPECT_TRUE(ValidateClusterName("prod-eu_1.a").ok());
  EXPECT_EQ(ValidateClusterName("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateClusterName("a/b").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateClusterName(std::string(65, 'a')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateNodeId("10.0.0.1:7400").ok());
  EXPECT_EQ(ValidateNodeId("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateNodeId("a/b").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateNodeId("a b").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::cluster
