// NamespaceSpec: what a chunk of KV cache belongs to (model, layout, extra
// keys), its canonical byte encoding, and the chunk layout it implies.
//
// Different specs never share keys: the canonical bytes seed every key chain
// (key_chain.h). The encoding is specified byte by byte in README.md.
#ifndef STRATA_STORE_COMMON_NAMESPACE_H_
#define STRATA_STORE_COMMON_NAMESPACE_H_

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata {

enum class DType : uint8_t {
  kFloat16 = 1,
  kBFloat16 = 2,
};

// Bytes per element of `dtype`.
inline constexpr uint32_t DTypeBytes(DType) { return 2; }
// "fp16" / "bf16"; ParseDType is the inverse (anything else InvalidArgument).
const char* DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(std::string_view name);

struct NamespaceSpec {
  // Limits enforced by Validate().
  static constexpr size_t kMaxModelIdBytes = 256;
  static constexpr uint32_t kMaxLayers = 1024;
  static constexpr uint32_t kMaxKvHeads = 1024;
  static constexpr uint32_t kMaxHeadDim = 1024;
  static constexpr uint32_t kMaxTokensPerChunk = 65536;
  static constexpr size_t kMaxExtraKeys = 64;
  static constexpr size_t kMaxExtraBytes = 256;  // per name and per value
  static constexpr uint64_t kMaxChunkBytes = uint64_t{1} << 31;

  std::string model_id;           // non-empty UTF-8, e.g. "llama-3-8b"
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kFloat16;
  uint32_t tokens_per_chunk = 64;
  // Further identity, e.g. {"lora", "adapter-7"}. Order does not matter: the
  // canonical encoding sorts by name. Names are unique and non-empty.
  std::vector<std::pair<std::string, std::string>> extra_keys;

  // InvalidArgument naming the first field out of range.
  absl::Status Validate() const;

  // The canonical encoding (README.md, "Canonical namespace encoding").
  // REQUIRES: Validate().ok().
  std::vector<uint8_t> CanonicalBytes() const;
  // Inverse of CanonicalBytes; InvalidArgument on malformed input.
  static absl::StatusOr<NamespaceSpec> FromCanonicalBytes(std::span<const uint8_t> bytes);

  friend bool operator==(const NamespaceSpec&, const NamespaceSpec&) = default;
};

// Byte geometry of one chunk in the store's layout:
//   [layer][k|v][kv_head][token][head_dim]
// so that one layer (K then V of every KV head) is one contiguous slice.
// A value type; thread-compatible.
class ChunkLayout {
 public:
  // REQUIRES: spec.Validate().ok().
  explicit ChunkLayout(const NamespaceSpec& spec);

  uint64_t chunk_bytes() const { return layer_bytes_ * num_layers_; }
  // Bytes of one layer slice (K and V of every KV head).
  uint64_t layer_bytes() const { return layer_bytes_; }
  // Offset of layer `layer`'s slice within the chunk. REQUIRES: layer < layers.
  uint64_t layer_offset(uint32_t layer) const { return layer_bytes_ * layer; }
  // Offset of K (kv = 0) or V (kv = 1) of `head` in layer `layer`.
  uint64_t head_offset(uint32_t layer, uint32_t kv, uint32_t head) const {
    return layer_offset(layer) + (uint64_t{kv} * num_kv_heads_ + head) * head_bytes_;
  }
  // Bytes of one head's [token][head_dim] block.
  uint64_t head_bytes() const { return head_bytes_; }
  uint32_t num_layers() const { return num_layers_; }

 private:
  uint32_t num_layers_;
  uint32_t num_kv_heads_;
  uint64_t head_bytes_;
  uint64_t layer_bytes_;
};

}  // namespace strata

#endif  // STRATA_STORE_COMMON_NAMESPACE_H_
