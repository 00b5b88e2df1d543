#include "kernels/attention.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention_launch.h"
#include "kernels/prefill_launch.h"
#include "kernels/prefill_plan.h"
#include "kernels/workspace_upload.h"

namespace strata::kernels {
namespace {

using internal::Aligned16;
using internal::AlignUp;
using internal::Put;

// Byte offsets of the plan's arrays inside the workspace.
struct WorkspaceLayout {
  size_t pages, items, seq_ids, merge_offsets, merge_slots, merge_arrivals, inv_freq,
      metadata_end;
  size_t arrivals, partial_lse, partial_o, rope_table, total;
  int32_t rope_base = 0, rope_rows = 0;  // rope_rows == 0: no table
};

WorkspaceLayout LayoutFor(const AttentionPlan& plan) {
  WorkspaceLayout w;
  size_t off = 0;
  w.pages = off;
  off = AlignUp(off + plan.pages.size() * sizeof(void*));
  w.items = off;
  off = AlignUp(off + plan.items.size() * sizeof(WorkItem));
  w.seq_ids = off;
  off = AlignUp(off + plan.seq_ids.size() * sizeof(int32_t));
  w.merge_offsets = off;
  off = AlignUp(off + plan.merge_offsets.size() * sizeof(int32_t));
  w.merge_slots = off;
  off = AlignUp(off + plan.merge_slots.size() * sizeof(int32_t));
  w.merge_arrivals = off;
  off = AlignUp(off + plan.merge_arrivals.size() * sizeof(int32_t));
  w.inv_freq = off;
  if (plan.options.apply_rope) {
    off = AlignUp(off + static_cast<size_t>(plan.layout.head_dim / 2) * sizeof(float));
  }
  w.metadata_end = off;
  w.arrivals = off;
  if (plan.fused_merge) {
    off = AlignUp(off + static_cast<size_t>(plan.batch) * plan.layout.num_kv_heads *
                            sizeof(int32_t));
  }
  w.partial_lse = off;
  off = AlignUp(off + static_cast<size_t>(plan.num_slots) * sizeof(float));
  w.partial_o = off;
  off = AlignUp(off + static_cast<size_t>(plan.num_slots) * plan.layout.head_dim *
                          sizeof(float));
  w.rope_table = off;
  if (plan.options.apply_rope && !plan.items.empty()) {
    // Every position a tile's rows may have: [position, position + tokens).
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (const WorkItem& it : plan.items) {
      lo = std::min<int64_t>(lo, it.position);
      hi = std::max<int64_t>(hi, int64_t{it.position} + std::max(it.num_tokens, 1) - 1);
    }
    const int64_t rows = hi - lo + 1;
    const size_t bytes = static_cast<size_t>(rows) * (plan.layout.head_dim / 2) * 8;
    if (lo >= 0 && bytes <= kMaxDecodeRopeTableBytes) {
      w.rope_base = static_cast<int32_t>(lo);
      w.rope_rows = static_cast<int32_t>(rows);
      off = AlignUp(off + bytes);
    }
  }
  w.total = off;
  return w;
}

absl::Status RunPlan(const absl::StatusOr<AttentionPlan>& plan, const void* queries,
                     void* out, float* lse, void* workspace, size_t workspace_bytes,
                     cudaStream_t stream) {
  if (!plan.ok()) return plan.status();
  absl::StatusOr<DevicePlan> dev = UploadPlan(*plan, workspace, workspace_bytes, stream);
  if (!dev.ok()) return dev.status();
  return RunAttention(*dev, queries, out, lse, stream);
}

// Plan options for the current device: its multiprocessor count (the
// default of 132 where it cannot be read; a launch on the device then fails
// with the real error).
PlanOptions DevicePlanOptions() {
  PlanOptions po;
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess &&
      sms > 0) {
    po.num_sms = sms;
  } else {
    (void)cudaGetLastError();
  }
  return po;
}

}  // namespace

size_t PlanWorkspaceBytes(const AttentionPlan& plan) { return LayoutFor(plan).total; }

absl::StatusOr<DevicePlan> UploadPlan(const AttentionPlan& plan, void* workspace,
                                      size_t workspace_bytes, cudaStream_t stream) {
  const WorkspaceLayout w = LayoutFor(plan);
  if (absl::Status s = internal::CheckUpload(workspace, workspace_bytes, w.total, plan.pages);
      !s.ok()) {
    return s;
  }
  std::vector<char> host(w.metadata_end, 0);
  Put(host, w.pages, plan.pages);
  Put(host, w.items, plan.items);
  Put(host, w.seq_ids, plan.seq_ids);
  Put(host, w.merge_offsets, plan.merge_offsets);
  Put(host, w.merge_slots, plan.merge_slots);
  Put(host, w.merge_arrivals, plan.merge_arrivals);
  if (plan.options.apply_rope) {
    std::vector<float> inv_freq(plan.layout.head_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = PrefillRopeInvFreq(plan.options.rope_theta, static_cast<int>(i),
                                       plan.layout.head_dim);
    }
    Put(host, w.inv_freq, inv_freq);
  }
  absl::Status s = CudaStatus(
      cudaMemcpyAsync(workspace, host.data(), host.size(), cudaMemcpyHostToDevice, stream),
      "upload plan");
  if (!s.ok()) return s;
  char* base = static_cast<char*>(workspace);
  if (plan.fused_merge) {
    s = CudaStatus(cudaMemsetAsync(base + w.arrivals, 0, w.partial_lse - w.arrivals, stream),
                   "zero arrival counters");
    if (!s.ok()) return s;
  }
  DevicePlan d;
  d.layout = plan.layout;
  d.options = plan.options;
  d.batch = plan.batch;
  d.num_items = static_cast<int>(plan.items.size());
  d.pages = reinterpret_cast<const void* const*>(base + w.pages);
  d.items = reinterpret_cast<const WorkItem*>(base + w.items);
  d.seq_ids = reinterpret_cast<const int32_t*>(base + w.seq_ids);
  d.merge_offsets = reinterpret_cast<const int32_t*>(base + w.merge_offsets);
  d.merge_slots = reinterpret_cast<const int32_t*>(base + w.merge_slots);
  d.partial_lse = reinterpret_cast<float*>(base + w.partial_lse);
  d.partial_o = reinterpret_cast<float*>(base + w.partial_o);
  d.fused_merge = plan.fused_merge;
  d.wgmma_min_rows = plan.wgmma_min_rows;
  if (plan.options.apply_rope) {
    d.inv_freq = reinterpret_cast<const float*>(base + w.inv_freq);
    if (w.rope_rows > 0) {
      float2* table = reinterpret_cast<float2*>(base + w.rope_table);
      s = CudaStatus(LaunchPrefillRopeTable(table, d.inv_freq, plan.layout.head_dim / 2,
                                            w.rope_base, w.rope_rows, stream),
                     "fill the RoPE table");
      if (!s.ok()) return s;
      d.rope_table = table;
      d.rope_table_base = w.rope_base;
    }
  }
  if (plan.fused_merge) {
    d.arrivals = reinterpret_cast<int32_t*>(base + w.arrivals);
    d.merge_arrivals = reinterpret_cast<const int32_t*>(base + w.merge_arrivals);
  }
  return d;
}

namespace {

// Launches the partial-attention kernel (which also merges when the plan
// fuses the merge).
absl::Status LaunchPartial(const DevicePlan& plan, const void* queries, void* out,
                           float* lse, cudaStream_t stream) {
  absl::Status s = ValidateShapes(plan.layout, plan.options);
  if (!s.ok()) return s;
  if (plan.items == nullptr || plan.num_items <= 0 || plan.batch <= 0) {
    return absl::InvalidArgumentError("empty or unuploaded plan");
  }
  if (plan.options.apply_rope && plan.inv_freq == nullptr) {
    return absl::InvalidArgumentError("apply_rope needs the plan's RoPE frequencies (UploadPlan)");
  }
  if (queries == nullptr || out == nullptr || !Aligned16(queries) || !Aligned16(out)) {
    return absl::InvalidArgumentError("queries and out must be non-null and 16-byte aligned");
  }
  PartialAttentionArgs a{};
  a.queries = queries;
  a.pages = plan.pages;
  a.items = plan.items;
  a.num_items = plan.num_items;
  a.seq_ids = plan.seq_ids;
  a.partial_o = plan.partial_o;
  a.partial_lse = plan.partial_lse;
  a.num_q_heads = plan.options.num_q_heads;
  a.num_kv_heads = plan.layout.num_kv_heads;
  a.head_dim = plan.layout.head_dim;
  a.tokens_per_chunk = plan.layout.tokens_per_chunk;
  a.scale_log2 = plan.options.EffectiveScale(plan.layout.head_dim) * 1.4426950408889634f;
  a.apply_rope = plan.options.apply_rope ? 1 : 0;
  a.inv_freq = plan.inv_freq;
  a.rope_table = plan.rope_table;
  a.rope_table_base = plan.rope_table_base;
  a.dtype = static_cast<int32_t>(plan.layout.dtype);
  a.wgmma_min_rows = plan.wgmma_min_rows;
  if (plan.fused_merge) {
    a.fused = 1;
    a.batch = plan.batch;
    a.arrivals = plan.arrivals;
    a.merge_arrivals = plan.merge_arrivals;
    a.merge_offsets = plan.merge_offsets;
    a.merge_slots = plan.merge_slots;
    a.out = out;
    a.lse = lse;
  }
  return CudaStatus(LaunchPartialAttention(a, stream), "partial attention");
}

}  // namespace

absl::Status RunPartialAttention(const DevicePlan& plan, const void* queries, void* out,
                                 float* lse, cudaStream_t stream) {
  return LaunchPartial(plan, queries, out, lse, stream);
}

absl::Status RunAttention(const DevicePlan& plan, const void* queries, void* out,
                          float* lse, cudaStream_t stream) {
  absl::Status s = LaunchPartial(plan, queries, out, lse, stream);
  if (!s.ok() || plan.fused_merge) return s;
  MergePartialsArgs m{};
  m.partial_o = plan.partial_o;
  m.partial_lse = plan.partial_lse;
  m.merge_offsets = plan.merge_offsets;
  m.merge_slots = plan.merge_slots;
  m.batch = plan.batch;
  m.num_q_heads = plan.options.num_q_heads;
  m.head_dim = plan.layout.head_dim;
  m.dtype = static_cast<int32_t>(plan.layout.dtype);
  m.out = out;
  m.lse = lse;
  return CudaStatus(LaunchMergePartials(m, stream), "merge partial states");
}

absl::Status PagedDecode(const KvLayout& layout, const AttentionOptions& options,
                         const PagedBatch& batch, const void* queries, void* out,
                         float* lse, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
  return RunPlan(BuildPagedPlan(layout, options, batch, DevicePlanOptions()), queries, out,
                 lse, workspace, workspace_bytes, stream);
}

absl::Status PrefixAwareDecode(const KvLayout& layout,
                               const AttentionOptions& options,
                               const PagedBatch& batch, const void* queries,
                               void* out, float* lse, void* workspace,
                               size_t workspace_bytes, cudaStream_t stream) {
  return RunPlan(BuildPrefixTreePlan(layout, options, batch, DevicePlanOptions()), queries,
                 out, lse, workspace, workspace_bytes, stream);
}

absl::Status RelayDecode(const KvLayout& layout, const AttentionOptions& options,
                         std::span<const void* const> prefix_chunks,
                         int prefix_length, const PagedBatch& context,
                         const void* queries, void* out, float* lse,
                         void* workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
  return RunPlan(BuildRelayPlan(layout, options, prefix_chunks, prefix_length, context,
                                DevicePlanOptions()),
                 queries, out, lse, workspace, workspace_bytes, stream);
}

absl::Status MergeState(KvDtype dtype, int head_dim, int64_t num_states,
                        const void* v_a, const float* s_a, const void* v_b,
                        const float* s_b, void* v_out, float* s_out,
                        cudaStream_t stream) {
  if (head_dim != 64 && head_dim != 128) {
    return absl::InvalidArgumentError("head_dim must be 64 or 128");
  }
  if (dtype != KvDtype::kFloat16 && dtype != KvDtype::kBFloat16) {
    return absl::InvalidArgumentError("dtype must be fp16 or bf16");
  }
  if (num_states < 0) return absl::InvalidArgumentError("num_states < 0");
  if (num_states == 0) return absl::OkStatus();
  if (v_a == nullptr || s_a == nullptr || v_b == nullptr || s_b == nullptr ||
      v_out == nullptr) {
    return absl::InvalidArgumentError("null state pointer");
  }
  MergeStateArgs a{v_a, s_a, v_b, s_b, v_out, s_out, num_states, head_dim,
                   static_cast<int32_t>(dtype)};
  return CudaStatus(LaunchMergeState(a, stream), "merge state");
}

}  // namespace strata::kernels
