// GPU tests (tag "gpu"): every CUDA kernel against the CPU reference on fresh
// random inputs, odd shapes, outputs poisoned with NaN before each run.
//
// Tolerances (output vs the double reference; lse in base 2):
//   fp16: ||out - ref|| / ||ref|| <= 2e-3, max |out - ref| <= 1e-2,
//         max |lse - ref| <= 5e-3
//   bf16: ||out - ref|| / ||ref|| <= 1.5e-2, max |out - ref| <= 6e-2,
//         max |lse - ref| <= 3e-2
// (fp16 has 11 significant bits, bf16 8: outputs are rounded to the dtype,
// and P = softmax numerators enter the second MMA in the dtype.)
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/attention_plan.h"
#include "kernels/attention_reference.h"
#include "kernels/gpu_testing.h"
#include "kernels/attention_testing.h"

namespace strata::kernels {
namespace {

using testing::TestBatch;
using testing::TreeSpec;


// Move-only owner of a device allocation.
using testing::DeviceBuffer;
using testing::ExpectClose;

// Uploads a TestBatch's pool, runs `plan_of(device batch)` on the GPU and
// returns out / lse on the host.
struct GpuRun {
  std::vector<uint16_t> out;
  std::vector<float> lse;
};

enum class Kind { kPaged, kTree, kRelay };

// The plan-option variants every decode test runs (defaults first): item
// order interleaved, merge fused into the partial launch, both, and every
// item on mma.sync (by default items of 33+ rows run on wgmma on sm_90).
struct Variant {
  const char* name;
  PlanOptions options;
};

std::vector<Variant> Variants() {
  PlanOptions interleave, fused, both, mma;
  mma.wgmma_shared_items = false;
  interleave.interleave_shared_items = true;
  fused.fused_merge = true;
  both.interleave_shared_items = true;
  both.fused_merge = true;
  return {{"default", PlanOptions{}},
          {"interleave", interleave},
          {"fused", fused},
          {"fused+interleave", both},
          {"mma", mma}};
}

// Runs `kind`'s plan with `po` on the GPU. With fused merge the plan runs
// twice on the same uploaded workspace (outputs poisoned again in between):
// the second run checks that the first left its arrival counters at zero.
void RunOnGpu(const TestBatch& tb, Kind kind, GpuRun* result, AttentionPlan* plan_out,
              const PlanOptions& po = PlanOptions{}) {
  const KvLayout& layout = tb.layout();
  const AttentionOptions& options = tb.options();
  DeviceBuffer pool(tb.pool().size() * 2);
  ASSERT_NE(pool.get(), nullptr);
  CUDA_OK(cudaMemcpy(pool.get(), tb.pool().data(), pool.bytes(), cudaMemcpyHostToDevice));
  const PagedBatch host = tb.batch();
  const std::vector<const void*> chunks = tb.Rebase(host.chunks, pool.get());
  const std::vector<const void*> prefix = tb.Rebase(tb.prefix_chunks(), pool.get());
  const PagedBatch dev{chunks, host.chunk_offsets, host.lengths};
  absl::StatusOr<AttentionPlan> plan;
  switch (kind) {
    case Kind::kPaged:
      plan = BuildPagedPlan(layout, options, dev, po);
      break;
    case Kind::kTree:
      plan = BuildPrefixTreePlan(layout, options, dev, po);
      break;
    case Kind::kRelay:
      plan = BuildRelayPlan(layout, options, prefix, tb.prefix_length(), dev, po);
      break;
  }
  ASSERT_TRUE(plan.ok()) << plan.status();
  DeviceBuffer ws(PlanWorkspaceBytes(*plan));
  ASSERT_NE(ws.get(), nullptr);
  const size_t q_bytes = tb.queries().size() * 2;
  DeviceBuffer q(q_bytes), out(q_bytes), lse(tb.queries().size() / layout.head_dim * 4);
  CUDA_OK(cudaMemcpy(q.get(), tb.queries().data(), q_bytes, cudaMemcpyHostToDevice));
  // Poison: 0xFF bytes are NaN in fp16, bf16 and float; and the workspace.
  CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));
  CUDA_OK(cudaMemset(lse.get(), 0xFF, lse.bytes()));
  CUDA_OK(cudaMemset(ws.get(), 0xFF, ws.bytes()));
  absl::StatusOr<DevicePlan> dplan = UploadPlan(*plan, ws.get(), ws.bytes(), nullptr);
  ASSERT_TRUE(dplan.ok()) << dplan.status();
  for (int run = 0; run < (plan->fused_merge ? 2 : 1); ++run) {
    if (run > 0) {
      CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));
      CUDA_OK(cudaMemset(lse.get(), 0xFF, lse.bytes()));
    }
    absl::Status s = RunAttention(*dplan, q.get(), out.get(), static_cast<float*>(lse.get()),
                                  nullptr);
    ASSERT_TRUE(s.ok()) << s;
    CUDA_OK(cudaDeviceSynchronize());
  }
  result->out.resize(tb.queries().size());
  result->lse.resize(tb.queries().size() / layout.head_dim);
  CUDA_OK(cudaMemcpy(result->out.data(), out.get(), q_bytes, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(result->lse.data(), lse.get(), lse.bytes(), cudaMemcpyDeviceToHost));
  if (options.apply_rope) {
    // UploadPlan filled the plan's cos / sin table; without it the kernels
    // call sincosf, which gives the table's values: the same bits.
    ASSERT_NE(dplan->rope_table, nullptr);
    DevicePlan no_table = *dplan;
    no_table.rope_table = nullptr;
    CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));
    CUDA_OK(cudaMemset(lse.get(), 0xFF, lse.bytes()));
    absl::Status s = RunAttention(no_table, q.get(), out.get(), static_cast<float*>(lse.get()),
                                  nullptr);
    ASSERT_TRUE(s.ok()) << s;
    std::vector<uint16_t> sincos_out(result->out.size());
    std::vector<float> sincos_lse(result->lse.size());
    CUDA_OK(cudaMemcpy(sincos_out.data(), out.get(), q_bytes, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(sincos_lse.data(), lse.get(), lse.bytes(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(sincos_out, result->out) << "RoPE table and sincosf disagree";
    EXPECT_EQ(0, std::memcmp(sincos_lse.data(), result->lse.data(), lse.bytes()))
        << "RoPE table and sincosf disagree (lse)";
  }
  if (plan_out != nullptr) *plan_out = std::move(*plan);
}

struct Shape {
  KvDtype dtype;
  int head_dim;
  int kv_heads;
  int q_heads;
  int tpc;
  bool rope;
};

std::string Name(const Shape& s) {
  return absl::StrCat(s.dtype == KvDtype::kFloat16 ? "fp16" : "bf16", "_d", s.head_dim,
                      "_kv", s.kv_heads, "_q", s.q_heads, "_tpc", s.tpc,
                      s.rope ? "_rope" : "");
}

const Shape kShapes[] = {
    {KvDtype::kFloat16, 128, 8, 32, 64, false},   // Llama-3-8B GQA, fp16
    {KvDtype::kBFloat16, 128, 8, 32, 64, false},  // Llama-3-8B GQA, bf16
    {KvDtype::kFloat16, 128, 4, 4, 16, false},    // MHA, small chunks
    {KvDtype::kBFloat16, 64, 2, 14, 256, false},  // group 7, large chunks
    {KvDtype::kFloat16, 64, 3, 3, 48, true},      // MHA, RoPE, odd chunk size
    {KvDtype::kBFloat16, 128, 2, 8, 32, true},    // GQA, RoPE
};

class GpuDecodeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(GpuDecodeTest, TreeAndPagedMatchReferenceOnRandomTrees) {
  const Shape sh = GetParam();
  KvLayout layout{sh.dtype, sh.kv_heads, sh.head_dim, sh.tpc};
  AttentionOptions options;
  options.num_q_heads = sh.q_heads;
  options.apply_rope = sh.rope;
  std::random_device rd;
  for (int depth = 1; depth <= 4; ++depth) {
    const uint32_t seed = rd();
    TestBatch tb(layout, options, seed);
    TreeSpec spec;
    spec.num_seqs = 7;
    spec.depth = depth;
    spec.max_node_chunks = 3;
    spec.tail_tokens = depth % 2 == 1 ? 37 : -1;  // fixed 37-token tails or random
    spec.max_tail_tokens = 2 * sh.tpc + 5;
    tb.MakeTree(spec);
    ReferenceOutput ref;
    ASSERT_TRUE(ReferenceDecode(layout, options, tb.queries(), tb.batch(), &ref).ok());
    for (Kind kind : {Kind::kTree, Kind::kPaged}) {
      for (const Variant& v : Variants()) {
        GpuRun run;
        AttentionPlan plan;
        RunOnGpu(tb, kind, &run, &plan, v.options);
        if (kind == Kind::kTree) {
          EXPECT_GT(plan.num_shared_runs, 0);
        }
        ExpectClose(sh.dtype, run.out, run.lse, ref,
                    absl::StrCat(Name(sh), kind == Kind::kTree ? " tree" : " paged",
                                 " depth ", depth, " ", v.name, " seed ", seed));
      }
    }
  }
}

TEST_P(GpuDecodeTest, RelayMatchesReference) {
  const Shape sh = GetParam();
  KvLayout layout{sh.dtype, sh.kv_heads, sh.head_dim, sh.tpc};
  AttentionOptions options;
  options.num_q_heads = sh.q_heads;
  options.apply_rope = sh.rope;
  std::random_device rd;
  for (int prefix : {1, 37, 3 * sh.tpc, 5 * sh.tpc + 37}) {
    const uint32_t seed = rd();
    TestBatch tb(layout, options, seed);
    tb.MakeRelay(7, prefix, 37 + sh.tpc);
    ReferenceOutput ref;
    ASSERT_TRUE(ReferenceRelayDecode(layout, options, tb.queries(), tb.prefix_chunks(),
                                     tb.prefix_length(), tb.batch(), &ref)
                    .ok());
    for (const Variant& v : Variants()) {
      GpuRun run;
      RunOnGpu(tb, Kind::kRelay, &run, nullptr, v.options);
      ExpectClose(sh.dtype, run.out, run.lse, ref,
                  absl::StrCat(Name(sh), " relay prefix ", prefix, " ", v.name, " seed ", seed));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuDecodeTest, ::testing::ValuesIn(kShapes),
                         [](const auto& info) { return Name(info.param); });

// Many sequences on one prefix: several 64-row tiles per shared item, long
// shared runs split across blocks, long private tails.
// Group 7 (50 x 7 = 350 rows) puts some sequences' rows in two row tiles of
// one piece (two arrivals per piece under the fused merge).
TEST(GpuDecodeLargeTest, WideTreeWithRowTilesAndSplits) {
  struct Wide {
    KvDtype dtype;
    int head_dim;
    int q_heads;
    bool rope;
  };
  // The last two with RoPE: keys rotated in place before the wgmma products.
  for (const Wide& wide :
       {Wide{KvDtype::kFloat16, 128, 8, false}, Wide{KvDtype::kBFloat16, 128, 8, false},
        Wide{KvDtype::kBFloat16, 64, 14, false}, Wide{KvDtype::kBFloat16, 128, 8, true},
        Wide{KvDtype::kFloat16, 64, 14, true}}) {
    const KvDtype dtype = wide.dtype;
    KvLayout layout{dtype, 2, wide.head_dim, 64};
    AttentionOptions options;
    options.num_q_heads = wide.q_heads;
    options.apply_rope = wide.rope;
    options.rope_theta = 500000.0f;
    TestBatch tb(layout, options, std::random_device{}());
    TreeSpec spec;
    spec.num_seqs = 50;  // 50 x group 4 = 200 rows: 4 row tiles (group 7: 6)
    spec.depth = 2;
    spec.max_branching = 2;
    spec.max_node_chunks = 12;
    spec.max_tail_tokens = 700;
    tb.MakeTree(spec);
    ReferenceOutput ref;
    ASSERT_TRUE(ReferenceDecode(layout, options, tb.queries(), tb.batch(), &ref).ok());
    for (Kind kind : {Kind::kTree, Kind::kPaged}) {
      for (const Variant& v : Variants()) {
        GpuRun run;
        RunOnGpu(tb, kind, &run, nullptr, v.options);
        ExpectClose(dtype, run.out, run.lse, ref,
                    absl::StrCat(kind == Kind::kTree ? "wide tree " : "wide paged ", v.name,
                                 " group ", wide.q_heads / 2, " d", wide.head_dim,
                                 wide.rope ? " rope" : ""));
      }
    }
  }
}

TEST(GpuMergeStateTest, MatchesReference) {
  for (KvDtype dtype : {KvDtype::kFloat16, KvDtype::kBFloat16}) {
    for (int d : {64, 128}) {
      const int n = 37;
      std::mt19937 rng(std::random_device{}());
      std::normal_distribution<float> normal(0.f, 1.f);
      std::vector<uint16_t> va(n * d), vb(n * d);
      std::vector<float> sa(n), sb(n);
      for (auto& x : va) x = FromFloat(dtype, normal(rng));
      for (auto& x : vb) x = FromFloat(dtype, normal(rng));
      for (int i = 0; i < n; ++i) {
        sa[i] = 4 * normal(rng);
        sb[i] = i % 5 == 0 ? -INFINITY : 4 * normal(rng);  // some empty states
      }
      DeviceBuffer dva(n * d * 2), dvb(n * d * 2), dout(n * d * 2), dsa(n * 4), dsb(n * 4),
          dsout(n * 4);
      CUDA_OK(cudaMemcpy(dva.get(), va.data(), n * d * 2, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dvb.get(), vb.data(), n * d * 2, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dsa.get(), sa.data(), n * 4, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dsb.get(), sb.data(), n * 4, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemset(dout.get(), 0xFF, n * d * 2));
      CUDA_OK(cudaMemset(dsout.get(), 0xFF, n * 4));
      absl::Status s = MergeState(dtype, d, n, dva.get(), static_cast<float*>(dsa.get()),
                                  dvb.get(), static_cast<float*>(dsb.get()), dout.get(),
                                  static_cast<float*>(dsout.get()), nullptr);
      ASSERT_TRUE(s.ok()) << s;
      std::vector<uint16_t> out(n * d);
      std::vector<float> sout(n);
      CUDA_OK(cudaMemcpy(out.data(), dout.get(), n * d * 2, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(sout.data(), dsout.get(), n * 4, cudaMemcpyDeviceToHost));
      ReferenceOutput ref;
      ref.out.resize(n * d);
      ref.lse.resize(n);
      std::vector<double> a(d), b(d);
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < d; ++j) {
          a[j] = ToFloat(dtype, va[i * d + j]);
          b[j] = ToFloat(dtype, vb[i * d + j]);
        }
        MergeStateReference(a, sa[i], b, sb[i],
                            std::span<double>(ref.out.data() + i * d, d), &ref.lse[i]);
      }
      ExpectClose(dtype, out, sout, ref, absl::StrCat("merge_state d", d));
    }
  }
}

TEST(GpuApiTest, ConvenienceWrapperAndErrorCodes) {
  KvLayout layout{KvDtype::kFloat16, 2, 64, 16};
  AttentionOptions options;
  options.num_q_heads = 4;
  TestBatch tb(layout, options, std::random_device{}());
  TreeSpec spec;
  spec.depth = 2;
  tb.MakeTree(spec);
  DeviceBuffer pool(tb.pool().size() * 2);
  CUDA_OK(cudaMemcpy(pool.get(), tb.pool().data(), pool.bytes(), cudaMemcpyHostToDevice));
  const PagedBatch host = tb.batch();
  std::vector<const void*> chunks = tb.Rebase(host.chunks, pool.get());
  const PagedBatch dev{chunks, host.chunk_offsets, host.lengths};
  const size_t q_bytes = tb.queries().size() * 2;
  DeviceBuffer q(q_bytes + 16), out(q_bytes + 16), ws(1 << 22);
  CUDA_OK(cudaMemcpy(q.get(), tb.queries().data(), q_bytes, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));
  ASSERT_TRUE(PrefixAwareDecode(layout, options, dev, q.get(), out.get(), nullptr, ws.get(),
                                ws.bytes(), nullptr)
                  .ok());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> got(tb.queries().size());
  CUDA_OK(cudaMemcpy(got.data(), out.get(), q_bytes, cudaMemcpyDeviceToHost));
  ReferenceOutput ref;
  ASSERT_TRUE(ReferenceDecode(layout, options, tb.queries(), host, &ref).ok());
  std::vector<float> no_lse;
  ref.lse.clear();
  ExpectClose(layout.dtype, got, no_lse, ref, "PrefixAwareDecode wrapper");

  // Workspace too small.
  EXPECT_EQ(PagedDecode(layout, options, dev, q.get(), out.get(), nullptr, ws.get(), 64,
                        nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Misaligned queries.
  EXPECT_EQ(PagedDecode(layout, options, dev, static_cast<char*>(q.get()) + 2, out.get(),
                        nullptr, ws.get(), ws.bytes(), nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Misaligned chunk slice.
  std::vector<const void*> bad = chunks;
  bad[0] = static_cast<const char*>(bad[0]) + 2;
  const PagedBatch bad_batch{bad, host.chunk_offsets, host.lengths};
  EXPECT_EQ(PagedDecode(layout, options, bad_batch, q.get(), out.get(), nullptr, ws.get(),
                        ws.bytes(), nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Unsupported head_dim.
  KvLayout bad_layout = layout;
  bad_layout.head_dim = 80;
  EXPECT_EQ(PagedDecode(bad_layout, options, dev, q.get(), out.get(), nullptr, ws.get(),
                        ws.bytes(), nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MergeState(KvDtype::kFloat16, 96, 1, q.get(), nullptr, q.get(), nullptr,
                       out.get(), nullptr, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
