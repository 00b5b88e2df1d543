#include "store/cluster/node_record.h"

#include "absl/strings/str_cat.h"
#include "proto/strata/cluster/v1/node_record.pb.h"

namespace strata::cluster {
namespace {

namespace pb = ::strata::cluster::v1;

constexpr uint32_t kFormatVersion = 1;

}  // namespace

std::string EncodeNodeRecord(const NodeRecord& record) {
  pb::NodeRecord p;
  p.set_format_version(kFormatVersion);
  p.set_node_id(record.node_id);
  p.set_grpc_address(record.grpc_address);
  p.set_dram_bytes(record.dram_bytes);
  p.set_nvme_capacity_bytes(record.nvme_capacity_bytes);
  p.set_start_unix_ms(record.start_unix_ms);
  p.set_server_version(record.server_version);
  p.set_ucx_transports(record.ucx_transports);
  std::string out;
  p.SerializeToString(&out);
  return out;
}

absl::StatusOr<NodeRecord> DecodeNodeRecord(std::string_view bytes) {
  pb::NodeRecord p;
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("not a strata.cluster.v1.NodeRecord");
  }
  if (p.format_version() != kFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("node record format version ", p.format_version(), " (want ",
                     kFormatVersion, ")"));
  }
  if (p.node_id().empty() || p.grpc_address().empty()) {
    return absl::InvalidArgumentError("node record without node_id or grpc_address");
  }
  NodeRecord r;
  r.node_id = p.node_id();
  r.grpc_address = p.grpc_address();
  r.dram_bytes = p.dram_bytes();
  r.nvme_capacity_bytes = p.nvme_capacity_bytes();
  r.start_unix_ms = p.start_unix_ms();
  r.server_version = p.server_version();
  r.ucx_transports = p.ucx_transports();
  return r;
}

absl::Status ValidateClusterName(std::string_view cluster) {
  if (cluster.empty() || cluster.size() > 64) {
    return absl::InvalidArgumentError("cluster name must be 1 to 64 characters");
  }
  for (char c : cluster) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster name '", std::string(cluster), "': only [A-Za-z0-9._-] are allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateNodeId(std::string_view node_id) {
  if (node_id.empty() || node_id.size() > 128) {
    return absl::InvalidArgumentError("node id must be 1 to 128 characters");
  }
  for (char c : node_id) {
    if (c <= ' ' || c > '~' || c == '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("node id '", std::string(node_id), "': printable ASCII without '/' or spaces only"));
    }
  }
  return absl::OkStatus();
}

std::string NodesPrefix(std::string_view cluster) {
  return absl::StrCat("/strata/", std::string(cluster), "/nodes/");
}

std::string NodeKey(std::string_view cluster, std::string_view node_id) {
  return absl::StrCat(NodesPrefix(cluster), std::string(node_id));
}

}  // namespace strata::cluster
