// LlamaConfig: the shape of a Llama-architecture decoder (the model step the
// worker runtime runs around Strata's attention kernels), and the checks that
// tie a model to a namespace before anything moves.
//
// The architecture (Hugging Face LlamaForCausalLM, no biases): token
// embedding; per layer x += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)),
// v_proj(n))) with n = RMSNorm(x), then x += down_proj(silu(gate_proj(n)) *
// up_proj(n)) with n = RMSNorm(x); a final RMSNorm and the LM head. RoPE is
// "rotate half" with inv_freq_i = theta^(-2i/head_dim) and no scaling.
#ifndef STRATA_CLIENT_RUNTIME_LLAMA_CONFIG_H_
#define STRATA_CLIENT_RUNTIME_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention_types.h"
#include "store/common/namespace.h"

namespace strata::runtime {

struct LlamaConfig {
  int num_layers = 0;
  int hidden = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate = 0;
  int vocab = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 500000.0f;
  kernels::KvDtype dtype = kernels::KvDtype::kBFloat16;

  // Llama-3-8B: 32 layers, hidden 4096, 32 query / 8 KV heads of 128,
  // intermediate 14336, vocabulary 128256, theta 500000.
  static LlamaConfig Llama3_8B();
  // A small model of the same architecture for tests: 4 layers, hidden 1024,
  // 8 query / 2 KV heads of 128, intermediate 2816, vocabulary 32000.
  static LlamaConfig Small();
  // A tiny model for CPU tests: 2 layers, hidden 128, 4 query / 2 KV heads
  // of 64, intermediate 256, vocabulary 97, theta 10000.
  static LlamaConfig Tiny();
  // "llama3-8b" or "small"; InvalidArgument otherwise.
  static absl::StatusOr<LlamaConfig> Named(std::string_view name);
  // A Hugging Face config.json (model_type llama; rope_scaling must be
  // absent; torch_dtype bfloat16 or float16). InvalidArgument naming the
  // field that is missing or unsupported.
  static absl::StatusOr<LlamaConfig> FromHfJson(std::string_view json);

  // InvalidArgument naming the first field out of range (head_dim 64 or 128,
  // q heads a multiple of KV heads, hidden = q heads x head_dim, ...).
  absl::Status Validate() const;

  int q_dim() const { return num_q_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  int64_t NumParameters() const;
  // The KV layout of one chunk slice with `tokens_per_chunk` tokens.
  kernels::KvLayout Layout(int tokens_per_chunk) const;
  // The namespace a model's KV lives in: layers, KV heads, head_dim and dtype
  // of this config, `tokens_per_chunk` tokens per chunk.
  NamespaceSpec Namespace(std::string model_id, int tokens_per_chunk) const;
  // InvalidArgument (naming the field) unless `spec` describes this model's
  // KV: same layers, KV heads, head_dim and dtype, and a chunk size the
  // kernels accept (16..256 tokens, a multiple of 16).
  absl::Status CheckNamespace(const NamespaceSpec& spec) const;

  std::string DebugString() const;
};

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_LLAMA_CONFIG_H_
