// strata cluster and strata stats over a cluster: the members of a cluster
// (etcd or static peers) as the cluster client sees them, with each node's
// capacity, fill, chunk counts and health; and every member's counters summed.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "client/cluster_client.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"

namespace strata::cli {

void ClusterFlags::Register(FlagSet* flags) {
  flags->Add("etcd", "etcd client endpoints host:port[,...] of the cluster's membership", &etcd);
  flags->Add("cluster", "cluster name (the nodes' --cluster) in etcd", &cluster);
  flags->Add("peers", "the cluster as a static list host:port,... (instead of --etcd)", &peers);
}

client::ClusterClientOptions ClusterFlags::Options(const ConnectFlags& connect) const {
  client::ClusterClientOptions o;
  o.etcd_endpoints = etcd;
  o.cluster = cluster;
  o.peers = peers;
  o.etcd_rpc_timeout = connect.rpc_timeout;
  o.node = connect.Options();
  return o;
}

std::unique_ptr<client::ClusterClient> OpenCluster(const char* command, const ClusterFlags& cluster,
                                                   const ConnectFlags& connect) {
  auto c = client::ClusterClient::Create(cluster.Options(connect));
  if (!c.ok()) {
    std::fprintf(stderr, "strata %s: cannot read the cluster's membership: %s\n", command,
                 StatusText(c.status()).c_str());
    return nullptr;
  }
  return *std::move(c);
}

namespace {

uint64_t Get(const std::map<std::string, uint64_t>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

std::string Fill(uint64_t used, uint64_t capacity) {
  if (capacity == 0) return "-";
  return absl::StrFormat("%s/%s (%.1f%%)", FormatBytes(used), FormatBytes(capacity),
                         100.0 * static_cast<double>(used) / static_cast<double>(capacity));
}

}  // namespace

int ClusterCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  ClusterFlags cl;
  FlagSet flags(
      "strata cluster --etcd HOST:PORT --cluster NAME | --peers HOST:PORT,...\n\n"
      "Lists the members of a cluster: node id, address, health, DRAM and NVMe fill,\n"
      "and chunk counts, from each node's own counters. Exit status 1 when a member\n"
      "does not answer or is not healthy.");
  cf.Register(&flags);
  cl.Register(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit("cluster", flags, args, &positional); rc >= 0) return rc;
  if (!positional.empty() || cl.etcd.empty() == cl.peers.empty()) {
    std::fprintf(stderr, "strata cluster: give either --etcd (with --cluster) or --peers\n");
    return kExitUsage;
  }
  std::unique_ptr<client::ClusterClient> c = OpenCluster("cluster", cl, cf);
  if (c == nullptr) return kExitFailure;
  const cluster::MembershipView view = c->View();
  std::printf("cluster %s: %zu member%s (view version %llu%s)\n",
              cl.etcd.empty() ? "of static peers" : cl.cluster.c_str(), view.nodes.size(),
              view.nodes.size() == 1 ? "" : "s", static_cast<unsigned long long>(view.version),
              view.current ? "" : ", not current: etcd unreachable");
  auto stats = c->NodeStats();
  auto health = c->NodeHealth();
  bool all_ok = true;
  std::printf("%-16s %-22s %-10s %-26s %-26s %s\n", "node", "address", "health", "dram", "nvme",
              "chunks dram/nvme");
  for (const cluster::NodeRecord& r : view.nodes) {
    const absl::Status& h = health[r.node_id];
    const auto& s = stats.at(r.node_id);
    all_ok = all_ok && h.ok() && s.ok();
    const std::string health_text = h.ok() ? "ok" : StatusText(h);
    if (!s.ok()) {
      std::printf("%-16s %-22s %s\n", r.node_id.c_str(), r.grpc_address.c_str(),
                  health_text.c_str());
      continue;
    }
    std::printf("%-16s %-22s %-10s %-26s %-26s %llu/%llu\n", r.node_id.c_str(),
                r.grpc_address.c_str(), h.ok() ? "ok" : "FAILED",
                Fill(Get(*s, "dram_used_bytes"), Get(*s, "dram_capacity_bytes")).c_str(),
                Fill(Get(*s, "nvme_used_bytes"), Get(*s, "nvme_capacity_bytes")).c_str(),
                static_cast<unsigned long long>(Get(*s, "chunks_in_dram")),
                static_cast<unsigned long long>(Get(*s, "chunks_on_nvme")));
    if (!h.ok()) std::printf("  %s: %s\n", r.node_id.c_str(), health_text.c_str());
  }
  return all_ok ? kExitOk : kExitFailure;
}

int ClusterStats(const ClusterFlags& cl, const ConnectFlags& cf) {
  std::unique_ptr<client::ClusterClient> c = OpenCluster("stats", cl, cf);
  if (c == nullptr) return kExitFailure;
  std::map<std::string, uint64_t> sums;
  uint64_t answered = 0, failed = 0;
  for (const auto& [id, stats] : c->NodeStats()) {
    if (!stats.ok()) {
      std::fprintf(stderr, "strata stats: node %s: %s\n", id.c_str(),
                   StatusText(stats.status()).c_str());
      ++failed;
      continue;
    }
    ++answered;
    for (const auto& [key, value] : *stats) sums[key] += value;
  }
  sums["cluster.nodes_answered"] = answered;
  sums["cluster.nodes_failed"] = failed;
  sums["cluster.view_current"] = c->View().current ? 1 : 0;
  for (const auto& [key, value] : sums) {
    std::printf("%s: %llu\n", key.c_str(), static_cast<unsigned long long>(value));
  }
  return failed == 0 ? kExitOk : kExitFailure;
}

}  // namespace strata::cli
