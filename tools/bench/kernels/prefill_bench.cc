// Benchmark of Strata's prefill-over-cached-chunks kernel (kernels/prefill.h).
//
//   prefill_bench [--configs=SHAPE:HISTORY:NEW,...] [--iters=N] [--csv=PATH]
//                 [--no-rope] [--key-rotation=auto|kernel|ahead] [--no-rope-table]
//                 [--variants=base,r128,w128,g128,g128x128,g128p] [--print-configs]
//                 [--help]
// SHAPE is gqa_bf16 (Llama-3-8B: 32 q / 8 kv heads, d128, bf16) or mha_fp16
// (32 / 32 heads, d128, fp16); 64-token chunks. One sequence per config: a
// cached history of HISTORY tokens followed by NEW new tokens (their K/V in
// the chunks after the history, the last chunk partial), keys rotated at
// their chunk positions (RoPE theta 500000) unless --no-rope. Default grid:
// both shapes x history 1k/4k/16k/32k x new 1/128/512/2048.
// --key-rotation: where keys are rotated (PrefillOptions::key_rotation;
// default auto: ahead for the configs whose keys several query tiles read).
// --no-rope-table: cos / sin by sincosf in the kernels, not from the
// launch's table (PrefillOptions::max_rope_table_bytes = 0; same bits).
// --split-target=N: PrefillOptions::split_target_blocks (0: no split).
// --no-tma: g128p loads its K / V tiles by cp.async instead of tensor maps
// (PrefillOptions::tensor_map_loads = false).
// --variants: the attention kernels to time on the same inputs, side by side
// (PrefillOptions::kernel_variant: base = 64 rows x 4 warps, r128 = 128 rows
// x 8 warps, w128 = 128 rows x 4 warps of 32 rows, g128 / g128x128 = 128
// rows on wgmma with 64- / 128-token KV tiles, g128p = g128x128 with each
// warpgroup's softmax under its own MMAs; default base); each variant
// plans its own launch (tiles of its rows, its split).
//
// Time: the launch captured in a CUDA graph, median of 5 repetitions of
// `iters` back-to-back replays between two CUDA events, rotating over up to 4
// copies of the KV (as many as reach 256 MiB) so that replays do not hit in
// L2. Prints the achieved TFLOP/s (causal FLOPs: 4 * d * q_heads * visible
// keys per new token) and the floor = max(unique KV + Q + O bytes /
// 4.25 TB/s, FLOPs / 790 TFLOP/s) (H200: D2D copy bandwidth measured here,
// dense bf16/fp16 matrix rate) and time / floor.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/prefill.h"
#include "kernels/prefill_plan.h"
#include "tools/bench/kernels/bench_util.h"
#include "tools/bench/kernels/fill.h"

namespace strata::bench {
namespace {

// --no-tma and --split-target (process-wide settings of the benchmark).
bool tensor_map_loads = true;
int split_target_blocks = -1;  // -1: PrefillOptions' default

using kernels::DevicePrefillPlan;
using kernels::KvDtype;
using kernels::KvLayout;
using kernels::PrefillBatch;
using kernels::PrefillOptions;
using kernels::PrefillPlan;

constexpr double kBytesPerSecond = 4.25e12;
constexpr double kFlopsPerSecond = 790e12;

struct Shape {
  KvLayout layout;
  int q_heads = 32;
};

Shape ShapeByName(const std::string& name) {
  Shape s;
  s.layout.head_dim = 128;
  s.layout.tokens_per_chunk = 64;
  if (name == "mha_fp16") {
    s.layout.dtype = KvDtype::kFloat16;
    s.layout.num_kv_heads = 32;
  } else if (name == "gqa_bf16") {
    s.layout.dtype = KvDtype::kBFloat16;
    s.layout.num_kv_heads = 8;
  } else {
    std::fprintf(stderr, "unknown shape %s\n", name.c_str());
    std::exit(2);
  }
  return s;
}

struct Result {
  double us, tflops, floor_us, flops, bytes;
};

// Times every variant on the same queries and KV copies.
std::vector<Result> RunConfig(const Shape& sh, int history, int num_new, bool rope,
                              PrefillOptions::KeyRotation key_rotation, bool rope_table,
                              const std::vector<PrefillOptions::KernelVariant>& variants,
                              int iters) {
  const KvLayout& L = sh.layout;
  const int tpc = L.tokens_per_chunk;
  const int len = history + num_new;
  const int nchunks = (len + tpc - 1) / tpc;
  const size_t slice = L.SliceBytes();
  const size_t bytes = nchunks * slice;
  const int copies = static_cast<int>(
      std::clamp<size_t>(((size_t{256} << 20) + bytes - 1) / bytes, 1, 4));
  const size_t q_elems = static_cast<size_t>(num_new) * sh.q_heads * L.head_dim;
  void *q, *out;
  CHECK_CUDA(cudaMalloc(&q, q_elems * 2));
  CHECK_CUDA(cudaMalloc(&out, q_elems * 2));
  const bool bf16 = L.dtype == KvDtype::kBFloat16;
  CHECK_CUDA(strata::bench::FillRandom16(q, q_elems, 7, bf16, nullptr));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<void*> pools;
  for (int c = 0; c < copies; ++c) {
    void* pool;
    CHECK_CUDA(cudaMalloc(&pool, bytes));
    CHECK_CUDA(strata::bench::FillRandom16(pool, bytes / 2, 100 + c, bf16, nullptr));
    pools.push_back(pool);
  }
  std::vector<int32_t> offsets{0, nchunks}, lengths{len}, qoffs{0, num_new};
  std::vector<Result> results;
  for (PrefillOptions::KernelVariant variant : variants) {
    PrefillOptions options;
    options.num_q_heads = sh.q_heads;
    options.apply_rope = rope;
    options.key_rotation = key_rotation;
    if (!rope_table) options.max_rope_table_bytes = 0;  // cos / sin by sincosf
    options.tensor_map_loads = tensor_map_loads;
    if (split_target_blocks >= 0) options.split_target_blocks = split_target_blocks;
    options.kernel_variant = variant;
    std::vector<void*> workspaces;
    std::vector<cudaGraphExec_t> graphs;
    Result r{};
    for (void* pool : pools) {
      std::vector<const void*> chunks;
      for (int i = 0; i < nchunks; ++i) chunks.push_back(static_cast<char*>(pool) + i * slice);
      const PrefillBatch batch{chunks, {}, offsets, lengths, qoffs};
      absl::StatusOr<PrefillPlan> plan = kernels::BuildPrefillPlan(L, options, batch);
      CHECK_OK(plan.status());
      r.flops = plan->flops;
      r.bytes = plan->unique_kv_bytes + 2.0 * q_elems * 2;
      void* ws;
      const size_t ws_bytes = kernels::PrefillWorkspaceBytes(*plan);
      CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
      workspaces.push_back(ws);
      absl::StatusOr<DevicePrefillPlan> dev =
          kernels::UploadPrefillPlan(*plan, ws, ws_bytes, stream);
      CHECK_OK(dev.status());
      CHECK_OK(kernels::RunPrefill(*dev, q, out, nullptr, stream));  // warm-up
      CHECK_CUDA(cudaStreamSynchronize(stream));
      graphs.push_back(CaptureGraph(
          stream, [&] { CHECK_OK(kernels::RunPrefill(*dev, q, out, nullptr, stream)); }));
    }
    r.us = TimeGraphsUs(stream, graphs, iters);
    r.tflops = r.flops / (r.us * 1e-6) / 1e12;
    r.floor_us = std::max(r.bytes / kBytesPerSecond, r.flops / kFlopsPerSecond) * 1e6;
    for (cudaGraphExec_t g : graphs) CHECK_CUDA(cudaGraphExecDestroy(g));
    for (void* p : workspaces) CHECK_CUDA(cudaFree(p));
    results.push_back(r);
  }
  for (void* p : pools) CHECK_CUDA(cudaFree(p));
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(out));
  CHECK_CUDA(cudaStreamDestroy(stream));
  return results;
}

std::string DefaultConfigs() {
  std::string s;
  for (const char* shape : {"gqa_bf16", "mha_fp16"}) {
    for (int h : {1024, 4096, 16384, 32768}) {
      for (int n : {1, 128, 512, 2048}) {
        s += std::string(shape) + ":" + std::to_string(h) + ":" + std::to_string(n) + ",";
      }
    }
  }
  return s;
}

constexpr char kUsage[] =
    "usage: prefill_bench [--configs=SHAPE:HISTORY:NEW,...] [--iters=N] [--csv=PATH]\n"
    "                     [--no-rope] [--key-rotation=auto|kernel|ahead] [--no-rope-table]\n"
    "                     [--no-tma] [--split-target=N]\n"
    "                     [--variants=base,r128,w128,g128,g128x128,g128p] [--print-configs]\n"
    "                     [--help]\n"
    "  --configs        SHAPE (gqa_bf16 | mha_fp16):HISTORY:NEW, comma-separated\n"
    "                   (default: both shapes x history 1k/4k/16k/32k x new\n"
    "                   1/128/512/2048)\n"
    "  --iters          graph replays per timed repetition (default 20)\n"
    "  --csv            also write one row per config and variant to PATH\n"
    "  --no-rope        keys and queries used as given (default: RoPE on)\n"
    "  --key-rotation   where keys are rotated (default auto)\n"
    "  --no-rope-table  cos / sin from sincosf in the kernels instead of the\n"
    "                   launch's table (same bits; separates the table's L2\n"
    "                   traffic from the rotation's own cost)\n"
    "  --no-tma         g128p loads K / V tiles by cp.async, not by TMA\n"
    "                   (PrefillOptions::tensor_map_loads = false)\n"
    "  --split-target   split KV below N blocks, N / 2 for the variants of\n"
    "                   one block per SM (PrefillOptions::split_target_blocks;\n"
    "                   default 264, 0: never split)\n"
    "  --variants       kernel variants timed side by side on the same inputs:\n"
    "                   base (64 rows x 4 warps), r128 (128 rows x 8 warps),\n"
    "                   w128 (128 rows x 4 warps of 32 rows), g128 and\n"
    "                   g128x128 (128 rows on wgmma, sm_90a, 64- / 128-token\n"
    "                   KV tiles), g128p (g128x128 with the softmax of a\n"
    "                   tile overlapped with the previous tile's P V);\n"
    "                   default base\n"
    "  --print-configs  print the configs and exit\n";

int Main(int argc, char** argv) {
  std::string configs = DefaultConfigs();
  std::string csv_path;
  int iters = 20;
  bool rope = true;
  PrefillOptions::KeyRotation key_rotation = PrefillOptions::KeyRotation::kAuto;
  bool rope_table = true;
  bool print_configs = false;
  std::vector<PrefillOptions::KernelVariant> variants{PrefillOptions::KernelVariant::kRows64};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--configs=", 0) == 0) configs = a.substr(10);
    else if (a.rfind("--csv=", 0) == 0) csv_path = a.substr(6);
    else if (a.rfind("--iters=", 0) == 0) iters = std::max(1, std::atoi(a.c_str() + 8));
    else if (a == "--no-rope") rope = false;
    else if (a == "--key-rotation=auto") key_rotation = PrefillOptions::KeyRotation::kAuto;
    else if (a == "--key-rotation=kernel") key_rotation = PrefillOptions::KeyRotation::kInKernel;
    else if (a == "--key-rotation=ahead") key_rotation = PrefillOptions::KeyRotation::kAhead;
    else if (a == "--no-rope-table") rope_table = false;
    else if (a == "--no-tma") tensor_map_loads = false;
    else if (a.rfind("--split-target=", 0) == 0) {
      split_target_blocks = std::max(0, std::atoi(a.c_str() + 15));
    }
    else if (a.rfind("--variants=", 0) == 0) {
      variants.clear();
      const std::string list = a.substr(11);
      size_t pos = 0;
      while (pos <= list.size()) {
        size_t end = list.find(',', pos);
        if (end == std::string::npos) end = list.size();
        const std::string name = list.substr(pos, end - pos);
        pos = end + 1;
        if (name.empty()) continue;
        absl::StatusOr<PrefillOptions::KernelVariant> v = kernels::ParsePrefillKernelVariant(name);
        if (!v.ok()) {
          std::fprintf(stderr, "%s\n", std::string(v.status().message()).c_str());
          return 2;
        }
        variants.push_back(*v);
      }
      if (variants.empty()) {
        std::fprintf(stderr, "--variants needs at least one of %s\n",
                     "base, r128, w128, g128, g128x128, g128p");
        return 2;
      }
    }
    else if (a == "--print-configs") print_configs = true;
    else if (a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    }
    else {
      std::fprintf(stderr, "unknown flag %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (print_configs) {  // after every flag, so that --configs counts wherever it stands
    std::printf("%s\n", configs.c_str());
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; floor = max(bytes / %.2f TB/s, FLOPs / %.0f TFLOP/s); rope %s%s\n",
              prop.name, prop.multiProcessorCount, kBytesPerSecond / 1e12,
              kFlopsPerSecond / 1e12, rope ? "on" : "off",
              rope && !rope_table ? " (cos / sin by sincosf, no table)" : "");
  std::printf("%-9s %6s %5s %9s", "shape", "hist", "new", "floor us");
  for (PrefillOptions::KernelVariant v : variants) {
    std::printf(" | %-8s %9s %6s %6s", kernels::PrefillKernelVariantName(v), "us", "TFLOPs",
                "xfloor");
  }
  if (variants.size() > 1) std::printf(" | best");
  std::printf("\n");
  FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (csv != nullptr) {
    std::fprintf(csv, "shape,history,new,variant,us,tflops,floor_us,ratio,gflop,mb\n");
  }
  size_t start = 0;
  while (start < configs.size()) {
    size_t end = configs.find(',', start);
    if (end == std::string::npos) end = configs.size();
    const std::string c = configs.substr(start, end - start);
    start = end + 1;
    if (c.empty()) continue;
    const size_t p1 = c.find(':'), p2 = c.find(':', p1 + 1);
    if (p1 == std::string::npos || p2 == std::string::npos) {
      std::fprintf(stderr, "bad config %s (SHAPE:HISTORY:NEW)\n", c.c_str());
      return 2;
    }
    const std::string shape = c.substr(0, p1);
    const int history = std::atoi(c.substr(p1 + 1, p2 - p1 - 1).c_str());
    const int num_new = std::atoi(c.substr(p2 + 1).c_str());
    const std::vector<Result> rs =
        RunConfig(ShapeByName(shape), history, num_new, rope, key_rotation, rope_table, variants,
                  iters);
    std::printf("%-9s %6d %5d %9.1f", shape.c_str(), history, num_new, rs[0].floor_us);
    size_t best = 0;
    for (size_t v = 0; v < rs.size(); ++v) {
      const Result& r = rs[v];
      std::printf(" | %-8s %9.1f %6.1f %6.2f", kernels::PrefillKernelVariantName(variants[v]),
                  r.us, r.tflops, r.us / r.floor_us);
      if (r.us < rs[best].us) best = v;
      if (csv != nullptr) {
        std::fprintf(csv, "%s,%d,%d,%s,%.2f,%.2f,%.2f,%.3f,%.3f,%.2f\n", shape.c_str(), history,
                     num_new, kernels::PrefillKernelVariantName(variants[v]), r.us, r.tflops,
                     r.floor_us, r.us / r.floor_us, r.flops / 1e9, r.bytes / 1e6);
      }
    }
    if (rs.size() > 1) {
      std::printf(" | %s %.2fx of %s", kernels::PrefillKernelVariantName(variants[best]),
                  rs[0].us / rs[best].us, kernels::PrefillKernelVariantName(variants[0]));
    }
    std::printf("\n");
    std::fflush(stdout);
    if (csv != nullptr) std::fflush(csv);
  }
  if (csv != nullptr) std::fclose(csv);
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Main(argc, argv); }
