// Metrics of a store node in the Prometheus text exposition format (0.0.4):
// every engine counter and gauge (the same names as `strata stats`, counters
// with a `_total` suffix), tier fill ratios, and per-RPC latency histograms
// and outcome counts, plus a histogram of the bytes each get and put names.
#ifndef STRATA_STORE_METRICS_H_
#define STRATA_STORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "store/engine.h"

namespace strata::store {

// The node's counters and gauges by name, in a fixed order (the Stats RPC
// and the metrics page both use it).
std::vector<std::pair<const char*, uint64_t>> StatsValues(const EngineStats& stats);
// One line describing the value of `name` (from StatsValues).
absl::string_view StatsHelp(absl::string_view name);
// Whether the value of `name` (from StatsValues) is a gauge (else a counter).
bool IsGauge(absl::string_view name);
// One tenant's values by name (the Stats RPC prefixes them with "tenant_"):
// its bytes, quotas (0: no limit), namespaces and quota counters.
std::vector<std::pair<const char*, uint64_t>> TenantStatsValues(const TenantStats& stats);

// A histogram with fixed upper bounds. Observe is lock-free. The sum is kept
// as a whole number of `resolution` (1e-6 for seconds; 1 for bytes, so that a
// byte sum wraps only past 2^64 bytes).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds, double resolution = 1e-6);
  void Observe(double value);
  // Appends NAME_bucket{LABELS,le="..."}, NAME_sum{LABELS}, NAME_count{LABELS}.
  void Render(absl::string_view name, absl::string_view labels, std::string* out) const;

 private:
  const std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // one per bound, then +Inf
  const double resolution_;
  std::atomic<uint64_t> sum_units_{0};          // sum / resolution_, rounded
};

// Thread-safe.
class ServerMetrics {
 public:
  enum Rpc {
    kGetNodeInfo,
    kRegisterNamespace,
    kLookup,
    kGet,
    kRelease,
    kPutBegin,
    kPutCommit,
    kPutAbort,
    kHint,
    kStats,
    kHealth,
    kRemoveNamespace,
    kAttachDataPlane,
    kTouch,
    kNumRpcs
  };
  static const char* RpcName(Rpc rpc);

  ServerMetrics();
  void ObserveRpc(Rpc rpc, double seconds, absl::StatusCode code);
  // Bytes named by one get (chunks x chunk size) or put.
  void ObserveTransfer(bool get, uint64_t bytes);
  // The whole page; per-tenant values (TenantStatsValues) carry a `tenant`
  // label (bytes other than printable ASCII shown as '?').
  std::string Render(const EngineStats& stats, const std::vector<TenantStats>& tenants,
                     absl::string_view node_id) const;

 private:
  std::array<Histogram, kNumRpcs> latency_;
  Histogram get_bytes_;
  Histogram put_bytes_;
  mutable absl::Mutex mu_;
  // (rpc, code) -> calls.
  std::array<std::array<uint64_t, 17>, kNumRpcs> outcomes_ ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace strata::store

#endif  // STRATA_STORE_METRICS_H_
