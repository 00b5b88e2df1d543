#include "client/runtime/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/attention_reference.h"
#include "store/common/status_macros.h"

namespace strata::runtime {

absl::Status ValidateForward(const LlamaConfig& config, int tokens_per_chunk,
                             const ForwardBatch& batch) {
  const size_t n = batch.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("forward: no new tokens");
  if (batch.kv_slots.size() != n || batch.kv_index.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("forward: ", n, " tokens but ",
                                                   batch.kv_slots.size(), " K/V slots and ",
                                                   batch.kv_index.size(), " indices"));
  }
  if (batch.attention.total_tokens() != static_cast<int>(n)) {
    return absl::InvalidArgumentError(absl::StrCat("forward: the attention batch has ",
                                                   batch.attention.total_tokens(),
                                                   " query rows for ", n, " tokens"));
  }
  for (size_t i = 0; i < n; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= config.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("forward: token ", batch.tokens[i],
                                                     " outside the vocabulary of ", config.vocab));
    }
    if (batch.kv_slots[i] == nullptr || batch.kv_index[i] < 0 ||
        batch.kv_index[i] >= tokens_per_chunk) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: token ", i, " has no K/V slot or an index out of the chunk"));
    }
  }
  switch (batch.attention_kernel) {
    case AttentionKernel::kPrefill:
    case AttentionKernel::kPagedDecode:
    case AttentionKernel::kPrefixAwareDecode:
    case AttentionKernel::kRelayDecode:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "forward: unknown attention kernel ", static_cast<int>(batch.attention_kernel)));
  }
  kernels::PrefillOptions options;
  options.num_q_heads = config.num_q_heads;
  options.rope_theta = config.rope_theta;
  if (absl::Status st =
          kernels::ValidatePrefill(config.Layout(tokens_per_chunk), options, batch.attention);
      !st.ok()) {
    return st;
  }
  if (batch.attention_kernel == AttentionKernel::kPrefill) return absl::OkStatus();
  return ValidateDecodeBatch(batch.attention, tokens_per_chunk);
}

const char* AttentionKernelName(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::kPrefill:
      return "prefill";
    case AttentionKernel::kPagedDecode:
      return "paged";
    case AttentionKernel::kPrefixAwareDecode:
      return "prefix-aware";
    case AttentionKernel::kRelayDecode:
      return "relay";
  }
  return "unknown";
}

absl::Status ValidateDecodeBatch(const kernels::PrefillBatch& batch, int tokens_per_chunk) {
  for (int b = 0; b < batch.batch(); ++b) {
    const int n = batch.query_offsets[b + 1] - batch.query_offsets[b];
    if (n != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "forward: the decode kernels take one new token per sequence; sequence ", b, " has ",
          n));
    }
  }
  if (batch.positions.empty()) return absl::OkStatus();
  for (int b = 0; b < batch.batch(); ++b) {
    for (int e = batch.chunk_offsets[b]; e < batch.chunk_offsets[b + 1]; ++e) {
      const int32_t want = (e - batch.chunk_offsets[b]) * tokens_per_chunk;
      if (batch.positions[e] != want) {
        return absl::InvalidArgumentError(absl::StrCat(
            "forward: the decode kernels take positions 0, 1, 2, ... along each page table; "
            "chunk ",
            e - batch.chunk_offsets[b], " of sequence ", b, " starts at position ",
            batch.positions[e], ", not ", want));
      }
    }
  }
  return absl::OkStatus();
}

int RelayPrefixChunks(const kernels::PrefillBatch& batch, int tokens_per_chunk) {
  const int n = batch.batch();
  if (n < 2) return 0;
  int full = batch.kv_lengths[0] / tokens_per_chunk;
  for (int b = 1; b < n; ++b) full = std::min(full, batch.kv_lengths[b] / tokens_per_chunk);
  for (int c = 0; c < full; ++c) {
    const void* p = batch.chunks[batch.chunk_offsets[0] + c];
    for (int b = 1; b < n; ++b) {
      if (batch.chunks[batch.chunk_offsets[b] + c] != p) return c;
    }
  }
  return full;
}

absl::StatusOr<DecodeStep> BuildDecodeStep(const LlamaConfig& config, int tokens_per_chunk,
                                           const ForwardBatch& batch,
                                           const kernels::PlanOptions& plan_options) {
  if (absl::Status st = ValidateForward(config, tokens_per_chunk, batch); !st.ok()) return st;
  const kernels::PrefillBatch& a = batch.attention;
  const kernels::KvLayout layout = config.Layout(tokens_per_chunk);
  DecodeStep step;
  step.options.num_q_heads = config.num_q_heads;
  step.options.apply_rope = true;
  step.options.rope_theta = config.rope_theta;
  for (int b = 0; b < a.batch(); ++b) step.query_positions.push_back(a.kv_lengths[b] - 1);
  const kernels::PagedBatch paged{a.chunks, a.chunk_offsets, a.kv_lengths};
  absl::StatusOr<kernels::AttentionPlan> plan;
  switch (batch.attention_kernel) {
    case AttentionKernel::kPagedDecode:
      plan = kernels::BuildPagedPlan(layout, step.options, paged, plan_options);
      break;
    case AttentionKernel::kPrefixAwareDecode:
      plan = kernels::BuildPrefixTreePlan(layout, step.options, paged, plan_options);
      break;
    case AttentionKernel::kRelayDecode: {
      const int prefix = RelayPrefixChunks(a, tokens_per_chunk);
      if (prefix == 0) {
        plan = kernels::BuildPagedPlan(layout, step.options, paged, plan_options);
        break;
      }
      step.relay_prefix_chunks = prefix;
      // Each sequence's chunks after the prefix, at positions continuing it.
      std::vector<const void*> chunks;
      std::vector<int32_t> offsets = {0}, lengths;
      for (int b = 0; b < a.batch(); ++b) {
        chunks.insert(chunks.end(), a.chunks.begin() + a.chunk_offsets[b] + prefix,
                      a.chunks.begin() + a.chunk_offsets[b + 1]);
        offsets.push_back(static_cast<int32_t>(chunks.size()));
        lengths.push_back(a.kv_lengths[b] - prefix * tokens_per_chunk);
      }
      plan = kernels::BuildRelayPlan(layout, step.options,
                                     a.chunks.subspan(a.chunk_offsets[0], prefix),
                                     prefix * tokens_per_chunk,
                                     kernels::PagedBatch{chunks, offsets, lengths}, plan_options);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("decode step: attention kernel ", AttentionKernelName(batch.attention_kernel),
                       " is not a decode kernel"));
  }
  if (!plan.ok()) return plan.status();
  step.plan = *std::move(plan);
  return step;
}

absl::StatusOr<SequenceStep> SequenceStep::Make(std::span<std::byte* const> chunk_bases,
                                                int history, int length, int tokens_per_chunk) {
  SequenceStep s;
  RETURN_IF_ERROR(s.Append(chunk_bases, history, length, tokens_per_chunk));
  return s;
}

absl::Status SequenceStep::Append(std::span<std::byte* const> chunk_bases, int history,
                                  int length, int tokens_per_chunk) {
  if (tokens_per_chunk <= 0 || history < 0 || history >= length) {
    return absl::InvalidArgumentError(absl::StrCat("step: history ", history, " of length ", length));
  }
  const size_t chunks = static_cast<size_t>((length + tokens_per_chunk - 1) / tokens_per_chunk);
  if (chunk_bases.size() != chunks) {
    return absl::InvalidArgumentError(absl::StrCat("step: ", chunk_bases.size(), " chunks for ",
                                                   length, " tokens (", chunks, " needed)"));
  }
  if (chunk_offsets.empty()) chunk_offsets.push_back(0);
  if (query_offsets.empty()) query_offsets.push_back(0);
  pages.insert(pages.end(), chunk_bases.begin(), chunk_bases.end());
  chunk_offsets.push_back(static_cast<int32_t>(pages.size()));
  kv_lengths.push_back(length);
  query_offsets.push_back(query_offsets.back() + length - history);
  for (int t = history; t < length; ++t) {
    kv_slots.push_back(chunk_bases[static_cast<size_t>(t / tokens_per_chunk)]);
    kv_index.push_back(t % tokens_per_chunk);
  }
  return absl::OkStatus();
}

ForwardBatch SequenceStep::Batch(std::span<const int32_t> new_tokens) const {
  ForwardBatch b;
  b.tokens = new_tokens;
  b.kv_slots = kv_slots;
  b.kv_index = kv_index;
  b.attention = {pages, {}, chunk_offsets, kv_lengths, query_offsets};
  return b;
}

std::vector<int32_t> ArgmaxRows(std::span<const float> logits, int vocab) {
  std::vector<int32_t> out;
  for (size_t r = 0; r + vocab <= logits.size(); r += static_cast<size_t>(vocab)) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i) {
      if (logits[r + i] > logits[r + best]) best = i;
    }
    out.push_back(best);
  }
  return out;
}

namespace {

class CpuLlama final : public LlamaModel {
 public:
  CpuLlama(const LlamaConfig& config, int tpc, const LlamaWeightViews& w)
      : config_(config), tpc_(tpc), w_(w), layout_(config.Layout(tpc)) {}

  const LlamaConfig& config() const override { return config_; }
  int tokens_per_chunk() const override { return tpc_; }

  absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) override {
    if (absl::Status st = ValidateForward(config_, tpc_, batch); !st.ok()) return st;
    // The decode kernels' plan, once for the step (layer-0 slot bases).
    std::optional<DecodeStep> decode;
    if (batch.attention_kernel != AttentionKernel::kPrefill) {
      absl::StatusOr<DecodeStep> step =
          BuildDecodeStep(config_, tpc_, batch, kernels::PlanOptions());
      if (!step.ok()) return step.status();
      decode = *std::move(step);
    }
    const int n = static_cast<int>(batch.tokens.size());
    const int h = config_.hidden;
    std::vector<float> x(static_cast<size_t>(n) * h);
    for (int t = 0; t < n; ++t) {
      for (int i = 0; i < h; ++i) {
        x[t * h + i] = F(w_.embed[static_cast<size_t>(batch.tokens[t]) * h + i]);
      }
    }
    std::vector<float> normed, q, k, v, attn, o, gate, up, act, down;
    kernels::PrefillOptions options;
    options.num_q_heads = config_.num_q_heads;
    options.rope_theta = config_.rope_theta;
    const size_t slice = layout_.SliceBytes();
    for (int l = 0; l < config_.num_layers; ++l) {
      const LlamaWeightViews::Layer& lw = w_.layers[static_cast<size_t>(l)];
      Norm(x, lw.attn_norm, n, &normed);
      MatMul(normed, lw.q, n, h, config_.q_dim(), &q);
      MatMul(normed, lw.k, n, h, config_.kv_dim(), &k);
      MatMul(normed, lw.v, n, h, config_.kv_dim(), &v);
      WriteKv(batch, l, k, v);
      if (batch.before_attention) {
        if (absl::Status st = batch.before_attention(l); !st.ok()) return st;
      }
      kernels::ReferenceOutput out;
      if (decode.has_value()) {
        if (absl::Status st = DecodeAttention(*decode, l, q, &out); !st.ok()) return st;
      } else {
        std::vector<const void*> pages(batch.attention.chunks.begin(),
                                       batch.attention.chunks.end());
        for (const void*& p : pages) p = static_cast<const std::byte*>(p) + l * slice;
        kernels::PrefillBatch layer_batch = batch.attention;
        layer_batch.chunks = pages;
        std::vector<uint16_t> q16(q.size());
        for (size_t i = 0; i < q.size(); ++i) q16[i] = R16(q[i]);
        if (absl::Status st = kernels::ReferencePrefill(layout_, options, q16, layer_batch, &out);
            !st.ok()) {
          return st;
        }
      }
      attn.resize(out.out.size());
      for (size_t i = 0; i < attn.size(); ++i) attn[i] = Round(static_cast<float>(out.out[i]));
      MatMul(attn, lw.o, n, config_.q_dim(), h, &o);
      for (size_t i = 0; i < x.size(); ++i) x[i] = Round(x[i] + o[i]);
      Norm(x, lw.mlp_norm, n, &normed);
      MatMul(normed, lw.gate, n, h, config_.intermediate, &gate);
      MatMul(normed, lw.up, n, h, config_.intermediate, &up);
      act.resize(gate.size());
      for (size_t i = 0; i < act.size(); ++i) {
        const float g = gate[i];
        act[i] = Round(Round(g / (1.0f + std::exp(-g))) * up[i]);
      }
      MatMul(act, lw.down, n, config_.intermediate, h, &down);
      for (size_t i = 0; i < x.size(); ++i) x[i] = Round(x[i] + down[i]);
    }
    // Rows whose logits are wanted.
    std::vector<int> rows;
    if (batch.all_logits) {
      for (int t = 0; t < n; ++t) rows.push_back(t);
    } else {
      for (int b = 0; b < batch.attention.batch(); ++b) {
        if (batch.attention.query_offsets[b + 1] > batch.attention.query_offsets[b]) {
          rows.push_back(batch.attention.query_offsets[b + 1] - 1);
        }
      }
    }
    std::vector<float> last(rows.size() * static_cast<size_t>(h));
    for (size_t r = 0; r < rows.size(); ++r) {
      std::memcpy(&last[r * h], &x[static_cast<size_t>(rows[r]) * h], sizeof(float) * h);
    }
    Norm(last, w_.final_norm, static_cast<int>(rows.size()), &normed);
    logits->assign(rows.size() * static_cast<size_t>(config_.vocab), 0.0f);
    for (size_t r = 0; r < rows.size(); ++r) {
      for (int o2 = 0; o2 < config_.vocab; ++o2) {
        float acc = 0;
        const uint16_t* wrow = &w_.lm_head[static_cast<size_t>(o2) * h];
        for (int i = 0; i < h; ++i) acc += normed[r * h + i] * F(wrow[i]);
        (*logits)[r * config_.vocab + o2] = acc;
      }
    }
    return absl::OkStatus();
  }

 private:
  float F(uint16_t bits) const { return kernels::ToFloat(config_.dtype, bits); }
  uint16_t R16(float v) const { return kernels::FromFloat(config_.dtype, v); }
  float Round(float v) const { return F(R16(v)); }

  // Layer l's attention through the decode plan, executed on the CPU (the
  // kernels' decomposition: partial states per work item, then the merge, in
  // double). Queries (already on the 16-bit grid) are rotated here at their
  // token's position, in double from the fp32 angle of the convention
  // (kernels/prefill_plan.h), as ReferencePrefill rotates them; the keys are
  // rotated by the plan's execution the same way.
  absl::Status DecodeAttention(const DecodeStep& step, int l, const std::vector<float>& q,
                               kernels::ReferenceOutput* out) const {
    const int d = config_.head_dim;
    std::vector<double> rotated(q.begin(), q.end());
    for (size_t b = 0; b < step.query_positions.size(); ++b) {
      for (int hd = 0; hd < config_.num_q_heads; ++hd) {
        RotateHalf(step.query_positions[b], &rotated[(b * config_.num_q_heads + hd) * d]);
      }
    }
    kernels::AttentionPlan plan = step.plan;
    for (const void*& p : plan.pages) {
      p = static_cast<const std::byte*>(p) + l * layout_.SliceBytes();
    }
    return kernels::ExecutePlanOnCpu(plan, std::span<const double>(rotated), out);
  }

  // x (head_dim values) rotated at `position`: "rotate half", the fp32 angle
  // f = (float) position * inv_freq_i, cos and sin in double.
  void RotateHalf(int32_t position, double* x) const {
    const int d = config_.head_dim;
    for (int i = 0; i < d / 2; ++i) {
      const float f = static_cast<float>(position) *
                      kernels::PrefillRopeInvFreq(config_.rope_theta, i, d);
      const double c = std::cos(static_cast<double>(f));
      const double sn = std::sin(static_cast<double>(f));
      const double x1 = x[i], x2 = x[i + d / 2];
      x[i] = x1 * c - x2 * sn;
      x[i + d / 2] = x2 * c + x1 * sn;
    }
  }

  // out[t] = round(round(x[t] * rsqrt(mean(x[t]^2) + eps)) * w)
  void Norm(const std::vector<float>& x, std::span<const uint16_t> w, int n,
            std::vector<float>* out) const {
    const int h = config_.hidden;
    out->resize(static_cast<size_t>(n) * h);
    for (int t = 0; t < n; ++t) {
      float ss = 0;
      for (int i = 0; i < h; ++i) ss += x[t * h + i] * x[t * h + i];
      const float inv = 1.0f / std::sqrt(ss / static_cast<float>(h) + config_.rms_eps);
      for (int i = 0; i < h; ++i) (*out)[t * h + i] = Round(Round(x[t * h + i] * inv) * F(w[i]));
    }
  }

  // out[t][o] = round(sum_i x[t][i] * w[o][i])
  void MatMul(const std::vector<float>& x, std::span<const uint16_t> w, int n, int in, int outf,
              std::vector<float>* out) const {
    out->resize(static_cast<size_t>(n) * outf);
    std::vector<float> wrow(static_cast<size_t>(in));
    for (int o = 0; o < outf; ++o) {
      for (int i = 0; i < in; ++i) wrow[i] = F(w[static_cast<size_t>(o) * in + i]);
      for (int t = 0; t < n; ++t) {
        float acc = 0;
        for (int i = 0; i < in; ++i) acc += x[static_cast<size_t>(t) * in + i] * wrow[i];
        (*out)[static_cast<size_t>(t) * outf + o] = Round(acc);
      }
    }
  }

  // K/V of each new token into its slot's layer-l slice: [k|v][head][token][d].
  void WriteKv(const ForwardBatch& batch, int l, const std::vector<float>& k,
               const std::vector<float>& v) const {
    const int d = config_.head_dim;
    const size_t half = layout_.HalfElements();
    for (size_t t = 0; t < batch.tokens.size(); ++t) {
      auto* slice = reinterpret_cast<uint16_t*>(batch.kv_slots[t] + l * layout_.SliceBytes());
      for (int hd = 0; hd < config_.num_kv_heads; ++hd) {
        const size_t at = (static_cast<size_t>(hd) * tpc_ + batch.kv_index[t]) * d;
        for (int i = 0; i < d; ++i) {
          slice[at + i] = R16(k[t * config_.kv_dim() + hd * d + i]);
          slice[half + at + i] = R16(v[t * config_.kv_dim() + hd * d + i]);
        }
      }
    }
  }

  const LlamaConfig config_;
  const int tpc_;
  const LlamaWeightViews w_;
  const kernels::KvLayout layout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> CreateCpuLlama(const LlamaConfig& config,
                                                           int tokens_per_chunk,
                                                           const LlamaWeightViews& weights) {
  if (absl::Status st = config.Validate(); !st.ok()) return st;
  if (absl::Status st = config.CheckNamespace(config.Namespace("model", tokens_per_chunk));
      !st.ok()) {
    return st;
  }
  if (weights.layers.size() != static_cast<size_t>(config.num_layers)) {
    return absl::InvalidArgumentError("weights: layer count differs from the config");
  }
  return std::unique_ptr<LlamaModel>(new CpuLlama(config, tokens_per_chunk, weights));
}

}  // namespace strata::runtime
