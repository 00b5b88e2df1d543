// GPU tests (tag "gpu") of the prefill kernel: against the CPU reference
// (ReferencePrefill) on fresh random inputs, outputs poisoned with NaN before
// each run; odd numbers of new tokens (1, 7, 17, 63, 65, 1000) over odd
// histories, partial last chunks, mixed batches (decodes, re-based and
// truncated positions, shared chunks, a sequence without new tokens), GQA
// groups 1, 4 and 7, fp16 and bf16, head_dim 64 and 128; split KV (forced),
// the RoPE table against the sincosf fallback and keys rotated ahead against
// keys rotated in the kernel (bit for bit). Every case runs every kernel
// variant (PrefillOptions::KernelVariant: 64-row tiles, 128 rows x 8 warps,
// 128 rows x 4 warps of 32 rows, 128 rows on wgmma with 64- and 128-token
// KV tiles; or those named in PREFILL_VARIANTS) against the same reference.
//
// Tolerances (vs the double reference; lse in base 2), as the decode kernels:
//   fp16: ||out - ref|| / ||ref|| <= 2e-3, max |out - ref| <= 1e-2,
//         max |lse - ref| <= 5e-3
//   bf16: ||out - ref|| / ||ref|| <= 1.5e-2, max |out - ref| <= 6e-2,
//         max |lse - ref| <= 3e-2
// (outputs are rounded to the dtype; P and the rotated K / Q enter the MMAs
// in the dtype).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/gpu_testing.h"
#include "kernels/prefill.h"
#include "kernels/prefill_testing.h"

namespace strata::kernels {
namespace {

using testing::PrefillCase;
using testing::PrefillSeqSpec;


using testing::DeviceBuffer;
using testing::ExpectClose;

// The attention kernel variants each test runs: all of them, or those named
// in the environment variable PREFILL_VARIANTS (comma-separated names of
// PrefillKernelVariantName, e.g. "base,r128"; tools/gpu/run_gpu.sh runs the
// wgmma variants in a process of their own).
const std::vector<PrefillOptions::KernelVariant>& Variants() {
  static const std::vector<PrefillOptions::KernelVariant> variants = [] {
    std::vector<PrefillOptions::KernelVariant> v;
    const char* env = std::getenv("PREFILL_VARIANTS");
    const std::string list = env != nullptr ? env : "base,r128,w128,g128,g128x128,g128p";
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t end = list.find(',', pos);
      if (end == std::string::npos) end = list.size();
      const std::string name = list.substr(pos, end - pos);
      pos = end + 1;
      if (name.empty()) continue;
      absl::StatusOr<PrefillOptions::KernelVariant> parsed = ParsePrefillKernelVariant(name);
      if (!parsed.ok()) {
        std::fprintf(stderr, "PREFILL_VARIANTS: %s\n",
                     std::string(parsed.status().message()).c_str());
        std::abort();
      }
      v.push_back(*parsed);
    }
    if (v.empty()) {
      std::fprintf(stderr, "PREFILL_VARIANTS names no variant\n");
      std::abort();
    }
    return v;
  }();
  return variants;
}

// Plans with `options`, runs the plan on the uploaded pool and compares the
// output with `ref`.
void RunVariantInto(PrefillCase& c, const ReferenceOutput& ref, const void* pool,
                    const std::string& what, const PrefillOptions& options, bool expect_split,
                    std::vector<uint16_t>* out_values) {
  const KvLayout& layout = c.layout();
  const PrefillBatch host = c.batch();
  const std::vector<const void*> chunks = c.Rebase(host.chunks, pool);
  const PrefillBatch dev{chunks, host.positions, host.chunk_offsets, host.kv_lengths,
                         host.query_offsets};
  absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(layout, options, dev);
  ASSERT_TRUE(plan.ok()) << plan.status();
  if (expect_split) {
    ASSERT_FALSE(plan->merges.empty()) << what << ": nothing split";
  }
  if (options.apply_rope && options.max_rope_table_bytes == 0) {
    ASSERT_EQ(plan->rope_table_rows, 0);
  }
  for (const PrefillItem& it : plan->items) {
    ASSERT_LE(it.num_rows, PrefillRowsPerTile(options.kernel_variant)) << what;
  }
  if (options.apply_rope && options.key_rotation == PrefillOptions::KeyRotation::kAhead) {
    ASSERT_GT(plan->rotated_key_bytes, 0) << what << ": keys not rotated ahead";
  }
  if (options.key_rotation == PrefillOptions::KeyRotation::kInKernel) {
    ASSERT_EQ(plan->rotated_key_bytes, 0) << what << ": keys rotated ahead";
  }
  DeviceBuffer ws(PrefillWorkspaceBytes(*plan));
  const size_t q_bytes = c.queries().size() * 2;
  const size_t rows = c.queries().size() / layout.head_dim;
  DeviceBuffer q(q_bytes), out(q_bytes), lse(rows * 4);
  CUDA_OK(cudaMemcpy(q.get(), c.queries().data(), q_bytes, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));  // NaN in fp16, bf16, float
  CUDA_OK(cudaMemset(lse.get(), 0xFF, lse.bytes()));
  CUDA_OK(cudaMemset(ws.get(), 0xFF, ws.bytes()));
  absl::StatusOr<DevicePrefillPlan> dplan = UploadPrefillPlan(*plan, ws.get(), ws.bytes(), nullptr);
  ASSERT_TRUE(dplan.ok()) << dplan.status();
  // The case's chunks are slots of one pool: the pipelined kernel's tensor
  // maps can address them.
  ASSERT_GT(dplan->pool.slots, 0) << what;
  absl::Status s = RunPrefill(*dplan, q.get(), out.get(), static_cast<float*>(lse.get()), nullptr);
  ASSERT_TRUE(s.ok()) << s;
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t>& got = *out_values;
  got.assign(c.queries().size(), 0);
  std::vector<float> got_lse(rows);
  CUDA_OK(cudaMemcpy(got.data(), out.get(), q_bytes, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(got_lse.data(), lse.get(), lse.bytes(), cudaMemcpyDeviceToHost));
  ExpectClose(layout.dtype, got, got_lse, ref, what);
}

// Uploads the case's pool, runs the kernel of every variant, compares each
// with the reference (computed once); `options` replaces the case's options
// for the plan (the RoPE table limit, the split target, the key rotation;
// the semantics must stay the same; its kernel_variant is overridden). The
// outputs, one per variant (Variants() order), go to `out_values`.
void RunAllVariantsInto(PrefillCase& c, const std::string& what, const PrefillOptions& options,
                        bool expect_split, std::vector<std::vector<uint16_t>>* out_values) {
  const std::vector<PrefillOptions::KernelVariant>& variants = Variants();
  out_values->assign(variants.size(), {});
  ReferenceOutput ref;
  absl::Status s = ReferencePrefill(c.layout(), c.options(), c.queries(), c.batch(), &ref);
  ASSERT_TRUE(s.ok()) << s;
  DeviceBuffer pool(c.pool().size() * 2);
  ASSERT_NE(pool.get(), nullptr);
  CUDA_OK(cudaMemcpy(pool.get(), c.pool().data(), pool.bytes(), cudaMemcpyHostToDevice));
  for (size_t v = 0; v < variants.size(); ++v) {
    PrefillOptions o = options;
    o.kernel_variant = variants[v];
    RunVariantInto(c, ref, pool.get(), what + " " + PrefillKernelVariantName(variants[v]), o,
                   expect_split, &(*out_values)[v]);
  }
}

// RunAllVariantsInto with `tuning` (or the case's options) as a value.
std::vector<std::vector<uint16_t>> RunAndCompare(PrefillCase& c, const std::string& what,
                                                 const PrefillOptions* tuning = nullptr,
                                                 bool expect_split = false) {
  std::vector<std::vector<uint16_t>> got;
  RunAllVariantsInto(c, what, tuning ? *tuning : c.options(), expect_split, &got);
  return got;
}

// Per variant: the outputs of two runs agree bit for bit.
void ExpectSameBits(const std::vector<std::vector<uint16_t>>& a,
                    const std::vector<std::vector<uint16_t>>& b, const std::string& what) {
  for (size_t v = 0; v < a.size() && v < b.size(); ++v) {
    EXPECT_EQ(a[v], b[v]) << what << " (" << PrefillKernelVariantName(Variants()[v]) << ")";
  }
}

struct Shape {
  KvDtype dtype;
  int head_dim;
  int kv_heads;
  int group;
  int tpc;
};

std::string Name(const Shape& s) {
  return absl::StrCat(s.dtype == KvDtype::kFloat16 ? "fp16" : "bf16", "_d", s.head_dim, "_kv",
                      s.kv_heads, "_g", s.group, "_tpc", s.tpc);
}

const Shape kShapes[] = {
    {KvDtype::kFloat16, 128, 2, 4, 64},   // Llama-3 GQA group, fp16
    {KvDtype::kBFloat16, 128, 2, 4, 64},  // bf16
    {KvDtype::kFloat16, 64, 3, 1, 16},    // MHA, small chunks
    {KvDtype::kBFloat16, 64, 2, 1, 48},   // MHA, chunks not a multiple of 64
    {KvDtype::kFloat16, 64, 1, 7, 32},    // group 7: tiles cut tokens
    {KvDtype::kBFloat16, 128, 1, 7, 256}, // group 7, large chunks
};

class GpuPrefillTest : public ::testing::TestWithParam<Shape> {
 protected:
  KvLayout Layout() const {
    const Shape s = GetParam();
    return KvLayout{s.dtype, s.kv_heads, s.head_dim, s.tpc};
  }
  PrefillOptions Options(bool rope) const {
    PrefillOptions o;
    o.num_q_heads = GetParam().kv_heads * GetParam().group;
    o.apply_rope = rope;
    return o;
  }
};

TEST_P(GpuPrefillTest, OddLengthsMatchReference) {
  std::random_device rd;
  for (int n : {1, 7, 17, 63, 65, 1000}) {
    const uint32_t seed = rd();
    PrefillCase c(Layout(), Options(true), seed);
    c.AddSequence({.history = n == 1000 ? 333 : 37 + 3 * n, .num_new = n, .first_position = 11});
    c.AddSequence({.history = 0, .num_new = n == 1000 ? 129 : n});  // causal only
    c.Finish();
    RunAndCompare(c, absl::StrCat(Name(GetParam()), " n=", n, " seed ", seed));
  }
}

TEST_P(GpuPrefillTest, MixedBatchMatchesReference) {
  const int tpc = GetParam().tpc;
  for (bool rope : {true, false}) {
    const uint32_t seed = std::random_device{}();
    PrefillCase c(Layout(), Options(rope), seed);
    c.AddSequence({.history = 3 * tpc + 5, .num_new = 17});
    c.AddSequence({.history = 2 * tpc, .num_new = 1, .first_position = 9000});
    c.AddSequence({.history = 4 * tpc + 1, .num_new = 65, .skip_after = 0, .skip = 3 * tpc + 11});
    c.AddSequence({.history = 3 * tpc + 9, .num_new = 63, .first_position = 500,
                   .share_with = 0, .shared_chunks = 3});
    c.AddSequence({.history = 5, .num_new = 0});
    c.AddSequence({.history = 700, .num_new = 1, .share_with = 0, .shared_chunks = 2});
    c.AddSequence({.history = 2 * tpc, .num_new = 7, .first_position = 30000,
                   .share_with = 0, .shared_chunks = 2});
    c.Finish();
    RunAndCompare(c, absl::StrCat(Name(GetParam()), " mixed rope=", rope, " seed ", seed));
  }
}

// Split KV: a split target far above the launch's blocks cuts every tile
// longer than 256 keys into pieces of 256 (the shortest piece), merged by
// the second kernel; histories that end inside a piece, tiles whose rows
// reach into different pieces, decodes, RoPE on and off.
TEST_P(GpuPrefillTest, SplitKvMatchesReference) {
  const int tpc = GetParam().tpc;
  for (bool rope : {true, false}) {
    const uint32_t seed = std::random_device{}();
    PrefillCase c(Layout(), Options(rope), seed);
    c.AddSequence({.history = 1500, .num_new = 1, .first_position = 3});
    c.AddSequence({.history = 700, .num_new = 33});
    c.AddSequence({.history = 255, .num_new = 300, .first_position = 20000});
    c.AddSequence({.history = 4 * tpc + 1, .num_new = 7, .share_with = 0, .shared_chunks = 3});
    c.AddSequence({.history = 9, .num_new = 0});
    // Up to 41 pieces of 256 keys: the merge's states past the eight it loads
    // first, and past the 32 whose slots each lane holds.
    c.AddSequence({.history = 40 * 256 + 17, .num_new = 2, .first_position = 100});
    c.Finish();
    PrefillOptions tuning = c.options();
    tuning.split_target_blocks = 1 << 20;
    absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(c.layout(), tuning, c.batch());
    ASSERT_TRUE(plan.ok()) << plan.status();
    int most_pieces = 0;
    for (const PrefillMerge& m : plan->merges) most_pieces = std::max(most_pieces, m.num_pieces);
    EXPECT_GT(most_pieces, 32);
    RunAndCompare(c, absl::StrCat(Name(GetParam()), " split rope=", rope, " seed ", seed), &tuning,
                  /*expect_split=*/true);
  }
}

// Split KV into pieces of an odd number of 64-key tiles: pieces that start
// at 64 mod 128, where the 128-key-tile kernel (g128x128) tiles a piece from
// its start and masks the keys past its end. The split target is searched
// for (on the host plan of the 128-row variants) to give such pieces.
TEST_P(GpuPrefillTest, SplitKvPiecesOfOddTileCountsMatchReference) {
  const uint32_t seed = std::random_device{}();
  PrefillCase c(Layout(), Options(true), seed);
  c.AddSequence({.history = 1500, .num_new = 1, .first_position = 3});
  c.AddSequence({.history = 700, .num_new = 33});
  c.AddSequence({.history = 1100, .num_new = 70, .first_position = 4000});
  c.Finish();
  PrefillOptions tuning = c.options();
  tuning.kernel_variant = PrefillOptions::KernelVariant::kRows128WgmmaKv128;
  bool found = false;
  for (int target = 2; target <= 4096 && !found; ++target) {
    tuning.split_target_blocks = target;
    absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(c.layout(), tuning, c.batch());
    ASSERT_TRUE(plan.ok()) << plan.status();
    for (const PrefillItem& it : plan->items) {
      found = found || (it.partial_row >= 0 && it.kv_begin % 128 == 64);
    }
  }
  ASSERT_TRUE(found) << "no split target gives a piece at 64 mod 128";
  RunAndCompare(c,
                absl::StrCat(Name(GetParam()), " odd pieces, target ", tuning.split_target_blocks,
                             " seed ", seed),
                &tuning);  // the 64-row plan may have enough blocks not to split
}

// The RoPE table and the sincosf fallback compute the same fp32 angles and
// cos / sin: both match the reference and agree bit for bit (split and not).
TEST_P(GpuPrefillTest, RopeTableAndSincosFallbackAgree) {
  const uint32_t seed = std::random_device{}();
  PrefillCase c(Layout(), Options(true), seed);
  c.AddSequence({.history = 333, .num_new = 65, .first_position = 11});
  c.AddSequence({.history = 2 * GetParam().tpc, .num_new = 1, .first_position = 70000});
  c.AddSequence({.history = 0, .num_new = 17});
  c.Finish();
  for (int split : {0, 1 << 20}) {
    PrefillOptions table = c.options();
    table.split_target_blocks = split;
    PrefillOptions fallback = table;
    fallback.max_rope_table_bytes = 0;
    const std::string what = absl::StrCat(Name(GetParam()), " split=", split != 0, " seed ", seed);
    const auto a = RunAndCompare(c, what + " table", &table);
    const auto b = RunAndCompare(c, what + " sincosf", &fallback);
    ExpectSameBits(a, b, what + ": table and sincosf differ");
  }
}

// A page table moved to other slices after upload (the worker does so per
// layer: the same chunks' next layer) is read there: through
// MovedPrefillPlan (g128p's tensor maps move with the slices) and with
// `pages` swapped by hand (the maps, which describe the uploaded slices,
// are then not used). The uploaded slices hold zeros, the moved ones the
// case's data.
TEST_P(GpuPrefillTest, MovedPageTablesReadTheMovedSlices) {
  const uint32_t seed = std::random_device{}();
  PrefillCase c(Layout(), Options(true), seed);
  c.AddSequence({.history = 700, .num_new = 1, .first_position = 5});
  c.AddSequence({.history = 300, .num_new = 1});
  c.AddSequence({.history = 1000, .num_new = 200});
  c.Finish();
  const KvLayout& layout = c.layout();
  ReferenceOutput ref;
  absl::Status s = ReferencePrefill(layout, c.options(), c.queries(), c.batch(), &ref);
  ASSERT_TRUE(s.ok()) << s;
  const size_t pool_bytes = c.pool().size() * 2;
  DeviceBuffer two(2 * pool_bytes);
  ASSERT_NE(two.get(), nullptr);
  CUDA_OK(cudaMemset(two.get(), 0, pool_bytes));
  CUDA_OK(cudaMemcpy(static_cast<char*>(two.get()) + pool_bytes, c.pool().data(), pool_bytes,
                     cudaMemcpyHostToDevice));
  const size_t q_bytes = c.queries().size() * 2;
  const size_t rows = c.queries().size() / layout.head_dim;
  DeviceBuffer q(q_bytes), out(q_bytes), lse(rows * 4);
  CUDA_OK(cudaMemcpy(q.get(), c.queries().data(), q_bytes, cudaMemcpyHostToDevice));
  const PrefillBatch host = c.batch();
  const std::vector<const void*> chunks = c.Rebase(host.chunks, two.get());
  const PrefillBatch dev{chunks, host.positions, host.chunk_offsets, host.kv_lengths,
                         host.query_offsets};
  for (PrefillOptions::KernelVariant v : Variants()) {
    PrefillOptions options = c.options();
    options.kernel_variant = v;
    absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(layout, options, dev);
    ASSERT_TRUE(plan.ok()) << plan.status();
    DeviceBuffer ws(PrefillWorkspaceBytes(*plan));
    absl::StatusOr<DevicePrefillPlan> dplan =
        UploadPrefillPlan(*plan, ws.get(), ws.bytes(), nullptr);
    ASSERT_TRUE(dplan.ok()) << dplan.status();
    std::vector<const void*> moved(plan->pages.size());
    for (size_t e = 0; e < moved.size(); ++e) {
      moved[e] = static_cast<const char*>(plan->pages[e]) + pool_bytes;
    }
    DeviceBuffer table(moved.size() * sizeof(void*));
    CUDA_OK(cudaMemcpy(table.get(), moved.data(), table.bytes(), cudaMemcpyHostToDevice));
    const auto* d_table = static_cast<const void* const*>(table.get());
    for (bool by_hand : {false, true}) {
      DevicePrefillPlan run =
          MovedPrefillPlan(*dplan, d_table, static_cast<int64_t>(pool_bytes));
      if (by_hand) {
        run = *dplan;
        run.pages = d_table;
      }
      CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));
      CUDA_OK(cudaMemset(lse.get(), 0xFF, lse.bytes()));
      s = RunPrefill(run, q.get(), out.get(), static_cast<float*>(lse.get()), nullptr);
      ASSERT_TRUE(s.ok()) << s;
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<uint16_t> got(c.queries().size());
      std::vector<float> got_lse(rows);
      CUDA_OK(cudaMemcpy(got.data(), out.get(), q_bytes, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(got_lse.data(), lse.get(), lse.bytes(), cudaMemcpyDeviceToHost));
      ExpectClose(layout.dtype, got, got_lse, ref,
                  absl::StrCat(Name(GetParam()), " ", PrefillKernelVariantName(v),
                               by_hand ? " pages swapped by hand" : " MovedPrefillPlan",
                               " seed ", seed));
    }
  }
}

// The pipelined kernel's K / V tiles loaded through tensor maps of the
// chunk pool (TMA; the tile that holds kv_end by cp.async) and wholly by
// cp.async: both match the reference and agree bit for bit (so do the other
// variants, which ignore the option), keys rotated ahead and in the kernel,
// split and not, over partial chunks, decodes and shared chunks.
TEST_P(GpuPrefillTest, TensorMapAndCpAsyncLoadsAgree) {
  const int tpc = GetParam().tpc;
  const uint32_t seed = std::random_device{}();
  PrefillCase c(Layout(), Options(true), seed);
  c.AddSequence({.history = 1000, .num_new = 300, .first_position = 7});
  c.AddSequence({.history = 2 * tpc + 3, .num_new = 1});
  c.AddSequence({.history = 3 * tpc + 9, .num_new = 130, .first_position = 500,
                 .share_with = 0, .shared_chunks = std::min(3, 1000 / tpc)});
  c.Finish();
  for (int split : {0, 1 << 20}) {
    for (auto rotation : {PrefillOptions::KeyRotation::kAhead,
                          PrefillOptions::KeyRotation::kInKernel}) {
      PrefillOptions tma = c.options();
      tma.split_target_blocks = split;
      tma.key_rotation = rotation;
      PrefillOptions copies = tma;
      copies.tensor_map_loads = false;
      const std::string what =
          absl::StrCat(Name(GetParam()), " split=", split != 0, " ahead=",
                       rotation == PrefillOptions::KeyRotation::kAhead, " seed ", seed);
      const auto a = RunAndCompare(c, what + " tma", &tma);
      const auto b = RunAndCompare(c, what + " cp.async", &copies);
      ExpectSameBits(a, b, what + ": tensor-map and cp.async loads differ");
    }
  }
}

// Keys rotated ahead (pre-kernel into the workspace) and keys rotated in
// the attention kernel: both match the reference and agree bit for bit, with
// the table and with sincosf, split and not, over decodes, partial chunks,
// re-based positions and chunks shared at different positions.
TEST_P(GpuPrefillTest, KeysRotatedAheadMatchInKernelRotation) {
  const int tpc = GetParam().tpc;
  const uint32_t seed = std::random_device{}();
  PrefillCase c(Layout(), Options(true), seed);
  c.AddSequence({.history = 333, .num_new = 65, .first_position = 11});
  c.AddSequence({.history = 2 * tpc, .num_new = 1, .first_position = 70000});
  // Sequence 0's full history chunks, at most 3, are shared (with 256-token
  // chunks it has one).
  c.AddSequence({.history = 3 * tpc + 9, .num_new = 40, .first_position = 500,
                 .share_with = 0, .shared_chunks = std::min(3, 333 / tpc)});
  c.AddSequence({.history = 0, .num_new = 17});
  c.AddSequence({.history = 5, .num_new = 0});
  c.Finish();
  for (int split : {0, 1 << 20}) {
    for (int64_t table_bytes : {int64_t{64} << 20, int64_t{0}}) {
      PrefillOptions in_kernel = c.options();
      in_kernel.split_target_blocks = split;
      in_kernel.max_rope_table_bytes = table_bytes;
      in_kernel.key_rotation = PrefillOptions::KeyRotation::kInKernel;
      PrefillOptions ahead = in_kernel;
      ahead.key_rotation = PrefillOptions::KeyRotation::kAhead;
      const std::string what = absl::StrCat(Name(GetParam()), " split=", split != 0,
                                            " table=", table_bytes != 0, " seed ", seed);
      const auto a = RunAndCompare(c, what + " in kernel", &in_kernel);
      const auto b = RunAndCompare(c, what + " ahead", &ahead);
      ExpectSameBits(a, b, what + ": keys rotated ahead and in the kernel differ");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuPrefillTest, ::testing::ValuesIn(kShapes),
                         [](const auto& info) { return Name(info.param); });

TEST(GpuPrefillApiTest, WrapperAndErrorCodes) {
  KvLayout layout{KvDtype::kFloat16, 2, 64, 16};
  PrefillOptions options;
  options.num_q_heads = 8;
  PrefillCase c(layout, options, std::random_device{}());
  c.AddSequence({.history = 30, .num_new = 9});
  c.Finish();
  const PrefillBatch host = c.batch();
  DeviceBuffer pool(c.pool().size() * 2);
  CUDA_OK(cudaMemcpy(pool.get(), c.pool().data(), pool.bytes(), cudaMemcpyHostToDevice));
  std::vector<const void*> chunks = c.Rebase(host.chunks, pool.get());
  const PrefillBatch dev{chunks, host.positions, host.chunk_offsets, host.kv_lengths,
                         host.query_offsets};
  const size_t q_bytes = c.queries().size() * 2;
  DeviceBuffer q(q_bytes + 16), out(q_bytes + 16), ws(1 << 16);
  CUDA_OK(cudaMemcpy(q.get(), c.queries().data(), q_bytes, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(out.get(), 0xFF, out.bytes()));
  ASSERT_TRUE(PrefillAttention(layout, options, dev, q.get(), out.get(), nullptr, ws.get(),
                               ws.bytes(), nullptr)
                  .ok());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> got(c.queries().size());
  CUDA_OK(cudaMemcpy(got.data(), out.get(), q_bytes, cudaMemcpyDeviceToHost));
  ReferenceOutput ref;
  ASSERT_TRUE(ReferencePrefill(layout, options, c.queries(), host, &ref).ok());
  ref.lse.clear();
  ExpectClose(layout.dtype, got, {}, ref, "PrefillAttention wrapper");

  auto call = [&](const PrefillBatch& b, const void* qp, size_t ws_bytes) {
    return PrefillAttention(layout, options, b, qp, out.get(), nullptr, ws.get(), ws_bytes,
                            nullptr)
        .code();
  };
  EXPECT_EQ(call(dev, q.get(), 64), absl::StatusCode::kInvalidArgument);  // small workspace
  EXPECT_EQ(call(dev, static_cast<char*>(q.get()) + 2, ws.bytes()),
            absl::StatusCode::kInvalidArgument);  // misaligned queries
  std::vector<const void*> bad = chunks;
  bad[0] = static_cast<const char*>(bad[0]) + 2;
  const PrefillBatch bad_batch{bad, host.positions, host.chunk_offsets, host.kv_lengths,
                               host.query_offsets};
  EXPECT_EQ(call(bad_batch, q.get(), ws.bytes()), absl::StatusCode::kInvalidArgument);
  KvLayout bad_layout = layout;
  bad_layout.head_dim = 80;
  EXPECT_EQ(PrefillAttention(bad_layout, options, dev, q.get(), out.get(), nullptr, ws.get(),
                             ws.bytes(), nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
