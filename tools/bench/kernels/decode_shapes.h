// The decode benchmark's two shapes, by name: mha_fp16 (32 query / 32 KV
// heads) and gqa_bf16 (Llama-3-8B: 32 query / 8 KV heads), d128, 64-token
// chunks. Shared by attention_bench (GPU) and plan_stats (CPU).
#ifndef STRATA_TOOLS_BENCH_KERNELS_DECODE_SHAPES_H_
#define STRATA_TOOLS_BENCH_KERNELS_DECODE_SHAPES_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/attention_plan.h"

namespace strata::bench {

struct Shape {
  std::string name;
  kernels::KvLayout layout;
  kernels::AttentionOptions options;
};

// Exits with status 2 for an unknown name.
inline Shape ShapeByName(const std::string& name) {
  Shape s;
  s.name = name;
  s.layout.head_dim = 128;
  s.layout.tokens_per_chunk = 64;
  s.options.num_q_heads = 32;
  if (name == "mha_fp16") {
    s.layout.dtype = kernels::KvDtype::kFloat16;
    s.layout.num_kv_heads = 32;
  } else if (name == "gqa_bf16") {
    s.layout.dtype = kernels::KvDtype::kBFloat16;
    s.layout.num_kv_heads = 8;
  } else {
    std::fprintf(stderr, "unknown shape %s\n", name.c_str());
    std::exit(2);
  }
  return s;
}

}  // namespace strata::bench

#endif  // STRATA_TOOLS_BENCH_KERNELS_DECODE_SHAPES_H_
