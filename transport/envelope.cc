#include "transport/envelope.h"

#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace strata::transport::internal {
namespace {

constexpr char kAddressMagic[4] = {'S', 'T', 'W', 'A'};  // Strata worker address
constexpr char kRkeyMagic[4] = {'S', 'T', 'R', 'K'};     // Strata remote key
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 4 + 1 + 3 + 4;
constexpr size_t kRegionSize = 8 + 8;
constexpr size_t kChecksumSize = 8;
// Far above any real UCX address or rkey; keeps a corrupt length harmless.
constexpr uint32_t kMaxPayload = 1 << 20;

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

template <typename T>
void Append(std::string& out, T value) {
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  out.append(raw, sizeof(T));
}

template <typename T>
T Read(std::string_view bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

std::string Wrap(const char (&magic)[4], const RkeyEnvelope* region,
                 std::string_view payload) {
  std::string out;
  out.reserve(kHeaderSize + kRegionSize + payload.size() + kChecksumSize);
  out.append(magic, 4);
  Append<uint8_t>(out, kVersion);
  out.append(3, '\0');
  Append<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  if (region != nullptr) {
    Append<uint64_t>(out, region->region_base);
    Append<uint64_t>(out, region->region_size);
  }
  out.append(payload);
  Append<uint64_t>(out, Fnv1a64(out));
  return out;
}

// Checks the envelope and returns the payload (a view into `wrapped`).
absl::StatusOr<std::string_view> Unwrap(const char (&magic)[4], bool has_region,
                                        std::string_view wrapped,
                                        std::string_view what) {
  const size_t fixed = kHeaderSize + (has_region ? kRegionSize : 0) + kChecksumSize;
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed ", absl::string_view(what.data(), what.size()), ": ",
        absl::string_view(why.data(), why.size())));
  };
  if (wrapped.size() < fixed) return invalid("too short");
  if (std::memcmp(wrapped.data(), magic, 4) != 0) return invalid("bad magic");
  if (Read<uint8_t>(wrapped, 4) != kVersion) return invalid("unsupported version");
  // Reserved bytes are zero in version 1, so that one string has one meaning
  // and a later version may give them one.
  if (wrapped[5] != 0 || wrapped[6] != 0 || wrapped[7] != 0) {
    return invalid("reserved bytes are not zero");
  }
  const uint32_t payload_size = Read<uint32_t>(wrapped, 8);
  if (payload_size == 0 || payload_size > kMaxPayload ||
      wrapped.size() != fixed + payload_size) {
    return invalid("length mismatch");
  }
  const size_t checked = wrapped.size() - kChecksumSize;
  if (Fnv1a64(wrapped.substr(0, checked)) != Read<uint64_t>(wrapped, checked)) {
    return invalid("checksum mismatch");
  }
  return wrapped.substr(checked - payload_size, payload_size);
}

}  // namespace

std::string WrapWorkerAddress(std::string_view ucx_address) {
  return Wrap(kAddressMagic, nullptr, ucx_address);
}

absl::StatusOr<std::string> UnwrapWorkerAddress(std::string_view wrapped) {
  absl::StatusOr<std::string_view> payload =
      Unwrap(kAddressMagic, /*has_region=*/false, wrapped, "worker address");
  if (!payload.ok()) return payload.status();
  return std::string(*payload);
}

std::string WrapRkey(const RkeyEnvelope& rkey) {
  return Wrap(kRkeyMagic, &rkey, rkey.ucx_rkey);
}

absl::StatusOr<RkeyEnvelope> UnwrapRkey(std::string_view wrapped) {
  absl::StatusOr<std::string_view> payload =
      Unwrap(kRkeyMagic, /*has_region=*/true, wrapped, "remote key");
  if (!payload.ok()) return payload.status();
  RkeyEnvelope out;
  out.region_base = Read<uint64_t>(wrapped, kHeaderSize);
  out.region_size = Read<uint64_t>(wrapped, kHeaderSize + 8);
  if (out.region_size == 0 ||
      out.region_base > std::numeric_limits<uint64_t>::max() - out.region_size) {
    return absl::InvalidArgumentError("malformed remote key: bad region");
  }
  out.ucx_rkey = std::string(*payload);
  return out;
}

}  // namespace strata::transport::internal
