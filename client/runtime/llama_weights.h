// The weights of a Llama-architecture model (llama_config.h) as views of
// 16-bit values (the config's dtype) in Hugging Face's shapes: projections
// [out_features][in_features], row-major. Read from a safetensors file in
// Hugging Face Llama naming, or drawn from a seed.
#ifndef STRATA_CLIENT_RUNTIME_LLAMA_WEIGHTS_H_
#define STRATA_CLIENT_RUNTIME_LLAMA_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/safetensors.h"

namespace strata::runtime {

struct LlamaWeightViews {
  struct Layer {
    std::span<const uint16_t> attn_norm;  // [hidden]
    std::span<const uint16_t> q, k, v;    // [q_dim | kv_dim | kv_dim][hidden]
    std::span<const uint16_t> o;          // [hidden][q_dim]
    std::span<const uint16_t> mlp_norm;   // [hidden]
    std::span<const uint16_t> gate, up;   // [intermediate][hidden]
    std::span<const uint16_t> down;       // [hidden][intermediate]
  };
  std::span<const uint16_t> embed;       // [vocab][hidden]
  std::vector<Layer> layers;
  std::span<const uint16_t> final_norm;  // [hidden]
  std::span<const uint16_t> lm_head;     // [vocab][hidden] (the embedding when tied)
};

// One tensor of the model: its Hugging Face name, shape, where its view sits
// in LlamaWeightViews, and how it is seeded (llama_seed.h kinds).
struct LlamaTensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int layer = -1;        // -1: not a layer tensor
  int slot = 0;          // embed 0, final_norm 1, lm_head 2; in a layer, Layer order 0..8
  int kind = 0;          // 0 embed, 1 norm, 2 projection, 3 head
  int in_features = 0;
  uint32_t id = 0;       // seeding id
  std::span<const uint16_t>& ViewIn(LlamaWeightViews& views) const;
};
std::vector<LlamaTensorSpec> LlamaTensorSpecs(const LlamaConfig& config);

// Views into `file` (which must outlive them): model.embed_tokens.weight,
// model.layers.{i}.{input_layernorm,post_attention_layernorm}.weight,
// model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
// model.layers.{i}.mlp.{gate,up,down}_proj.weight, model.norm.weight and
// lm_head.weight (absent: tied to the embedding). NotFound naming a missing
// tensor; InvalidArgument for a wrong shape or dtype.
absl::StatusOr<LlamaWeightViews> ViewLlamaWeights(const SafetensorsFile& file,
                                                  const LlamaConfig& config);

// Weights drawn from `seed`: every projection uniform with standard
// deviation 1/sqrt(in_features), the embedding with deviation 1, the LM head
// with deviation 4/sqrt(hidden) (so that the next token is clearly
// preferred), norms 1. Element i of the tensor with id t (its index in the
// order embed, per layer [attn_norm q k v o mlp_norm gate up down],
// final_norm, lm_head) is SeededUniform(seed, t, i) scaled: the same values
// wherever they are drawn (llama_seed.h; the GPU draws them on the device).
struct OwnedLlamaWeights {
  std::vector<std::vector<uint16_t>> storage;
  LlamaWeightViews views;
};
std::unique_ptr<OwnedLlamaWeights> SeededLlamaWeights(const LlamaConfig& config, uint64_t seed);

// Writes `weights` to `path` in Hugging Face naming (lm_head included).
absl::Status WriteLlamaSafetensors(const std::string& path, const LlamaConfig& config,
                                   const LlamaWeightViews& weights);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_WEIGHTS_H_
