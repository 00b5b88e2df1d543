#include "client/runtime/llama_model.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/llama_weights.h"
#include "client/runtime/safetensors.h"
#include "gtest/gtest.h"

namespace strata::runtime {
namespace {

constexpr int kTpc = 16;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

// Chunk slots in host memory, 256-byte aligned.
class HostChunks {
 public:
  HostChunks(const LlamaConfig& c, int chunks)
      : chunk_bytes_(c.Layout(kTpc).SliceBytes() * c.num_layers),
        bytes_(static_cast<std::byte*>(std::aligned_alloc(256, chunk_bytes_ * chunks))) {
    std::fill(bytes_, bytes_ + chunk_bytes_ * chunks, std::byte{0});
    for (int i = 0; i < chunks; ++i) bases_.push_back(bytes_ + i * chunk_bytes_);
  }
  ~HostChunks() { std::free(bytes_); }
  std::span<std::byte* const> First(size_t n) const { return std::span(bases_).first(n); }
  std::span<const std::byte> Chunk(int i) const { return {bases_[i], chunk_bytes_}; }

 private:
  size_t chunk_bytes_;
  std::byte* bytes_;
  std::vector<std::byte*> bases_;
};

std::vector<int32_t> Tokens(int n, int vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + 11) % vocab);
  return t;
}

int ChunksFor(int tokens) { return (tokens + kTpc - 1) / kTpc; }

absl::Status RunStep(LlamaModel& model, const HostChunks& chunks, std::span<const int32_t> tokens,
                 int history, bool all, std::vector<float>* logits) {
  const int length = static_cast<int>(tokens.size());
  absl::StatusOr<SequenceStep> step =
      SequenceStep::Make(chunks.First(ChunksFor(length)), history, length, kTpc);
  if (!step.ok()) return step.status();
  ForwardBatch batch = step->Batch(tokens.subspan(history));
  batch.all_logits = all;
  return model.Forward(batch, logits);
}

TEST(LlamaModelTest, PrefillOverCachedChunksEqualsFullPrefill) {
  const LlamaConfig c = LlamaConfig::Tiny();
  auto weights = SeededLlamaWeights(c, 7);
  auto model = CreateCpuLlama(c, kTpc, weights->views);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> tokens = Tokens(53, c.vocab);

  HostChunks full(c, ChunksFor(53));
  std::vector<float> full_logits;
  ASSERT_TRUE(RunStep(**model, full, tokens, 0, true, &full_logits).ok());
  ASSERT_EQ(full_logits.size(), 53u * c.vocab);

  // History of 37 tokens first (a partial third chunk), then the rest over it.
  HostChunks split(c, ChunksFor(53));
  std::vector<float> first, rest;
  ASSERT_TRUE(RunStep(**model, split, std::span(tokens).first(37), 0, true, &first).ok());
  ASSERT_TRUE(RunStep(**model, split, tokens, 37, true, &rest).ok());
  ASSERT_EQ(rest.size(), 16u * c.vocab);
  for (size_t i = 0; i < rest.size(); ++i) {
    ASSERT_EQ(rest[i], full_logits[37 * c.vocab + i]) << "logit " << i;
  }
  for (size_t i = 0; i < first.size(); ++i) ASSERT_EQ(first[i], full_logits[i]);
  // The K/V written both ways are the same bytes.
  for (int ch = 0; ch < ChunksFor(53); ++ch) {
    const auto a = full.Chunk(ch);
    const auto b = split.Chunk(ch);
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << "chunk " << ch;
  }
  // The logits are not degenerate: the next token is clearly preferred.
  const std::vector<int32_t> best = ArgmaxRows(full_logits, c.vocab);
  int distinct = 0;
  for (size_t i = 1; i < best.size(); ++i) distinct += best[i] != best[i - 1];
  EXPECT_GT(distinct, 5);
}

TEST(LlamaModelTest, GreedyDecodeStepByStepMatchesOneLongPrefill) {
  const LlamaConfig c = LlamaConfig::Tiny();
  auto weights = SeededLlamaWeights(c, 3);
  auto model = CreateCpuLlama(c, kTpc, weights->views);
  ASSERT_TRUE(model.ok());
  std::vector<int32_t> tokens = Tokens(30, c.vocab);
  HostChunks chunks(c, ChunksFor(30 + 12));
  std::vector<float> logits;
  ASSERT_TRUE(RunStep(**model, chunks, tokens, 0, false, &logits).ok());
  for (int step = 0; step < 12; ++step) {
    tokens.push_back(ArgmaxRows(logits, c.vocab)[0]);
    ASSERT_TRUE(RunStep(**model, chunks, tokens, static_cast<int>(tokens.size()) - 1, false, &logits).ok());
  }
  HostChunks again(c, ChunksFor(42));
  std::vector<float> all;
  ASSERT_TRUE(RunStep(**model, again, tokens, 0, true, &all).ok());
  const std::vector<int32_t> best = ArgmaxRows(all, c.vocab);
  for (int i = 29; i < 41; ++i) EXPECT_EQ(best[i], tokens[i + 1]) << "position " << i;
}

TEST(LlamaModelTest, BadInputIsRefusedBeforeAnythingRuns) {
  const LlamaConfig c = LlamaConfig::Tiny();
  auto weights = SeededLlamaWeights(c, 1);
  auto model = CreateCpuLlama(c, kTpc, weights->views);
  ASSERT_TRUE(model.ok());
  HostChunks chunks(c, 2);
  std::vector<float> logits;
  std::vector<int32_t> tokens = Tokens(20, c.vocab);
  tokens[5] = c.vocab;
  EXPECT_EQ(RunStep(**model, chunks, tokens, 0, false, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  tokens[5] = -1;
  EXPECT_EQ(RunStep(**model, chunks, tokens, 0, false, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  tokens[5] = 3;
  // Too few chunks for the length.
  EXPECT_EQ(SequenceStep::Make(chunks.First(1), 0, 20, kTpc).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A null K/V slot.
  absl::StatusOr<SequenceStep> step = SequenceStep::Make(chunks.First(2), 0, 20, kTpc);
  ASSERT_TRUE(step.ok());
  step->kv_slots[3] = nullptr;
  EXPECT_EQ((*model)->Forward(step->Batch(tokens), &logits).code(),
            absl::StatusCode::kInvalidArgument);
  // A chunk size the kernels do not take; a bad config.
  EXPECT_EQ(CreateCpuLlama(c, 24, weights->views).status().code(),
            absl::StatusCode::kInvalidArgument);
  LlamaConfig bad = c;
  bad.num_q_heads = 3;
  EXPECT_EQ(CreateCpuLlama(bad, kTpc, weights->views).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LlamaConfigTest, NamespaceMismatchNamesTheField) {
  const LlamaConfig c = LlamaConfig::Tiny();
  NamespaceSpec spec = c.Namespace("tiny", kTpc);
  EXPECT_TRUE(c.CheckNamespace(spec).ok());
  spec.num_layers = 3;
  absl::Status st = c.CheckNamespace(spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("num_layers"), std::string::npos);
  spec = c.Namespace("tiny", kTpc);
  spec.dtype = DType::kFloat16;
  EXPECT_NE(c.CheckNamespace(spec).message().find("dtype"), std::string::npos);
  spec = c.Namespace("tiny", kTpc);
  spec.num_kv_heads = 4;
  EXPECT_NE(c.CheckNamespace(spec).message().find("num_kv_heads"), std::string::npos);
}

TEST(LlamaConfigTest, ReadsHuggingFaceConfig) {
  absl::StatusOr<LlamaConfig> c = LlamaConfig::FromHfJson(R"({
    "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
    "vocab_size": 128256, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "torch_dtype": "bfloat16", "rope_scaling": null})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->DebugString(), LlamaConfig::Llama3_8B().DebugString());
  // The newer form: rope_parameters and dtype.
  absl::StatusOr<LlamaConfig> v5 = LlamaConfig::FromHfJson(R"({
    "model_type": "llama", "num_hidden_layers": 4, "hidden_size": 1024, "head_dim": 128,
    "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 2816,
    "vocab_size": 32000, "rms_norm_eps": 1e-05, "dtype": "bfloat16",
    "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}})");
  ASSERT_TRUE(v5.ok()) << v5.status();
  EXPECT_EQ(v5->DebugString(), LlamaConfig::Small().DebugString());
  EXPECT_EQ(v5->rope_theta, 500000.0f);
  EXPECT_EQ(LlamaConfig::FromHfJson(R"({
    "model_type": "llama", "num_hidden_layers": 4, "hidden_size": 1024,
    "num_attention_heads": 8, "intermediate_size": 2816, "vocab_size": 32000,
    "rms_norm_eps": 1e-05, "rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3"}})")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaConfig::FromHfJson(R"({"model_type": "gpt2"})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaConfig::FromHfJson("not json").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaConfig::FromHfJson(R"({"model_type": "llama", "hidden_size": 64})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaConfig::FromHfJson(R"({
    "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 128,
    "num_attention_heads": 2, "intermediate_size": 256, "vocab_size": 10, "rms_norm_eps": 1e-5,
    "rope_scaling": {"type": "linear", "factor": 2.0}})").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// FromHfJson accepted a config.json with hidden_size and intermediate_size
// near 2^30, for which NumParameters overflows int64 (and q_dim int): UBSan
// aborts tools/fuzz/llama_config_fuzzer on it (corpus: llama_config/overflow.json).
TEST(LlamaConfigTest, RefusesDimensionsWhoseSizesWouldOverflow) {
  auto with = [](const std::string& fields) {
    return LlamaConfig::FromHfJson(absl::StrCat(
        R"({"model_type": "llama", "num_hidden_layers": 4, "num_key_value_heads": 2,
            "head_dim": 128, "vocab_size": 32000, "rms_norm_eps": 1e-5, )",
        fields, "}"));
  };
  absl::StatusOr<LlamaConfig> big = with(
      R"("hidden_size": 1073741824, "num_attention_heads": 8, "intermediate_size": 1073741824)");
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(big.status().message().find("hidden"), std::string_view::npos) << big.status();
  absl::StatusOr<LlamaConfig> heads = with(
      R"("hidden_size": 1024, "num_attention_heads": 16777216, "intermediate_size": 1024)");
  EXPECT_EQ(heads.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(heads.status().message().find("num_q_heads"), std::string_view::npos)
      << heads.status();
  // The largest real shapes stay accepted (Llama-3.1-405B).
  absl::StatusOr<LlamaConfig> large = with(
      R"("hidden_size": 16384, "num_attention_heads": 128, "intermediate_size": 53248)");
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_GT(large->NumParameters(), 0);
}

TEST(SafetensorsTest, WeightsRoundTripAndDamageIsRefused) {
  const LlamaConfig c = LlamaConfig::Tiny();
  auto weights = SeededLlamaWeights(c, 5);
  const std::string path = TempPath("tiny.safetensors");
  ASSERT_TRUE(WriteLlamaSafetensors(path, c, weights->views).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<LlamaWeightViews> views = ViewLlamaWeights(**file, c);
  ASSERT_TRUE(views.ok()) << views.status();
  ASSERT_TRUE(std::equal(views->layers[1].down.begin(), views->layers[1].down.end(),
                         weights->views.layers[1].down.begin()));
  ASSERT_TRUE(std::equal(views->lm_head.begin(), views->lm_head.end(),
                         weights->views.lm_head.begin()));
  // Same weights, same logits.
  auto a = CreateCpuLlama(c, kTpc, weights->views);
  auto b = CreateCpuLlama(c, kTpc, *views);
  const std::vector<int32_t> tokens = Tokens(9, c.vocab);
  HostChunks ca(c, 1), cb(c, 1);
  std::vector<float> la, lb;
  ASSERT_TRUE(RunStep(**a, ca, tokens, 0, false, &la).ok());
  ASSERT_TRUE(RunStep(**b, cb, tokens, 0, false, &lb).ok());
  EXPECT_EQ(la, lb);

  // Another shape: the tensor and both shapes are named.
  LlamaConfig other = c;
  other.intermediate = 512;
  absl::Status st = ViewLlamaWeights(**file, other).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("gate_proj"), std::string::npos) << st;
  other = c;
  other.num_layers = 3;
  EXPECT_EQ(ViewLlamaWeights(**file, other).status().code(), absl::StatusCode::kNotFound);

  EXPECT_EQ(SafetensorsFile::Open(TempPath("absent.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
  // Truncated: the last tensor's bytes leave the file.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = TempPath("cut.safetensors");
  std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 100));
  EXPECT_EQ(SafetensorsFile::Open(cut).status().code(), absl::StatusCode::kInvalidArgument);
  // A header length past the end; a header that is not JSON.
  std::string bad = bytes;
  bad[7] = '\x7f';
  std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bad.data(), static_cast<std::streamsize>(bad.size()));
  EXPECT_EQ(SafetensorsFile::Open(cut).status().code(), absl::StatusCode::kInvalidArgument);
  bad = bytes;
  bad[8] = '[';
  std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bad.data(), static_cast<std::streamsize>(bad.size()));
  EXPECT_EQ(SafetensorsFile::Open(cut).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::runtime
