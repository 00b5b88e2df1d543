// Metadata that every response of a store node carries besides its message.
//
//   strata-node-incarnation (trailing): NodeInfo.incarnation of the node that
//     answered, in decimal. A node draws a new incarnation at every start, so
//     a client compares it with the one it connected to and learns on any
//     call, failed ones included, that the node restarted behind its address
//     (its pool, remote key and data-plane address are then new).
#ifndef STRATA_PROTO_CALL_METADATA_H_
#define STRATA_PROTO_CALL_METADATA_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata::proto {

inline constexpr char kNodeIncarnationKey[] = "strata-node-incarnation";

inline std::string FormatIncarnation(uint64_t incarnation) { return std::to_string(incarnation); }

// The incarnation in `value`; nullopt unless it is 1 to 20 decimal digits
// that fit in 64 bits and are not 0.
inline std::optional<uint64_t> ParseIncarnation(std::string_view value) {
  if (value.empty() || value.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (v == 0) return std::nullopt;
  return v;
}

}  // namespace strata::proto

#endif  // STRATA_PROTO_CALL_METADATA_H_
