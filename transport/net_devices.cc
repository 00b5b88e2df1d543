#include "transport/net_devices.h"

#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace strata::transport::internal {
namespace {

bool SameAddress(const sockaddr* a, const sockaddr* b) {
  if (a == nullptr || b == nullptr || a->sa_family != b->sa_family) return false;
  if (a->sa_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(b)->sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr,
                       sizeof(in6_addr)) == 0;
  }
  return false;
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(std::string_view address) {
  HostPort out;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unbalanced '[' in '", std::string(address), "'"));
    }
    out.host = std::string(address.substr(1, close - 1));
    std::string_view rest = address.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return absl::InvalidArgumentError(absl::StrCat("expected ':port' in '", std::string(address), "'"));
      }
      port = rest.substr(1);
    }
  } else {
    const size_t colon = address.rfind(':');
    if (colon != std::string_view::npos && address.find(':') == colon) {
      out.host = std::string(address.substr(0, colon));
      port = address.substr(colon + 1);
    } else {
      out.host = std::string(address);  // no port, or a bare IPv6 address
    }
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no host in '", std::string(address), "'"));
  }
  if (!port.empty() && (!absl::SimpleAtoi(std::string(port), &out.port) || out.port < 0 || out.port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", std::string(address), "'"));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> InterfacesHolding(const std::string& host) {
  if (host == "0.0.0.0" || host == "::" || host == "*") return std::vector<std::string>{};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* resolved = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &resolved); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) {
    freeaddrinfo(resolved);
    return absl::InternalError(absl::StrCat("getifaddrs: ", std::strerror(errno)));
  }
  std::vector<std::string> names;
  for (const addrinfo* a = resolved; a != nullptr; a = a->ai_next) {
    for (const ifaddrs* i = interfaces; i != nullptr; i = i->ifa_next) {
      if (SameAddress(a->ai_addr, i->ifa_addr)) names.emplace_back(i->ifa_name);
    }
  }
  freeifaddrs(interfaces);
  freeaddrinfo(resolved);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (names.empty()) {
    return absl::NotFoundError(absl::StrCat("no network interface of this host holds '", host, "'"));
  }
  return names;
}

}  // namespace strata::transport::internal
