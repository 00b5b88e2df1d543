// The prefill reference (ReferencePrefill) against a naive attention written
// here from the plain per-sequence arrays (no page tables, an explicit mask
// matrix), on odd lengths, partial chunks, GQA groups 1, 4 and 7, re-based
// and truncated positions and shared chunks; and the error codes of the
// host-side validation.
#include <cmath>
#include <string>
#include <map>
#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/prefill_plan.h"
#include "kernels/prefill_testing.h"

namespace strata::kernels {
namespace {

using testing::PrefillCase;
using testing::PrefillSeqSpec;

// Naive attention of one sequence: materialise rotated K and Q, build the
// full [num_new][kv_length] mask, softmax in natural base, convert the lse.
void NaivePrefill(const PrefillCase& c, int b, std::vector<double>* out,
                  std::vector<double>* lse) {
  const KvLayout& L = c.layout();
  const PrefillOptions& o = c.options();
  const int d = L.head_dim, hq = o.num_q_heads, hkv = L.num_kv_heads;
  const int len = c.kv_length(b), n = c.num_new(b), hist = len - n;
  // The scale is an fp32 value (1/sqrt(d) rounded to float by default).
  const double scale = o.scale != 0 ? o.scale : double(float(1.0 / std::sqrt(double(d))));
  auto rotate = [&](std::vector<double>& x, int pos) {
    if (!o.apply_rope) return;
    std::vector<double> y(x);
    for (int i = 0; i < d / 2; ++i) {
      // The documented fp32 angle: (float) pos * (float) theta^(-2i/d).
      const float inv = static_cast<float>(std::pow(double(o.rope_theta), -2.0 * i / d));
      const double a = double(float(pos) * inv);
      y[i] = x[i] * std::cos(a) - x[i + d / 2] * std::sin(a);
      y[i + d / 2] = x[i + d / 2] * std::cos(a) + x[i] * std::sin(a);
    }
    x = y;
  };
  std::vector<std::vector<bool>> mask(n, std::vector<bool>(len));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < len; ++j) mask[i][j] = j < hist || j - hist <= i;
  }
  const std::vector<uint16_t>& qs = c.queries();
  for (int i = 0; i < n; ++i) {
    for (int h = 0; h < hq; ++h) {
      const int kvh = h / (hq / hkv);
      const size_t row = size_t(c.query_offset(b) + i) * hq + h;
      std::vector<double> q(d);
      for (int x = 0; x < d; ++x) q[x] = ToFloat(L.dtype, qs[row * d + x]);
      rotate(q, c.token_positions(b)[hist + i]);
      std::vector<double> w(len, 0.0);
      double z = 0;
      for (int j = 0; j < len; ++j) {
        if (!mask[i][j]) continue;
        std::vector<double> k(d);
        for (int x = 0; x < d; ++x) k[x] = c.keys(b)[(size_t(kvh) * len + j) * d + x];
        rotate(k, c.token_positions(b)[j]);
        double dot = 0;
        for (int x = 0; x < d; ++x) dot += q[x] * k[x];
        w[j] = dot * scale;
      }
      double m = -INFINITY;
      for (int j = 0; j < len; ++j) if (mask[i][j]) m = std::max(m, w[j]);
      for (int j = 0; j < len; ++j) {
        w[j] = mask[i][j] ? std::exp(w[j] - m) : 0.0;
        z += w[j];
      }
      for (int x = 0; x < d; ++x) {
        double acc = 0;
        for (int j = 0; j < len; ++j) acc += w[j] * c.values(b)[(size_t(kvh) * len + j) * d + x];
        (*out)[row * d + x] = acc / z;
      }
      (*lse)[row] = (m + std::log(z)) / std::log(2.0);
    }
  }
}

void ExpectMatchesNaive(PrefillCase& c, const std::string& what) {
  ReferenceOutput ref;
  absl::Status s = ReferencePrefill(c.layout(), c.options(), c.queries(), c.batch(), &ref);
  ASSERT_TRUE(s.ok()) << s;
  std::vector<double> out(ref.out.size(), NAN), lse(ref.lse.size(), NAN);
  for (int b = 0; b < c.num_seqs(); ++b) NaivePrefill(c, b, &out, &lse);
  double max_out = 0, max_lse = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(ref.out[i])) << what << " element " << i;
    max_out = std::max(max_out, std::fabs(out[i] - ref.out[i]));
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    ASSERT_TRUE(std::isfinite(ref.lse[i])) << what << " lse " << i;
    max_lse = std::max(max_lse, std::fabs(lse[i] - ref.lse[i]));
  }
  EXPECT_LT(max_out, 1e-9) << what;
  EXPECT_LT(max_lse, 1e-9) << what;
}

struct Shape {
  KvDtype dtype;
  int head_dim;
  int kv_heads;
  int group;
  int tpc;
};

std::string Name(const Shape& s) {
  return absl::StrCat(s.dtype == KvDtype::kFloat16 ? "fp16" : "bf16", "_d", s.head_dim,
                      "_kv", s.kv_heads, "_g", s.group, "_tpc", s.tpc);
}

class PrefillReferenceTest : public ::testing::TestWithParam<Shape> {
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

// One sequence per odd number of new tokens, over an odd history (partial
// last chunks, new tokens starting mid-chunk).
TEST_P(PrefillReferenceTest, OddLengthsMatchNaive) {
  for (bool rope : {true, false}) {
    for (int n : {1, 7, 17, 63, 65}) {
      PrefillCase c(Layout(), Options(rope), 100 + n);
      c.AddSequence({.history = 37 + n, .num_new = n});
      c.AddSequence({.history = 0, .num_new = n});  // no history: pure causal
      c.Finish();
      ExpectMatchesNaive(c, absl::StrCat(Name(GetParam()), " n=", n, " rope=", rope));
    }
  }
}

// Several sequences in one batch: decodes mixed with prefills, a re-based
// history, a history with a gap, shared chunks at different positions, a
// sequence with no new tokens.
TEST_P(PrefillReferenceTest, MixedBatchMatchesNaive) {
  const int tpc = GetParam().tpc;
  PrefillCase c(Layout(), Options(true), 7);
  c.AddSequence({.history = 3 * tpc + 5, .num_new = 17});
  c.AddSequence({.history = 2 * tpc, .num_new = 1, .first_position = 9000});
  c.AddSequence({.history = 4 * tpc + 1, .num_new = 7, .first_position = 0,
                 .skip_after = 0, .skip = 3 * tpc + 11});
  c.AddSequence({.history = 3 * tpc + 9, .num_new = 63, .first_position = 500,
                 .share_with = 0, .shared_chunks = 3});
  c.AddSequence({.history = 5, .num_new = 0});
  c.AddSequence({.history = 2 * tpc, .num_new = 1, .share_with = 0, .shared_chunks = 2});
  c.Finish();
  ExpectMatchesNaive(c, Name(GetParam()) + " mixed");
}

INSTANTIATE_TEST_SUITE_P(Shapes, PrefillReferenceTest,
                         ::testing::Values(Shape{KvDtype::kFloat16, 64, 2, 1, 16},
                                           Shape{KvDtype::kBFloat16, 128, 1, 4, 64},
                                           Shape{KvDtype::kFloat16, 64, 1, 7, 48},
                                           Shape{KvDtype::kBFloat16, 64, 2, 4, 32}),
                         [](const auto& info) { return Name(info.param); });

// A long prefill: 1000 new tokens over 130 cached ones, GQA 4, re-based.
TEST(PrefillReferenceLongTest, ThousandNewTokensMatchNaive) {
  KvLayout layout{KvDtype::kBFloat16, 1, 64, 64};
  PrefillOptions options;
  options.num_q_heads = 4;
  PrefillCase c(layout, options, 3);
  c.AddSequence({.history = 130, .num_new = 1000, .first_position = 70000});
  c.Finish();
  ExpectMatchesNaive(c, "n=1000");
}

TEST(PrefillReferenceTest, ScaleAndThetaAreUsed) {
  KvLayout layout{KvDtype::kFloat16, 1, 64, 16};
  PrefillOptions options;
  options.num_q_heads = 1;
  options.scale = 0.3f;
  options.rope_theta = 10000.0f;
  PrefillCase c(layout, options, 9);
  c.AddSequence({.history = 20, .num_new = 5, .first_position = 3});
  c.Finish();
  ExpectMatchesNaive(c, "scale/theta");
}

// The last new token of a sequence without history and with one new token
// sees only itself: output = its value, lse = its own score.
TEST(PrefillReferenceTest, SingleTokenReturnsItsValue) {
  KvLayout layout{KvDtype::kFloat16, 1, 64, 16};
  PrefillOptions options;
  options.num_q_heads = 7;
  PrefillCase c(layout, options, 5);
  c.AddSequence({.history = 0, .num_new = 1});
  c.Finish();
  ReferenceOutput ref;
  ASSERT_TRUE(ReferencePrefill(layout, options, c.queries(), c.batch(), &ref).ok());
  for (int h = 0; h < 7; ++h) {
    for (int i = 0; i < 64; ++i) EXPECT_EQ(ref.out[h * 64 + i], c.values(0)[i]);
  }
}

// Plans of one sequence (history + num_new tokens, 64-token chunks at
// positions from `first`) with fake chunk pointers: splitting and the RoPE
// table.
PrefillPlan PlanOne(const KvLayout& layout, const PrefillOptions& options, int history,
                    int num_new, int first = 0) {
  const int len = history + num_new;
  const int n = (len + layout.tokens_per_chunk - 1) / layout.tokens_per_chunk;
  static char dummy[16];
  std::vector<const void*> chunks(n, dummy);
  std::vector<int32_t> positions(n);
  for (int i = 0; i < n; ++i) positions[i] = first + i * layout.tokens_per_chunk;
  const std::vector<int32_t> offsets{0, n}, lengths{len}, qoffs{0, num_new};
  absl::StatusOr<PrefillPlan> plan =
      BuildPrefillPlan(layout, options, PrefillBatch{chunks, positions, offsets, lengths, qoffs});
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *std::move(plan) : PrefillPlan{};
}

TEST(PrefillPlanTest, LongDecodeIsSplitIntoPiecesOfWholeTiles) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  const PrefillPlan plan = PlanOne(layout, options, 32768, 1);
  // 513 KV tiles x 8 heads over 264 blocks: pieces of 16 tiles (1024 keys).
  ASSERT_EQ(plan.merges.size(), 1u);
  EXPECT_EQ(plan.merges[0].num_pieces, 33);
  EXPECT_EQ(plan.merges[0].num_rows, 4);
  EXPECT_EQ(plan.partial_rows, 33 * 4);
  ASSERT_EQ(plan.items.size(), 33u);
  int covered = 0;
  for (const PrefillItem& it : plan.items) {
    EXPECT_EQ(it.kv_begin % kPrefillRowsPerTile, 0);
    EXPECT_GE(it.partial_row, 0);
    covered += it.kv_stop - it.kv_begin;
  }
  EXPECT_EQ(covered, 32769);
  options.split_target_blocks = 0;
  const PrefillPlan whole = PlanOne(layout, options, 32768, 1);
  ASSERT_EQ(whole.items.size(), 1u);
  EXPECT_TRUE(whole.merges.empty());
  EXPECT_EQ(whole.items[0].partial_row, -1);
}

// Every split tile's pieces cover its KV extent exactly once, in order, from
// 0 to the causal end of its last row, over a sweep of histories (every
// remainder of a 64-token chunk) and new-token counts of the worker's steps.
TEST(PrefillPlanTest, SplitPiecesCoverEachTileOnce) {
  for (auto [kv_heads, q_heads] : {std::pair{2, 8}, {8, 32}}) {
    const KvLayout layout{KvDtype::kBFloat16, kv_heads, 128, 64};
    PrefillOptions options;
    options.num_q_heads = q_heads;
    const int group = q_heads / kv_heads;
    for (int history = 2048; history < 2048 + 2 * 64 + 3; ++history) {
      for (int num_new : {1, 2, 10, 57, 522}) {
        const PrefillPlan plan = PlanOne(layout, options, history, num_new);
        // Pieces by (row_begin), in plan order.
        std::map<int, std::vector<const PrefillItem*>> tiles;
        for (const PrefillItem& it : plan.items) tiles[it.row_begin].push_back(&it);
        for (const auto& [row_begin, pieces] : tiles) {
          const PrefillItem& first = *pieces.front();
          const int last_row = row_begin + first.num_rows - 1;
          const int end = history + last_row / group + 1;  // causal end of the last row
          std::vector<std::pair<int, int>> spans;
          for (const PrefillItem* p : pieces) {
            EXPECT_EQ(p->num_rows, first.num_rows);
            spans.emplace_back(p->kv_begin, std::min(p->kv_stop, end));
          }
          std::sort(spans.begin(), spans.end());
          int at = 0;
          for (auto [b, e] : spans) {
            EXPECT_EQ(b, at) << "history " << history << " new " << num_new << " rows from "
                             << row_begin << " group " << group;
            EXPECT_GT(e, b) << "history " << history << " new " << num_new;
            at = e;
          }
          EXPECT_EQ(at, end) << "history " << history << " new " << num_new << " rows from "
                             << row_begin << " group " << group;
          if (pieces.size() == 1) {
            EXPECT_EQ(first.partial_row, -1);
          } else {
            for (const PrefillItem* p : pieces) EXPECT_GE(p->partial_row, 0);
          }
        }
      }
    }
  }
}

TEST(PrefillPlanTest, AutoVariantPicksPipelinedWgmmaTiles) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  options.kernel_variant = PrefillOptions::KernelVariant::kAuto;
  using V = PrefillOptions::KernelVariant;
  for (const auto& [history, num_new] : std::vector<std::pair<int, int>>{
           {1024, 2048}, {4096 - 512, 512}, {1024, 512}, {1024, 128}, {8192 - 129, 128},
           {32768, 128}, {32768, 1}, {100, 1}, {1000, 7}}) {
    EXPECT_EQ(PlanOne(layout, options, history, num_new).options.kernel_variant,
              V::kRows128WgmmaPipelined)
        << history << " + " << num_new;
  }
  // The tiles follow the choice: 2048 x 4 rows in 64 tiles of 128.
  const PrefillPlan wide = PlanOne(layout, options, 1024, 2048);
  for (const PrefillItem& it : wide.items) EXPECT_LE(it.num_rows, 128);
  EXPECT_EQ(wide.items.size(), 64u);
}

// Each tile is cut into its share of the target, in pieces of one length
// (the last shorter): never a few long pieces and a short extra one. 512 new
// tokens over 4096 keys: 32 tiles of 64 rows x 8 heads (256 blocks) for a
// target of 264, or 16 tiles of 128 rows (128 blocks) for g128p's 132 (one
// block per SM): no tile gets 2 pieces' share, so none is cut. 128 new
// tokens over 32768 keys on g128p: 4 tiles x 8 heads for 132 blocks, 4
// pieces each.
TEST(PrefillPlanTest, SplitPiecesAreTheTilesShareOfEqualLength) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  EXPECT_TRUE(PlanOne(layout, options, 4096 - 512, 512).merges.empty());
  options.kernel_variant = PrefillOptions::KernelVariant::kRows128WgmmaPipelined;
  EXPECT_EQ(PrefillBlocksPerSm(options.kernel_variant), 1);
  EXPECT_TRUE(PlanOne(layout, options, 4096 - 512, 512).merges.empty());
  // The largest target (x 2 / 2 for the 64-row kernel, without
  // overflowing): a decode's 513 KV tiles are cut as finely as allowed, 128
  // pieces of 4 tiles rounded up to one length of 5 tiles: 103 pieces.
  PrefillOptions finest = options;
  finest.kernel_variant = PrefillOptions::KernelVariant::kRows64;
  finest.split_target_blocks = std::numeric_limits<int>::max();
  const PrefillPlan most = PlanOne(layout, finest, 32768, 1);
  ASSERT_EQ(most.merges.size(), 1u);
  EXPECT_EQ(most.merges[0].num_pieces, 103);
  const PrefillPlan plan = PlanOne(layout, options, 32768, 128);
  ASSERT_EQ(plan.merges.size(), 4u);
  for (const PrefillMerge& m : plan.merges) EXPECT_EQ(m.num_pieces, 4);
  ASSERT_EQ(plan.items.size(), 16u);
  for (const PrefillItem& it : plan.items) {
    const int length =
        std::min(it.kv_stop, it.history + (it.row_begin + it.num_rows - 1) / 4 + 1) - it.kv_begin;
    // 513 or 514 KV tiles of 64 keys per tile over 4 pieces: 129 tiles
    // each, the last one shorter.
    EXPECT_LE(length, 129 * 64);
    EXPECT_GT(length, 120 * 64);
  }
}

TEST(PrefillPlanTest, ShortOrWideLaunchesAreNotSplit) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  EXPECT_TRUE(PlanOne(layout, options, 100, 1).merges.empty());  // < 256 keys
  // 2048 new tokens: 128 tiles x 8 heads >= 264 blocks.
  EXPECT_TRUE(PlanOne(layout, options, 16384, 2048).merges.empty());
}

TEST(PrefillPlanTest, RopeTableSpansThePositionsUnlessTooLarge) {
  const KvLayout layout{KvDtype::kFloat16, 2, 64, 64};
  PrefillOptions options;
  options.num_q_heads = 4;
  PrefillPlan plan = PlanOne(layout, options, 1000, 24, 70000);
  EXPECT_EQ(plan.rope_table_base, 70000);
  EXPECT_EQ(plan.rope_table_rows, 16 * 64);  // 16 chunks of 64 positions
  options.max_rope_table_bytes = int64_t{16 * 64} * 32 * 8 - 1;
  EXPECT_EQ(PlanOne(layout, options, 1000, 24, 70000).rope_table_rows, 0);
  options.max_rope_table_bytes = int64_t{64} << 20;
  options.apply_rope = false;
  EXPECT_EQ(PlanOne(layout, options, 1000, 24, 70000).rope_table_rows, 0);
}

TEST(PrefillPlanTest, KeysRotatedAheadForG128pOrWhenReadByManyQueryTiles) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  const int64_t entry_bytes = int64_t{8} * 64 * 128 * 2;  // heads x slots x dim x 2
  // 2048 new tokens x 4 heads = 128 query tiles read every key.
  EXPECT_EQ(PlanOne(layout, options, 16384, 2048).rotated_key_bytes, 288 * entry_bytes);
  // 16 new tokens: one tile per key; a decode: one tile.
  EXPECT_EQ(PlanOne(layout, options, 4096, 16).rotated_key_bytes, 0);
  EXPECT_EQ(PlanOne(layout, options, 4096, 1).rotated_key_bytes, 0);
  // 17 new tokens: two tiles.
  EXPECT_EQ(PlanOne(layout, options, 4096, 17).rotated_key_bytes, 65 * entry_bytes);
  // g128p (and kAuto, which picks it): ahead for decodes and short prefills
  // too, while the copy fits.
  for (auto variant : {PrefillOptions::KernelVariant::kRows128WgmmaPipelined,
                       PrefillOptions::KernelVariant::kAuto}) {
    PrefillOptions g = options;
    g.kernel_variant = variant;
    EXPECT_EQ(PlanOne(layout, g, 4096, 1).rotated_key_bytes, 65 * entry_bytes);
    EXPECT_EQ(PlanOne(layout, g, 4096, 16).rotated_key_bytes, 65 * entry_bytes);
    g.max_rotated_key_bytes = 65 * entry_bytes - 1;
    EXPECT_EQ(PlanOne(layout, g, 4096, 1).rotated_key_bytes, 0);
  }
  options.key_rotation = PrefillOptions::KeyRotation::kAhead;
  EXPECT_EQ(PlanOne(layout, options, 4096, 1).rotated_key_bytes, 65 * entry_bytes);
  options.max_rotated_key_bytes = 65 * entry_bytes - 1;
  EXPECT_EQ(PlanOne(layout, options, 4096, 1).rotated_key_bytes, 0);
  options.max_rotated_key_bytes = int64_t{1} << 30;
  options.key_rotation = PrefillOptions::KeyRotation::kInKernel;
  EXPECT_EQ(PlanOne(layout, options, 16384, 2048).rotated_key_bytes, 0);
  options.key_rotation = PrefillOptions::KeyRotation::kAhead;
  options.apply_rope = false;
  EXPECT_EQ(PlanOne(layout, options, 16384, 2048).rotated_key_bytes, 0);
}

TEST(PrefillPlanTest, WideVariantsTileBy128Rows) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  options.split_target_blocks = 0;
  // 100 new tokens x 4 heads = 400 rows: 7 tiles of 64 or 4 of 128.
  const PrefillPlan base = PlanOne(layout, options, 1000, 100);
  ASSERT_EQ(base.items.size(), 7u);
  for (auto v : {PrefillOptions::KernelVariant::kRows128,
                 PrefillOptions::KernelVariant::kRows128Wide,
                 PrefillOptions::KernelVariant::kRows128Wgmma,
                 PrefillOptions::KernelVariant::kRows128WgmmaKv128,
                 PrefillOptions::KernelVariant::kRows128WgmmaPipelined}) {
    options.kernel_variant = v;
    EXPECT_EQ(PrefillRowsPerTile(v), 128);
    const PrefillPlan wide = PlanOne(layout, options, 1000, 100);
    ASSERT_EQ(wide.items.size(), 4u) << PrefillKernelVariantName(v);
    int rows = 0;
    for (const PrefillItem& it : wide.items) {
      EXPECT_EQ(it.row_begin % 128, 0);
      EXPECT_LE(it.num_rows, 128);
      rows += it.num_rows;
    }
    EXPECT_EQ(rows, 400);
    EXPECT_EQ(wide.flops, base.flops);
    // Heaviest first: the tile of the last rows (16 rows: tokens 96..99).
    EXPECT_EQ(wide.items[0].row_begin, 384);
    EXPECT_EQ(wide.items[0].num_rows, 16);
  }
  EXPECT_EQ(PrefillRowsPerTile(PrefillOptions::KernelVariant::kRows64), 64);
}

TEST(PrefillPlanTest, WideVariantsCountQueryTilesOf128RowsForKeyRotation) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  const int64_t entry_bytes = int64_t{8} * 64 * 128 * 2;
  // 17 new tokens x 4 heads = 68 rows: two 64-row tiles read every key
  // (rotated ahead), one 128-row tile (rotated in the kernel).
  EXPECT_EQ(PlanOne(layout, options, 4096, 17).rotated_key_bytes, 65 * entry_bytes);
  options.kernel_variant = PrefillOptions::KernelVariant::kRows128;
  EXPECT_EQ(PlanOne(layout, options, 4096, 17).rotated_key_bytes, 0);
  EXPECT_EQ(PlanOne(layout, options, 4096, 33).rotated_key_bytes, 65 * entry_bytes);
}

TEST(PrefillPlanTest, WideVariantsSplitIntoWholeKvTiles) {
  const KvLayout layout{KvDtype::kBFloat16, 8, 128, 64};
  PrefillOptions options;
  options.num_q_heads = 32;
  options.kernel_variant = PrefillOptions::KernelVariant::kRows128Wide;
  // 512 new tokens: 16 tiles of 128 rows x 8 heads < 264 blocks.
  const PrefillPlan plan = PlanOne(layout, options, 4096, 512);
  ASSERT_FALSE(plan.merges.empty());
  for (const PrefillItem& it : plan.items) {
    EXPECT_EQ(it.kv_begin % kPrefillKvTile, 0);
    EXPECT_LE(it.num_rows, 128);
  }
  for (const PrefillMerge& mg : plan.merges) EXPECT_LE(mg.num_rows, 128);
}

// The batch of GpuPrefillTest.SplitKvPiecesOfOddTileCountsMatchReference,
// on each of its shapes: some split target cuts a piece that starts at 64
// mod 128 (an odd number of 64-key tiles per piece).
TEST(PrefillPlanTest, SomeSplitTargetGivesPiecesAt64Mod128) {
  const struct {
    KvLayout layout;
    int group;
  } shapes[] = {{{KvDtype::kFloat16, 2, 128, 64}, 4},  {{KvDtype::kBFloat16, 2, 128, 64}, 4},
                {{KvDtype::kFloat16, 3, 64, 16}, 1},   {{KvDtype::kBFloat16, 2, 64, 48}, 1},
                {{KvDtype::kFloat16, 1, 64, 32}, 7},   {{KvDtype::kBFloat16, 1, 128, 256}, 7}};
  for (const auto& sh : shapes) {
    PrefillOptions options;
    options.num_q_heads = sh.layout.num_kv_heads * sh.group;
    PrefillCase c(sh.layout, options, 5);
    c.AddSequence({.history = 1500, .num_new = 1, .first_position = 3});
    c.AddSequence({.history = 700, .num_new = 33});
    c.AddSequence({.history = 1100, .num_new = 70, .first_position = 4000});
    c.Finish();
    options.kernel_variant = PrefillOptions::KernelVariant::kRows128WgmmaKv128;
    bool found = false;
    for (int target = 2; target <= 4096 && !found; ++target) {
      options.split_target_blocks = target;
      absl::StatusOr<PrefillPlan> plan = BuildPrefillPlan(sh.layout, options, c.batch());
      ASSERT_TRUE(plan.ok()) << plan.status();
      for (const PrefillItem& it : plan->items) {
        found = found || (it.partial_row >= 0 && it.kv_begin % 128 == 64);
      }
    }
    EXPECT_TRUE(found) << "group " << sh.group << " tpc " << sh.layout.tokens_per_chunk;
  }
}

// The chunk slices' pool that the pipelined kernel's tensor maps address:
// the lowest slice, the gcd of the offsets as the stride, the slots up to
// the highest; none when the stride is not a multiple of 16 bytes or is
// smaller than a slice.
TEST(PrefillPlanTest, PagePoolOfSlicesAtACommonStride) {
  constexpr int64_t kSlice = 32768;
  const uintptr_t base = 0x7f0000000000;
  auto at = [&](uint64_t offset) { return reinterpret_cast<const void*>(base + offset); };
  // Slots 3, 0, 7 and 3 again (shared) of a pool of 64 KiB slots.
  PrefillPagePool pool =
      FindPrefillPagePool({at(3 * 65536), at(0), at(7 * 65536), at(3 * 65536)}, kSlice);
  EXPECT_EQ(pool.base, base);
  EXPECT_EQ(pool.stride, 65536);
  EXPECT_EQ(pool.slots, 8);
  // Slots 2 and 6 only: the stride found is the gcd, 4 slots apart.
  pool = FindPrefillPagePool({at(2 * 65536), at(6 * 65536)}, kSlice);
  EXPECT_EQ(pool.base, base + 2 * 65536);
  EXPECT_EQ(pool.stride, 4 * 65536);
  EXPECT_EQ(pool.slots, 2);
  // One distinct slice: a pool of one slot.
  pool = FindPrefillPagePool({at(65536), at(65536)}, kSlice);
  EXPECT_EQ(pool.base, base + 65536);
  EXPECT_EQ(pool.slots, 1);
  // Slices at a stride of a slice + 16 bytes are a pool; offsets whose gcd
  // is smaller than a slice (0, a slice + 16, two slices + 48) are not.
  EXPECT_EQ(FindPrefillPagePool({at(0), at(kSlice + 16), at(2 * kSlice + 32)}, kSlice).slots, 3);
  EXPECT_EQ(FindPrefillPagePool({at(0), at(kSlice + 16), at(2 * kSlice + 48)}, kSlice).slots, 0);
  // A stride that is not a multiple of 16 bytes: no pool.
  EXPECT_EQ(FindPrefillPagePool({at(0), at(kSlice + 8)}, kSlice).slots, 0);
  EXPECT_EQ(FindPrefillPagePool({}, kSlice).slots, 0);
}

TEST(PrefillPlanTest, KernelVariantNamesRoundTrip) {
  for (auto v : {PrefillOptions::KernelVariant::kRows64, PrefillOptions::KernelVariant::kRows128,
                 PrefillOptions::KernelVariant::kRows128Wide,
                 PrefillOptions::KernelVariant::kRows128Wgmma,
                 PrefillOptions::KernelVariant::kRows128WgmmaKv128,
                 PrefillOptions::KernelVariant::kRows128WgmmaPipelined}) {
    absl::StatusOr<PrefillOptions::KernelVariant> parsed =
        ParsePrefillKernelVariant(PrefillKernelVariantName(v));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, v);
  }
  EXPECT_EQ(ParsePrefillKernelVariant("r256").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePrefillKernelVariant("").status().code(), absl::StatusCode::kInvalidArgument);
}

// Host-side validation: the most specific code for each bad input.
class PrefillValidationTest : public ::testing::Test {
 protected:
  PrefillValidationTest() : c_(layout_, Opts(), 1) {
    c_.AddSequence({.history = 20, .num_new = 5});
    c_.AddSequence({.history = 3, .num_new = 2});
    c_.Finish();
    b_ = c_.batch();
    chunks_.assign(b_.chunks.begin(), b_.chunks.end());
    positions_.assign(b_.positions.begin(), b_.positions.end());
    offsets_.assign(b_.chunk_offsets.begin(), b_.chunk_offsets.end());
    lengths_.assign(b_.kv_lengths.begin(), b_.kv_lengths.end());
    qoffs_.assign(b_.query_offsets.begin(), b_.query_offsets.end());
  }
  static PrefillOptions Opts() {
    PrefillOptions o;
    o.num_q_heads = 4;
    return o;
  }
  PrefillBatch Batch() const {
    return PrefillBatch{chunks_, positions_, offsets_, lengths_, qoffs_};
  }
  absl::StatusCode Code() const {
    return ValidatePrefill(layout_, options_, Batch()).code();
  }

  KvLayout layout_{KvDtype::kFloat16, 2, 64, 16};
  PrefillOptions options_ = Opts();
  PrefillCase c_;
  PrefillBatch b_;
  std::vector<const void*> chunks_;
  std::vector<int32_t> positions_, offsets_, lengths_, qoffs_;
};

TEST_F(PrefillValidationTest, ValidBatchIsOk) {
  EXPECT_TRUE(ValidatePrefill(layout_, options_, Batch()).ok());
  positions_.clear();  // default positions
  EXPECT_TRUE(ValidatePrefill(layout_, options_, Batch()).ok());
  auto plan = BuildPrefillPlan(layout_, options_, Batch());
  ASSERT_TRUE(plan.ok());
  // 5 x 4 rows and 2 x 4 rows: one tile each, the longer extent first.
  ASSERT_EQ(plan->items.size(), 2u);
  EXPECT_EQ(plan->items[0].kv_length, 25);
  EXPECT_EQ(plan->positions[1], 16);
  EXPECT_EQ(plan->unique_kv_bytes, int64_t{30} * 2 * 2 * 64 * 2);
}

TEST_F(PrefillValidationTest, ShapesAndOptions) {
  layout_.head_dim = 96;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  layout_.head_dim = 64;
  layout_.tokens_per_chunk = 24;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  layout_.tokens_per_chunk = 16;
  layout_.dtype = static_cast<KvDtype>(5);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  layout_.dtype = KvDtype::kFloat16;
  options_.num_q_heads = 3;  // not a multiple of 2 KV heads
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  options_.num_q_heads = 4;
  options_.scale = -1.0f;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  options_.scale = 0.0f;
  options_.rope_theta = 0.5f;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  options_.rope_theta = INFINITY;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  options_.apply_rope = false;  // theta unused
  EXPECT_TRUE(ValidatePrefill(layout_, options_, Batch()).ok());
  options_.kernel_variant = static_cast<PrefillOptions::KernelVariant>(7);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildPrefillPlan(layout_, options_, Batch()).status().code(),
            absl::StatusCode::kInvalidArgument);
  options_.kernel_variant = PrefillOptions::KernelVariant::kRows128Wide;
  EXPECT_TRUE(ValidatePrefill(layout_, options_, Batch()).ok());
  for (auto v : {PrefillOptions::KernelVariant::kRows128Wgmma,
                 PrefillOptions::KernelVariant::kRows128WgmmaKv128,
                 PrefillOptions::KernelVariant::kRows128WgmmaPipelined}) {
    options_.kernel_variant = v;
    EXPECT_TRUE(ValidatePrefill(layout_, options_, Batch()).ok());
  }
  options_.kernel_variant = PrefillOptions::KernelVariant::kRows128Wide;
}

TEST_F(PrefillValidationTest, OffsetsAndLengths) {
  lengths_[0] = 4;  // fewer kv tokens than new tokens (and too many chunks)
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  lengths_[0] = 33;  // needs 3 chunks, page table has 2
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  lengths_[0] = 25;
  qoffs_[1] = 8;  // query_offsets decrease (8 > 7)
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  qoffs_[1] = 5;
  qoffs_[0] = 1;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  qoffs_[0] = 0;
  offsets_.pop_back();
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  offsets_.push_back(static_cast<int32_t>(chunks_.size()) + 1);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  offsets_.back() = static_cast<int32_t>(chunks_.size());
  lengths_.clear();
  qoffs_.assign(1, 0);
  offsets_.assign(1, 0);
  chunks_.clear();
  positions_.clear();
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);  // empty batch
}

TEST_F(PrefillValidationTest, PositionsAndPointers) {
  positions_.pop_back();
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  positions_.push_back(-1);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
  positions_.back() = (1 << 24) - 8;  // its tokens would pass 2^24
  EXPECT_EQ(Code(), absl::StatusCode::kOutOfRange);
  positions_.back() = (1 << 24) - 16;
  EXPECT_TRUE(ValidatePrefill(layout_, options_, Batch()).ok());
  chunks_[1] = nullptr;
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PrefillValidationTest, ReferenceChecksQueries) {
  ReferenceOutput out;
  std::vector<uint16_t> q(c_.queries().begin(), c_.queries().end() - 1);
  EXPECT_EQ(ReferencePrefill(layout_, options_, q, Batch(), &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReferencePrefill(layout_, options_, c_.queries(), Batch(), &out).ok());
}

}  // namespace
}  // namespace strata::kernels
