#include "transport/tcp_settings.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace strata::transport::internal {

absl::StatusOr<size_t> ParseUcxSize(std::string_view text) {
  const std::string lower = absl::AsciiStrToLower(absl::string_view(text.data(), text.size()));
  size_t digits = 0;
  while (digits < lower.size() && absl::ascii_isdigit(static_cast<unsigned char>(lower[digits]))) {
    ++digits;
  }
  const absl::string_view unit = absl::string_view(lower).substr(digits);
  uint64_t shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "k" || unit == "kb") {
    shift = 10;
  } else if (unit == "m" || unit == "mb") {
    shift = 20;
  } else if (unit == "g" || unit == "gb") {
    shift = 30;
  } else {
    digits = 0;  // not a size
  }
  uint64_t number = 0;
  if (digits == 0 || digits > 12 ||
      !absl::SimpleAtoi(absl::string_view(lower).substr(0, digits), &number)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", absl::string_view(text.data(), text.size()),
                     "' is not a size (a number with an optional unit b, k, kb, m, mb, g, gb)"));
  }
  return static_cast<size_t>(number << shift);
}

namespace {

// The variable UCX_<name> when set, else `requested`, else `ucx_default`.
absl::StatusOr<size_t> OneSegment(const char* name, size_t requested, size_t ucx_default) {
  if (const char* env = std::getenv(name); env != nullptr) {
    absl::StatusOr<size_t> parsed = ParseUcxSize(env);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", parsed.status().message()));
    }
    return *parsed;
  }
  return requested != 0 ? requested : ucx_default;
}

}  // namespace

absl::StatusOr<TcpSegments> EffectiveTcpSegments(size_t send_requested,
                                                 size_t receive_requested) {
  TcpSegments segments;
  absl::StatusOr<size_t> send =
      OneSegment("UCX_TCP_TX_SEG_SIZE", send_requested, kUcxDefaultTcpSendSegment);
  if (!send.ok()) return send.status();
  absl::StatusOr<size_t> receive =
      OneSegment("UCX_TCP_RX_SEG_SIZE", receive_requested, kUcxDefaultTcpReceiveSegment);
  if (!receive.ok()) return receive.status();
  segments.send = *send;
  segments.receive = *receive;
  // A requested send segment is an upper bound: UCX sends at most the
  // receive segment.
  if (std::getenv("UCX_TCP_TX_SEG_SIZE") == nullptr && segments.send > segments.receive) {
    segments.send = segments.receive;
  }
  if (segments.send > segments.receive) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tcp send segment of ", segments.send, " bytes exceeds the receive segment of ",
        segments.receive, " bytes (UCX_TCP_TX_SEG_SIZE must not exceed UCX_TCP_RX_SEG_SIZE)"));
  }
  return segments;
}

absl::Mutex& ScopedTcpEnvironment::Mu() {
  static absl::Mutex mu(absl::kConstInit);
  return mu;
}

ScopedTcpEnvironment::ScopedTcpEnvironment(
    const std::vector<std::pair<std::string, std::string>>& values)
    : lock_(&Mu()) {
  for (const auto& [name, value] : values) {
    std::string full = absl::StrCat("UCX_", name);
    if (std::getenv(full.c_str()) != nullptr) continue;  // the caller's setting wins
    if (setenv(full.c_str(), value.c_str(), 1) == 0) set_.push_back(std::move(full));
  }
}

ScopedTcpEnvironment::~ScopedTcpEnvironment() {
  for (const std::string& name : set_) unsetenv(name.c_str());
}

}  // namespace strata::transport::internal
