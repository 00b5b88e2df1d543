// Fuzzes the envelope around UCX worker addresses and packed rkeys
// (transport/envelope.h), the only bytes from a peer that reach UCX's own
// parsers: any bytes are unwrapped or refused with InvalidArgument. What is
// accepted wraps back to the same bytes, with a non-empty payload and a
// region that does not wrap around the address space.
//
// Input: one mode byte, then the string. Mode bit 0 set: the last 8 bytes
// are replaced by the correct checksum first, so that the fuzzer gets past
// the checksum to the length and region checks (it cannot invert FNV-1a).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <cstring>
#include <string>
#include <string_view>

#include "transport/envelope.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "envelope_fuzzer: %s\n", what);
  std::abort();
}

// FNV-1a 64, as the envelope computes it (transport/envelope.cc).
uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata::transport::internal;
  if (size == 0) return 0;
  std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) != 0 && in.size() >= 8) {
    const uint64_t sum = Fnv1a64(std::string_view(in).substr(0, in.size() - 8));
    std::memcpy(in.data() + in.size() - 8, &sum, 8);
  }

  absl::StatusOr<std::string> address = UnwrapWorkerAddress(in);
  if (address.ok()) {
    Check(!address->empty(), "empty worker address accepted");
    Check(WrapWorkerAddress(*address) == in, "worker address does not wrap back to the input");
  } else {
    Check(address.status().code() == absl::StatusCode::kInvalidArgument,
          "an address error other than InvalidArgument");
  }

  absl::StatusOr<RkeyEnvelope> rkey = UnwrapRkey(in);
  if (rkey.ok()) {
    Check(!rkey->ucx_rkey.empty(), "empty rkey accepted");
    Check(rkey->region_size > 0 &&
              rkey->region_base <= std::numeric_limits<uint64_t>::max() - rkey->region_size,
          "rkey region empty or wrapping");
    Check(WrapRkey(*rkey) == in, "rkey does not wrap back to the input");
  } else {
    Check(rkey.status().code() == absl::StatusCode::kInvalidArgument,
          "an rkey error other than InvalidArgument");
  }
  Check(!(address.ok() && rkey.ok()), "one string accepted as both an address and an rkey");
  return 0;
}
