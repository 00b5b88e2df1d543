// Fuzzes the header of the isolated data plane's messages
// (proto/data_message.h), which an isolated node decodes from any peer:
// DataMessage::Decode on any bytes returns a header or nothing, never
// crashes; a header it accepts encodes back to exactly the input bytes. And
// a header built from the input (any kind byte, id, index, layer and a
// client id of up to 160 bytes) decodes from its encoding to itself when it
// is well formed (kind 1 or 2, client id of at most 128 bytes) and not at
// all otherwise.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "proto/data_message.h"

namespace {

using strata::proto::DataMessage;

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "data_message_fuzzer: %s\n", what);
  std::abort();
}

template <typename T>
T Take(const uint8_t*& p, const uint8_t* end) {
  T v{};
  const size_t n = std::min<size_t>(sizeof(T), static_cast<size_t>(end - p));
  if (n > 0) std::memcpy(&v, p, n);
  p += n;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto in = std::as_bytes(std::span(data, size));
  std::optional<DataMessage> decoded = DataMessage::Decode(in);
  if (decoded) {
    const std::string again = decoded->Encode();
    Check(again.size() == size && std::memcmp(again.data(), data, size) == 0,
          "an accepted header does not encode back to its bytes");
  }

  // A header built from the input: kind byte, u64 id, u32 index, u32 layer,
  // u8 client id length (mod 161), then the client id's bytes.
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  const uint8_t kind = Take<uint8_t>(p, end);
  DataMessage m;
  m.kind = static_cast<DataMessage::Kind>(kind);
  m.id = Take<uint64_t>(p, end);
  m.index = Take<uint32_t>(p, end);
  m.layer = Take<uint32_t>(p, end);
  const size_t id_bytes = Take<uint8_t>(p, end) % 161;
  m.client_id.assign(reinterpret_cast<const char*>(p),
                     std::min<size_t>(id_bytes, static_cast<size_t>(end - p)));
  const std::string encoded = m.Encode();
  Check(encoded.size() == DataMessage::kFixedBytes + m.client_id.size(),
        "an encoding of the wrong length");
  std::optional<DataMessage> back = DataMessage::Decode(std::as_bytes(std::span(encoded)));
  const bool well_formed = (kind == 1 || kind == 2) &&
                           m.client_id.size() <= DataMessage::kMaxClientIdBytes;
  Check(back.has_value() == well_formed,
        well_formed ? "a well-formed header does not decode" : "a malformed header decodes");
  if (back) {
    Check(back->kind == m.kind && back->id == m.id && back->index == m.index &&
              back->layer == m.layer && back->client_id == m.client_id,
          "Decode(Encode(m)) != m");
  }
  return 0;
}
