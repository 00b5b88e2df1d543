// The model step through the decode kernels (ForwardBatch::attention_kernel)
// on the CPU: a batch of decode steps of sequences that share a system prompt
// (and, for two of them, a conversation chunk after it) gives the logits and
// greedy tokens of the prefill kernel; the plans share what they should; bad
// batches are refused before anything is written.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/llama_model.h"
#include "client/runtime/llama_weights.h"
#include "gtest/gtest.h"

namespace strata::runtime {
namespace {

constexpr int kTpc = 16;
constexpr AttentionKernel kDecodeKernels[] = {AttentionKernel::kPagedDecode,
                                              AttentionKernel::kPrefixAwareDecode,
                                              AttentionKernel::kRelayDecode};

// Chunk slots in host memory, 256-byte aligned, zeroed.
class Arena {
 public:
  Arena(const LlamaConfig& c, int chunks)
      : bytes_(c.Layout(kTpc).SliceBytes() * c.num_layers * chunks),
        base_(static_cast<std::byte*>(std::aligned_alloc(256, bytes_))),
        chunk_bytes_(bytes_ / chunks) {
    std::memset(base_, 0, bytes_);
  }
  ~Arena() { std::free(base_); }
  std::byte* Slot(int i) const { return base_ + static_cast<size_t>(i) * chunk_bytes_; }
  std::vector<std::byte> Bytes() const { return {base_, base_ + bytes_}; }

 private:
  size_t bytes_;
  std::byte* base_;
  size_t chunk_bytes_;
};

// One decode step of a batch: sequence b (chunk slots `slots[b]`, length
// lengths[b] including its new token) appends one token.
struct DecodeBatch {
  std::vector<const void*> pages;
  std::vector<int32_t> positions, chunk_offsets = {0}, kv_lengths, query_offsets = {0};
  std::vector<std::byte*> kv_slots;
  std::vector<int32_t> kv_index;

  DecodeBatch(const std::vector<std::vector<std::byte*>>& slots,
              const std::vector<int>& lengths) {
    for (size_t b = 0; b < slots.size(); ++b) {
      const int len = lengths[b];
      for (int c = 0; c * kTpc < len; ++c) {
        pages.push_back(slots[b][static_cast<size_t>(c)]);
        positions.push_back(c * kTpc);
      }
      chunk_offsets.push_back(static_cast<int32_t>(pages.size()));
      kv_lengths.push_back(len);
      query_offsets.push_back(static_cast<int32_t>(b) + 1);
      kv_slots.push_back(slots[b][static_cast<size_t>((len - 1) / kTpc)]);
      kv_index.push_back((len - 1) % kTpc);
    }
  }
  ForwardBatch Batch(std::span<const int32_t> tokens, AttentionKernel kernel,
                     bool with_positions = false) const {
    ForwardBatch f;
    f.tokens = tokens;
    f.kv_slots = kv_slots;
    f.kv_index = kv_index;
    f.attention = {pages, with_positions ? std::span<const int32_t>(positions)
                                         : std::span<const int32_t>(),
                   chunk_offsets, kv_lengths, query_offsets};
    f.attention_kernel = kernel;
    return f;
  }
};

std::vector<int32_t> Tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + salt * 53 + 11) % vocab);
  return t;
}

absl::Status Prefill(LlamaModel& model, std::vector<std::byte*> slots,
                     std::span<const int32_t> tokens, int history) {
  const int length = static_cast<int>(tokens.size());
  slots.resize(static_cast<size_t>((length + kTpc - 1) / kTpc));
  absl::StatusOr<SequenceStep> step = SequenceStep::Make(slots, history, length, kTpc);
  if (!step.ok()) return step.status();
  std::vector<float> logits;
  return model.Forward(step->Batch(tokens.subspan(static_cast<size_t>(history))), &logits);
}

// Six conversations over one system prompt of two chunks (slots 0, 1);
// conversations 3 and 4 also share a third chunk (slot 2, a forked
// history). Private histories of 0, 7, 15, 5, 20 and 33 tokens: the first
// decoded token opens a fresh chunk (0), lands mid-chunk, fills a chunk (15),
// follows a shared chunk (3, 4), and follows a full private chunk (33).
class SharedPromptBatch {
 public:
  static constexpr int kPrompt = 2 * kTpc;
  static constexpr int kSequences = 6;
  static constexpr int kMaxDecode = 8;

  SharedPromptBatch(const LlamaConfig& c) : arena_(c, 40), vocab_(c.vocab) {
    const int priv[kSequences] = {0, 7, 15, 5, 20, 33};
    int next = 3;
    for (int b = 0; b < kSequences; ++b) {
      std::vector<int32_t> t = Tokens(kPrompt, vocab_, 0);
      std::vector<std::byte*> s = {arena_.Slot(0), arena_.Slot(1)};
      if (b == 3 || b == 4) {
        const std::vector<int32_t> fork = Tokens(kTpc, vocab_, 99);
        t.insert(t.end(), fork.begin(), fork.end());
        s.push_back(arena_.Slot(2));
      }
      const std::vector<int32_t> own = Tokens(priv[b], vocab_, b + 1);
      t.insert(t.end(), own.begin(), own.end());
      while (static_cast<int>(s.size()) * kTpc < static_cast<int>(t.size()) + kMaxDecode) {
        s.push_back(arena_.Slot(next++));
      }
      tokens_.push_back(std::move(t));
      slots_.push_back(std::move(s));
    }
  }

  // The prompt, the fork, then every private history, each by a prefill step.
  absl::Status Fill(LlamaModel& model) {
    if (absl::Status st = Prefill(model, slots_[0], std::span(tokens_[0]).first(kPrompt), 0);
        !st.ok()) {
      return st;
    }
    if (absl::Status st =
            Prefill(model, slots_[3], std::span(tokens_[3]).first(kPrompt + kTpc), kPrompt);
        !st.ok()) {
      return st;
    }
    for (int b = 0; b < kSequences; ++b) {
      const int shared = (b == 3 || b == 4) ? kPrompt + kTpc : kPrompt;
      if (static_cast<int>(tokens_[b].size()) == shared) continue;
      if (absl::Status st = Prefill(model, slots_[b], tokens_[b], shared); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

  // Appends one token to every sequence and runs the decode step.
  absl::Status Step(LlamaModel& model, const std::vector<int32_t>& next, AttentionKernel kernel,
                    std::vector<float>* logits) {
    std::vector<int> lengths;
    for (int b = 0; b < kSequences; ++b) {
      tokens_[b].push_back(next[b]);
      lengths.push_back(static_cast<int>(tokens_[b].size()));
    }
    DecodeBatch batch(slots_, lengths);
    return model.Forward(batch.Batch(next, kernel), logits);
  }

  // The batch of the next decode step (tokens appended by the caller).
  DecodeBatch Next() const {
    std::vector<int> lengths;
    for (const auto& t : tokens_) lengths.push_back(static_cast<int>(t.size()) + 1);
    return DecodeBatch(slots_, lengths);
  }

  std::vector<int32_t> LastTokens() const {
    std::vector<int32_t> out;
    for (const auto& t : tokens_) out.push_back(t.back());
    return out;
  }
  const Arena& arena() const { return arena_; }

 private:
  Arena arena_;
  int vocab_;
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<std::vector<std::byte*>> slots_;
};

// The CPU model's four attention paths are the same math in double (the
// decode plan's partial states and merge against one softmax per query,
// keys and queries rotated from the same fp32 angles); the attention output
// is then rounded to float and to bf16 alike, so the logits agree unless a
// double-rounding difference straddles a float rounding boundary. Allowed:
// 1e-5 absolute on logits of magnitude ~1-10 (one bf16 flip of an attention
// output would exceed it; measured: 0, the logits are bit-identical).
constexpr float kCpuTolerance = 1e-5f;

class CpuDecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = LlamaConfig::Tiny();  // GQA: 4 query heads over 2 KV heads of 64
    weights_ = SeededLlamaWeights(config_, 11);
    auto model = CreateCpuLlama(config_, kTpc, weights_->views);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
  }
  LlamaConfig config_;
  std::unique_ptr<OwnedLlamaWeights> weights_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(CpuDecodeTest, DecodeKernelsGiveThePrefillLogitsAndGreedyTokens) {
  // One batch state per kernel, each filled the same way (prefill steps).
  std::vector<std::unique_ptr<SharedPromptBatch>> runs;
  for (int k = 0; k < 4; ++k) {
    runs.push_back(std::make_unique<SharedPromptBatch>(config_));
    ASSERT_TRUE(runs.back()->Fill(*model_).ok());
  }
  const std::vector<AttentionKernel> kernels = {AttentionKernel::kPrefill,
                                                AttentionKernel::kPagedDecode,
                                                AttentionKernel::kPrefixAwareDecode,
                                                AttentionKernel::kRelayDecode};
  std::vector<int32_t> next = {5, 17, 29, 41, 53, 65};
  float max_diff = 0;
  std::set<int32_t> decoded;
  for (int step = 0; step < SharedPromptBatch::kMaxDecode; ++step) {
    std::vector<float> want;
    ASSERT_TRUE(runs[0]->Step(*model_, next, kernels[0], &want).ok());
    ASSERT_EQ(want.size(), static_cast<size_t>(SharedPromptBatch::kSequences) * config_.vocab);
    const std::vector<int32_t> best = ArgmaxRows(want, config_.vocab);
    for (int k = 1; k < 4; ++k) {
      std::vector<float> got;
      absl::Status st = runs[k]->Step(*model_, next, kernels[k], &got);
      ASSERT_TRUE(st.ok()) << AttentionKernelName(kernels[k]) << ": " << st;
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        const float diff = std::fabs(got[i] - want[i]);
        max_diff = std::max(max_diff, diff);
        ASSERT_LE(diff, kCpuTolerance)
            << AttentionKernelName(kernels[k]) << " step " << step << " sequence "
            << i / config_.vocab << " logit " << i % config_.vocab << ": " << got[i]
            << " vs prefill " << want[i];
      }
      EXPECT_EQ(ArgmaxRows(got, config_.vocab), best)
          << AttentionKernelName(kernels[k]) << " step " << step;
    }
    decoded.insert(best.begin(), best.end());
    next = best;
  }
  std::printf("CPU decode kernels vs prefill: max |logit difference| %g over %d steps\n",
              max_diff, SharedPromptBatch::kMaxDecode);
  // Not degenerate: the greedy tokens vary.
  EXPECT_GT(decoded.size(), 10u);
  // The K/V every path wrote are the same bytes.
  const std::vector<std::byte> bytes = runs[0]->arena().Bytes();
  for (int k = 1; k < 4; ++k) {
    EXPECT_TRUE(runs[k]->arena().Bytes() == bytes) << AttentionKernelName(kernels[k]);
  }
}

TEST_F(CpuDecodeTest, PlansShareThePromptAndTheFork) {
  SharedPromptBatch s(config_);
  const DecodeBatch batch = s.Next();
  std::vector<int32_t> tokens(SharedPromptBatch::kSequences, 1);
  EXPECT_EQ(RelayPrefixChunks(batch.Batch(tokens, AttentionKernel::kRelayDecode).attention, kTpc),
            2);

  auto plan = [&](AttentionKernel kernel, const ForwardBatch& f) {
    ForwardBatch g = f;
    g.attention_kernel = kernel;
    return BuildDecodeStep(config_, kTpc, g, kernels::PlanOptions());
  };
  const ForwardBatch f = batch.Batch(tokens, AttentionKernel::kPrefill);
  absl::StatusOr<DecodeStep> paged = plan(AttentionKernel::kPagedDecode, f);
  absl::StatusOr<DecodeStep> tree = plan(AttentionKernel::kPrefixAwareDecode, f);
  absl::StatusOr<DecodeStep> relay = plan(AttentionKernel::kRelayDecode, f);
  ASSERT_TRUE(paged.ok() && tree.ok() && relay.ok());
  EXPECT_EQ(paged->plan.num_shared_runs, 0);
  // The prompt (6 sequences) and the fork (2 sequences).
  EXPECT_EQ(tree->plan.num_shared_runs, 2);
  EXPECT_EQ(tree->plan.shared_tokens, 3 * kTpc);
  EXPECT_EQ(relay->relay_prefix_chunks, 2);
  EXPECT_EQ(relay->plan.num_shared_runs, 1);
  EXPECT_EQ(relay->plan.shared_tokens, 2 * kTpc);
  // Each shared run is read once: fewer KV bytes than paged.
  EXPECT_LT(tree->plan.kv_bytes, relay->plan.kv_bytes);
  EXPECT_LT(relay->plan.kv_bytes, paged->plan.kv_bytes);
  std::vector<int32_t> want_positions;
  for (int32_t len : batch.kv_lengths) want_positions.push_back(len - 1);
  EXPECT_EQ(relay->query_positions, want_positions);

  // Not a decode kernel.
  EXPECT_EQ(plan(AttentionKernel::kPrefill, f).status().code(),
            absl::StatusCode::kInvalidArgument);

  // One sequence: relay has nothing to share and runs the paged plan.
  DecodeBatch one({{s.arena().Slot(0), s.arena().Slot(1), s.arena().Slot(3)}}, {40});
  const std::vector<int32_t> one_token = {1};
  const ForwardBatch single = one.Batch(one_token, AttentionKernel::kRelayDecode);
  EXPECT_EQ(RelayPrefixChunks(single.attention, kTpc), 0);
  absl::StatusOr<DecodeStep> single_relay = plan(AttentionKernel::kRelayDecode, single);
  ASSERT_TRUE(single_relay.ok()) << single_relay.status();
  EXPECT_EQ(single_relay->relay_prefix_chunks, 0);
  EXPECT_EQ(single_relay->plan.num_shared_runs, 0);

  // No common first chunk: paged as well. A chunk partial in one sequence
  // ends the prefix even where the pointer is the same.
  DecodeBatch apart({{s.arena().Slot(0), s.arena().Slot(1)}, {s.arena().Slot(4)}}, {20, 9});
  const std::vector<int32_t> two_tokens = {1, 2};
  EXPECT_EQ(RelayPrefixChunks(apart.Batch(two_tokens, AttentionKernel::kRelayDecode).attention,
                              kTpc),
            0);
  DecodeBatch partial({{s.arena().Slot(0), s.arena().Slot(1)}, {s.arena().Slot(0)}}, {20, 9});
  EXPECT_EQ(RelayPrefixChunks(partial.Batch(two_tokens, AttentionKernel::kRelayDecode).attention,
                              kTpc),
            0);
  DecodeBatch longer({{s.arena().Slot(0), s.arena().Slot(1), s.arena().Slot(5)},
                      {s.arena().Slot(0), s.arena().Slot(1)}},
                     {40, 32});
  EXPECT_EQ(RelayPrefixChunks(longer.Batch(two_tokens, AttentionKernel::kRelayDecode).attention,
                              kTpc),
            2);
}

TEST_F(CpuDecodeTest, OneSequenceDecodesAlikeThroughEveryKernel) {
  // Relay falls back to paged here; every kernel gives the prefill logits.
  Arena arena(config_, 3);
  const std::vector<int32_t> tokens = Tokens(37, config_.vocab, 3);
  ASSERT_TRUE(Prefill(*model_, {arena.Slot(0), arena.Slot(1), arena.Slot(2)},
                      std::span(tokens).first(36), 0)
                  .ok());
  DecodeBatch batch({{arena.Slot(0), arena.Slot(1), arena.Slot(2)}}, {37});
  const std::vector<int32_t> last = {tokens.back()};
  std::vector<float> want;
  ASSERT_TRUE(model_->Forward(batch.Batch(last, AttentionKernel::kPrefill), &want).ok());
  for (AttentionKernel k : kDecodeKernels) {
    std::vector<float> got;
    ASSERT_TRUE(model_->Forward(batch.Batch(last, k), &got).ok()) << AttentionKernelName(k);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_LE(std::fabs(got[i] - want[i]), kCpuTolerance) << AttentionKernelName(k) << " " << i;
    }
  }
}

TEST_F(CpuDecodeTest, BadDecodeBatchesAreRefusedBeforeAnythingIsWritten) {
  SharedPromptBatch s(config_);
  ASSERT_TRUE(s.Fill(*model_).ok());
  const std::vector<std::byte> before = s.arena().Bytes();
  std::vector<float> logits;
  DecodeBatch batch = s.Next();
  std::vector<int32_t> tokens = s.LastTokens();

  for (AttentionKernel k : kDecodeKernels) {
    SCOPED_TRACE(AttentionKernelName(k));
    // Two new tokens in sequence 2 (and none in sequence 3): the prefill
    // kernel takes it, the decode kernels do not.
    DecodeBatch two = batch;
    two.query_offsets[3] = 4;
    ForwardBatch f = two.Batch(tokens, k);
    absl::Status st = model_->Forward(f, &logits);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("one new token per sequence"), std::string::npos) << st;
    EXPECT_NE(st.message().find("sequence 2 has 2"), std::string::npos) << st;
    // Two new tokens in the last sequence (one more token than sequences).
    DecodeBatch extra = batch;
    extra.kv_slots.push_back(extra.kv_slots.back());
    extra.kv_index.push_back(extra.kv_index.back() - 1);
    extra.query_offsets.back() += 1;
    std::vector<int32_t> more = tokens;
    more.push_back(7);
    st = model_->Forward(extra.Batch(more, k), &logits);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("sequence 5 has 2"), std::string::npos) << st;

    // Positions other than 0, 1, 2, ... (a re-based history).
    DecodeBatch rebased = batch;
    rebased.positions[rebased.chunk_offsets[1] + 1] += 100;
    st = model_->Forward(rebased.Batch(tokens, k, /*with_positions=*/true), &logits);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("chunk 1 of sequence 1 starts at position 116"),
              std::string::npos)
        << st;
    // The same re-based batch goes through the prefill kernel.
    EXPECT_TRUE(
        ValidateForward(config_, kTpc, rebased.Batch(tokens, AttentionKernel::kPrefill, true))
            .ok());
  }
  // An attention kernel that does not exist.
  {
    absl::Status st =
        model_->Forward(batch.Batch(tokens, static_cast<AttentionKernel>(9)), &logits);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  }
  // Nothing was written by the refused steps.
  EXPECT_TRUE(s.arena().Bytes() == before);

  // Positions given explicitly as 0, 1, 2, ...: taken, same logits.
  std::vector<float> implicit, explicit_positions;
  ASSERT_TRUE(
      model_->Forward(batch.Batch(tokens, AttentionKernel::kRelayDecode), &implicit).ok());
  ASSERT_TRUE(model_
                  ->Forward(batch.Batch(tokens, AttentionKernel::kRelayDecode, true),
                            &explicit_positions)
                  .ok());
  EXPECT_EQ(implicit, explicit_positions);
}

}  // namespace
}  // namespace strata::runtime
