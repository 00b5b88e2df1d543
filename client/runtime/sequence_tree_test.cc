#include "client/runtime/sequence_tree.h"

#include <cstring>

#include "gtest/gtest.h"
#include "kernels/attention_plan.h"
#include "kernels/prefill_plan.h"

namespace strata::runtime {
namespace {

using ::absl::StatusCode;

constexpr uint32_t kLayers = 2;
constexpr int kTokens = 16;

kernels::KvLayout Layout() {
  kernels::KvLayout l;
  l.dtype = kernels::KvDtype::kBFloat16;
  l.num_kv_heads = 2;
  l.head_dim = 64;
  l.tokens_per_chunk = kTokens;
  return l;
}

ChunkKey Key(int i) {
  ChunkKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  k.bytes[31] = 0xa5;
  return k;
}

class SequenceTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const uint64_t slice = Layout().SliceBytes();
    ChunkPool::Options o;
    o.chunk_bytes = slice * kLayers;
    o.layer_bytes = slice;
    auto pool = ChunkPool::Create(o, *CreateHostSlotMemory(32 * o.chunk_bytes));
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    auto tree = SequenceTree::Create({Layout(), kLayers}, pool_.get());
    ASSERT_TRUE(tree.ok()) << tree.status();
    tree_ = *std::move(tree);
  }
  // Makes keys `ids` ready in the pool and returns them.
  std::vector<ChunkKey> Ready(std::vector<int> ids) {
    std::vector<ChunkKey> keys;
    for (int id : ids) {
      ChunkKey k = Key(id);
      if (!pool_->Find(k).ok()) {
        auto s = pool_->Allocate(k, keys.empty() ? std::nullopt : std::optional(keys.back()));
        EXPECT_TRUE(s.ok()) << s.status();
        EXPECT_TRUE(pool_->MarkReady(*s).ok());
      }
      keys.push_back(k);
    }
    return keys;
  }
  std::unique_ptr<ChunkPool> pool_;
  std::unique_ptr<SequenceTree> tree_;
};

TEST_F(SequenceTreeTest, CreateChecksTheLayoutAgainstThePool) {
  EXPECT_EQ(SequenceTree::Create({Layout(), kLayers + 1}, pool_.get()).status().code(),
            StatusCode::kInvalidArgument);
  kernels::KvLayout other = Layout();
  other.num_kv_heads = 4;
  EXPECT_EQ(SequenceTree::Create({other, kLayers}, pool_.get()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SequenceTree::Create({Layout(), kLayers}, nullptr).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SequenceTreeTest, SharedPrefixIsOneSlotAndHoldsFollowSequences) {
  // A system prompt of 3 chunks (1, 2, 3), three conversations after it.
  const auto a = Ready({1, 2, 3, 10, 11});
  const auto b = Ready({1, 2, 3, 20});
  const auto c = Ready({1, 2, 3, 30, 31, 32});
  ASSERT_TRUE(tree_->AddSequence(100, a, 5).ok());
  ASSERT_TRUE(tree_->AddSequence(200, b, 0).ok());
  ASSERT_TRUE(tree_->AddSequence(300, c, 15).ok());
  EXPECT_EQ(tree_->num_sequences(), 3u);
  EXPECT_EQ(tree_->num_chunks(), 9u);  // 3 shared + 6 private full chunks
  EXPECT_EQ(tree_->Users(Key(1)), 3);
  EXPECT_EQ(tree_->Users(Key(10)), 1);
  EXPECT_EQ(*pool_->HoldCount(*pool_->Find(Key(3))), 3);
  EXPECT_EQ(pool_->Stats().private_slots, 2u);
  EXPECT_EQ(*tree_->Length(100), 5 * kTokens + 5);
  EXPECT_EQ(*tree_->Length(200), 4 * kTokens);
  EXPECT_EQ(tree_->PartialSlot(200).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(tree_->PartialSlot(300).ok());

  const SequenceId batch[] = {100, 200, 300};
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    auto paged = tree_->BuildPaged(batch, layer);
    ASSERT_TRUE(paged.ok()) << paged.status();
    ASSERT_EQ(paged->chunk_offsets, (std::vector<int32_t>{0, 6, 10, 17}));
    EXPECT_EQ(paged->lengths, (std::vector<int32_t>{5 * kTokens + 5, 4 * kTokens, 6 * kTokens + 15}));
    EXPECT_EQ(paged->shared_chunks, (std::vector<int32_t>{3, 3, 3}));
    // The shared chunks are the same pointer at the same depth: the slot's slice of this layer.
    for (int d = 0; d < 3; ++d) {
      const void* p = *pool_->LayerSlice(*pool_->Find(Key(d + 1)), layer);
      EXPECT_EQ(paged->chunks[0 + d], p);
      EXPECT_EQ(paged->chunks[6 + d], p);
      EXPECT_EQ(paged->chunks[10 + d], p);
    }
    // Private chunks are distinct.
    EXPECT_NE(paged->chunks[3], paged->chunks[9]);
    EXPECT_NE(paged->chunks[5], paged->chunks[16]);

    // The prefix-tree planner finds the shared run of 3 chunks.
    kernels::AttentionOptions ao;
    ao.num_q_heads = 8;
    auto plan = kernels::BuildPrefixTreePlan(Layout(), ao, paged->batch(), kernels::PlanOptions{});
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->num_shared_runs, 1);
    EXPECT_EQ(plan->shared_tokens, 3 * kTokens);

    auto relay = tree_->BuildRelay(batch, layer);
    ASSERT_TRUE(relay.ok()) << relay.status();
    EXPECT_EQ(relay->prefix_length, 3 * kTokens);
    ASSERT_EQ(relay->prefix_chunks.size(), 3u);
    EXPECT_EQ(relay->prefix_chunks[0], paged->chunks[0]);
    EXPECT_EQ(relay->context.lengths, (std::vector<int32_t>{2 * kTokens + 5, kTokens, 3 * kTokens + 15}));
    EXPECT_EQ(relay->context.chunk_offsets, (std::vector<int32_t>{0, 3, 4, 8}));
    auto rplan = kernels::BuildRelayPlan(Layout(), ao, relay->prefix_chunks, relay->prefix_length,
                                         relay->context.batch(), kernels::PlanOptions{});
    ASSERT_TRUE(rplan.ok()) << rplan.status();
  }

  // Removing sequences gives their holds back; the chunks stay cached.
  ASSERT_TRUE(tree_->RemoveSequence(100).ok());
  EXPECT_EQ(*pool_->HoldCount(*pool_->Find(Key(1))), 2);
  EXPECT_EQ(*pool_->HoldCount(*pool_->Find(Key(10))), 0);
  EXPECT_EQ(tree_->Users(Key(10)), 0);
  EXPECT_EQ(pool_->Stats().private_slots, 1u);
  EXPECT_EQ(tree_->RemoveSequence(100).code(), StatusCode::kNotFound);
  ASSERT_TRUE(tree_->RemoveSequence(200).ok());
  ASSERT_TRUE(tree_->RemoveSequence(300).ok());
  const ChunkPoolStats st = pool_->Stats();
  EXPECT_EQ(st.held, 0u);
  EXPECT_EQ(st.private_slots, 0u);
  EXPECT_EQ(st.ready, 9u);
}

TEST_F(SequenceTreeTest, PrefillTablesCarryPositionsAndTruncationRebasesThem) {
  const auto keys = Ready({1, 2, 3, 4, 5, 6});  // system prompt 1, 2; turns 3..6
  ASSERT_TRUE(tree_->AddSequence(7, keys, 4).ok());
  ASSERT_TRUE(tree_->AddSequence(8, std::span(keys).first(2), 0).ok());
  const PrefillRequest reqs[] = {{7, 20}, {8, 1}};
  auto pre = tree_->BuildPrefill(reqs, 1);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(pre->positions, (std::vector<int32_t>{0, 16, 32, 48, 64, 80, 96, 0, 16}));
  EXPECT_EQ(pre->kv_lengths, (std::vector<int32_t>{6 * kTokens + 4, 2 * kTokens}));
  EXPECT_EQ(pre->query_offsets, (std::vector<int32_t>{0, 20, 21}));
  kernels::PrefillOptions po;
  po.num_q_heads = 4;
  EXPECT_TRUE(kernels::ValidatePrefill(Layout(), po, pre->batch()).ok());
  ASSERT_TRUE(kernels::BuildPrefillPlan(Layout(), po, pre->batch()).ok());

  // Drop the two oldest turns (3, 4) after the system prompt.
  const void* chunk5 = *pool_->LayerSlice(*pool_->Find(Key(5)), 1);
  ASSERT_TRUE(tree_->Truncate(7, 2, 2).ok());
  EXPECT_EQ(tree_->Users(Key(3)), 0);
  EXPECT_EQ(*pool_->HoldCount(*pool_->Find(Key(4))), 0);
  EXPECT_EQ(*tree_->Length(7), 4 * kTokens + 4);
  pre = tree_->BuildPrefill(reqs, 1);
  ASSERT_TRUE(pre.ok()) << pre.status();
  // Chunk 5 now sits at depth 2, position 32 (it was 64): rotated there by the kernel.
  EXPECT_EQ(pre->chunks[2], chunk5);
  EXPECT_EQ(pre->positions, (std::vector<int32_t>{0, 16, 32, 48, 64, 0, 16}));
  EXPECT_TRUE(kernels::BuildPrefillPlan(Layout(), po, pre->batch()).ok());

  EXPECT_EQ(tree_->Truncate(7, 2, 3).code(), StatusCode::kInvalidArgument);  // only 4 full chunks
  EXPECT_EQ(tree_->Truncate(7, 1, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree_->Truncate(9, 1, 1).code(), StatusCode::kNotFound);
}

TEST_F(SequenceTreeTest, BadInput) {
  const auto keys = Ready({1, 2});
  EXPECT_EQ(tree_->AddSequence(1, keys, kTokens).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree_->AddSequence(1, keys, -1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree_->AddSequence(1, {}, 0).code(), StatusCode::kInvalidArgument);
  // An absent chunk: nothing is held afterwards.
  const ChunkKey missing[] = {Key(1), Key(99)};
  EXPECT_EQ(tree_->AddSequence(1, missing, 0).code(), StatusCode::kNotFound);
  EXPECT_EQ(*pool_->HoldCount(*pool_->Find(Key(1))), 0);
  // A chunk still loading.
  ASSERT_TRUE(pool_->Allocate(Key(50), std::nullopt).ok());
  const ChunkKey loading[] = {Key(50)};
  EXPECT_EQ(tree_->AddSequence(1, loading, 0).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(tree_->AddSequence(1, keys, 0).ok());
  EXPECT_EQ(tree_->AddSequence(1, keys, 0).code(), StatusCode::kAlreadyExists);
  const SequenceId twice[] = {1, 1};
  EXPECT_EQ(tree_->BuildPaged(twice, 0).status().code(), StatusCode::kInvalidArgument);
  const SequenceId unknown[] = {2};
  EXPECT_EQ(tree_->BuildPaged(unknown, 0).status().code(), StatusCode::kNotFound);
  const SequenceId one[] = {1};
  EXPECT_EQ(tree_->BuildPaged(one, kLayers).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree_->BuildRelay({}, 0).status().code(), StatusCode::kInvalidArgument);
  const PrefillRequest too_many[] = {{1, 2 * kTokens + 1}};
  EXPECT_EQ(tree_->BuildPrefill(too_many, 0).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SequenceTreeTest, DestructorReleasesEveryHold) {
  const auto keys = Ready({1, 2});
  ASSERT_TRUE(tree_->AddSequence(1, keys, 3).ok());
  ASSERT_TRUE(tree_->AddSequence(2, keys, 0).ok());
  EXPECT_EQ(*pool_->HoldCount(*pool_->Find(Key(2))), 2);
  tree_.reset();
  EXPECT_EQ(pool_->Stats().held, 0u);
  EXPECT_EQ(pool_->Stats().private_slots, 0u);
}

}  // namespace
}  // namespace strata::runtime
