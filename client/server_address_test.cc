// CheckServerAddress and Client::Connect's refusal of an address a client
// cannot dial: no port, port 0 or out of range, no host. Connect refuses
// before any connection attempt, so no node is needed.
#include <string>

#include "absl/strings/match.h"
#include "client/client.h"
#include "gtest/gtest.h"

namespace strata::client {
namespace {

TEST(CheckServerAddressTest, AcceptsHostPort) {
  for (const char* ok : {"127.0.0.1:7400", "localhost:1", "node-3.example:65535", "[::1]:7400"}) {
    EXPECT_TRUE(CheckServerAddress(ok).ok()) << ok << ": " << CheckServerAddress(ok);
  }
}

TEST(CheckServerAddressTest, RefusesWhatCannotBeDialed) {
  const struct {
    const char* address;
    const char* says;
  } cases[] = {
      {"", "empty"},
      {"127.0.0.1", "has no port"},
      {"127.0.0.1:", "has no port"},
      {"[::1]", "has no port"},
      {"[::1", "unbalanced"},
      {"::1", "ambiguous"},
      {":7400", "has no host"},
      {"127.0.0.1:0", "port '0' is not 1..65535"},
      {"127.0.0.1:65536", "port '65536' is not 1..65535"},
      {"127.0.0.1:-5", "is not 1..65535"},
      {"127.0.0.1:74x", "is not 1..65535"},
      {"127.0.0.1:0000007400", "is not 1..65535"},
  };
  for (const auto& c : cases) {
    absl::Status s = CheckServerAddress(c.address);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.address;
    EXPECT_TRUE(absl::StrContains(s.message(), c.says)) << c.address << ": " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "expected host:port")) << c.address << ": " << s;
  }
}

TEST(ConnectTest, RefusesAnAddressWithoutAPort) {
  for (bool reconnect : {false, true}) {
    for (const char* bad : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000"}) {
      ClientOptions o;
      o.server_address = bad;
      o.reconnect = reconnect;
      auto c = Client::Connect(o);
      ASSERT_FALSE(c.ok()) << bad;
      EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
      EXPECT_TRUE(absl::StrContains(c.status().message(), "server_address")) << c.status();
      EXPECT_TRUE(absl::StrContains(c.status().message(), bad)) << c.status();
    }
  }
}

}  // namespace
}  // namespace strata::client
