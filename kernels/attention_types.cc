#include "kernels/attention_types.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace strata::kernels {

float AttentionOptions::EffectiveScale(int head_dim) const {
  if (scale != 0.0f) return scale;
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

absl::Status ValidateShapes(const KvLayout& layout,
                            const AttentionOptions& options) {
  if (layout.dtype != KvDtype::kFloat16 && layout.dtype != KvDtype::kBFloat16) {
    return absl::InvalidArgumentError("dtype must be fp16 or bf16");
  }
  if (layout.head_dim != 64 && layout.head_dim != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must be 64 or 128, got ", layout.head_dim));
  }
  if (layout.tokens_per_chunk < 16 || layout.tokens_per_chunk > 256 ||
      layout.tokens_per_chunk % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens_per_chunk must be a multiple of 16 in [16, 256], "
                     "got ", layout.tokens_per_chunk));
  }
  if (layout.num_kv_heads <= 0) {
    return absl::InvalidArgumentError("num_kv_heads must be positive");
  }
  if (options.num_q_heads <= 0 ||
      options.num_q_heads % layout.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_q_heads (", options.num_q_heads,
        ") must be a positive multiple of num_kv_heads (", layout.num_kv_heads,
        ")"));
  }
  if (!(options.scale >= 0.0f) || std::isinf(options.scale)) {
    return absl::InvalidArgumentError("scale must be finite and >= 0");
  }
  if (options.apply_rope && !(options.rope_theta > 1.0f)) {
    return absl::InvalidArgumentError("rope_theta must be > 1");
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const KvLayout& layout, const PagedBatch& batch,
                           int min_length) {
  const int b = batch.batch();
  if (b <= 0) return absl::InvalidArgumentError("empty batch");
  if (batch.chunk_offsets.size() != static_cast<size_t>(b) + 1) {
    return absl::InvalidArgumentError("chunk_offsets must have batch+1 entries");
  }
  if (batch.chunk_offsets[0] != 0 ||
      batch.chunk_offsets[b] != static_cast<int32_t>(batch.chunks.size())) {
    return absl::InvalidArgumentError(
        "chunk_offsets must start at 0 and end at chunks.size()");
  }
  for (int i = 0; i < b; ++i) {
    const int32_t len = batch.lengths[i];
    if (len < min_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " has length ", len, " < ", min_length));
    }
    const int32_t n = batch.chunk_offsets[i + 1] - batch.chunk_offsets[i];
    const int32_t need =
        (len + layout.tokens_per_chunk - 1) / layout.tokens_per_chunk;
    if (n != need) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " of length ", len, " needs ", need,
                       " chunks, page table has ", n));
    }
  }
  for (const void* p : batch.chunks) {
    if (p == nullptr) return absl::InvalidArgumentError("null chunk pointer");
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels
