// Internal to transport/: the Strata envelope around the byte strings that
// UCX peers exchange (packed worker addresses and packed remote keys).
//
// UCX parses those strings without validating them and may abort on garbage,
// so every string handed to a peer is wrapped as
//   magic (4 bytes) | version (1) | reserved (3, zero) | payload length (u32)
//   | [rkey only: region base (u64) | region size (u64)]
//   | payload (UCX's bytes) | FNV-1a 64 of everything before (u64)
// in host byte order (peers are processes on hosts of one architecture; the
// magic tells a byte-swapped peer apart). A string that fails any check is
// rejected before UCX sees it.
#ifndef STRATA_TRANSPORT_ENVELOPE_H_
#define STRATA_TRANSPORT_ENVELOPE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace strata::transport::internal {

// Wraps a packed UCX worker address.
std::string WrapWorkerAddress(std::string_view ucx_address);
// Returns the UCX bytes inside. InvalidArgument for anything that
// WrapWorkerAddress did not produce (bad magic, version, reserved bytes,
// length, checksum).
absl::StatusOr<std::string> UnwrapWorkerAddress(std::string_view wrapped);

struct RkeyEnvelope {
  uint64_t region_base = 0;  // the registered region the rkey covers
  uint64_t region_size = 0;
  std::string ucx_rkey;
};
std::string WrapRkey(const RkeyEnvelope& rkey);
// InvalidArgument as for UnwrapWorkerAddress, and for an empty region or one
// that wraps around the address space.
absl::StatusOr<RkeyEnvelope> UnwrapRkey(std::string_view wrapped);

}  // namespace strata::transport::internal

#endif  // STRATA_TRANSPORT_ENVELOPE_H_
