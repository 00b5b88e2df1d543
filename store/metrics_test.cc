#include "store/metrics.h"

#include <string>

#include "gtest/gtest.h"

namespace strata::store {
namespace {

// Byte sums are kept in bytes: 20 TB of requests (past where a sum kept in
// millionths wrapped, about 18.4 TB) still add up.
TEST(MetricsTest, ByteSumsDoNotWrap) {
  ServerMetrics m;
  for (int i = 0; i < 10; ++i) m.ObserveTransfer(/*get=*/true, uint64_t{2} << 40);
  const std::string page = m.Render(EngineStats{}, {}, "n1");
  EXPECT_NE(page.find("strata_request_bytes_sum{node=\"n1\",op=\"get\"} 21990232555520.000000\n"),
            std::string::npos)
      << page.substr(page.find("strata_request_bytes_sum"), 120);
}

TEST(MetricsTest, CountersGaugesAndHistograms) {
  ServerMetrics m;
  m.ObserveRpc(ServerMetrics::kGet, 0.0001, absl::StatusCode::kOk);
  m.ObserveRpc(ServerMetrics::kGet, 0.002, absl::StatusCode::kNotFound);
  m.ObserveTransfer(/*get=*/true, 1 << 20);
  EngineStats stats;
  stats.dram_capacity_bytes = 1000;
  stats.dram_used_bytes = 250;
  stats.puts_committed = 7;
  TenantStats a;
  a.tenant = "team-a";
  a.dram_bytes = 4096;
  a.quota.dram_bytes = 8192;
  a.quota_refusals = 3;
  TenantStats odd;
  odd.tenant = "q\"\\\n\x01";
  const std::string page = m.Render(stats, {a, odd}, "n1");
  EXPECT_NE(page.find("# HELP strata_puts_committed_total Chunks committed.\n"
                      "# TYPE strata_puts_committed_total counter\n"
                      "strata_puts_committed_total{node=\"n1\"} 7\n"),
            std::string::npos);
  EXPECT_NE(page.find("strata_dram_used_bytes{node=\"n1\"} 250\n"), std::string::npos);
  EXPECT_NE(page.find("strata_tier_fill_ratio{node=\"n1\",tier=\"dram\"} 0.250000\n"),
            std::string::npos);
  EXPECT_NE(page.find("strata_rpc_duration_seconds_count{node=\"n1\",rpc=\"Get\"} 2\n"),
            std::string::npos);
  // 100 us falls in the 0.0001 bucket (25, 50, 100 us ...): cumulative 1 there.
  EXPECT_NE(page.find("strata_rpc_duration_seconds_bucket{node=\"n1\",rpc=\"Get\",le=\"0.0001\"} 1\n"),
            std::string::npos);
  EXPECT_NE(page.find("strata_rpc_duration_seconds_bucket{node=\"n1\",rpc=\"Get\",le=\"+Inf\"} 2\n"),
            std::string::npos);
  EXPECT_NE(page.find("strata_rpcs_total{node=\"n1\",rpc=\"Get\",code=\"NOT_FOUND\"} 1\n"),
            std::string::npos);
  EXPECT_NE(page.find("strata_request_bytes_count{node=\"n1\",op=\"get\"} 1\n"), std::string::npos);
  // Per-tenant gauges and counters carry the tenant.
  EXPECT_NE(page.find("# TYPE strata_tenant_dram_bytes gauge\n"
                      "strata_tenant_dram_bytes{node=\"n1\",tenant=\"team-a\"} 4096\n"),
            std::string::npos);
  EXPECT_NE(page.find("strata_tenant_dram_quota_bytes{node=\"n1\",tenant=\"team-a\"} 8192\n"),
            std::string::npos);
  EXPECT_NE(page.find("# TYPE strata_tenant_quota_refusals_total counter\n"
                      "strata_tenant_quota_refusals_total{node=\"n1\",tenant=\"team-a\"} 3\n"),
            std::string::npos);
  // A tenant string that is not a clean label value is escaped.
  EXPECT_NE(page.find("strata_tenant_dram_bytes{node=\"n1\",tenant=\"q\\\"\\\\\\n?\"} 0\n"),
            std::string::npos)
      << page;
  for (const auto& [name, value] : TenantStatsValues(a)) {
    EXPECT_NE(page.find(std::string("strata_tenant_") + name), std::string::npos) << name;
  }
  // Every stats value is on the page.
  for (const auto& [name, value] : StatsValues(stats)) {
    EXPECT_NE(page.find(std::string("strata_") + name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace strata::store
