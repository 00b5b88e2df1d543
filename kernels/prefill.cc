#include "kernels/prefill.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/prefill_launch.h"
#include "kernels/workspace_upload.h"

namespace strata::kernels {
namespace {

using internal::Aligned16;
using internal::AlignUp;
using internal::Put;

// Metadata (uploaded) first, then buffers the kernels fill.
struct WorkspaceLayout {
  size_t pages, positions, items, merges, inv_freq, metadata;
  size_t rope_table, rotated_keys, partial_out, partial_lse, total;
};

WorkspaceLayout LayoutFor(const PrefillPlan& plan) {
  WorkspaceLayout w;
  size_t off = 0;
  w.pages = off;
  off = AlignUp(off + plan.pages.size() * sizeof(void*));
  w.positions = off;
  off = AlignUp(off + plan.positions.size() * sizeof(int32_t));
  w.items = off;
  off = AlignUp(off + plan.items.size() * sizeof(PrefillItem));
  w.merges = off;
  off = AlignUp(off + plan.merges.size() * sizeof(PrefillMerge));
  w.inv_freq = off;
  off = AlignUp(off + plan.layout.head_dim / 2 * sizeof(float));
  w.metadata = off;
  w.rope_table = off;
  off = AlignUp(off + static_cast<size_t>(plan.rope_table_rows) * plan.layout.head_dim / 2 *
                          sizeof(float2));
  w.rotated_keys = off;
  off = AlignUp(off + static_cast<size_t>(plan.rotated_key_bytes));
  const size_t partial = static_cast<size_t>(plan.partial_rows) * plan.layout.num_kv_heads;
  w.partial_out = off;
  off = AlignUp(off + partial * plan.layout.head_dim * sizeof(float));
  w.partial_lse = off;
  off = AlignUp(off + partial * sizeof(float));
  w.total = std::max<size_t>(off, internal::kWorkspaceAlign);
  return w;
}

}  // namespace

size_t PrefillWorkspaceBytes(const PrefillPlan& plan) { return LayoutFor(plan).total; }

absl::StatusOr<DevicePrefillPlan> UploadPrefillPlan(const PrefillPlan& plan,
                                                    void* workspace,
                                                    size_t workspace_bytes,
                                                    cudaStream_t stream) {
  const WorkspaceLayout w = LayoutFor(plan);
  if (absl::Status s = internal::CheckUpload(workspace, workspace_bytes, w.total, plan.pages);
      !s.ok()) {
    return s;
  }
  std::vector<char> host(w.metadata, 0);
  Put(host, w.pages, plan.pages);
  Put(host, w.positions, plan.positions);
  Put(host, w.items, plan.items);
  Put(host, w.merges, plan.merges);
  for (int i = 0; i < plan.layout.head_dim / 2; ++i) {
    const float f = PrefillRopeInvFreq(plan.options.rope_theta, i, plan.layout.head_dim);
    std::memcpy(host.data() + w.inv_freq + i * sizeof(float), &f, sizeof(float));
  }
  absl::Status s = CudaStatus(
      cudaMemcpyAsync(workspace, host.data(), host.size(), cudaMemcpyHostToDevice, stream),
      "upload prefill plan");
  if (!s.ok()) return s;
  char* base = static_cast<char*>(workspace);
  DevicePrefillPlan d;
  d.layout = plan.layout;
  d.options = plan.options;
  d.total_tokens = plan.total_tokens;
  d.num_items = static_cast<int>(plan.items.size());
  d.pages = reinterpret_cast<const void* const*>(base + w.pages);
  d.positions = reinterpret_cast<const int32_t*>(base + w.positions);
  d.items = reinterpret_cast<const PrefillItem*>(base + w.items);
  d.num_merges = static_cast<int>(plan.merges.size());
  d.merges = reinterpret_cast<const PrefillMerge*>(base + w.merges);
  d.partial_rows = plan.partial_rows;
  d.partial_out = reinterpret_cast<float*>(base + w.partial_out);
  d.partial_lse = reinterpret_cast<float*>(base + w.partial_lse);
  d.inv_freq = reinterpret_cast<const float*>(base + w.inv_freq);
  d.rope_table_base = plan.rope_table_base;
  d.rope_table_rows = plan.rope_table_rows;
  d.rope_table = plan.rope_table_rows > 0 ? reinterpret_cast<float2*>(base + w.rope_table)
                                          : nullptr;
  if (d.rope_table != nullptr) {  // once per plan; every RunPrefill reads it
    s = CudaStatus(LaunchPrefillRopeTable(d.rope_table, d.inv_freq, plan.layout.head_dim / 2,
                                          plan.rope_table_base, plan.rope_table_rows, stream),
                   "fill the RoPE table");
    if (!s.ok()) return s;
  }
  d.num_pages = static_cast<int>(plan.pages.size());
  d.rotated_keys = plan.rotated_key_bytes > 0 ? base + w.rotated_keys : nullptr;
  d.pool_pages = d.pages;
  d.pool = FindPrefillPagePool(plan.pages, int64_t{2} * plan.layout.num_kv_heads *
                                               plan.layout.tokens_per_chunk *
                                               plan.layout.head_dim * kKvElementBytes);
  return d;
}

DevicePrefillPlan MovedPrefillPlan(const DevicePrefillPlan& plan, const void* const* pages,
                                   int64_t bytes) {
  DevicePrefillPlan moved = plan;
  moved.pages = pages;
  moved.pool_pages = plan.pool.slots > 0 && plan.pages == plan.pool_pages ? pages : nullptr;
  moved.pool.base = plan.pool.base + static_cast<uintptr_t>(bytes);
  return moved;
}

absl::Status RunPrefill(const DevicePrefillPlan& plan, const void* queries, void* out,
                        float* lse, cudaStream_t stream) {
  if (plan.num_items == 0) return absl::OkStatus();  // no new tokens
  if (plan.items == nullptr || plan.num_items < 0) {
    return absl::InvalidArgumentError("unuploaded prefill plan");
  }
  if (queries == nullptr || out == nullptr || !Aligned16(queries) || !Aligned16(out)) {
    return absl::InvalidArgumentError("queries and out must be non-null and 16-byte aligned");
  }
  PrefillArgs a{};
  a.queries = queries;
  a.pages = plan.pages;
  a.positions = plan.positions;
  a.items = plan.items;
  a.num_items = plan.num_items;
  a.out = out;
  a.lse = lse;
  a.num_q_heads = plan.options.num_q_heads;
  a.num_kv_heads = plan.layout.num_kv_heads;
  a.head_dim = plan.layout.head_dim;
  a.tokens_per_chunk = plan.layout.tokens_per_chunk;
  a.scale_log2 = plan.options.EffectiveScale(plan.layout.head_dim) * 1.4426950408889634f;
  a.apply_rope = plan.options.apply_rope ? 1 : 0;
  a.inv_freq = plan.inv_freq;
  a.rope_table = plan.rope_table;
  a.rope_table_base = plan.rope_table_base;
  a.rope_table_rows = plan.rope_table_rows;
  a.rotated_keys = plan.rotated_keys;
  a.num_pages = plan.num_pages;
  a.merges = plan.merges;
  a.num_merges = plan.num_merges;
  a.partial_rows = plan.partial_rows;
  a.partial_out = plan.partial_out;
  a.partial_lse = plan.partial_lse;
  a.dtype = static_cast<int32_t>(plan.layout.dtype);
  a.variant = static_cast<int32_t>(plan.options.kernel_variant);
  a.pool_base = reinterpret_cast<const void*>(plan.pool.base);
  a.pool_stride = plan.pool.stride;
  a.pool_slots =
      plan.options.tensor_map_loads && plan.pages == plan.pool_pages ? plan.pool.slots : 0;
  return CudaStatus(LaunchPrefill(a, stream), "prefill attention");
}

absl::Status PrefillAttention(const KvLayout& layout, const PrefillOptions& options,
                              const PrefillBatch& batch, const void* queries, void* out,
                              float* lse, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(layout, options, batch);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<DevicePrefillPlan> dev =
      UploadPrefillPlan(*plan, workspace, workspace_bytes, stream);
  if (!dev.ok()) return dev.status();
  return RunPrefill(*dev, queries, out, lse, stream);
}

}  // namespace strata::kernels
