// The header of Strata's data-plane messages on isolated nodes (NodeInfo.
// isolated_data_plane): two-sided UCX messages, whose payload lands where the
// receiver decides, instead of one-sided access to the node's memory.
//
//   get slice (node -> client): the bytes of layer `layer` of chunk `index`
//     of the get whose GetRequest.transfer_id is `id`;
//   put chunk (client -> node): the bytes of the chunk at position `index` of
//     the PutBegin request whose write lease is `id`; `client_id` is the
//     caller's client_id, and the node accepts it only from the lease's owner.
//
// Encoding, little-endian: u32 magic "SDM1", u8 kind (1 get slice, 2 put
// chunk), 3 zero bytes, u64 id, u32 index, u32 layer, then client_id's bytes
// (put chunks only; at most 128).
#ifndef STRATA_PROTO_DATA_MESSAGE_H_
#define STRATA_PROTO_DATA_MESSAGE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

namespace strata::proto {

struct DataMessage {
  enum class Kind : uint8_t { kGetSlice = 1, kPutChunk = 2 };
  static constexpr uint32_t kMagic = 0x314d4453;  // "SDM1"
  static constexpr size_t kFixedBytes = 24;
  static constexpr size_t kMaxClientIdBytes = 128;

  Kind kind = Kind::kGetSlice;
  uint64_t id = 0;
  uint32_t index = 0;
  uint32_t layer = 0;
  std::string client_id;

  std::string Encode() const {
    std::string out(kFixedBytes, '\0');
    Put32(&out[0], kMagic);
    out[4] = static_cast<char>(kind);
    uint64_t v = id;
    for (int i = 0; i < 8; ++i, v >>= 8) out[8 + i] = static_cast<char>(v & 0xff);
    Put32(&out[16], index);
    Put32(&out[20], layer);
    out += client_id;
    return out;
  }

  // nullopt for anything that is not a well-formed header.
  static std::optional<DataMessage> Decode(std::span<const std::byte> in) {
    if (in.size() < kFixedBytes || in.size() > kFixedBytes + kMaxClientIdBytes) {
      return std::nullopt;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    if (Get32(p) != kMagic || p[5] != 0 || p[6] != 0 || p[7] != 0) return std::nullopt;
    DataMessage m;
    if (p[4] != 1 && p[4] != 2) return std::nullopt;
    m.kind = static_cast<Kind>(p[4]);
    for (int i = 7; i >= 0; --i) m.id = (m.id << 8) | p[8 + i];
    m.index = Get32(p + 16);
    m.layer = Get32(p + 20);
    m.client_id.assign(reinterpret_cast<const char*>(p + kFixedBytes), in.size() - kFixedBytes);
    return m;
  }

 private:
  static void Put32(char* out, uint32_t v) {
    for (int i = 0; i < 4; ++i, v >>= 8) out[i] = static_cast<char>(v & 0xff);
  }
  static uint32_t Get32(const unsigned char* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  }
};

}  // namespace strata::proto

#endif  // STRATA_PROTO_DATA_MESSAGE_H_
