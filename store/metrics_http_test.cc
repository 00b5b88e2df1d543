// The /metrics HTTP endpoint: serves what it is given, and refuses an
// address it cannot have to itself.
#include "store/metrics_http.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace strata::store {
namespace {

TEST(MetricsHttpTest, ServesTheRenderedPage) {
  auto server = MetricsHttpServer::Start("127.0.0.1:0", [] { return "strata_up 1\n"; });
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "strata_up 1\n");
  (*server)->Stop();
}

// cpp-httplib sets SO_REUSEPORT by default, which let a second node's
// endpoint listen on the first one's port and answer half of the scrapes.
TEST(MetricsHttpTest, APortInUseIsUnavailable) {
  auto first = MetricsHttpServer::Start("127.0.0.1:0", [] { return "first 1\n"; });
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = MetricsHttpServer::Start(address, [] { return "second 1\n"; });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable)
      << (second.ok() ? absl::StrCat("a second endpoint listens on ", address)
                      : second.status().ToString());
  httplib::Client client("127.0.0.1", (*first)->port());
  for (int i = 0; i < 8; ++i) {  // new connections each time: all reach the first
    auto res = client.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->body, "first 1\n");
  }
  if (second.ok()) (*second)->Stop();
  (*first)->Stop();
}

TEST(MetricsHttpTest, AnAddressWithoutAValidPortIsInvalidArgument) {
  for (const char* address : {"127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x"}) {
    auto server = MetricsHttpServer::Start(address, [] { return ""; });
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << address;
  }
}

}  // namespace
}  // namespace strata::store
