#include "client/runtime/llama_config.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace strata::runtime {

LlamaConfig LlamaConfig::Llama3_8B() {
  LlamaConfig c;
  c.num_layers = 32;
  c.hidden = 4096;
  c.num_q_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate = 14336;
  c.vocab = 128256;
  c.rms_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  return c;
}

LlamaConfig LlamaConfig::Small() {
  LlamaConfig c;
  c.num_layers = 4;
  c.hidden = 1024;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.intermediate = 2816;
  c.vocab = 32000;
  c.rms_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  return c;
}

LlamaConfig LlamaConfig::Tiny() {
  LlamaConfig c;
  c.num_layers = 2;
  c.hidden = 128;
  c.num_q_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.intermediate = 256;
  c.vocab = 97;
  c.rope_theta = 10000.0f;
  return c;
}

absl::StatusOr<LlamaConfig> LlamaConfig::Named(std::string_view name) {
  if (name == "llama3-8b") return Llama3_8B();
  if (name == "small") return Small();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model shape '", std::string(name), "' (llama3-8b or small)"));
}

namespace {

absl::StatusOr<double> Number(const google::protobuf::Struct& s, const char* field) {
  auto it = s.fields().find(field);
  if (it == s.fields().end() || it->second.kind_case() != google::protobuf::Value::kNumberValue) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: '", field, "' missing or not a number"));
  }
  return it->second.number_value();
}

absl::StatusOr<int> Int(const google::protobuf::Struct& s, const char* field) {
  absl::StatusOr<double> v = Number(s, field);
  if (!v.ok()) return v.status();
  if (*v != std::floor(*v) || *v < 0 || *v > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: '", field, "' is not a count"));
  }
  return static_cast<int>(*v);
}

}  // namespace

absl::StatusOr<LlamaConfig> LlamaConfig::FromHfJson(std::string_view json) {
  google::protobuf::Struct s;
  const auto parsed = google::protobuf::util::JsonStringToMessage(std::string(json), &s);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: not JSON: ", parsed.ToString()));
  }
  auto str = [&](const char* f) -> std::string {
    auto it = s.fields().find(f);
    return it != s.fields().end() && it->second.kind_case() == google::protobuf::Value::kStringValue
               ? it->second.string_value()
               : std::string();
  };
  if (str("model_type") != "llama") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: model_type '", str("model_type"), "' is not llama"));
  }
  if (auto it = s.fields().find("rope_scaling");
      it != s.fields().end() && it->second.kind_case() != google::protobuf::Value::kNullValue) {
    return absl::InvalidArgumentError("config.json: rope_scaling is not supported");
  }
  // Newer files carry RoPE as rope_parameters {rope_type, rope_theta}.
  std::optional<double> rope_theta;
  if (auto it = s.fields().find("rope_parameters");
      it != s.fields().end() && it->second.kind_case() == google::protobuf::Value::kStructValue) {
    const google::protobuf::Struct& rp = it->second.struct_value();
    auto type = rp.fields().find("rope_type");
    if (type != rp.fields().end() && type->second.string_value() != "default") {
      return absl::InvalidArgumentError(absl::StrCat("config.json: rope_type '",
                                                     type->second.string_value(),
                                                     "' is not supported (default only)"));
    }
    absl::StatusOr<double> theta = Number(rp, "rope_theta");
    if (!theta.ok()) return theta.status();
    rope_theta = *theta;
  }
  LlamaConfig c;
  absl::StatusOr<int> v;
  if (!(v = Int(s, "num_hidden_layers")).ok()) return v.status();
  c.num_layers = *v;
  if (!(v = Int(s, "hidden_size")).ok()) return v.status();
  c.hidden = *v;
  if (!(v = Int(s, "num_attention_heads")).ok()) return v.status();
  c.num_q_heads = *v;
  c.num_kv_heads = c.num_q_heads;
  if (s.fields().contains("num_key_value_heads")) {
    if (!(v = Int(s, "num_key_value_heads")).ok()) return v.status();
    c.num_kv_heads = *v;
  }
  c.head_dim = c.num_q_heads > 0 ? c.hidden / c.num_q_heads : 0;
  if (auto it = s.fields().find("head_dim");
      it != s.fields().end() && it->second.kind_case() == google::protobuf::Value::kNumberValue) {
    if (!(v = Int(s, "head_dim")).ok()) return v.status();
    c.head_dim = *v;
  }
  if (!(v = Int(s, "intermediate_size")).ok()) return v.status();
  c.intermediate = *v;
  if (!(v = Int(s, "vocab_size")).ok()) return v.status();
  c.vocab = *v;
  absl::StatusOr<double> d = Number(s, "rms_norm_eps");
  if (!d.ok()) return d.status();
  c.rms_eps = static_cast<float>(*d);
  if (rope_theta.has_value()) {
    c.rope_theta = static_cast<float>(*rope_theta);
  } else if (s.fields().contains("rope_theta")) {
    if (!(d = Number(s, "rope_theta")).ok()) return d.status();
    c.rope_theta = static_cast<float>(*d);
  } else {
    c.rope_theta = 10000.0f;
  }
  const std::string dtype = !str("torch_dtype").empty() ? str("torch_dtype") : str("dtype");
  if (dtype == "float16") {
    c.dtype = kernels::KvDtype::kFloat16;
  } else if (dtype == "bfloat16" || dtype.empty()) {
    c.dtype = kernels::KvDtype::kBFloat16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: torch_dtype '", dtype, "' (bfloat16 or float16)"));
  }
  if (absl::Status st = c.Validate(); !st.ok()) return st;
  return c;
}

absl::Status LlamaConfig::Validate() const {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("llama config: ", what));
  };
  // The upper bounds keep every derived size (q_dim, NumParameters) far
  // from overflowing; the largest Llama models are well inside them.
  if (num_layers < 1 || num_layers > 1024) return bad("num_layers out of 1..1024");
  if (head_dim != 64 && head_dim != 128) return bad("head_dim must be 64 or 128");
  if (num_kv_heads < 1 || num_q_heads < num_kv_heads || num_q_heads % num_kv_heads != 0) {
    return bad("num_q_heads must be a positive multiple of num_kv_heads");
  }
  if (num_q_heads > 1024) return bad("num_q_heads out of 1..1024");
  if (hidden < 1 || hidden % 8 != 0 || hidden > (1 << 16)) {
    return bad("hidden must be a positive multiple of 8, at most 65536");
  }
  if (intermediate < 1 || intermediate % 8 != 0 || intermediate > (1 << 20)) {
    return bad("intermediate must be a positive multiple of 8, at most 1048576");
  }
  if (vocab < 1 || vocab > (1 << 24)) return bad("vocab out of 1..16777216");
  if (!(rms_eps > 0) || !(rope_theta > 1)) return bad("rms_eps and rope_theta must be positive");
  return absl::OkStatus();
}

int64_t LlamaConfig::NumParameters() const {
  const int64_t h = hidden;
  const int64_t per_layer = h * (q_dim() + 2 * kv_dim()) + int64_t{q_dim()} * h +
                            3 * h * intermediate + 2 * h;
  return 2 * h * vocab + h + num_layers * per_layer;
}

kernels::KvLayout LlamaConfig::Layout(int tokens_per_chunk) const {
  kernels::KvLayout l;
  l.dtype = dtype;
  l.num_kv_heads = num_kv_heads;
  l.head_dim = head_dim;
  l.tokens_per_chunk = tokens_per_chunk;
  return l;
}

NamespaceSpec LlamaConfig::Namespace(std::string model_id, int tokens_per_chunk) const {
  NamespaceSpec spec;
  spec.model_id = std::move(model_id);
  spec.num_layers = static_cast<uint32_t>(num_layers);
  spec.num_kv_heads = static_cast<uint32_t>(num_kv_heads);
  spec.head_dim = static_cast<uint32_t>(head_dim);
  spec.dtype = dtype == kernels::KvDtype::kBFloat16 ? DType::kBFloat16 : DType::kFloat16;
  spec.tokens_per_chunk = static_cast<uint32_t>(tokens_per_chunk);
  return spec;
}

absl::Status LlamaConfig::CheckNamespace(const NamespaceSpec& spec) const {
  auto mismatch = [&](absl::string_view field, uint64_t ns, uint64_t model) {
    return absl::InvalidArgumentError(absl::StrCat("namespace '", spec.model_id, "' has ", field,
                                                   " ", ns, " but the model has ", model));
  };
  if (spec.num_layers != static_cast<uint32_t>(num_layers)) {
    return mismatch("num_layers", spec.num_layers, num_layers);
  }
  if (spec.num_kv_heads != static_cast<uint32_t>(num_kv_heads)) {
    return mismatch("num_kv_heads", spec.num_kv_heads, num_kv_heads);
  }
  if (spec.head_dim != static_cast<uint32_t>(head_dim)) {
    return mismatch("head_dim", spec.head_dim, head_dim);
  }
  const DType want = dtype == kernels::KvDtype::kBFloat16 ? DType::kBFloat16 : DType::kFloat16;
  if (spec.dtype != want) {
    return absl::InvalidArgumentError(absl::StrCat("namespace '", spec.model_id, "' has dtype ",
                                                   DTypeName(spec.dtype), " but the model has ",
                                                   DTypeName(want)));
  }
  if (spec.tokens_per_chunk < 16 || spec.tokens_per_chunk > 256 ||
      spec.tokens_per_chunk % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace '", spec.model_id, "' has ", spec.tokens_per_chunk,
                     " tokens per chunk; the attention kernels take 16..256, a multiple of 16"));
  }
  return absl::OkStatus();
}

std::string LlamaConfig::DebugString() const {
  return absl::StrCat(num_layers, " layers, hidden ", hidden, ", ", num_q_heads, "/",
                      num_kv_heads, " heads of ", head_dim, ", intermediate ", intermediate,
                      ", vocab ", vocab, ", ",
                      dtype == kernels::KvDtype::kBFloat16 ? "bf16" : "fp16");
}

}  // namespace strata::runtime
