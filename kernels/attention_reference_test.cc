// Differential tests of the decompositions on the CPU: the plans (paged,
// prefix tree, relay) executed as partial states + merge must equal direct
// attention on random trees.
#include "kernels/attention_reference.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "gtest/gtest.h"
#include "kernels/attention_plan.h"
#include "kernels/attention_testing.h"

namespace strata::kernels {
namespace {

using testing::TestBatch;
using testing::TreeSpec;

double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    m = std::max(m, std::fabs(a[i] - b[i]));
  }
  return m;
}

TEST(ConversionTest, HalfRoundTrips) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f,
                  0.333251953125f}) {
    EXPECT_EQ(HalfToFloat(FloatToHalf(v)), v) << v;
  }
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(1.0f + 1.0f / 4096), 0x3c00);  // ties to even
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(NAN))));
}

TEST(ConversionTest, BFloat16RoundTrips) {
  for (float v : {0.0f, 1.0f, -3.0f, 1.5f, 3.0e38f, 1.0e-30f}) {
    const float r = BFloat16ToFloat(FloatToBFloat16(v));
    EXPECT_NEAR(r, v, std::fabs(v) / 128) << v;
  }
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBFloat16(-2.0f), 0xc000);
}

TEST(MergeStateTest, MergingSplitsEqualsOnePass) {
  // Scores 1, 2 (state a) and 3 (state b), base 2, values 10, 20, 30.
  const double sa = std::log2(std::exp2(1.0) + std::exp2(2.0));
  const double va = (10 * std::exp2(1.0) + 20 * std::exp2(2.0)) / std::exp2(sa);
  std::vector<double> a{va}, b{30.0}, out(1);
  double s;
  MergeStateReference(a, sa, b, 3.0, out, &s);
  const double total = std::exp2(1.0) + std::exp2(2.0) + std::exp2(3.0);
  EXPECT_NEAR(s, std::log2(total), 1e-12);
  EXPECT_NEAR(out[0], (10 * 2 + 20 * 4 + 30 * 8) / total, 1e-12);
  // An empty state (-inf) is the identity.
  MergeStateReference(a, sa, b, -INFINITY, out, &s);
  EXPECT_NEAR(out[0], va, 1e-12);
  EXPECT_NEAR(s, sa, 1e-12);
}

struct Shape {
  KvDtype dtype;
  int head_dim;
  int kv_heads;
  int q_heads;
  int tpc;
  bool rope;
};

class DecompositionTest
    : public ::testing::TestWithParam<std::tuple<Shape, int>> {};

TEST_P(DecompositionTest, TreeAndPagedPlansEqualDirectAttention) {
  const auto [shape, depth] = GetParam();
  KvLayout layout{shape.dtype, shape.kv_heads, shape.head_dim, shape.tpc};
  AttentionOptions options;
  options.num_q_heads = shape.q_heads;
  options.apply_rope = shape.rope;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    TestBatch tb(layout, options, seed * 97 + depth);
    TreeSpec spec;
    spec.num_seqs = 7;
    spec.depth = depth;
    spec.max_tail_tokens = 37 + shape.tpc;
    tb.MakeTree(spec);
    ReferenceOutput direct;
    ASSERT_TRUE(ReferenceDecode(layout, options, tb.queries(), tb.batch(), &direct).ok());
    for (int max_chunks : {0, 1, 2}) {
      PlanOptions po;
      po.max_chunks_per_item = max_chunks;
      po.target_blocks = 64;
      auto tree = BuildPrefixTreePlan(layout, options, tb.batch(), po);
      ASSERT_TRUE(tree.ok()) << tree.status();
      auto paged = BuildPagedPlan(layout, options, tb.batch(), po);
      ASSERT_TRUE(paged.ok()) << paged.status();
      EXPECT_LE(tree->kv_bytes, paged->kv_bytes);
      if (depth > 0) {
        EXPECT_GT(tree->num_shared_runs, 0);
      }
      for (const AttentionPlan* plan : {&*tree, &*paged}) {
        ReferenceOutput split;
        ASSERT_TRUE(ExecutePlanOnCpu(*plan, tb.queries(), &split).ok());
        EXPECT_LT(MaxAbsDiff(split.out, direct.out), 1e-9);
        EXPECT_LT(MaxAbsDiff(split.lse, direct.lse), 1e-9);
      }
    }
  }
}

TEST_P(DecompositionTest, RelayPlanEqualsDirectAttention) {
  const auto [shape, depth] = GetParam();
  KvLayout layout{shape.dtype, shape.kv_heads, shape.head_dim, shape.tpc};
  AttentionOptions options;
  options.num_q_heads = shape.q_heads;
  options.apply_rope = shape.rope;
  TestBatch tb(layout, options, 11 + depth);
  // depth selects the prefix length, partial last chunk included.
  tb.MakeRelay(7, 37 + depth * shape.tpc * 2, 37 + shape.tpc);
  ReferenceOutput direct;
  ASSERT_TRUE(ReferenceRelayDecode(layout, options, tb.queries(), tb.prefix_chunks(),
                                   tb.prefix_length(), tb.batch(), &direct)
                  .ok());
  PlanOptions po;
  po.target_blocks = 64;
  auto plan = BuildRelayPlan(layout, options, tb.prefix_chunks(), tb.prefix_length(),
                             tb.batch(), po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ReferenceOutput split;
  ASSERT_TRUE(ExecutePlanOnCpu(*plan, tb.queries(), &split).ok());
  EXPECT_LT(MaxAbsDiff(split.out, direct.out), 1e-9);
  EXPECT_LT(MaxAbsDiff(split.lse, direct.lse), 1e-9);
  // The same queries given in double: the same results, bit for bit.
  std::vector<double> q(tb.queries().size());
  for (size_t i = 0; i < q.size(); ++i) q[i] = ToFloat(layout.dtype, tb.queries()[i]);
  ReferenceOutput from_double;
  ASSERT_TRUE(ExecutePlanOnCpu(*plan, std::span<const double>(q), &from_double).ok());
  EXPECT_EQ(from_double.out, split.out);
  EXPECT_EQ(from_double.lse, split.lse);
  q.pop_back();
  EXPECT_EQ(ExecutePlanOnCpu(*plan, std::span<const double>(q), &from_double).code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecompositionTest,
    ::testing::Combine(
        ::testing::Values(Shape{KvDtype::kFloat16, 128, 2, 8, 64, false},
                          Shape{KvDtype::kBFloat16, 64, 2, 2, 16, false},
                          Shape{KvDtype::kFloat16, 64, 1, 4, 256, true},
                          Shape{KvDtype::kBFloat16, 128, 1, 1, 32, true}),
        ::testing::Values(1, 2, 3, 4)));

TEST(ReferenceTest, SingleTokenReturnsItsValue) {
  KvLayout layout{KvDtype::kFloat16, 1, 64, 16};
  AttentionOptions options;
  options.num_q_heads = 2;
  TestBatch tb(layout, options, 5);
  tb.MakeRelay(1, 1, 0);
  ReferenceOutput out;
  ASSERT_TRUE(ReferenceRelayDecode(layout, options, tb.queries(), tb.prefix_chunks(),
                                   1, tb.batch(), &out)
                  .ok());
  const uint16_t* v = static_cast<const uint16_t*>(tb.prefix_chunks()[0]) +
                      layout.HalfElements();
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 64; ++i) {
      EXPECT_EQ(out.out[h * 64 + i], HalfToFloat(v[i]));
    }
  }
}

}  // namespace
}  // namespace strata::kernels
