// Shapes and options shared by every attention kernel of Strata.
//
// KV layout (see DESIGN.md): a chunk is [layer][k|v][kv_head][token][head_dim].
// Kernels see one layer slice of each chunk, a "chunk slice": a pointer to
//   K: [kv_head][tokens_per_chunk][head_dim]   at element offset 0
//   V: [kv_head][tokens_per_chunk][head_dim]   at element offset
//      kv_heads * tokens_per_chunk * head_dim
// Queries and outputs are [batch][q_heads][head_dim] (one decode token per
// sequence), in the KV dtype. Log-sum-exp values are float, BASE 2:
//   lse = log2(sum_j 2^(s_j)),  s_j = (q . k_j) * scale * log2(e)
// i.e. lse = ln(sum_j e^(q.k_j * scale)) / ln(2).
#ifndef STRATA_KERNELS_ATTENTION_TYPES_H_
#define STRATA_KERNELS_ATTENTION_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace strata::kernels {

enum class KvDtype : int { kFloat16 = 0, kBFloat16 = 1 };

inline constexpr size_t kKvElementBytes = 2;  // both dtypes are 16-bit

struct KvLayout {
  KvDtype dtype = KvDtype::kFloat16;
  int num_kv_heads = 0;
  int head_dim = 128;          // 64 or 128
  int tokens_per_chunk = 64;   // 16..256, a multiple of 16

  // Elements of one K (or V) half of a chunk slice.
  size_t HalfElements() const {
    return static_cast<size_t>(num_kv_heads) * tokens_per_chunk * head_dim;
  }
  // Bytes of one chunk slice (K and V of one layer).
  size_t SliceBytes() const { return 2 * HalfElements() * kKvElementBytes; }
};

struct AttentionOptions {
  int num_q_heads = 0;        // a multiple of num_kv_heads
  float scale = 0.0f;         // 0 means 1/sqrt(head_dim)
  bool apply_rope = false;    // rotate keys on the fly (keys stored unrotated)
  float rope_theta = 10000.0f;

  float EffectiveScale(int head_dim) const;
};

// RoPE convention (when apply_rope): "rotate half" (GPT-NeoX / Llama in HF).
// For a key at absolute position p and i in [0, head_dim/2):
//   f = (float) p * (float) theta^(-2i/head_dim)
//   k'[i]       = k[i] cos f - k[i + d/2] sin f
//   k'[i + d/2] = k[i + d/2] cos f + k[i] sin f
// Queries are passed already rotated (their position is the caller's).

// A batch of sequences as page tables of chunk-slice pointers (CSR).
// Sequence b uses chunk slices chunks[chunk_offsets[b] .. chunk_offsets[b+1])
// for its first lengths[b] tokens; only its last chunk may be partial.
// Pointers are not dereferenced by planners; kernels read them on the device,
// CPU references on the host.
struct PagedBatch {
  std::span<const void* const> chunks;
  std::span<const int32_t> chunk_offsets;  // batch + 1 entries
  std::span<const int32_t> lengths;        // batch entries

  int batch() const { return static_cast<int>(lengths.size()); }
};

// Checks the layout and options; kInvalidArgument on unsupported values.
absl::Status ValidateShapes(const KvLayout& layout,
                            const AttentionOptions& options);

// Checks the page tables against the layout: offsets monotone, enough chunks
// for every length (and no more than needed), non-null pointers.
// min_length is the smallest length allowed (1 for decode, 0 for relay
// context). kInvalidArgument on any violation.
absl::Status ValidateBatch(const KvLayout& layout, const PagedBatch& batch,
                           int min_length);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_ATTENTION_TYPES_H_
