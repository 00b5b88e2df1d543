// Decode plans of attention_bench's workloads, computed on the CPU (no GPU):
// work items, blocks, partial states and the load of the busiest
// multiprocessor, with and without PlanOptions::spread_row_tiled_runs.
//
//   plan_stats [--configs=SHAPE:PREFIX:BATCH:PRIVATE,...] [--tree]
//              [--sms=N] [--target-blocks=N] [--rows-factor=F] [--detail]
//
// Page tables are built as attention_bench builds them (64-token chunks,
// every sequence = the shared prefix's chunks ++ its own private chunks), from
// fake chunk addresses: planners never dereference them.
//
// Columns: items, blocks (items x KV heads), row-tiled blocks (items of runs
// with more than 64 rows per KV head: 64-row MMA tiles), their tokens on the
// busiest SM when the scheduler deals them out one per SM at a time
// ("heavy/SM", in 64-token tiles), partial states and their bytes (written by
// the partial kernel and read by the merge), planned KV MB.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/attention_plan.h"
#include "tools/bench/kernels/decode_shapes.h"

namespace strata::bench {
namespace {

using kernels::AttentionOptions;
using kernels::AttentionPlan;
using kernels::KvDtype;
using kernels::KvLayout;
using kernels::PagedBatch;
using kernels::PlanOptions;
using kernels::WorkItem;

using bench::Shape;
using bench::ShapeByName;

const void* Ptr(size_t i) { return reinterpret_cast<const void*>(0x10000 * (i + 1)); }

struct Stats {
  size_t items = 0;
  int64_t blocks = 0;
  int64_t heavy_blocks = 0;
  int64_t heavy_tiles_per_sm = 0;
  int32_t slots = 0;
  double partial_mb = 0;
  double kv_mb = 0;
};

// Deals the row-tiled blocks (grid order: item-major, KV head minor; items
// longest first) one per SM at a time and returns the most 64-token tiles
// that one SM receives.
int64_t HeavyTilesPerSm(const AttentionPlan& plan, int num_sms) {
  std::vector<int64_t> per_sm(num_sms, 0);
  int64_t next = 0;
  for (const WorkItem& it : plan.items) {
    if (it.num_seqs * plan.group() <= kernels::kMaxRowsPerItem) continue;
    const int tiles = (it.num_tokens + 63) / 64;
    for (int h = 0; h < plan.layout.num_kv_heads; ++h) per_sm[next++ % num_sms] += tiles;
  }
  return *std::max_element(per_sm.begin(), per_sm.end());
}

Stats Compute(const AttentionPlan& plan, int num_sms) {
  Stats s;
  s.items = plan.items.size();
  s.blocks = static_cast<int64_t>(s.items) * plan.layout.num_kv_heads;
  for (const WorkItem& it : plan.items) {
    if (it.num_seqs * plan.group() > kernels::kMaxRowsPerItem) {
      s.heavy_blocks += plan.layout.num_kv_heads;
    }
  }
  s.heavy_tiles_per_sm = HeavyTilesPerSm(plan, num_sms);
  s.slots = plan.num_slots;
  s.partial_mb = 2.0 * plan.num_slots * (plan.layout.head_dim + 1) * 4 / 1e6;
  s.kv_mb = plan.kv_bytes / 1e6;
  return s;
}

void Print(const char* label, const Stats& s) {
  std::printf("    %-6s items %4zu  blocks %5lld  row-tiled blocks %4lld  heavy/SM %4lld tiles"
              "  partial states %6d (%5.1f MB)  KV %6.1f MB\n",
              label, s.items, static_cast<long long>(s.blocks),
              static_cast<long long>(s.heavy_blocks),
              static_cast<long long>(s.heavy_tiles_per_sm), s.slots, s.partial_mb, s.kv_mb);
}

// --detail: the GQA analysis of kernels/README.md ("GQA decode: where the
// time goes"), per plan: blocks per SM, shared (>= 2 sequences) and private
// items with their rows and tokens, the share of computed MMA rows that are
// real query rows (a warp computes 16 rows; private GQA items fill 4),
// partial-state bytes written (= read by the merge) against KV bytes, KV
// bytes the blocks load (every row tile of a shared piece loads the piece
// again, from L2 when they run together) and how many of the first
// 2 x SMs blocks are shared ones.
void Detail(const AttentionPlan& plan, int num_sms) {
  const int heads = plan.layout.num_kv_heads;
  const double tok_bytes = 2.0 * plan.layout.head_dim * 2;  // K + V of one head
  struct Kind {
    int64_t items = 0, blocks = 0, min_tok = 1 << 30, max_tok = 0, min_rows = 1 << 30,
            max_rows = 0;
    double mma_rows = 0, real_rows = 0, loaded_mb = 0;
  } kind[2];  // 0 shared, 1 private
  for (const WorkItem& it : plan.items) {
    Kind& k = kind[it.num_seqs > 1 ? 0 : 1];
    ++k.items;
    k.blocks += heads;
    k.min_tok = std::min<int64_t>(k.min_tok, it.num_tokens);
    k.max_tok = std::max<int64_t>(k.max_tok, it.num_tokens);
    k.min_rows = std::min<int64_t>(k.min_rows, it.num_rows);
    k.max_rows = std::max<int64_t>(k.max_rows, it.num_rows);
    const int tiles = (it.num_tokens + 63) / 64;
    const int row_warps = it.num_rows <= 16 ? 1 : (it.num_rows <= 32 ? 2 : 4);
    k.mma_rows += double{1} * tiles * 64 * row_warps * 16 * heads;
    k.real_rows += double{1} * tiles * 64 * it.num_rows * heads;
    k.loaded_mb += it.num_tokens * tok_bytes * heads / 1e6;
  }
  int64_t first_wave_shared = 0;
  const int64_t wave = 2 * int64_t{num_sms};
  int64_t b = 0;
  for (const WorkItem& it : plan.items) {
    for (int h = 0; h < heads && b < wave; ++h, ++b) first_wave_shared += it.num_seqs > 1;
  }
  const double partial_mb = double{1} * plan.num_slots * (plan.layout.head_dim + 1) * 4 / 1e6;
  const double kv_mb = plan.kv_bytes / 1e6;
  std::printf("      blocks/SM %.2f (%.2f waves of 2/SM); first wave: %lld of %lld blocks shared\n",
              double(kind[0].blocks + kind[1].blocks) / num_sms,
              double(kind[0].blocks + kind[1].blocks) / wave,
              static_cast<long long>(first_wave_shared),
              static_cast<long long>(std::min(wave, kind[0].blocks + kind[1].blocks)));
  const char* names[2] = {"shared", "private"};
  for (int i = 0; i < 2; ++i) {
    const Kind& k = kind[i];
    if (k.items == 0) continue;
    std::printf("      %-7s items %4lld blocks %5lld  rows/item %lld..%lld  tokens/item %lld..%lld"
                "  MMA rows used %5.1f%%  KV loaded %6.1f MB\n",
                names[i], static_cast<long long>(k.items), static_cast<long long>(k.blocks),
                static_cast<long long>(k.min_rows), static_cast<long long>(k.max_rows),
                static_cast<long long>(k.min_tok), static_cast<long long>(k.max_tok),
                100.0 * k.real_rows / k.mma_rows, k.loaded_mb);
  }
  std::printf("      partial states written %.1f MB (+ read by the merge) = %.0f%% of %.1f MB KV;"
              " KV loaded by blocks %.1f MB = %.2fx unique\n",
              partial_mb, 100.0 * partial_mb / kv_mb, kv_mb,
              kind[0].loaded_mb + kind[1].loaded_mb,
              (kind[0].loaded_mb + kind[1].loaded_mb) / kv_mb);
}

bool g_detail = false;
int po_sms(const PlanOptions& po) { return po.num_sms; }

void Report(const std::string& title, const Shape& sh, const PagedBatch& batch,
            const PlanOptions& base) {
  std::printf("%s\n", title.c_str());
  PlanOptions before = base;
  before.spread_row_tiled_runs = false;
  PlanOptions after = base;
  after.spread_row_tiled_runs = true;
  for (const auto& [label, po] : {std::pair{"default", before}, std::pair{"spread", after}}) {
    auto plan = kernels::BuildPrefixTreePlan(sh.layout, sh.options, batch, po);
    if (!plan.ok()) {
      std::fprintf(stderr, "%s\n", plan.status().ToString().c_str());
      std::exit(1);
    }
    Print(label, Compute(*plan, std::max(1, po.num_sms)));
    if (g_detail) Detail(*plan, std::max(1, po.num_sms));
  }
  if (g_detail) {
    PlanOptions mixed = before;
    mixed.interleave_shared_items = true;
    auto plan = kernels::BuildPrefixTreePlan(sh.layout, sh.options, batch, mixed);
    if (plan.ok()) {
      std::printf("    interleave_shared_items:\n");
      Detail(*plan, std::max(1, po_sms(mixed)));
    }
  }
}

void PrefixConfig(const Shape& sh, int prefix, int batch, int priv, const PlanOptions& po) {
  const int tpc = sh.layout.tokens_per_chunk;
  const int pchunks = (prefix + tpc - 1) / tpc;
  const int cchunks = (priv + tpc - 1) / tpc;
  std::vector<const void*> chunks;
  std::vector<int32_t> offsets{0}, lengths;
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < pchunks; ++i) chunks.push_back(Ptr(i));
    for (int i = 0; i < cchunks; ++i) {
      chunks.push_back(Ptr(pchunks + static_cast<size_t>(b) * cchunks + i));
    }
    offsets.push_back(static_cast<int32_t>(chunks.size()));
    lengths.push_back(prefix + priv);
  }
  Report(sh.name + ":" + std::to_string(prefix) + ":" + std::to_string(batch) + ":" +
             std::to_string(priv),
         sh, PagedBatch{chunks, offsets, lengths}, po);
}

// attention_bench's tree: a 4096-token root, 4 branches of 1024 tokens,
// 8 leaves per branch with 256 private tokens (32 sequences).
void Tree(const Shape& sh, const PlanOptions& po) {
  const int root = 64, branch = 16, leaf = 4, branches = 4, leaves = 8;
  std::vector<const void*> chunks;
  std::vector<int32_t> offsets{0}, lengths;
  for (int b = 0; b < branches; ++b) {
    for (int l = 0; l < leaves; ++l) {
      for (int i = 0; i < root; ++i) chunks.push_back(Ptr(i));
      for (int i = 0; i < branch; ++i) chunks.push_back(Ptr(root + b * branch + i));
      for (int i = 0; i < leaf; ++i) {
        chunks.push_back(Ptr(root + branches * branch + (b * leaves + l) * leaf + i));
      }
      offsets.push_back(static_cast<int32_t>(chunks.size()));
      lengths.push_back((root + branch + leaf) * 64);
    }
  }
  Report("tree_" + sh.name, sh, PagedBatch{chunks, offsets, lengths}, po);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

int Main(int argc, char** argv) {
  // The 8 rows of PAPERS.md's H200 table, both shapes.
  std::string configs;
  for (const char* shape : {"mha_fp16", "gqa_bf16"}) {
    for (const char* c : {"1024:32:512", "4096:32:512", "4096:32:128", "4096:64:128",
                          "8192:64:128", "16384:32:128", "4096:128:256", "16384:128:512"}) {
      configs += std::string(shape) + ":" + c + ",";
    }
  }
  bool tree = false;
  PlanOptions po;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--configs=", 0) == 0) configs = a.substr(10);
    else if (a == "--tree") tree = true;
    else if (a == "--detail") g_detail = true;
    else if (a.rfind("--sms=", 0) == 0) po.num_sms = std::atoi(a.c_str() + 6);
    else if (a.rfind("--target-blocks=", 0) == 0) po.target_blocks = std::atoi(a.c_str() + 16);
    else if (a.rfind("--rows-factor=", 0) == 0) po.min_piece_tokens_per_row = std::atoi(a.c_str() + 14);
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::printf("plan: %d SMs, target_blocks %d, min_piece_tokens_per_row %d\n", po.num_sms,
              po.EffectiveTargetBlocks(), po.min_piece_tokens_per_row);
  for (const std::string& c : Split(configs, ',')) {
    if (c.empty()) continue;
    const std::vector<std::string> f = Split(c, ':');
    if (f.size() != 4) {
      std::fprintf(stderr, "bad config %s\n", c.c_str());
      return 2;
    }
    PrefixConfig(ShapeByName(f[0]), std::atoi(f[1].c_str()), std::atoi(f[2].c_str()),
                 std::atoi(f[3].c_str()), po);
  }
  if (tree) {
    Tree(ShapeByName("mha_fp16"), po);
    Tree(ShapeByName("gqa_bf16"), po);
  }
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Main(argc, argv); }
