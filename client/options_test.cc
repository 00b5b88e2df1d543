// CheckServerAddress and Client::Connect's refusal of an address a client
// cannot dial (no port, port 0 or out of range, no host; Connect refuses
// before any connection attempt, so no node is needed), and RenameOptions,
// which front ends use to name options as their users set them.
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

TEST(RenameOptionsTest, ReplacesWholeOptionNamesOnly) {
  const std::pair<std::string_view, std::string_view> names[] = {
      {"tls_ca_file", "--tls_ca"}, {"tls_cert_file", "--tls_cert"}, {"same_host off", "--nosame_host"}};
  absl::Status s = RenameOptions(
      absl::UnavailableError("signed by the CA in tls_ca_file (tls_cert_file, my_tls_ca_file, "
                             "tls_ca_file2); or same_host off.tls_ca_file"),
      names);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "signed by the CA in --tls_ca (--tls_cert, my_tls_ca_file, tls_ca_file2); or "
            "--nosame_host.--tls_ca");
  EXPECT_TRUE(RenameOptions(absl::OkStatus(), names).ok());
  EXPECT_EQ(RenameOptions(absl::NotFoundError("tls_ca_file"), {}).message(), "tls_ca_file");
}

TEST(RenameOptionsTest, ConnectErrorsNameTheFrontEndsOptions) {
  ClientOptions o;
  o.server_address = "127.0.0.1:1";
  o.tls_cert_file = "client.pem";  // without tls_ca_file
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_TRUE(absl::StrContains(c.status().message(), "without tls_ca_file")) << c.status();
  const std::pair<std::string_view, std::string_view> flags[] = {{"tls_ca_file", "--tls_ca"}};
  absl::Status renamed = RenameOptions(c.status(), flags);
  EXPECT_EQ(renamed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(renamed.message(), "without --tls_ca")) << renamed;
}

}  // namespace
}  // namespace strata::client
