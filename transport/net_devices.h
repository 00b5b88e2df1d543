// Which network interfaces a data-plane address designates, for restricting
// the network devices UCX opens (UCX_NET_DEVICES) to the ones a node was
// told to listen on.
#ifndef STRATA_TRANSPORT_NET_DEVICES_H_
#define STRATA_TRANSPORT_NET_DEVICES_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::transport::internal {

struct HostPort {
  std::string host;  // without brackets
  int port = 0;      // 0: any
};

// Parses "host", "host:port", "[v6]" or "[v6]:port". InvalidArgument for an
// empty host or a port outside 0..65535.
absl::StatusOr<HostPort> ParseHostPort(std::string_view address);

// Names of the interfaces holding an address `host` resolves to ("lo" for
// 127.0.0.1), sorted, no duplicates. Empty for a wildcard host (0.0.0.0,
// ::, *): every interface. InvalidArgument when `host` does not resolve;
// NotFound when no interface of this machine holds it.
absl::StatusOr<std::vector<std::string>> InterfacesHolding(const std::string& host);

}  // namespace strata::transport::internal

#endif  // STRATA_TRANSPORT_NET_DEVICES_H_
