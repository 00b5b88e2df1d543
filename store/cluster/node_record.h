// NodeRecord: what a store node publishes about itself for the cluster, and
// where it lives in etcd.
//
// Layout in etcd: key "/strata/<cluster>/nodes/<node_id>", value the
// NodeRecord serialized as the protobuf message strata.cluster.v1.NodeRecord
// (proto/strata/cluster/v1/node_record.proto), attached to the node's lease.
#ifndef STRATA_STORE_CLUSTER_NODE_RECORD_H_
#define STRATA_STORE_CLUSTER_NODE_RECORD_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::cluster {

// A value type.
struct NodeRecord {
  std::string node_id;
  std::string grpc_address;  // host:port clients dial
  uint64_t dram_bytes = 0;
  uint64_t nvme_capacity_bytes = 0;  // 0: no NVMe tier
  int64_t start_unix_ms = 0;         // this incarnation's start (a restart changes it)
  std::string server_version;
  std::string ucx_transports;

  friend bool operator==(const NodeRecord&, const NodeRecord&) = default;
};

// The serialized record (etcd's value).
std::string EncodeNodeRecord(const NodeRecord& record);
// DataLoss when `bytes` is not a record; InvalidArgument when it has no
// node id or address, or a format version this code does not know.
absl::StatusOr<NodeRecord> DecodeNodeRecord(std::string_view bytes);

// InvalidArgument unless `cluster` is 1 to 64 of [A-Za-z0-9._-].
absl::Status ValidateClusterName(std::string_view cluster);
// InvalidArgument unless `node_id` is 1 to 128 printable ASCII characters
// other than '/' and space.
absl::Status ValidateNodeId(std::string_view node_id);

// "/strata/<cluster>/nodes/": every node of one cluster, and nothing of
// another cluster (names hold no '/').
std::string NodesPrefix(std::string_view cluster);
// "/strata/<cluster>/nodes/<node_id>".
std::string NodeKey(std::string_view cluster, std::string_view node_id);

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_NODE_RECORD_H_
