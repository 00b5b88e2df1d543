// Settings of UCX's tcp transport that Strata chooses (segment sizes, the
// listening port), and how they reach UCX 1.13, which reads them only from
// the environment when a worker opens its interfaces.
#ifndef STRATA_TRANSPORT_TCP_SETTINGS_H_
#define STRATA_TRANSPORT_TCP_SETTINGS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace strata::transport::internal {

// UCX's own defaults for the tcp segment sizes (UCX 1.13).
inline constexpr size_t kUcxDefaultTcpSendSegment = size_t{8} << 10;
inline constexpr size_t kUcxDefaultTcpReceiveSegment = size_t{64} << 10;

// Parses a size as UCX's memory-unit settings take it: a number with an
// optional unit b, k/kb, m/mb, g/gb (any case), e.g. "65536", "64K", "1mb".
// InvalidArgument otherwise (UCX's "inf" and "auto" included: no size).
absl::StatusOr<size_t> ParseUcxSize(std::string_view text);

// The tcp segment sizes a context will use: the UCX_TCP_TX_SEG_SIZE /
// UCX_TCP_RX_SEG_SIZE environment variables where set, else the requested
// sizes, else (0) UCX's defaults. A requested send segment larger than the
// receive segment is lowered to it (UCX requires send <= receive);
// InvalidArgument for a variable that is not a size, or for a
// UCX_TCP_TX_SEG_SIZE larger than the receive segment (UCX would not open
// its tcp transport at all).
struct TcpSegments {
  size_t send = 0;
  size_t receive = 0;
};
absl::StatusOr<TcpSegments> EffectiveTcpSegments(size_t send_requested,
                                                 size_t receive_requested);

// Puts UCX_TCP_* variables in the environment for the lifetime of the
// object (between reading the UCX configuration and creating the worker),
// each only when it is not set already, and removes them again. Objects of
// this class exist one at a time (a process-wide lock), so contexts are
// created one after the other meanwhile. The environment is process-wide:
// another thread reading the environment meanwhile sees the variables, and
// glibc's setenv/unsetenv are not safe against a concurrent getenv, so
// processes create their contexts early (a node at start, a client at
// connect).
class ScopedTcpEnvironment {
 public:
  // `values`: (name without the UCX_ prefix, value), e.g.
  // {"TCP_TX_SEG_SIZE", "1048576"}.
  explicit ScopedTcpEnvironment(const std::vector<std::pair<std::string, std::string>>& values);
  ~ScopedTcpEnvironment();
  ScopedTcpEnvironment(const ScopedTcpEnvironment&) = delete;
  ScopedTcpEnvironment& operator=(const ScopedTcpEnvironment&) = delete;

 private:
  static absl::Mutex& Mu();
  absl::MutexLock lock_;
  std::vector<std::string> set_;  // full names of the variables this object set
};

}  // namespace strata::transport::internal

#endif  // STRATA_TRANSPORT_TCP_SETTINGS_H_
