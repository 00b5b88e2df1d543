#include "kernels/attention_plan.h"

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
