// Benchmark of Strata's decode attention kernels on shared-prefix batches.
//
//   attention_bench [--configs=SHAPE:PREFIX:BATCH:PRIVATE,...] [--tree]
//                   [--iters=N] [--csv=PATH] [--profile]
//                   [--target-blocks=N] [--rows-factor=F] [--spread]
//                   [--interleave] [--fused-merge]
//                   (PlanOptions; num_sms is the device's)
//                   [--papers] [--variants=V1,V2,...]  (see below)
// SHAPE is mha_fp16 (32 q / 32 kv heads, d128, fp16) or gqa_bf16 (32 q / 8 kv
// heads, d128, bf16). For each config: every sequence = the shared prefix's
// chunks ++ its own private chunks (64 tokens per chunk); times our paged,
// prefix-aware and relay kernels (median of per-iteration CUDA-event times,
// rotating over copies of the KV so that repeated runs do not hit in L2) and
// prints the floors: unique KV bytes (prefix once + private contexts) and all
// of the sequences' bytes (paged), over the device-to-device copy bandwidth
// measured in the same run. --tree adds the DeFT-like tree workload.
// --profile runs every plan once without timing (for Nsight Compute: the
// partial-attention kernels then appear in order paged, prefix-aware, relay).
//
// Variants side by side (prefix-aware plans only):
//   attention_bench --papers [--variants=V1,V2,...] [--iters=N] [--csv=PATH]
// runs the 16 configs of the H200 table (kernels/README.md) and the tree
// workload, each with every variant in turn on the same KV, and prints time
// and time / unique-bytes floor per variant (with --configs=..., those
// configs instead; --tree adds the tree workload). A variant is PlanOptions
// tokens joined by '+': default, interleave (interleave_shared_items), fused
// (fused_merge), spread (spread_row_tiled_runs), tb=N (target_blocks),
// rf=N (min_piece_tokens_per_row), mc=N (max_chunks_per_item), mma
// (wgmma_shared_items off: every item on mma.sync), and nomerge
// (time the partial-attention launch alone: outputs not merged; the
// difference to the same plan with the merge is the merge's share), and
// read / read16 (no attention: one streaming read of the workload's unique
// KV bytes, 4 or 16 loads of 16 bytes per thread: the time a kernel that only
// reads them takes).
// Default list: kDefaultVariants below.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/attention_plan.h"
#include "tools/bench/kernels/decode_shapes.h"
#include "tools/bench/kernels/bench_util.h"
#include "tools/bench/kernels/fill.h"

namespace strata::bench {
namespace {

using kernels::AttentionOptions;
using kernels::AttentionPlan;
using kernels::DevicePlan;
using kernels::KvDtype;
using kernels::KvLayout;
using kernels::PagedBatch;
using kernels::PlanOptions;

using bench::Shape;
using bench::ShapeByName;

// Device-to-device copy bandwidth, bytes read + written per second.
double MeasureCopyBandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *a, *b;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 7; ++i) {
    CHECK_CUDA(cudaEventRecord(e0));
    CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    CHECK_CUDA(cudaEventRecord(e1));
    CHECK_CUDA(cudaEventSynchronize(e1));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) t.push_back(ms * 1e-3);
  }
  CHECK_CUDA(cudaFree(a));
  CHECK_CUDA(cudaFree(b));
  return 2.0 * bytes / Median(t);
}

// One copy of a workload's KV and page tables on the device.
struct Copy {
  void* pool = nullptr;
  std::vector<const void*> chunks;       // page tables (CSR)
  std::vector<const void*> prefix;       // relay prefix chunks
  std::vector<const void*> ctx_chunks;   // relay contexts (CSR)
};

bool g_profile = false;  // run each plan once, untimed (for ncu)
PlanOptions g_plan_options;
// --rope: keys rotated on the fly (AttentionOptions::apply_rope, Llama-3's
// theta), as a worker that stores keys unrotated decodes.
bool g_rope = false;

Shape BenchShape(const std::string& name) {
  Shape sh = ShapeByName(name);
  sh.options.apply_rope = g_rope;
  sh.options.rope_theta = 500000.0f;
  return sh;
}

// Times RunAttention for plans rotated over copies; returns us per run.
// Each copy's launches are captured once in a CUDA graph; the time is the
// median over 5 repetitions of `iters` back-to-back replays (rotating over the
// copies) between two events, divided by iters. partial_only: the
// partial-attention launch alone (RunPartialAttention).
double TimePlans(const std::vector<AttentionPlan>& plans, const void* q, void* out,
                 int iters, bool partial_only = false) {
  auto run = [&](const DevicePlan& d, cudaStream_t stream) {
    return partial_only ? kernels::RunPartialAttention(d, q, out, nullptr, stream)
                        : kernels::RunAttention(d, q, out, nullptr, stream);
  };
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<void*> ws;
  std::vector<DevicePlan> dev;
  for (const AttentionPlan& p : plans) {
    void* w;
    const size_t bytes = kernels::PlanWorkspaceBytes(p);
    CHECK_CUDA(cudaMalloc(&w, bytes));
    auto d = kernels::UploadPlan(p, w, bytes, stream);
    CHECK_OK(d.status());
    ws.push_back(w);
    dev.push_back(*d);
    CHECK_OK(run(*d, stream));  // warm-up
    if (g_profile) break;
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  double result = 0;
  if (!g_profile) {
    std::vector<cudaGraphExec_t> graphs;
    for (const DevicePlan& d : dev) {
      graphs.push_back(CaptureGraph(
          stream, [&] { CHECK_OK(run(d, stream)); }));
    }
    result = TimeGraphsUs(stream, graphs, iters);
    for (cudaGraphExec_t g : graphs) CHECK_CUDA(cudaGraphExecDestroy(g));
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  for (void* w : ws) CHECK_CUDA(cudaFree(w));
  return result;
}

int CopiesFor(size_t bytes) {
  const size_t target = size_t{256} << 20;
  return static_cast<int>(std::clamp<size_t>((target + bytes - 1) / bytes, 1, 4));
}

void RunPrefixConfig(const Shape& sh, int prefix, int batch, int priv, int iters,
                     double bw, FILE* csv) {
  const KvLayout& L = sh.layout;
  const int tpc = L.tokens_per_chunk;
  const int pchunks = (prefix + tpc - 1) / tpc;
  const int cchunks = (priv + tpc - 1) / tpc;
  const size_t slice = L.SliceBytes();
  const size_t total_chunks = pchunks + static_cast<size_t>(batch) * cchunks;
  const size_t bytes = total_chunks * slice;
  const int copies = CopiesFor(bytes);
  std::vector<int32_t> offsets{0}, lengths, ctx_offsets{0}, ctx_lengths;
  for (int b = 0; b < batch; ++b) {
    offsets.push_back(offsets.back() + pchunks + cchunks);
    lengths.push_back(prefix + priv);
    ctx_offsets.push_back(ctx_offsets.back() + cchunks);
    ctx_lengths.push_back(priv);
  }
  std::vector<Copy> cs(copies);
  std::vector<AttentionPlan> paged, tree, relay;
  const bool bf16 = L.dtype == KvDtype::kBFloat16;
  for (int c = 0; c < copies; ++c) {
    Copy& cp = cs[c];
    CHECK_CUDA(cudaMalloc(&cp.pool, bytes));
    CHECK_CUDA(FillRandom16(cp.pool, bytes / 2, 1000 + c, bf16, nullptr));
    auto chunk = [&](size_t i) { return static_cast<const void*>(static_cast<char*>(cp.pool) + i * slice); };
    for (int i = 0; i < pchunks; ++i) cp.prefix.push_back(chunk(i));
    for (int b = 0; b < batch; ++b) {
      for (int i = 0; i < pchunks; ++i) cp.chunks.push_back(chunk(i));
      for (int i = 0; i < cchunks; ++i) {
        const void* p = chunk(pchunks + static_cast<size_t>(b) * cchunks + i);
        cp.chunks.push_back(p);
        cp.ctx_chunks.push_back(p);
      }
    }
    const PagedBatch pb{cp.chunks, offsets, lengths};
    const PagedBatch ctx{cp.ctx_chunks, ctx_offsets, ctx_lengths};
    auto p1 = kernels::BuildPagedPlan(L, sh.options, pb, g_plan_options);
    auto p2 = kernels::BuildPrefixTreePlan(L, sh.options, pb, g_plan_options);
    auto p3 = kernels::BuildRelayPlan(L, sh.options, cp.prefix, prefix, ctx, g_plan_options);
    CHECK_OK(p1.status());
    CHECK_OK(p2.status());
    CHECK_OK(p3.status());
    paged.push_back(std::move(*p1));
    tree.push_back(std::move(*p2));
    relay.push_back(std::move(*p3));
  }
  const size_t qelems = static_cast<size_t>(batch) * sh.options.num_q_heads * L.head_dim;
  void *q, *out;
  CHECK_CUDA(cudaMalloc(&q, qelems * 2));
  CHECK_CUDA(cudaMalloc(&out, qelems * 2));
  CHECK_CUDA(FillRandom16(q, qelems, 7, bf16, nullptr));
  const double t_paged = TimePlans(paged, q, out, iters);
  const double t_tree = TimePlans(tree, q, out, iters);
  const double t_relay = TimePlans(relay, q, out, iters);
  const double token_bytes = 2.0 * L.num_kv_heads * L.head_dim * 2;
  const double unique = token_bytes * (prefix + static_cast<double>(batch) * priv);
  const double all = token_bytes * batch * static_cast<double>(prefix + priv);
  const double floor_unique = unique / bw * 1e6;
  const double floor_paged = all / bw * 1e6;
  std::printf("%-9s P=%5d B=%3d C=%3d  paged %8.1f us (floor %8.1f)  prefix-aware %7.1f us"
              "  relay %7.1f us  floor %6.1f us  items %zu/%zu\n",
              sh.name.c_str(), prefix, batch, priv, t_paged, floor_paged, t_tree, t_relay,
              floor_unique, tree[0].items.size(), relay[0].items.size());
  std::fflush(stdout);
  if (csv != nullptr) {
    std::fprintf(csv, "%s,%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.1f\n", sh.name.c_str(), prefix,
                 batch, priv, t_paged, t_tree, t_relay, floor_unique, floor_paged, bw / 1e9);
    std::fflush(csv);
  }
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(out));
  for (Copy& cp : cs) CHECK_CUDA(cudaFree(cp.pool));
}

// DeFT-like tree: a 4096-token root, 4 branches of 1024 tokens, 8 leaves per
// branch with 256 private tokens each (32 sequences).
void RunTree(const Shape& sh, int iters, double bw, FILE* csv) {
  const KvLayout& L = sh.layout;
  const int tpc = L.tokens_per_chunk;
  const int root = 4096 / tpc, branch = 1024 / tpc, leaf = 256 / tpc;
  const int branches = 4, leaves = 8;
  const size_t total_chunks = root + branches * branch + branches * leaves * leaf;
  const size_t slice = L.SliceBytes();
  const size_t bytes = total_chunks * slice;
  const int copies = CopiesFor(bytes);
  const bool bf16 = L.dtype == KvDtype::kBFloat16;
  std::vector<int32_t> offsets{0}, lengths;
  for (int s = 0; s < branches * leaves; ++s) {
    offsets.push_back(offsets.back() + root + branch + leaf);
    lengths.push_back((root + branch + leaf) * tpc);
  }
  std::vector<void*> pools(copies);
  std::vector<std::vector<const void*>> tables(copies);
  std::vector<AttentionPlan> paged, tree;
  for (int c = 0; c < copies; ++c) {
    CHECK_CUDA(cudaMalloc(&pools[c], bytes));
    CHECK_CUDA(FillRandom16(pools[c], bytes / 2, 2000 + c, bf16, nullptr));
    auto chunk = [&](size_t i) { return static_cast<const void*>(static_cast<char*>(pools[c]) + i * slice); };
    for (int b = 0; b < branches; ++b) {
      for (int l = 0; l < leaves; ++l) {
        for (int i = 0; i < root; ++i) tables[c].push_back(chunk(i));
        for (int i = 0; i < branch; ++i) tables[c].push_back(chunk(root + b * branch + i));
        for (int i = 0; i < leaf; ++i) {
          tables[c].push_back(chunk(root + branches * branch + (b * leaves + l) * leaf + i));
        }
      }
    }
    const PagedBatch pb{tables[c], offsets, lengths};
    auto p1 = kernels::BuildPagedPlan(L, sh.options, pb, g_plan_options);
    auto p2 = kernels::BuildPrefixTreePlan(L, sh.options, pb, g_plan_options);
    CHECK_OK(p1.status());
    CHECK_OK(p2.status());
    paged.push_back(std::move(*p1));
    tree.push_back(std::move(*p2));
  }
  const int batch = branches * leaves;
  const size_t qelems = static_cast<size_t>(batch) * sh.options.num_q_heads * L.head_dim;
  void *q, *out;
  CHECK_CUDA(cudaMalloc(&q, qelems * 2));
  CHECK_CUDA(cudaMalloc(&out, qelems * 2));
  CHECK_CUDA(FillRandom16(q, qelems, 9, bf16, nullptr));
  const double t_paged = TimePlans(paged, q, out, iters);
  const double t_tree = TimePlans(tree, q, out, iters);
  std::printf("tree %-9s 32 seqs: paged %8.1f us, %7.1f MB planned reads; prefix-aware %7.1f us,"
              " %6.1f MB planned reads (%d shared runs); unique-bytes floor %6.1f us\n",
              sh.name.c_str(), t_paged, paged[0].kv_bytes / 1e6, t_tree, tree[0].kv_bytes / 1e6,
              tree[0].num_shared_runs, tree[0].kv_bytes / bw * 1e6);
  if (csv != nullptr) {
    std::fprintf(csv, "tree_%s,%.2f,%.1f,%.2f,%.1f,%.2f,%.1f\n", sh.name.c_str(), t_paged,
                 paged[0].kv_bytes / 1e6, t_tree, tree[0].kv_bytes / 1e6,
                 tree[0].kv_bytes / bw * 1e6, bw / 1e9);
  }
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(out));
  for (void* p : pools) CHECK_CUDA(cudaFree(p));
}

std::vector<std::string> Split(const std::string& s, char sep);

// A named set of plan options (see the header comment).
struct Variant {
  std::string name;
  PlanOptions options;
  bool partial_only = false;
  // Not attention: one streaming read of the workload's unique KV bytes
  // (StreamRead), the floor a kernel that only reads them reaches.
  bool read_only = false;
  int read_loads = 4;  // 16-byte loads per thread of the read
};

const char kDefaultVariants[] =
    "default,nomerge,interleave,fused,fused+interleave,tb=396,tb=528,rf=4";

// Parses "tok+tok+..."; exits with status 2 on an unknown token.
Variant ParseVariant(const std::string& spec, const PlanOptions& base) {
  Variant v;
  v.name = spec;
  v.options = base;
  for (const std::string& t : Split(spec, '+')) {
    auto number = [&](const char* prefix) {
      const int n = std::atoi(t.c_str() + std::strlen(prefix));
      if (n <= 0) {
        std::fprintf(stderr, "bad variant token %s\n", t.c_str());
        std::exit(2);
      }
      return n;
    };
    if (t == "default") {
    } else if (t == "interleave") {
      v.options.interleave_shared_items = true;
    } else if (t == "fused") {
      v.options.fused_merge = true;
    } else if (t == "spread") {
      v.options.spread_row_tiled_runs = true;
    } else if (t == "mma") {
      v.options.wgmma_shared_items = false;
    } else if (t == "nomerge") {
      v.partial_only = true;
    } else if (t == "read") {
      v.read_only = true;
    } else if (t == "read16") {
      v.read_only = true;
      v.read_loads = 16;
    } else if (t.rfind("tb=", 0) == 0) {
      v.options.target_blocks = number("tb=");
    } else if (t.rfind("rf=", 0) == 0) {
      v.options.min_piece_tokens_per_row = number("rf=");
    } else if (t.rfind("mc=", 0) == 0) {
      v.options.max_chunks_per_item = number("mc=");
    } else {
      std::fprintf(stderr, "unknown variant token %s in %s\n", t.c_str(), spec.c_str());
      std::exit(2);
    }
  }
  return v;
}

// One workload's copies of the KV and page tables, for variant runs.
struct Workload {
  std::string name;
  const Shape* shape;
  int batch = 0;
  double floor_us = 0;
  std::vector<void*> pools;
  size_t pool_bytes = 0;  // each pool: the unique chunks, once
  std::vector<std::vector<const void*>> tables;
  std::vector<int32_t> offsets{0}, lengths;
};

// us per streaming read of one copy of `w`'s unique KV bytes (variants
// read / read16), rotating over the copies as TimePlans does.
double TimeStreamRead(const Workload& w, int loads_per_thread, int iters) {
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  uint32_t* sink;
  CHECK_CUDA(cudaMalloc(&sink, sizeof(uint32_t)));
  std::vector<cudaGraphExec_t> graphs;
  for (void* pool : w.pools) {
    graphs.push_back(CaptureGraph(stream, [&] {
      CHECK_CUDA(bench::StreamRead(pool, w.pool_bytes, sink, loads_per_thread, stream));
    }));
  }
  const double t = TimeGraphsUs(stream, graphs, iters);
  for (cudaGraphExec_t g : graphs) CHECK_CUDA(cudaGraphExecDestroy(g));
  CHECK_CUDA(cudaFree(sink));
  CHECK_CUDA(cudaStreamDestroy(stream));
  return t;
}

// Times every variant's prefix-aware plan on `w`; prints one line and
// appends the times (us) to `times`.
void RunVariants(const Workload& w, const std::vector<Variant>& variants, int iters,
                 FILE* csv, std::vector<double>* times) {
  const Shape& sh = *w.shape;
  const KvLayout& L = sh.layout;
  const bool bf16 = L.dtype == KvDtype::kBFloat16;
  const size_t qelems = static_cast<size_t>(w.batch) * sh.options.num_q_heads * L.head_dim;
  void *q, *out;
  CHECK_CUDA(cudaMalloc(&q, qelems * 2));
  CHECK_CUDA(cudaMalloc(&out, qelems * 2));
  CHECK_CUDA(FillRandom16(q, qelems, 7, bf16, nullptr));
  std::printf("%-24s floor %6.1f us", w.name.c_str(), w.floor_us);
  for (const Variant& v : variants) {
    if (v.read_only) {
      const double t = TimeStreamRead(w, v.read_loads, iters);
      times->push_back(t);
      std::printf(" | %s %.1f (%.2fx)", v.name.c_str(), t, t / w.floor_us);
      std::fflush(stdout);
      if (csv != nullptr) {
        std::fprintf(csv, "%s,%s,%.2f,%.2f,%.3f,0\n", w.name.c_str(), v.name.c_str(), t,
                     w.floor_us, t / w.floor_us);
      }
      continue;
    }
    std::vector<AttentionPlan> plans;
    for (const auto& table : w.tables) {
      const PagedBatch pb{table, w.offsets, w.lengths};
      auto p = kernels::BuildPrefixTreePlan(L, sh.options, pb, v.options);
      CHECK_OK(p.status());
      plans.push_back(std::move(*p));
    }
    const double t = TimePlans(plans, q, out, iters, v.partial_only);
    times->push_back(t);
    std::printf(" | %s %.1f (%.2fx)", v.name.c_str(), t, t / w.floor_us);
    std::fflush(stdout);
    if (csv != nullptr) {
      std::fprintf(csv, "%s,%s,%.2f,%.2f,%.3f,%zu\n", w.name.c_str(), v.name.c_str(), t,
                   w.floor_us, t / w.floor_us, plans[0].items.size());
      std::fflush(csv);
    }
  }
  std::printf("\n");
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(out));
}

// The shared-prefix workload of RunPrefixConfig (page tables only).
Workload PrefixWorkload(const Shape& sh, int prefix, int batch, int priv, double bw) {
  Workload w;
  w.name = sh.name + ":" + std::to_string(prefix) + ":" + std::to_string(batch) + ":" +
           std::to_string(priv);
  w.shape = &sh;
  w.batch = batch;
  const KvLayout& L = sh.layout;
  const int tpc = L.tokens_per_chunk;
  const int pchunks = (prefix + tpc - 1) / tpc;
  const int cchunks = (priv + tpc - 1) / tpc;
  const size_t slice = L.SliceBytes();
  const size_t bytes = (pchunks + static_cast<size_t>(batch) * cchunks) * slice;
  const int copies = CopiesFor(bytes);
  w.pool_bytes = bytes;
  for (int b = 0; b < batch; ++b) {
    w.offsets.push_back(w.offsets.back() + pchunks + cchunks);
    w.lengths.push_back(prefix + priv);
  }
  for (int c = 0; c < copies; ++c) {
    void* pool;
    CHECK_CUDA(cudaMalloc(&pool, bytes));
    CHECK_CUDA(FillRandom16(pool, bytes / 2, 1000 + c, L.dtype == KvDtype::kBFloat16, nullptr));
    w.pools.push_back(pool);
    auto chunk = [&](size_t i) { return static_cast<const void*>(static_cast<char*>(pool) + i * slice); };
    std::vector<const void*> table;
    for (int b = 0; b < batch; ++b) {
      for (int i = 0; i < pchunks; ++i) table.push_back(chunk(i));
      for (int i = 0; i < cchunks; ++i) {
        table.push_back(chunk(pchunks + static_cast<size_t>(b) * cchunks + i));
      }
    }
    w.tables.push_back(std::move(table));
  }
  const double token_bytes = 2.0 * L.num_kv_heads * L.head_dim * 2;
  w.floor_us = token_bytes * (prefix + static_cast<double>(batch) * priv) / bw * 1e6;
  return w;
}

// RunTree's workload (page tables only).
Workload TreeWorkload(const Shape& sh, double bw) {
  Workload w;
  w.name = "tree_" + sh.name;
  w.shape = &sh;
  const KvLayout& L = sh.layout;
  const int tpc = L.tokens_per_chunk;
  const int root = 4096 / tpc, branch = 1024 / tpc, leaf = 256 / tpc;
  const int branches = 4, leaves = 8;
  w.batch = branches * leaves;
  const size_t total_chunks = root + branches * branch + branches * leaves * leaf;
  const size_t slice = L.SliceBytes();
  const size_t bytes = total_chunks * slice;
  const int copies = CopiesFor(bytes);
  w.pool_bytes = bytes;
  for (int s = 0; s < w.batch; ++s) {
    w.offsets.push_back(w.offsets.back() + root + branch + leaf);
    w.lengths.push_back((root + branch + leaf) * tpc);
  }
  for (int c = 0; c < copies; ++c) {
    void* pool;
    CHECK_CUDA(cudaMalloc(&pool, bytes));
    CHECK_CUDA(FillRandom16(pool, bytes / 2, 2000 + c, L.dtype == KvDtype::kBFloat16, nullptr));
    w.pools.push_back(pool);
    auto chunk = [&](size_t i) { return static_cast<const void*>(static_cast<char*>(pool) + i * slice); };
    std::vector<const void*> table;
    for (int b = 0; b < branches; ++b) {
      for (int l = 0; l < leaves; ++l) {
        for (int i = 0; i < root; ++i) table.push_back(chunk(i));
        for (int i = 0; i < branch; ++i) table.push_back(chunk(root + b * branch + i));
        for (int i = 0; i < leaf; ++i) {
          table.push_back(chunk(root + branches * branch + (b * leaves + l) * leaf + i));
        }
      }
    }
    w.tables.push_back(std::move(table));
  }
  w.floor_us = static_cast<double>(total_chunks) * tpc * 2.0 * L.num_kv_heads * L.head_dim * 2 /
               bw * 1e6;
  return w;
}

void FreeWorkload(Workload& w) {
  for (void* p : w.pools) CHECK_CUDA(cudaFree(p));
  w.pools.clear();
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// The 16 configs of the H200 table in kernels/README.md (both shapes).
std::string PapersConfigs() {
  std::string configs;
  for (const char* shape : {"mha_fp16", "gqa_bf16"}) {
    for (const char* c : {"1024:32:512", "4096:32:512", "4096:32:128", "4096:64:128",
                          "8192:64:128", "16384:32:128", "4096:128:256", "16384:128:512"}) {
      configs += std::string(shape) + ":" + c + ",";
    }
  }
  return configs;
}

// --papers / --variants: every workload with every variant; a summary table
// (markdown) at the end.
int MainVariants(const std::string& configs, bool tree, const std::string& variant_list,
                 int iters, double bw, const std::string& csv_path) {
  std::vector<Variant> variants;
  for (const std::string& spec : Split(variant_list, ',')) {
    if (!spec.empty()) variants.push_back(ParseVariant(spec, g_plan_options));
  }
  FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (csv != nullptr) std::fprintf(csv, "workload,variant,us,floor_us,x_floor,items\n");
  static const Shape kMha = BenchShape("mha_fp16"), kGqa = BenchShape("gqa_bf16");
  auto shape = [&](const std::string& name) -> const Shape& {
    if (name == "mha_fp16") return kMha;
    if (name == "gqa_bf16") return kGqa;
    std::fprintf(stderr, "unknown shape %s\n", name.c_str());
    std::exit(2);
  };
  std::vector<std::string> names;
  std::vector<double> floors;
  std::vector<std::vector<double>> rows;
  auto run = [&](Workload w) {
    std::vector<double> t;
    RunVariants(w, variants, iters, csv, &t);
    names.push_back(w.name);
    floors.push_back(w.floor_us);
    rows.push_back(std::move(t));
    FreeWorkload(w);
  };
  for (const std::string& c : Split(configs, ',')) {
    if (c.empty()) continue;
    const std::vector<std::string> f = Split(c, ':');
    if (f.size() != 4) {
      std::fprintf(stderr, "bad config %s\n", c.c_str());
      return 2;
    }
    run(PrefixWorkload(shape(f[0]), std::atoi(f[1].c_str()), std::atoi(f[2].c_str()),
                       std::atoi(f[3].c_str()), bw));
  }
  if (tree) {
    run(TreeWorkload(kMha, bw));
    run(TreeWorkload(kGqa, bw));
  }
  if (csv != nullptr) std::fclose(csv);
  std::printf("\n| workload | floor us |");
  for (const Variant& v : variants) std::printf(" %s us (x floor) |", v.name.c_str());
  std::printf("\n|---|---|");
  for (size_t i = 0; i < variants.size(); ++i) std::printf("---|");
  std::printf("\n");
  for (size_t r = 0; r < rows.size(); ++r) {
    std::printf("| %s | %.1f |", names[r].c_str(), floors[r]);
    for (double t : rows[r]) std::printf(" %.1f (%.2fx) |", t, t / floors[r]);
    std::printf("\n");
  }
  return 0;
}

constexpr char kUsage[] =
    "usage: attention_bench [--configs=SHAPE:PREFIX:BATCH:PRIVATE,...] [--tree]\n"
    "                       [--iters=N] [--csv=PATH] [--profile]\n"
    "                       [--target-blocks=N] [--rows-factor=F] [--spread]\n"
    "                       [--interleave] [--fused-merge] [--no-wgmma]\n"
    "                       [--rope] [--papers] [--variants=V1,V2,...] [--help]\n"
    "  --configs        SHAPE (mha_fp16 | gqa_bf16):PREFIX:BATCH:PRIVATE tokens,\n"
    "                   comma-separated (default mha_fp16:4096:32:128,\n"
    "                   gqa_bf16:4096:32:128)\n"
    "  --tree           also the tree workload\n"
    "  --iters          timed iterations per repetition (default 30)\n"
    "  --csv            also write one row per config (or per variant) to PATH\n"
    "  --profile        run every plan once, untimed (for Nsight Compute)\n"
    "  --target-blocks  PlanOptions::target_blocks (default 2 x the device's SMs)\n"
    "  --rows-factor    PlanOptions::min_piece_tokens_per_row (default 2)\n"
    "  --spread         PlanOptions::spread_row_tiled_runs\n"
    "  --interleave     PlanOptions::interleave_shared_items\n"
    "  --fused-merge    PlanOptions::fused_merge\n"
    "  --no-wgmma       PlanOptions::wgmma_shared_items off (every item on\n"
    "                   mma.sync; default: items of 33+ rows on wgmma)\n"
    "  --rope           keys rotated on the fly at their positions (RoPE,\n"
    "                   theta 500000), as a worker storing unrotated keys runs\n"
    "  --papers         the 16 configs of the H200 table and the tree workload,\n"
    "                   prefix-aware plans, every variant side by side\n"
    "  --variants       plan variants for --papers: default, interleave, fused,\n"
    "                   spread, tb=N, rf=N, mc=N, mma, nomerge, joined by '+';\n"
    "                   read, read16: a streaming read of the unique KV bytes\n"
    "                   alone (4 or 16 loads per thread), no attention\n";

// A positive integer flag value; exits with the usage on anything else.
int PositiveFlag(const std::string& arg, size_t prefix) {
  char* end = nullptr;
  const long v = std::strtol(arg.c_str() + prefix, &end, 10);
  if (end == arg.c_str() + prefix || *end != '\0' || v <= 0 || v > (1 << 30)) {
    std::fprintf(stderr, "bad value in %s: expected a positive integer\n%s", arg.c_str(), kUsage);
    std::exit(2);
  }
  return static_cast<int>(v);
}

int Main(int argc, char** argv) {
  std::string configs = "mha_fp16:4096:32:128,gqa_bf16:4096:32:128";
  std::string csv_path;
  std::string variant_list;
  bool tree = false;
  bool papers = false;
  bool configs_given = false;
  int iters = 30;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--configs=", 0) == 0) configs = a.substr(10), configs_given = true;
    else if (a == "--papers") papers = true;
    else if (a.rfind("--variants=", 0) == 0) variant_list = a.substr(11);
    else if (a.rfind("--csv=", 0) == 0) csv_path = a.substr(6);
    else if (a.rfind("--iters=", 0) == 0) iters = PositiveFlag(a, 8);
    else if (a == "--tree") tree = true;
    else if (a == "--profile") g_profile = true;
    else if (a.rfind("--target-blocks=", 0) == 0) g_plan_options.target_blocks = PositiveFlag(a, 16);
    else if (a == "--spread") g_plan_options.spread_row_tiled_runs = true;
    else if (a == "--interleave") g_plan_options.interleave_shared_items = true;
    else if (a == "--fused-merge") g_plan_options.fused_merge = true;
    else if (a == "--no-wgmma") g_plan_options.wgmma_shared_items = false;
    else if (a == "--rope") g_rope = true;
    else if (a.rfind("--rows-factor=", 0) == 0) g_plan_options.min_piece_tokens_per_row = PositiveFlag(a, 14);
    else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "unknown argument %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  g_plan_options.num_sms = prop.multiProcessorCount;
  const double bw = MeasureCopyBandwidth();
  std::printf("device %s, %d SMs; device-to-device copy %.0f GB/s (read + write); "
              "plan: target_blocks %d, min_piece_tokens_per_row %d, spread_row_tiled_runs %d, "
              "interleave_shared_items %d, fused_merge %d, wgmma_shared_items %d; L2 %d MB\n",
              prop.name, prop.multiProcessorCount, bw / 1e9,
              g_plan_options.EffectiveTargetBlocks(), g_plan_options.min_piece_tokens_per_row,
              g_plan_options.spread_row_tiled_runs ? 1 : 0,
              g_plan_options.interleave_shared_items ? 1 : 0, g_plan_options.fused_merge ? 1 : 0,
              g_plan_options.wgmma_shared_items ? 1 : 0, prop.l2CacheSize >> 20);
  if (papers || !variant_list.empty()) {
    return MainVariants(papers && !configs_given ? PapersConfigs() : configs,
                        papers || tree, variant_list.empty() ? kDefaultVariants : variant_list,
                        iters, bw, csv_path);
  }
  FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (csv != nullptr) {
    std::fprintf(csv, "shape,prefix,batch,private,paged_us,prefix_aware_us,relay_us,"
                      "floor_unique_us,floor_paged_us,copy_GBps\n");
  }
  for (const std::string& c : Split(configs, ',')) {
    if (c.empty()) continue;
    const std::vector<std::string> f = Split(c, ':');
    if (f.size() != 4) {
      std::fprintf(stderr, "bad config %s\n", c.c_str());
      return 2;
    }
    RunPrefixConfig(BenchShape(f[0]), std::atoi(f[1].c_str()), std::atoi(f[2].c_str()),
                    std::atoi(f[3].c_str()), iters, bw, csv);
  }
  if (tree) {
    FILE* tcsv = csv_path.empty() ? nullptr : std::fopen((csv_path + ".tree").c_str(), "w");
    if (tcsv != nullptr) {
      std::fprintf(tcsv, "shape,paged_us,paged_MB,prefix_aware_us,prefix_aware_MB,floor_us,copy_GBps\n");
    }
    RunTree(BenchShape("mha_fp16"), iters, bw, tcsv);
    RunTree(BenchShape("gqa_bf16"), iters, bw, tcsv);
    if (tcsv != nullptr) std::fclose(tcsv);
  }
  if (csv != nullptr) std::fclose(csv);
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Main(argc, argv); }
