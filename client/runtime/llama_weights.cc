#include "client/runtime/llama_weights.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/runtime/llama_seed.h"
#include "kernels/attention_reference.h"

namespace strata::runtime {

std::span<const uint16_t>& LlamaTensorSpec::ViewIn(LlamaWeightViews& v) const {
  if (layer < 0) return slot == 0 ? v.embed : slot == 1 ? v.final_norm : v.lm_head;
  LlamaWeightViews::Layer& l = v.layers[static_cast<size_t>(layer)];
  std::span<const uint16_t>* fields[] = {&l.attn_norm, &l.q,        &l.k,  &l.v,   &l.o,
                                         &l.mlp_norm,  &l.gate, &l.up, &l.down};
  return *fields[slot];
}

std::vector<LlamaTensorSpec> LlamaTensorSpecs(const LlamaConfig& c) {
  std::vector<LlamaTensorSpec> specs;
  uint32_t id = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape, int layer, int slot, int kind,
                 int in) {
    specs.push_back({std::move(name), std::move(shape), layer, slot, kind, in, id++});
  };
  add("model.embed_tokens.weight", {c.vocab, c.hidden}, -1, 0, 0, c.hidden);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", {c.hidden}, i, 0, 1, c.hidden);
    add(p + "self_attn.q_proj.weight", {c.q_dim(), c.hidden}, i, 1, 2, c.hidden);
    add(p + "self_attn.k_proj.weight", {c.kv_dim(), c.hidden}, i, 2, 2, c.hidden);
    add(p + "self_attn.v_proj.weight", {c.kv_dim(), c.hidden}, i, 3, 2, c.hidden);
    add(p + "self_attn.o_proj.weight", {c.hidden, c.q_dim()}, i, 4, 2, c.q_dim());
    add(p + "post_attention_layernorm.weight", {c.hidden}, i, 5, 1, c.hidden);
    add(p + "mlp.gate_proj.weight", {c.intermediate, c.hidden}, i, 6, 2, c.hidden);
    add(p + "mlp.up_proj.weight", {c.intermediate, c.hidden}, i, 7, 2, c.hidden);
    add(p + "mlp.down_proj.weight", {c.hidden, c.intermediate}, i, 8, 2, c.intermediate);
  }
  add("model.norm.weight", {c.hidden}, -1, 1, 1, c.hidden);
  add("lm_head.weight", {c.vocab, c.hidden}, -1, 2, 3, c.hidden);
  return specs;
}

namespace {
const char* DtypeName(const LlamaConfig& c) {
  return c.dtype == kernels::KvDtype::kBFloat16 ? "BF16" : "F16";
}
}  // namespace

absl::StatusOr<LlamaWeightViews> ViewLlamaWeights(const SafetensorsFile& file,
                                                  const LlamaConfig& config) {
  if (absl::Status st = config.Validate(); !st.ok()) return st;
  LlamaWeightViews views;
  views.layers.resize(static_cast<size_t>(config.num_layers));
  for (const LlamaTensorSpec& spec : LlamaTensorSpecs(config)) {
    absl::StatusOr<TensorView> t = file.Get(spec.name, DtypeName(config), spec.shape);
    if (!t.ok() && absl::IsNotFound(t.status()) && spec.name == "lm_head.weight") {
      views.lm_head = views.embed;  // tie_word_embeddings
      continue;
    }
    if (!t.ok()) return t.status();
    spec.ViewIn(views) = std::span<const uint16_t>(
        reinterpret_cast<const uint16_t*>(t->bytes.data()), t->bytes.size() / 2);
  }
  return views;
}

std::unique_ptr<OwnedLlamaWeights> SeededLlamaWeights(const LlamaConfig& config, uint64_t seed) {
  auto w = std::make_unique<OwnedLlamaWeights>();
  w->views.layers.resize(static_cast<size_t>(config.num_layers));
  for (const LlamaTensorSpec& spec : LlamaTensorSpecs(config)) {
    uint64_t n = 1;
    for (int64_t d : spec.shape) n *= static_cast<uint64_t>(d);
    std::vector<uint16_t> values(n);
    for (uint64_t i = 0; i < n; ++i) {
      values[i] = kernels::FromFloat(
          config.dtype, SeededValue(seed, spec.id, i, spec.kind, spec.in_features, config.hidden));
    }
    spec.ViewIn(w->views) = std::span<const uint16_t>(values);
    w->storage.push_back(std::move(values));
  }
  return w;
}

absl::Status WriteLlamaSafetensors(const std::string& path, const LlamaConfig& config,
                                   const LlamaWeightViews& weights) {
  std::map<std::string, TensorView> tensors;
  LlamaWeightViews copy = weights;
  for (const LlamaTensorSpec& spec : LlamaTensorSpecs(config)) {
    std::span<const uint16_t> v = spec.ViewIn(copy);
    tensors[spec.name] = TensorView{DtypeName(config), spec.shape, std::as_bytes(v)};
  }
  return WriteSafetensors(path, tensors);
}

}  // namespace strata::runtime
