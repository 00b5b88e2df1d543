// CPU references for the attention kernels: plain C++, double accumulation,
// built and tested on every machine. Pointers in PagedBatch / AttentionPlan
// are HOST pointers here (chunk slices in the layout of attention_types.h).
// Values are 16-bit patterns in the layout's dtype.
//
// Stateless functions; safe for concurrent use.
#ifndef STRATA_KERNELS_ATTENTION_REFERENCE_H_
#define STRATA_KERNELS_ATTENTION_REFERENCE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/attention_plan.h"
#include "kernels/attention_types.h"
#include "kernels/prefill_plan.h"

namespace strata::kernels {

// IEEE binary16 and bfloat16 conversions (round to nearest even).
float HalfToFloat(uint16_t bits);
uint16_t FloatToHalf(float value);
float BFloat16ToFloat(uint16_t bits);
uint16_t FloatToBFloat16(float value);
float ToFloat(KvDtype dtype, uint16_t bits);
uint16_t FromFloat(KvDtype dtype, float value);

// Result of decode attention: out [batch][q_heads][head_dim] and
// lse [batch][q_heads] (base 2), in double.
struct ReferenceOutput {
  std::vector<double> out;
  std::vector<double> lse;
};

// Direct attention: every sequence's query heads over all of its tokens.
// queries: [batch][q_heads][head_dim].
absl::Status ReferenceDecode(const KvLayout& layout,
                             const AttentionOptions& options,
                             std::span<const uint16_t> queries,
                             const PagedBatch& batch, ReferenceOutput* result);

// Direct attention over prefix ++ context[b] (positions continue).
absl::Status ReferenceRelayDecode(const KvLayout& layout,
                                  const AttentionOptions& options,
                                  std::span<const uint16_t> queries,
                                  std::span<const void* const> prefix_chunks,
                                  int prefix_length, const PagedBatch& context,
                                  ReferenceOutput* result);

// Runs a plan's decomposition on the CPU: every item's partial states, then
// the merge, exactly as the GPU does, in double.
absl::Status ExecutePlanOnCpu(const AttentionPlan& plan,
                              std::span<const uint16_t> queries,
                              ReferenceOutput* result);
// The same with queries given in double (e.g. rotated by the caller and not
// rounded to the KV dtype), same shape.
absl::Status ExecutePlanOnCpu(const AttentionPlan& plan,
                              std::span<const double> queries,
                              ReferenceOutput* result);

// Prefill over cached chunks (prefill_plan.h): every new token of every
// sequence over its history and the new tokens up to itself, keys and
// queries rotated at their positions when options.apply_rope (rotation in
// double from the fp32 angle of the convention). queries
// [total_tokens][q_heads][head_dim]; result: out [total_tokens][q_heads]
// [head_dim], lse [total_tokens][q_heads] (base 2). Errors as
// ValidatePrefill, and kInvalidArgument for a wrong queries size.
absl::Status ReferencePrefill(const KvLayout& layout,
                              const PrefillOptions& options,
                              std::span<const uint16_t> queries,
                              const PrefillBatch& batch,
                              ReferenceOutput* result);

// Merges two attention states (v, s) with base-2 log-sum-exps:
//   s = log2(2^s_a + 2^s_b),  v = (2^s_a v_a + 2^s_b v_b) / 2^s.
// A state with s = -inf is empty. REQUIRES equal sizes.
void MergeStateReference(std::span<const double> v_a, double s_a,
                         std::span<const double> v_b, double s_b,
                         std::span<double> v_out, double* s_out);

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_ATTENTION_REFERENCE_H_
