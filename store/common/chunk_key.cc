#include "store/common/chunk_key.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace strata {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<ChunkKey> ChunkKey::FromBytes(std::span<const uint8_t> raw) {
  if (raw.size() != kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk key must be ", kSize, " bytes, got ", raw.size()));
  }
  ChunkKey key;
  std::memcpy(key.bytes.data(), raw.data(), kSize);
  return key;
}

absl::StatusOr<ChunkKey> ChunkKey::FromBytes(std::string_view raw) {
  return FromBytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
}

absl::StatusOr<ChunkKey> ChunkKey::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("hex chunk key must be ", 2 * kSize, " digits, got ", hex.size()));
  }
  ChunkKey key;
  for (size_t i = 0; i < kSize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("hex chunk key has a non-hex digit at ", 2 * i));
    }
    key.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return key;
}

std::string ChunkKey::ToHex() const {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), kSize));
}

std::string ChunkKey::ShortHex() const { return ToHex().substr(0, 16); }

}  // namespace strata
