#include "store/common/namespace.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace strata {
namespace {

constexpr uint8_t kEncodingVersion = 1;

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void PutString(std::vector<uint8_t>& out, const std::string& s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

// Reads the canonical encoding front to back.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool U8(uint8_t* v) {
    if (in_.size() < 1) return false;
    *v = in_[0];
    in_ = in_.subspan(1);
    return true;
  }
  bool U32(uint32_t* v) {
    if (in_.size() < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t{in_[i]} << (8 * i);
    in_ = in_.subspan(4);
    return true;
  }
  bool String(std::string* s, size_t max) {
    uint32_t n;
    if (!U32(&n) || n > max || in_.size() < n) return false;
    s->assign(reinterpret_cast<const char*>(in_.data()), n);
    in_ = in_.subspan(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::span<const uint8_t> in_;
};

absl::Status RangeError(const char* field, uint64_t value, uint64_t lo, uint64_t hi) {
  return absl::InvalidArgumentError(
      absl::StrCat("namespace ", field, " = ", value, " is outside [", lo, ", ", hi, "]"));
}

}  // namespace

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "fp16" || name == "float16") return DType::kFloat16;
  if (name == "bf16" || name == "bfloat16") return DType::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", absl::string_view(name.data(), name.size()),
                   "' (expected fp16 or bf16)"));
}

absl::Status NamespaceSpec::Validate() const {
  if (model_id.empty() || model_id.size() > kMaxModelIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace model_id must be 1 to ", kMaxModelIdBytes, " bytes, got ", model_id.size()));
  }
  if (num_layers < 1 || num_layers > kMaxLayers) {
    return RangeError("num_layers", num_layers, 1, kMaxLayers);
  }
  if (num_kv_heads < 1 || num_kv_heads > kMaxKvHeads) {
    return RangeError("num_kv_heads", num_kv_heads, 1, kMaxKvHeads);
  }
  if (head_dim < 1 || head_dim > kMaxHeadDim) {
    return RangeError("head_dim", head_dim, 1, kMaxHeadDim);
  }
  if (dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace dtype code ", static_cast<int>(dtype), " is not fp16 (1) or bf16 (2)"));
  }
  if (tokens_per_chunk < 1 || tokens_per_chunk > kMaxTokensPerChunk) {
    return RangeError("tokens_per_chunk", tokens_per_chunk, 1, kMaxTokensPerChunk);
  }
  if (extra_keys.size() > kMaxExtraKeys) {
    return RangeError("extra key count", extra_keys.size(), 0, kMaxExtraKeys);
  }
  absl::flat_hash_set<std::string> names;
  for (const auto& [name, value] : extra_keys) {
    if (name.empty() || name.size() > kMaxExtraBytes || value.size() > kMaxExtraBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "namespace extra key names must be 1 to ", kMaxExtraBytes,
          " bytes and values at most ", kMaxExtraBytes, " bytes"));
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("namespace extra key '", name, "' is repeated"));
    }
  }
  const uint64_t chunk = uint64_t{num_layers} * 2 * num_kv_heads * tokens_per_chunk * head_dim *
                         DTypeBytes(dtype);
  if (chunk > kMaxChunkBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace chunk of ", chunk, " bytes exceeds the limit of ", kMaxChunkBytes));
  }
  return absl::OkStatus();
}

std::vector<uint8_t> NamespaceSpec::CanonicalBytes() const {
  std::vector<uint8_t> out;
  out.push_back(kEncodingVersion);
  PutString(out, model_id);
  PutU32(out, num_layers);
  PutU32(out, num_kv_heads);
  PutU32(out, head_dim);
  out.push_back(static_cast<uint8_t>(dtype));
  PutU32(out, tokens_per_chunk);
  std::vector<std::pair<std::string, std::string>> sorted = extra_keys;
  std::sort(sorted.begin(), sorted.end());
  PutU32(out, static_cast<uint32_t>(sorted.size()));
  for (const auto& [name, value] : sorted) {
    PutString(out, name);
    PutString(out, value);
  }
  return out;
}

absl::StatusOr<NamespaceSpec> NamespaceSpec::FromCanonicalBytes(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  NamespaceSpec spec;
  uint8_t version = 0, dtype = 0;
  uint32_t extra = 0;
  if (!r.U8(&version) || version != kEncodingVersion) {
    return absl::InvalidArgumentError("namespace encoding: missing or unknown version byte");
  }
  if (!r.String(&spec.model_id, kMaxModelIdBytes) || !r.U32(&spec.num_layers) ||
      !r.U32(&spec.num_kv_heads) || !r.U32(&spec.head_dim) || !r.U8(&dtype) ||
      !r.U32(&spec.tokens_per_chunk) || !r.U32(&extra) || extra > kMaxExtraKeys) {
    return absl::InvalidArgumentError("namespace encoding: truncated or out-of-range field");
  }
  spec.dtype = static_cast<DType>(dtype);
  for (uint32_t i = 0; i < extra; ++i) {
    std::string name, value;
    if (!r.String(&name, kMaxExtraBytes) || !r.String(&value, kMaxExtraBytes)) {
      return absl::InvalidArgumentError("namespace encoding: truncated extra key");
    }
    spec.extra_keys.emplace_back(std::move(name), std::move(value));
  }
  if (!r.done()) return absl::InvalidArgumentError("namespace encoding: trailing bytes");
  if (absl::Status s = spec.Validate(); !s.ok()) return s;
  if (spec.CanonicalBytes() != std::vector<uint8_t>(bytes.begin(), bytes.end())) {
    return absl::InvalidArgumentError("namespace encoding: extra keys are not in canonical order");
  }
  return spec;
}

ChunkLayout::ChunkLayout(const NamespaceSpec& spec)
    : num_layers_(spec.num_layers),
      num_kv_heads_(spec.num_kv_heads),
      head_bytes_(uint64_t{spec.tokens_per_chunk} * spec.head_dim * DTypeBytes(spec.dtype)),
      layer_bytes_(2 * uint64_t{spec.num_kv_heads} * head_bytes_) {}

}  // namespace strata
