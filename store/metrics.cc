#include "store/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace strata::store {
namespace {

std::vector<double> LatencyBounds() {
  // 25 us .. ~13 s, x2 per bucket.
  std::vector<double> b;
  for (double s = 25e-6; s < 14; s *= 2) b.push_back(s);
  return b;
}

std::vector<double> ByteBounds() {
  // 4 KiB .. 4 GiB, x4 per bucket.
  std::vector<double> b;
  for (double v = 4096; v <= 4.0 * (1ull << 30); v *= 4) b.push_back(v);
  return b;
}

std::string Bound(double v) { return absl::StrFormat("%g", v); }

}  // namespace

std::vector<std::pair<const char*, uint64_t>> StatsValues(const EngineStats& s) {
  return {
      {"dram_capacity_bytes", s.dram_capacity_bytes},
      {"dram_used_bytes", s.dram_used_bytes},
      {"nvme_capacity_bytes", s.nvme_capacity_bytes},
      {"nvme_used_bytes", s.nvme_used_bytes},
      {"index_entries", s.index_entries},
      {"index_memory_bytes", s.index_memory_bytes},
      {"chunks_in_dram", s.chunks_in_dram},
      {"chunks_on_nvme", s.chunks_on_nvme},
      {"active_read_leases", s.active_read_leases},
      {"active_write_leases", s.active_write_leases},
      {"namespaces", s.namespaces},
      {"write_back_queue", s.write_back_queue},
      {"puts_committed", s.puts_committed},
      {"puts_already_present", s.puts_already_present},
      {"reads_dram", s.reads_dram},
      {"reads_nvme", s.reads_nvme},
      {"lookups_hit", s.lookups_hit},
      {"lookups_miss", s.lookups_miss},
      {"dram_evictions", s.dram_evictions},
      {"nvme_evictions", s.nvme_evictions},
      {"write_backs", s.write_backs},
      {"write_back_errors", s.write_back_errors},
      {"checksum_failures", s.checksum_failures},
      {"nvme_read_errors", s.nvme_read_errors},
      {"leases_expired", s.leases_expired},
      {"chunks_restored", s.chunks_restored},
      {"hint_schedulers", s.hint_schedulers},
      {"hint_jobs", s.hint_jobs},
      {"hinted_chunks", s.hinted_chunks},
      {"hint_sets_received", s.hint_sets_received},
      {"hint_resolve_steps", s.hint_resolve_steps},
      {"prefetches_issued", s.prefetches_issued},
      {"prefetches_used", s.prefetches_used},
      {"prefetches_wasted", s.prefetches_wasted},
      {"dram_evictions_unhinted", s.dram_evictions_unhinted},
      {"dram_evictions_hinted", s.dram_evictions_hinted},
      {"chunks_unpersisted", s.chunks_unpersisted},
      {"write_back_failing", s.write_back_failing},
      {"namespaces_removed", s.namespaces_removed},
      {"read_index_published", s.read_index_published},
      {"read_index_full", s.read_index_full},
      {"lease_free_reads", s.lease_free_reads},
  };
}

absl::string_view StatsHelp(absl::string_view name) {
  static constexpr std::pair<absl::string_view, absl::string_view> kHelp[] = {
      {"dram_capacity_bytes", "Bytes of the DRAM pool."},
      {"dram_used_bytes", "Bytes of the DRAM pool in use."},
      {"nvme_capacity_bytes", "Chunk payload bytes the NVMe tier may hold."},
      {"nvme_used_bytes", "Chunk payload bytes on NVMe."},
      {"index_entries", "Chunks known to the index."},
      {"index_memory_bytes", "Heap bytes of the index."},
      {"chunks_in_dram", "Chunks resident in DRAM."},
      {"chunks_on_nvme", "Chunks on NVMe."},
      {"active_read_leases", "Open read leases."},
      {"active_write_leases", "Open write leases."},
      {"namespaces", "Live namespaces."},
      {"write_back_queue", "Committed chunks waiting to be written to NVMe."},
      {"puts_committed", "Chunks committed."},
      {"puts_already_present", "Puts of chunks already stored (idempotent)."},
      {"reads_dram", "Chunk reads served from DRAM."},
      {"reads_nvme", "Chunk reads promoted from NVMe."},
      {"lookups_hit", "Looked-up keys found."},
      {"lookups_miss", "Looked-up keys missing."},
      {"dram_evictions", "Chunks evicted from DRAM."},
      {"nvme_evictions", "Chunks evicted from NVMe."},
      {"write_backs", "Chunks written to NVMe."},
      {"write_back_errors", "Failed NVMe writes (retried)."},
      {"checksum_failures", "Chunks that failed their checksum (never served)."},
      {"nvme_read_errors", "NVMe reads that failed with an I/O error."},
      {"leases_expired", "Leases reaped at expiry."},
      {"chunks_restored", "Chunks rebuilt from NVMe at start."},
      {"hint_schedulers", "Schedulers with a live hint set."},
      {"hint_jobs", "Hinted jobs."},
      {"hinted_chunks", "Chunks some hinted job needs."},
      {"hint_sets_received", "Hint sets received."},
      {"hint_resolve_steps", "Chain entries walked resolving hints."},
      {"prefetches_issued", "Chunks promoted ahead of their job."},
      {"prefetches_used", "Prefetched chunks read."},
      {"prefetches_wasted", "Prefetched chunks evicted unread."},
      {"dram_evictions_unhinted", "DRAM victims no hinted job needs."},
      {"dram_evictions_hinted", "DRAM victims a later job needs."},
      {"chunks_unpersisted", "Acknowledged chunks whose write-back failed (pinned, retried)."},
      {"write_back_failing", "1 while NVMe write-back fails (the node is not persisting)."},
      {"namespaces_removed", "Namespaces removed."},
      {"read_index_published", "Chunks in the read index (lease-free same-host reads)."},
      {"read_index_full", "Committed chunks left out of the read index (probe window full)."},
      {"lease_free_reads", "Chunk reads same-host clients made without a lease (reported)."},
  };
  for (const auto& [n, help] : kHelp) {
    if (n == name) return help;
  }
  return "A store node counter.";
}

bool IsGauge(absl::string_view name) {
  static constexpr absl::string_view kGauges[] = {
      "dram_capacity_bytes", "dram_used_bytes",    "nvme_capacity_bytes", "nvme_used_bytes",
      "index_entries",       "index_memory_bytes", "chunks_in_dram",      "chunks_on_nvme",
      "active_read_leases",  "active_write_leases", "namespaces",         "write_back_queue",
      "hint_schedulers",     "hint_jobs",          "hinted_chunks",       "chunks_unpersisted",
      "write_back_failing",  "chunks_restored",    "read_index_published"};
  for (absl::string_view g : kGauges) {
    if (g == name) return true;
  }
  return false;
}

std::vector<std::pair<const char*, uint64_t>> TenantStatsValues(const TenantStats& s) {
  return {
      {"dram_bytes", s.dram_bytes},
      {"nvme_bytes", s.nvme_bytes},
      {"dram_quota_bytes", s.quota.dram_bytes},
      {"nvme_quota_bytes", s.quota.nvme_bytes},
      {"hint_jobs_quota", s.quota.hint_jobs},
      {"namespaces", s.namespaces},
      {"dram_quota_evictions", s.dram_quota_evictions},
      {"nvme_quota_evictions", s.nvme_quota_evictions},
      {"quota_refusals", s.quota_refusals},
      {"nvme_quota_skips", s.nvme_quota_skips},
  };
}

namespace {

struct TenantMetric {
  absl::string_view name;
  bool gauge;
  absl::string_view help;
};

constexpr TenantMetric kTenantMetrics[] = {
    {"dram_bytes", true, "DRAM bytes held by the tenant's chunks."},
    {"nvme_bytes", true, "NVMe bytes held by the tenant's chunks."},
    {"dram_quota_bytes", true, "The tenant's DRAM quota (0: no limit)."},
    {"nvme_quota_bytes", true, "The tenant's NVMe quota (0: no limit)."},
    {"hint_jobs_quota", true, "Most jobs in one hint set of the tenant (0: no limit)."},
    {"namespaces", true, "Live namespaces of the tenant."},
    {"dram_quota_evictions", false, "The tenant's chunks evicted to keep it within its DRAM quota."},
    {"nvme_quota_evictions", false, "The tenant's chunks deleted to keep it within its NVMe quota."},
    {"quota_refusals", false, "Calls refused by the tenant's quota."},
    {"nvme_quota_skips", false, "The tenant's chunks left unpersisted for lack of NVMe quota."},
};

// A Prometheus label value: quote, backslash and newline escaped; bytes
// other than printable ASCII as '?' (tenant strings are the client's choice
// without authentication).
std::string LabelValue(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c > 0x7e) {
      out.push_back('?');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds, double resolution)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1), resolution_(resolution) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_units_.fetch_add(static_cast<uint64_t>(std::llround(value / resolution_)),
                       std::memory_order_relaxed);
}

void Histogram::Render(absl::string_view name, absl::string_view labels, std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"",
                    i < bounds_.size() ? Bound(bounds_[i]) : "+Inf", "\"} ", cumulative, "\n");
  }
  const std::string braces = labels.empty() ? "" : absl::StrCat("{", labels, "}");
  absl::StrAppend(out, name, "_sum", braces, " ",
                  absl::StrFormat("%.6f", sum_units_.load(std::memory_order_relaxed) * resolution_),
                  "\n");
  absl::StrAppend(out, name, "_count", braces, " ", cumulative, "\n");
}

const char* ServerMetrics::RpcName(Rpc rpc) {
  static constexpr const char* kNames[kNumRpcs] = {
      "GetNodeInfo", "RegisterNamespace", "Lookup", "Get",    "Release", "PutBegin",
      "PutCommit",   "PutAbort",          "Hint",   "Stats",  "Health",  "RemoveNamespace",
      "AttachDataPlane", "Touch"};
  return kNames[rpc];
}

namespace {
template <size_t... I>
std::array<Histogram, sizeof...(I)> MakeLatency(std::index_sequence<I...>) {
  return {((void)I, Histogram(LatencyBounds()))...};
}
}  // namespace

ServerMetrics::ServerMetrics()
    : latency_(MakeLatency(std::make_index_sequence<kNumRpcs>())),
      get_bytes_(ByteBounds(), 1.0),
      put_bytes_(ByteBounds(), 1.0) {}

void ServerMetrics::ObserveRpc(Rpc rpc, double seconds, absl::StatusCode code) {
  latency_[rpc].Observe(seconds);
  const int c = static_cast<int>(code);
  absl::MutexLock lock(&mu_);
  ++outcomes_[rpc][c >= 0 && c < 17 ? c : 2];  // 2: UNKNOWN
}

void ServerMetrics::ObserveTransfer(bool get, uint64_t bytes) {
  (get ? get_bytes_ : put_bytes_).Observe(static_cast<double>(bytes));
}

std::string ServerMetrics::Render(const EngineStats& stats, const std::vector<TenantStats>& tenants,
                                  absl::string_view node_id) const {
  std::string out;
  const std::string node = absl::StrCat("node=\"", node_id, "\"");
  for (const auto& [name, value] : StatsValues(stats)) {
    const bool gauge = IsGauge(name);
    const std::string metric = absl::StrCat("strata_", name, gauge ? "" : "_total");
    absl::StrAppend(&out, "# HELP ", metric, " ", StatsHelp(name), "\n", "# TYPE ", metric,
                    gauge ? " gauge\n" : " counter\n", metric, "{", node, "} ", value, "\n");
  }
  auto ratio = [](uint64_t used, uint64_t cap) {
    return cap == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(cap);
  };
  absl::StrAppend(&out, "# HELP strata_tier_fill_ratio Used over capacity per tier.\n",
                  "# TYPE strata_tier_fill_ratio gauge\n");
  absl::StrAppend(&out, "strata_tier_fill_ratio{", node, ",tier=\"dram\"} ",
                  absl::StrFormat("%.6f", ratio(stats.dram_used_bytes, stats.dram_capacity_bytes)),
                  "\n");
  absl::StrAppend(&out, "strata_tier_fill_ratio{", node, ",tier=\"nvme\"} ",
                  absl::StrFormat("%.6f", ratio(stats.nvme_used_bytes, stats.nvme_capacity_bytes)),
                  "\n");
  for (const TenantMetric& m : kTenantMetrics) {
    const std::string metric =
        absl::StrCat("strata_tenant_", m.name, m.gauge ? "" : "_total");
    absl::StrAppend(&out, "# HELP ", metric, " ", m.help, "\n", "# TYPE ", metric,
                    m.gauge ? " gauge\n" : " counter\n");
    for (const TenantStats& t : tenants) {
      for (const auto& [name, value] : TenantStatsValues(t)) {
        if (name != m.name) continue;
        absl::StrAppend(&out, metric, "{", node, ",tenant=\"", LabelValue(t.tenant), "\"} ",
                        value, "\n");
      }
    }
  }
  absl::StrAppend(&out, "# HELP strata_rpc_duration_seconds Time the node spent on each RPC.\n",
                  "# TYPE strata_rpc_duration_seconds histogram\n");
  for (int r = 0; r < kNumRpcs; ++r) {
    latency_[r].Render("strata_rpc_duration_seconds",
                       absl::StrCat(node, ",rpc=\"", RpcName(static_cast<Rpc>(r)), "\""), &out);
  }
  absl::StrAppend(&out, "# HELP strata_rpcs_total RPCs by outcome.\n",
                  "# TYPE strata_rpcs_total counter\n");
  {
    absl::MutexLock lock(&mu_);
    for (int r = 0; r < kNumRpcs; ++r) {
      for (int c = 0; c < 17; ++c) {
        if (outcomes_[r][c] == 0) continue;
        absl::StrAppend(&out, "strata_rpcs_total{", node, ",rpc=\"",
                        RpcName(static_cast<Rpc>(r)), "\",code=\"",
                        absl::StatusCodeToString(static_cast<absl::StatusCode>(c)), "\"} ",
                        outcomes_[r][c], "\n");
      }
    }
  }
  absl::StrAppend(&out,
                  "# HELP strata_request_bytes Bytes named by one get or put (chunks x chunk "
                  "size).\n# TYPE strata_request_bytes histogram\n");
  get_bytes_.Render("strata_request_bytes", absl::StrCat(node, ",op=\"get\""), &out);
  put_bytes_.Render("strata_request_bytes", absl::StrCat(node, ",op=\"put\""), &out);
  return out;
}

}  // namespace strata::store
