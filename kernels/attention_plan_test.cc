#include "kernels/attention_plan.h"

#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace strata::kernels {
namespace {

// Fake chunk addresses: planners never dereference them.
const void* Ptr(int i) { return reinterpret_cast<const void*>(0x1000 * (i + 1)); }

KvLayout Layout() { return KvLayout{KvDtype::kFloat16, 8, 128, 64}; }
AttentionOptions Options() {
  AttentionOptions o;
  o.num_q_heads = 32;
  return o;
}

struct Batch {
  std::vector<const void*> chunks;
  std::vector<int32_t> offsets{0};
  std::vector<int32_t> lengths;
  void Add(std::vector<int> ids, int length) {
    for (int i : ids) chunks.push_back(Ptr(i));
    offsets.push_back(static_cast<int32_t>(chunks.size()));
    lengths.push_back(length);
  }
  PagedBatch view() const { return PagedBatch{chunks, offsets, lengths}; }
};

TEST(PlanTest, TreeFindsSharedRunsAndCountsBytesOnce) {
  Batch b;
  // Root (chunks 0,1) shared by all; branch chunk 2 shared by seqs 0,1;
  // private tails.
  b.Add({0, 1, 2, 10}, 3 * 64 + 5);
  b.Add({0, 1, 2, 11}, 3 * 64 + 64);
  b.Add({0, 1, 3}, 2 * 64 + 7);
  PlanOptions one_item_per_head;
  one_item_per_head.target_blocks = 8;  // no splitting
  auto plan = BuildPrefixTreePlan(Layout(), Options(), b.view(), one_item_per_head);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_shared_runs, 2);
  EXPECT_EQ(plan->shared_tokens, 3 * 64);
  const int64_t token_bytes = 2 * 8 * 128 * 2;
  EXPECT_EQ(plan->kv_bytes, token_bytes * (3 * 64 + 5 + 64 + 7));
  // Each sequence merges one state per run on its path.
  EXPECT_EQ(plan->merge_offsets, (std::vector<int32_t>{0, 3, 6, 8}));
  auto paged = BuildPagedPlan(Layout(), Options(), b.view(), one_item_per_head);
  ASSERT_TRUE(paged.ok());
  EXPECT_EQ(paged->num_shared_runs, 0);
  EXPECT_EQ(paged->kv_bytes, token_bytes * (3 * 64 + 5 + 4 * 64 + 2 * 64 + 7));
}

TEST(PlanTest, SplitsLongRunsAndTilesRows) {
  Batch b;
  std::vector<int> prefix;
  for (int i = 0; i < 64; ++i) prefix.push_back(i);
  for (int s = 0; s < 40; ++s) {  // 40 seqs x group 4 = 160 rows: 3 tiles
    std::vector<int> ids = prefix;
    ids.push_back(1000 + s);
    b.Add(ids, 64 * 64 + 10);
  }
  PlanOptions po;
  po.max_chunks_per_item = 16;
  po.target_blocks = 8;
  po.spread_row_tiled_runs = false;  // the chunk-count split alone
  auto plan = BuildPrefixTreePlan(Layout(), Options(), b.view(), po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  int shared_items = 0;
  for (const WorkItem& it : plan->items) {
    EXPECT_LE(it.num_rows, kMaxRowsPerItem);
    EXPECT_LE(it.num_tokens, 16 * 64);
    if (it.num_seqs == 40) ++shared_items;
  }
  EXPECT_EQ(shared_items, 4 * 3);  // 4 pieces x 3 row tiles
  // Longest first.
  for (size_t i = 1; i < plan->items.size(); ++i) {
    EXPECT_GE(plan->items[i - 1].num_tokens, plan->items[i].num_tokens);
  }
}

TEST(PlanTest, SharedPiecesAreLongComparedWithTheirRows) {
  Batch b;
  std::vector<int> prefix;
  for (int i = 0; i < 64; ++i) prefix.push_back(i);
  for (int s = 0; s < 32; ++s) {  // 32 seqs x group 4 = 128 rows per KV head
    std::vector<int> ids = prefix;
    ids.push_back(1000 + s);
    b.Add(ids, 64 * 64 + 64);
  }
  PlanOptions po;
  po.min_piece_tokens_per_row = 4;
  po.target_blocks = 132 * 4;
  auto plan = BuildPrefixTreePlan(Layout(), Options(), b.view(), po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  int shared_items = 0;
  for (const WorkItem& it : plan->items) {
    if (it.num_seqs == 32) {
      ++shared_items;
      EXPECT_GE(it.num_tokens, 4 * 128);
    } else {
      EXPECT_EQ(it.num_tokens, 64);
    }
  }
  EXPECT_EQ(shared_items, 8 * 2);  // 8 pieces x 2 row tiles
}

// attention_bench's page tables: prefix chunks shared by every sequence,
// then `priv` private tokens each.
Batch SharedPrefix(int prefix, int batch, int priv) {
  Batch b;
  for (int s = 0; s < batch; ++s) {
    std::vector<int> ids;
    for (int i = 0; i < prefix / 64; ++i) ids.push_back(i);
    for (int i = 0; i < priv / 64; ++i) ids.push_back(100000 + s * 1000 + i);
    b.Add(ids, prefix + priv);
  }
  return b;
}

KvLayout GqaLayout() { return KvLayout{KvDtype::kBFloat16, 8, 128, 64}; }

// Every (sequence, token) pair is covered by exactly one item's row tile for
// every query head of the group, and merged from exactly the slots written.
void ExpectCoversEveryTokenOnce(const AttentionPlan& plan, const Batch& b) {
  const int group = plan.group();
  // (sequence, query head in group, absolute position) -> times covered.
  std::map<std::tuple<int, int, int>, int> covered;
  std::map<int, int> slot_writes;
  for (const WorkItem& it : plan.items) {
    for (int r = it.row_begin; r < it.row_begin + it.num_rows; ++r) {
      const int seq = plan.seq_ids[it.seq_begin + r / group];
      for (int t = 0; t < it.num_tokens; ++t) {
        ++covered[{seq, r % group, it.position + t}];
      }
      ++slot_writes[it.slot_base + (r / group) * plan.options.num_q_heads + r % group];
    }
  }
  int64_t expected = 0;
  for (size_t s = 0; s < b.lengths.size(); ++s) expected += int64_t{b.lengths[s]} * group;
  EXPECT_EQ(static_cast<int64_t>(covered.size()), expected);
  for (const auto& [key, n] : covered) ASSERT_EQ(n, 1);
  for (const auto& [slot, n] : slot_writes) ASSERT_EQ(n, 1);
  for (size_t s = 0; s < b.lengths.size(); ++s) {
    for (int k = plan.merge_offsets[s]; k < plan.merge_offsets[s + 1]; ++k) {
      for (int h = 0; h < group; ++h) EXPECT_EQ(slot_writes.count(plan.merge_slots[k] + h), 1u);
    }
  }
}

int RowTiledBlocks(const AttentionPlan& plan) {
  int n = 0;
  for (const WorkItem& it : plan.items) {
    if (it.num_seqs * plan.group() > kMaxRowsPerItem) n += plan.layout.num_kv_heads;
  }
  return n;
}

TEST(PlanTest, TargetBlocksFollowTheSmCount) {
  PlanOptions po;
  EXPECT_EQ(po.EffectiveTargetBlocks(), 264);
  po.num_sms = 78;
  EXPECT_EQ(po.EffectiveTargetBlocks(), 156);
  po.target_blocks = 40;
  EXPECT_EQ(po.EffectiveTargetBlocks(), 40);
  // Fewer SMs: fewer, longer private items.
  Batch b;
  for (int s = 0; s < 4; ++s) b.Add({s * 100, s * 100 + 1, s * 100 + 2, s * 100 + 3}, 4 * 64);
  PlanOptions small, large;
  small.num_sms = 4;    // 8 blocks: one item per KV head
  large.num_sms = 132;
  auto p_small = BuildPagedPlan(Layout(), Options(), b.view(), small);
  auto p_large = BuildPagedPlan(Layout(), Options(), b.view(), large);
  ASSERT_TRUE(p_small.ok() && p_large.ok());
  EXPECT_EQ(p_small->items.size(), 4u);
  EXPECT_EQ(p_large->items.size(), 16u);
}

// GQA (32 query / 8 KV heads) prefixes shared by 32..128 sequences have 2..8
// row tiles per KV head; their blocks are cut so that each of the 132 SMs
// gets one (128 blocks), where the chunk-count balance alone left some SMs
// with two.
TEST(PlanTest, RowTiledGqaRunsSpreadOverTheSms) {
  struct Case {
    int prefix, batch, priv;
    int blocks_before, blocks_after;
  };
  for (const Case& c : {Case{4096, 32, 128, 176, 128}, Case{4096, 64, 128, 192, 128},
                        Case{8192, 64, 128, 224, 128}, Case{16384, 32, 128, 240, 128},
                        Case{16384, 128, 512, 192, 128}, Case{4096, 128, 256, 128, 128},
                        Case{1024, 32, 512, 32, 64}}) {
    SCOPED_TRACE(testing::Message() << c.prefix << ":" << c.batch << ":" << c.priv);
    const Batch b = SharedPrefix(c.prefix, c.batch, c.priv);
    PlanOptions after;
    after.num_sms = 132;
    after.spread_row_tiled_runs = true;
    PlanOptions before = after;
    before.spread_row_tiled_runs = false;
    auto p_before = BuildPrefixTreePlan(GqaLayout(), Options(), b.view(), before);
    auto p_after = BuildPrefixTreePlan(GqaLayout(), Options(), b.view(), after);
    ASSERT_TRUE(p_before.ok() && p_after.ok());
    EXPECT_EQ(RowTiledBlocks(*p_before), c.blocks_before);
    EXPECT_EQ(RowTiledBlocks(*p_after), c.blocks_after);
    // Pieces stay at least min_piece_tokens_per_row x rows long.
    for (const WorkItem& it : p_after->items) {
      if (it.num_seqs > 1) {
        EXPECT_GE(it.num_tokens, 2 * c.batch * 4);
      }
    }
    ExpectCoversEveryTokenOnce(*p_after, b);
    // Longest first.
    for (size_t i = 1; i < p_after->items.size(); ++i) {
      EXPECT_GE(p_after->items[i - 1].num_tokens, p_after->items[i].num_tokens);
    }
  }
}

// The choice keeps the current cut when cutting finer would gain little:
// MHA 16384:128:512 (64 row-tiled blocks a piece) stays at 2 pieces rather
// than 37 pieces for 2 % less load and twelve times the partial states.
TEST(PlanTest, RowTiledRunsAreNotCutFinerForLittleGain) {
  const Batch b = SharedPrefix(16384, 128, 512);
  KvLayout mha = Layout();
  mha.num_kv_heads = 32;
  PlanOptions po;
  auto plan = BuildPrefixTreePlan(mha, Options(), b.view(), po);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(RowTiledBlocks(*plan), 2 * 2 * 32);
}

TEST(PlanTest, RowTiledRunsRespectMaxChunksPerItem) {
  const Batch b = SharedPrefix(4096, 32, 128);
  PlanOptions po;
  po.max_chunks_per_item = 2;
  auto plan = BuildPrefixTreePlan(GqaLayout(), Options(), b.view(), po);
  ASSERT_TRUE(plan.ok());
  for (const WorkItem& it : plan->items) EXPECT_LE(it.num_tokens, 2 * 64);
  ExpectCoversEveryTokenOnce(*plan, b);
}

// interleave_shared_items: the same items as longest first, shared and
// private items alternating in proportion to their counts, each kind still
// longest first.
TEST(PlanTest, InterleavedOrderMixesSharedAndPrivateItems) {
  const Batch b = SharedPrefix(4096, 32, 128);
  PlanOptions po;
  auto base = BuildPrefixTreePlan(GqaLayout(), Options(), b.view(), po);
  po.interleave_shared_items = true;
  auto mixed = BuildPrefixTreePlan(GqaLayout(), Options(), b.view(), po);
  ASSERT_TRUE(base.ok() && mixed.ok());
  ASSERT_EQ(base->items.size(), mixed->items.size());
  auto key = [](const WorkItem& it) {
    return std::make_tuple(it.page_begin, it.num_tokens, it.seq_begin, it.row_begin,
                           it.num_rows, it.slot_base);
  };
  std::multiset<std::tuple<int, int, int, int, int, int>> a, m;
  for (size_t i = 0; i < base->items.size(); ++i) {
    a.insert(key(base->items[i]));
    m.insert(key(mixed->items[i]));
  }
  EXPECT_EQ(a, m);
  EXPECT_EQ(base->merge_slots, mixed->merge_slots);
  // Default order: 22 shared items (11 pieces x 2 row tiles) then 32 private.
  ASSERT_EQ(base->items.size(), 54u);
  for (int i = 0; i < 22; ++i) EXPECT_GT(base->items[i].num_seqs, 1);
  // Interleaved: after k items, the shared count is within one of k x 22 / 54.
  int shared = 0, last_shared = 1 << 30, last_private = 1 << 30;
  for (size_t k = 0; k < mixed->items.size(); ++k) {
    const WorkItem& it = mixed->items[k];
    if (it.num_seqs > 1) {
      ++shared;
      EXPECT_LE(it.num_tokens, last_shared);
      last_shared = it.num_tokens;
    } else {
      EXPECT_LE(it.num_tokens, last_private);
      last_private = it.num_tokens;
    }
    const double expected = (k + 1) * 22.0 / 54.0;
    EXPECT_LE(std::abs(shared - expected), 1.0) << "after " << k + 1 << " items";
  }
  EXPECT_TRUE(mixed->merge_arrivals.empty());  // no fused merge asked for
}

// fused_merge: per sequence, the number of items (per KV head) that write
// its partial states, counting an item once per sequence that owns any of
// its rows; with group 7 a sequence's rows can straddle two row tiles.
TEST(PlanTest, FusedMergeCountsArrivalsPerSequence) {
  for (int q_heads : {32, 56}) {  // group 4 (tiles hold whole groups), 7 (straddles)
    SCOPED_TRACE(q_heads);
    const Batch b = SharedPrefix(4096, 40, 128);
    AttentionOptions options = Options();
    options.num_q_heads = q_heads;
    const int group = q_heads / 8;
    PlanOptions po;
    po.fused_merge = true;
    auto plan = BuildPrefixTreePlan(GqaLayout(), options, b.view(), po);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_TRUE(plan->fused_merge);
    ASSERT_EQ(plan->merge_arrivals.size(), 40u);
    std::vector<int> expected(40, 0);
    for (const WorkItem& it : plan->items) {
      for (int s = 0; s < it.num_seqs; ++s) {
        const int lo = s * group, hi = (s + 1) * group;  // the sequence's rows
        if (lo < it.row_begin + it.num_rows && hi > it.row_begin) {
          ++expected[plan->seq_ids[it.seq_begin + s]];
        }
      }
    }
    int straddling = 0;
    for (int s = 0; s < 40; ++s) {
      EXPECT_EQ(plan->merge_arrivals[s], expected[s]) << "sequence " << s;
      const int pieces = plan->merge_offsets[s + 1] - plan->merge_offsets[s];
      EXPECT_GE(plan->merge_arrivals[s], pieces);
      if (plan->merge_arrivals[s] > pieces) ++straddling;
    }
    if (group == 4) {
      EXPECT_EQ(straddling, 0);
    } else {
      EXPECT_GT(straddling, 0);
    }
  }
}

TEST(PlanTest, WgmmaRowThresholdFollowsTheOption) {
  // A GQA prefix shared by 40 sequences: 64-row tiles (wgmma by default)
  // and 4-row private items (mma.sync).
  const Batch b = SharedPrefix(4096, 40, 128);
  auto plan = BuildPrefixTreePlan(GqaLayout(), Options(), b.view(), PlanOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->wgmma_min_rows, kWgmmaMinRows);
  int wide = 0, narrow = 0;
  for (const WorkItem& it : plan->items) ++(it.num_rows >= plan->wgmma_min_rows ? wide : narrow);
  EXPECT_GT(wide, 0);
  EXPECT_GT(narrow, 0);
  PlanOptions off;
  off.wgmma_shared_items = false;
  for (auto build : {BuildPrefixTreePlan, BuildPagedPlan}) {
    auto p = build(GqaLayout(), Options(), b.view(), off);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->wgmma_min_rows, 0);
  }
}

TEST(PlanTest, RejectsBadShapes) {
  Batch b;
  b.Add({0}, 10);
  KvLayout bad = Layout();
  bad.head_dim = 96;
  EXPECT_EQ(BuildPagedPlan(bad, Options(), b.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = Layout();
  bad.tokens_per_chunk = 8;
  EXPECT_EQ(BuildPrefixTreePlan(bad, Options(), b.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = Layout();
  bad.tokens_per_chunk = 512;
  EXPECT_EQ(BuildPrefixTreePlan(bad, Options(), b.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  AttentionOptions o = Options();
  o.num_q_heads = 12;  // not a multiple of 8
  EXPECT_EQ(BuildPagedPlan(Layout(), o, b.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = Options();
  o.scale = -1.0f;
  EXPECT_EQ(BuildPagedPlan(Layout(), o, b.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PlanTest, RejectsBadPageTables) {
  Batch too_few;
  too_few.Add({0}, 65);  // needs 2 chunks
  EXPECT_EQ(BuildPagedPlan(Layout(), Options(), too_few.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Batch empty_seq;
  empty_seq.Add({}, 0);
  EXPECT_EQ(
      BuildPrefixTreePlan(Layout(), Options(), empty_seq.view(), {}).status().code(),
      absl::StatusCode::kInvalidArgument);
  Batch null_ptr;
  null_ptr.chunks.push_back(nullptr);
  null_ptr.offsets.push_back(1);
  null_ptr.lengths.push_back(3);
  EXPECT_EQ(BuildPagedPlan(Layout(), Options(), null_ptr.view(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Batch ok;
  ok.Add({0}, 3);
  std::vector<int32_t> bad_offsets{0, 2};
  PagedBatch v{ok.chunks, bad_offsets, ok.lengths};
  EXPECT_EQ(BuildPagedPlan(Layout(), Options(), v, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  PagedBatch none{};
  EXPECT_EQ(BuildPagedPlan(Layout(), Options(), none, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PlanTest, RelayValidatesPrefixAndAllowsEmptyContexts) {
  Batch ctx;
  ctx.Add({}, 0);
  ctx.Add({5}, 20);
  std::vector<const void*> prefix{Ptr(0), Ptr(1)};
  PlanOptions po;
  po.target_blocks = 8;
  auto plan = BuildRelayPlan(Layout(), Options(), prefix, 100, ctx.view(), po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->merge_offsets, (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(BuildRelayPlan(Layout(), Options(), prefix, 200, ctx.view(), {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildRelayPlan(Layout(), Options(), prefix, 0, ctx.view(), {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
