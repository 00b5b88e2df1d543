#include "kernels/attention_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace strata::kernels {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One KV token: its chunk slice, offset in the chunk, absolute position.
struct TokenRef {
  const void* chunk;
  int offset;
  int position;
};

// Partial attention of one query vector over tokens of one KV head.
// Returns the normalised output in *out and the base-2 lse.
double Attend(const KvLayout& layout, const AttentionOptions& options,
              const std::vector<double>& q, int kv_head,
              const std::vector<TokenRef>& tokens, std::vector<double>* out) {
  const int d = layout.head_dim;
  const double scale_log2 =
      static_cast<double>(options.EffectiveScale(d)) / std::log(2.0);
  std::vector<double> scores(tokens.size());
  std::vector<double> key(d);
  double m = kNegInf;
  for (size_t j = 0; j < tokens.size(); ++j) {
    const uint16_t* k = static_cast<const uint16_t*>(tokens[j].chunk) +
                        (static_cast<size_t>(kv_head) * layout.tokens_per_chunk +
                         tokens[j].offset) * d;
    for (int i = 0; i < d; ++i) key[i] = ToFloat(layout.dtype, k[i]);
    if (options.apply_rope) {
      for (int i = 0; i < d / 2; ++i) {
        const float inv_freq = std::pow(
            options.rope_theta, -2.0f * static_cast<float>(i) / d);
        const double f = static_cast<float>(tokens[j].position) * inv_freq;
        const double x1 = key[i], x2 = key[i + d / 2];
        key[i] = x1 * std::cos(f) - x2 * std::sin(f);
        key[i + d / 2] = x2 * std::cos(f) + x1 * std::sin(f);
      }
    }
    double dot = 0;
    for (int i = 0; i < d; ++i) dot += q[i] * key[i];
    scores[j] = dot * scale_log2;
    m = std::max(m, scores[j]);
  }
  out->assign(d, 0.0);
  if (tokens.empty()) return kNegInf;
  double sum = 0;
  for (size_t j = 0; j < tokens.size(); ++j) {
    const double p = std::exp2(scores[j] - m);
    sum += p;
    const uint16_t* v = static_cast<const uint16_t*>(tokens[j].chunk) +
                        layout.HalfElements() +
                        (static_cast<size_t>(kv_head) * layout.tokens_per_chunk +
                         tokens[j].offset) * d;
    for (int i = 0; i < d; ++i) (*out)[i] += p * ToFloat(layout.dtype, v[i]);
  }
  for (int i = 0; i < d; ++i) (*out)[i] /= sum;
  return m + std::log2(sum);
}

void AppendTokens(const void* const* chunks, int length, int tpc,
                  int first_position, std::vector<TokenRef>* tokens) {
  for (int t = 0; t < length; ++t) {
    tokens->push_back(TokenRef{chunks[t / tpc], t % tpc, first_position + t});
  }
}

std::vector<double> LoadQuery(const KvLayout& layout,
                              const AttentionOptions& options,
                              std::span<const uint16_t> queries, int seq,
                              int q_head) {
  const int d = layout.head_dim;
  std::vector<double> q(d);
  const size_t base =
      (static_cast<size_t>(seq) * options.num_q_heads + q_head) * d;
  for (int i = 0; i < d; ++i) q[i] = ToFloat(layout.dtype, queries[base + i]);
  return q;
}

template <typename T>
absl::Status CheckQueries(const KvLayout& layout,
                          const AttentionOptions& options, int batch,
                          std::span<const T> queries) {
  const size_t want =
      static_cast<size_t>(batch) * options.num_q_heads * layout.head_dim;
  if (queries.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queries have ", queries.size(), " elements, expected ", want));
  }
  return absl::OkStatus();
}

// Direct attention of every (sequence, q head) over token lists.
void DirectDecode(const KvLayout& layout, const AttentionOptions& options,
                  std::span<const uint16_t> queries,
                  const std::vector<std::vector<TokenRef>>& seq_tokens,
                  ReferenceOutput* result) {
  const int d = layout.head_dim;
  const int hq = options.num_q_heads;
  const int group = hq / layout.num_kv_heads;
  const int batch = static_cast<int>(seq_tokens.size());
  result->out.assign(static_cast<size_t>(batch) * hq * d, 0.0);
  result->lse.assign(static_cast<size_t>(batch) * hq, 0.0);
  std::vector<double> o;
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < hq; ++h) {
      const std::vector<double> q = LoadQuery(layout, options, queries, b, h);
      const double lse = Attend(layout, options, q, h / group, seq_tokens[b], &o);
      std::copy(o.begin(), o.end(),
                result->out.begin() + (static_cast<size_t>(b) * hq + h) * d);
      result->lse[static_cast<size_t>(b) * hq + h] = lse;
    }
  }
}

}  // namespace

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = (bits >> 15) & 1;
  const int exp = (bits >> 10) & 0x1f;
  const uint32_t mant = bits & 0x3ff;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? std::numeric_limits<float>::quiet_NaN()
             : std::numeric_limits<float>::infinity();
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  }
  return sign ? -v : v;
}

uint16_t FloatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  if (std::isnan(value)) return sign | 0x7e00;
  const float a = std::fabs(value);
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {
    // Subnormal: multiples of 2^-24, round to nearest even.
    const float q = std::nearbyint(a * std::ldexp(1.0f, 24));
    return sign | static_cast<uint16_t>(q);
  }
  int e;
  const float f = std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  // 11 significant bits: mantissa = f * 2^11 in [1024, 2048).
  float m = std::nearbyint(f * 2048.0f);
  if (m == 2048.0f) {
    m = 1024.0f;
    ++e;
  }
  const int biased = e - 1 + 15;
  if (biased >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>((biased << 10) |
                                      (static_cast<uint32_t>(m) - 1024));
}

float BFloat16ToFloat(uint16_t bits) {
  const uint32_t x = static_cast<uint32_t>(bits) << 16;
  float v;
  std::memcpy(&v, &x, 4);
  return v;
}

uint16_t FloatToBFloat16(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  if (std::isnan(value)) return static_cast<uint16_t>((x >> 16) | 0x40);
  const uint32_t rounding = 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

float ToFloat(KvDtype dtype, uint16_t bits) {
  return dtype == KvDtype::kFloat16 ? HalfToFloat(bits) : BFloat16ToFloat(bits);
}

uint16_t FromFloat(KvDtype dtype, float value) {
  return dtype == KvDtype::kFloat16 ? FloatToHalf(value)
                                    : FloatToBFloat16(value);
}

void MergeStateReference(std::span<const double> v_a, double s_a,
                         std::span<const double> v_b, double s_b,
                         std::span<double> v_out, double* s_out) {
  const double m = std::max(s_a, s_b);
  if (m == kNegInf) {
    std::fill(v_out.begin(), v_out.end(), 0.0);
    *s_out = kNegInf;
    return;
  }
  const double wa = std::exp2(s_a - m);
  const double wb = std::exp2(s_b - m);
  for (size_t i = 0; i < v_out.size(); ++i) {
    v_out[i] = (wa * v_a[i] + wb * v_b[i]) / (wa + wb);
  }
  *s_out = m + std::log2(wa + wb);
}

absl::Status ReferenceDecode(const KvLayout& layout,
                             const AttentionOptions& options,
                             std::span<const uint16_t> queries,
                             const PagedBatch& batch, ReferenceOutput* result) {
  absl::Status s = ValidateShapes(layout, options);
  if (!s.ok()) return s;
  s = ValidateBatch(layout, batch, 1);
  if (!s.ok()) return s;
  s = CheckQueries(layout, options, batch.batch(), queries);
  if (!s.ok()) return s;
  std::vector<std::vector<TokenRef>> tokens(batch.batch());
  for (int b = 0; b < batch.batch(); ++b) {
    AppendTokens(batch.chunks.data() + batch.chunk_offsets[b], batch.lengths[b],
                 layout.tokens_per_chunk, 0, &tokens[b]);
  }
  DirectDecode(layout, options, queries, tokens, result);
  return absl::OkStatus();
}

absl::Status ReferenceRelayDecode(const KvLayout& layout,
                                  const AttentionOptions& options,
                                  std::span<const uint16_t> queries,
                                  std::span<const void* const> prefix_chunks,
                                  int prefix_length, const PagedBatch& context,
                                  ReferenceOutput* result) {
  absl::Status s = ValidateShapes(layout, options);
  if (!s.ok()) return s;
  s = ValidateBatch(layout, context, 0);
  if (!s.ok()) return s;
  s = CheckQueries(layout, options, context.batch(), queries);
  if (!s.ok()) return s;
  const int tpc = layout.tokens_per_chunk;
  if (prefix_length <= 0 ||
      static_cast<int64_t>(prefix_chunks.size()) !=
          (prefix_length + tpc - 1) / tpc) {
    return absl::InvalidArgumentError("prefix chunks do not match its length");
  }
  std::vector<std::vector<TokenRef>> tokens(context.batch());
  for (int b = 0; b < context.batch(); ++b) {
    AppendTokens(prefix_chunks.data(), prefix_length, tpc, 0, &tokens[b]);
    AppendTokens(context.chunks.data() + context.chunk_offsets[b],
                 context.lengths[b], tpc, prefix_length, &tokens[b]);
  }
  DirectDecode(layout, options, queries, tokens, result);
  return absl::OkStatus();
}

absl::Status ExecutePlanOnCpu(const AttentionPlan& plan,
                              std::span<const uint16_t> queries,
                              ReferenceOutput* result) {
  absl::Status s = CheckQueries(plan.layout, plan.options, plan.batch, queries);
  if (!s.ok()) return s;
  std::vector<double> q(queries.size());
  for (size_t i = 0; i < q.size(); ++i) q[i] = ToFloat(plan.layout.dtype, queries[i]);
  return ExecutePlanOnCpu(plan, std::span<const double>(q), result);
}

absl::Status ExecutePlanOnCpu(const AttentionPlan& plan,
                              std::span<const double> queries,
                              ReferenceOutput* result) {
  const KvLayout& layout = plan.layout;
  const AttentionOptions& options = plan.options;
  absl::Status s = CheckQueries(layout, options, plan.batch, queries);
  if (!s.ok()) return s;
  const int d = layout.head_dim;
  const int hq = options.num_q_heads;
  const int group = plan.group();
  const int tpc = layout.tokens_per_chunk;
  std::vector<double> partial_o(static_cast<size_t>(plan.num_slots) * d,
                                std::numeric_limits<double>::quiet_NaN());
  std::vector<double> partial_lse(plan.num_slots,
                                  std::numeric_limits<double>::quiet_NaN());
  std::vector<double> o;
  // Phase 1: partial states of every item (chunk-first and sequence-first).
  for (const WorkItem& item : plan.items) {
    std::vector<TokenRef> tokens;
    AppendTokens(plan.pages.data() + item.page_begin, item.num_tokens, tpc,
                 item.position, &tokens);
    for (int kvh = 0; kvh < layout.num_kv_heads; ++kvh) {
      for (int r = item.row_begin; r < item.row_begin + item.num_rows; ++r) {
        const int local = r / group;
        const int seq = plan.seq_ids[item.seq_begin + local];
        const int qh = kvh * group + r % group;
        const size_t q0 = (static_cast<size_t>(seq) * hq + qh) * d;
        const std::vector<double> q(queries.begin() + q0, queries.begin() + q0 + d);
        const double lse = Attend(layout, options, q, kvh, tokens, &o);
        const size_t slot = static_cast<size_t>(item.slot_base) + local * hq + qh;
        std::copy(o.begin(), o.end(), partial_o.begin() + slot * d);
        partial_lse[slot] = lse;
      }
    }
  }
  // Phase 2: merge the partial states of each (sequence, q head).
  result->out.assign(static_cast<size_t>(plan.batch) * hq * d, 0.0);
  result->lse.assign(static_cast<size_t>(plan.batch) * hq, kNegInf);
  std::vector<double> merged(d);
  for (int b = 0; b < plan.batch; ++b) {
    for (int h = 0; h < hq; ++h) {
      std::span<double> out(result->out.data() + (static_cast<size_t>(b) * hq + h) * d, d);
      double lse = kNegInf;
      for (int k = plan.merge_offsets[b]; k < plan.merge_offsets[b + 1]; ++k) {
        const size_t slot = static_cast<size_t>(plan.merge_slots[k]) + h;
        MergeStateReference(out, lse,
                            std::span<const double>(partial_o.data() + slot * d, d),
                            partial_lse[slot], merged, &lse);
        std::copy(merged.begin(), merged.end(), out.begin());
      }
      result->lse[static_cast<size_t>(b) * hq + h] = lse;
    }
  }
  return absl::OkStatus();
}

namespace {

// Rotates x (head_dim values) at `position`, in double from the fp32 angle.
void RotatePrefill(const PrefillOptions& options, int d, int32_t position,
                   double* x) {
  for (int i = 0; i < d / 2; ++i) {
    const float f =
        static_cast<float>(position) * PrefillRopeInvFreq(options.rope_theta, i, d);
    const double c = std::cos(static_cast<double>(f));
    const double sn = std::sin(static_cast<double>(f));
    const double x1 = x[i], x2 = x[i + d / 2];
    x[i] = x1 * c - x2 * sn;
    x[i + d / 2] = x2 * c + x1 * sn;
  }
}

}  // namespace

absl::Status ReferencePrefill(const KvLayout& layout,
                              const PrefillOptions& options,
                              std::span<const uint16_t> queries,
                              const PrefillBatch& batch,
                              ReferenceOutput* result) {
  absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(layout, options, batch);
  if (!plan.ok()) return plan.status();
  const int d = layout.head_dim;
  const int hq = options.num_q_heads;
  const int hkv = layout.num_kv_heads;
  const int group = hq / hkv;
  const int tpc = layout.tokens_per_chunk;
  const size_t want = static_cast<size_t>(plan->total_tokens) * hq * d;
  if (queries.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queries have ", queries.size(), " elements, expected ", want));
  }
  const double scale_log2 =
      static_cast<double>(options.EffectiveScale(d)) / std::log(2.0);
  result->out.assign(want, 0.0);
  result->lse.assign(static_cast<size_t>(plan->total_tokens) * hq, kNegInf);
  for (int b = 0; b < plan->batch; ++b) {
    const int len = batch.kv_lengths[b];
    const int q0 = batch.query_offsets[b];
    const int num_new = batch.query_offsets[b + 1] - q0;
    if (num_new == 0) continue;
    const int history = len - num_new;
    const int e0 = batch.chunk_offsets[b];
    // Keys (rotated) and values of every KV head, in double.
    std::vector<double> keys(static_cast<size_t>(hkv) * len * d);
    std::vector<double> values(keys.size());
    std::vector<int32_t> pos(len);
    for (int t = 0; t < len; ++t) {
      const int e = e0 + t / tpc;
      pos[t] = plan->positions[e] + t % tpc;
      const uint16_t* slice = static_cast<const uint16_t*>(batch.chunks[e]);
      for (int h = 0; h < hkv; ++h) {
        const size_t src = (static_cast<size_t>(h) * tpc + t % tpc) * d;
        double* k = &keys[(static_cast<size_t>(h) * len + t) * d];
        double* v = &values[(static_cast<size_t>(h) * len + t) * d];
        for (int i = 0; i < d; ++i) {
          k[i] = ToFloat(layout.dtype, slice[src + i]);
          v[i] = ToFloat(layout.dtype, slice[layout.HalfElements() + src + i]);
        }
        if (options.apply_rope) RotatePrefill(options, d, pos[t], k);
      }
    }
    std::vector<double> q(d), scores(len);
    for (int i = 0; i < num_new; ++i) {
      const int visible = history + i + 1;
      for (int h = 0; h < hq; ++h) {
        const size_t row = static_cast<size_t>(q0 + i) * hq + h;
        for (int x = 0; x < d; ++x) q[x] = ToFloat(layout.dtype, queries[row * d + x]);
        if (options.apply_rope) RotatePrefill(options, d, pos[history + i], q.data());
        const int kvh = h / group;
        double m = kNegInf;
        for (int t = 0; t < visible; ++t) {
          const double* k = &keys[(static_cast<size_t>(kvh) * len + t) * d];
          double dot = 0;
          for (int x = 0; x < d; ++x) dot += q[x] * k[x];
          scores[t] = dot * scale_log2;
          m = std::max(m, scores[t]);
        }
        double sum = 0;
        double* out = &result->out[row * d];
        for (int t = 0; t < visible; ++t) {
          const double p = std::exp2(scores[t] - m);
          sum += p;
          const double* v = &values[(static_cast<size_t>(kvh) * len + t) * d];
          for (int x = 0; x < d; ++x) out[x] += p * v[x];
        }
        for (int x = 0; x < d; ++x) out[x] /= sum;
        result->lse[row] = m + std::log2(sum);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels
