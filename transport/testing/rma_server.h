// Test and benchmark support for transport/: a deterministic byte pattern,
// and a store-like RMA server running in a separate process (the test binary
// re-executed), so that tests prove cross-process one-sided transfers.
#ifndef STRATA_TRANSPORT_TESTING_RMA_SERVER_H_
#define STRATA_TRANSPORT_TESTING_RMA_SERVER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace strata::transport::testing {

// The pattern: 8-byte words, each a hash of `seed` and its offset in the
// region. REQUIRES: `offset` and `bytes.size()` are multiples of 8.
void FillPattern(std::span<std::byte> bytes, uint64_t offset, uint64_t seed);
// Index of the first byte that differs from the pattern, or -1.
int64_t FirstMismatch(std::span<const std::byte> bytes, uint64_t offset, uint64_t seed);

// A child process holding one registered region filled with
// FillPattern(region, 0, seed). Not thread-safe.
class RmaServerProcess {
 public:
  // Starts the child (this executable re-executed: the child runs the server
  // from a static initializer, before main) and waits for it to publish its
  // worker address and rkey. Unavailable when the child fails to start.
  static absl::StatusOr<std::unique_ptr<RmaServerProcess>> Spawn(
      const std::string& transports, size_t region_bytes, uint64_t seed);
  // Asks the child to exit and reaps it (or reaps a killed child).
  ~RmaServerProcess();

  const std::string& worker_address() const { return address_; }
  const std::string& packed_rkey() const { return rkey_; }
  uint64_t base() const { return base_; }
  size_t size() const { return size_; }
  pid_t pid() const { return pid_; }

  // Asks the child whether region[offset, offset + length) holds
  // FillPattern(..., offset, seed). Unavailable when the child is gone.
  absl::StatusOr<bool> CheckPattern(uint64_t offset, uint64_t length, uint64_t seed);

  // SIGSTOPs / SIGCONTs the child: a stopped server's worker makes no
  // progress.
  void Stop();
  void Continue();

  // SIGKILLs the child and reaps it.
  void Kill();

 private:
  RmaServerProcess() = default;

  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string address_;
  std::string rkey_;
  uint64_t base_ = 0;
  size_t size_ = 0;
};

}  // namespace strata::transport::testing

#endif  // STRATA_TRANSPORT_TESTING_RMA_SERVER_H_
