// The CUDA model step through the decode kernels (tag gpu): a batch of 8
// conversations over one system prompt of 3 chunks (the same slots in every
// page table) and private histories of different lengths decodes 4 steps;
// at every step the paged, prefix-aware and relay kernels' logits are
// compared with the prefill kernel's on the same K/V, and the first step with
// the CPU model's over a host copy of the same K/V.
//
// Tolerances (bf16; per row, relative to that row's largest |logit|):
//  - decode kernel vs prefill kernel, GPU: 0.02. Both paths share every GEMM
//    and rotate queries to the same bits (LaunchRopeQueries); they differ in
//    the attention kernel (key rotation with powf and the decode kernel's own
//    roundings, tile and merge order), whose bf16 output differs in the last
//    bit here and there.
//  - GPU vs CPU model: 0.03, the project's bf16 tolerance (README, "Against
//    transformers"): cuBLAS and the CPU accumulate in other orders.
// Greedy tokens: equal, or the other path's choice within the tolerance of
// the row's best logit (a near-tie under bf16; counted and printed).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/llama_cuda.h"
#include "client/runtime/llama_model.h"
#include "client/runtime/llama_weights.h"
#include "gtest/gtest.h"

namespace strata::runtime {
namespace {

constexpr int kTpc = 64;
constexpr int kSequences = 8;
constexpr int kPromptChunks = 3;
constexpr int kSteps = 4;
constexpr uint64_t kSeed = 21;
constexpr float kDecodeTolerance = 0.02f;
constexpr float kCpuTolerance = 0.03f;
// Private history of each conversation: none (the first decoded token opens
// a chunk), one token, a full chunk, partial and multi-chunk histories.
constexpr int kPrivate[kSequences] = {0, 1, 37, 63, 64, 100, 150, 230};

#define ASSERT_CUDA(call)                                                      \
  do {                                                                         \
    const cudaError_t e_ = (call);                                             \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorString(e_);     \
  } while (0)

std::vector<int32_t> Tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7919 + salt * 104729 + 17) % vocab);
  return t;
}

// One decode step of the batch: page tables over `slots` (device or host
// chunk bases), lengths including the new token.
struct DecodeBatch {
  std::vector<const void*> pages;
  std::vector<int32_t> chunk_offsets = {0}, kv_lengths, query_offsets = {0};
  std::vector<std::byte*> kv_slots;
  std::vector<int32_t> kv_index;

  DecodeBatch(const std::vector<std::vector<std::byte*>>& slots, const std::vector<int>& lengths) {
    for (size_t b = 0; b < slots.size(); ++b) {
      for (int c = 0; c * kTpc < lengths[b]; ++c) pages.push_back(slots[b][c]);
      chunk_offsets.push_back(static_cast<int32_t>(pages.size()));
      kv_lengths.push_back(lengths[b]);
      query_offsets.push_back(static_cast<int32_t>(b) + 1);
      kv_slots.push_back(slots[b][(lengths[b] - 1) / kTpc]);
      kv_index.push_back((lengths[b] - 1) % kTpc);
    }
  }
  ForwardBatch Batch(std::span<const int32_t> tokens, AttentionKernel kernel) const {
    ForwardBatch f;
    f.tokens = tokens;
    f.kv_slots = kv_slots;
    f.kv_index = kv_index;
    f.attention = {pages, {}, chunk_offsets, kv_lengths, query_offsets};
    f.attention_kernel = kernel;
    return f;
  }
};

// Largest |a - b| of each row over the row's largest |b|; the worst row.
struct Diff {
  float worst = 0;
  int row = -1, column = -1;
  float got = 0, want = 0, scale = 0;
  std::string Describe(int vocab) const {
    return absl::StrCat("worst row ", row, " (sequence), logit ", column, ": ", got, " vs ", want,
                        ", row max |logit| ", scale, ", relative ", worst, " (vocab ", vocab,
                        ")");
  }
};

Diff Compare(const std::vector<float>& got, const std::vector<float>& want, int vocab) {
  Diff d;
  for (size_t r = 0; r * vocab < want.size(); ++r) {
    float scale = 0, worst = 0;
    int column = 0;
    for (int i = 0; i < vocab; ++i) {
      scale = std::max(scale, std::fabs(want[r * vocab + i]));
      const float e = std::fabs(got[r * vocab + i] - want[r * vocab + i]);
      if (e > worst) {
        worst = e;
        column = i;
      }
    }
    const float rel = scale > 0 ? worst / scale : worst;
    if (d.row < 0 || rel > d.worst) {
      d = Diff{rel, static_cast<int>(r), column, got[r * vocab + column], want[r * vocab + column],
               scale};
    }
  }
  return d;
}

// Rows whose greedy token differs; each must be a near-tie in `want`: the
// other choice within tolerance x row max |logit| of the best.
int CheckGreedy(const std::vector<float>& got, const std::vector<float>& want, int vocab,
                float tolerance, const std::string& what) {
  const std::vector<int32_t> a = ArgmaxRows(got, vocab), b = ArgmaxRows(want, vocab);
  int differ = 0;
  for (size_t r = 0; r < b.size(); ++r) {
    if (a[r] == b[r]) continue;
    ++differ;
    float scale = 0;
    for (int i = 0; i < vocab; ++i) scale = std::max(scale, std::fabs(want[r * vocab + i]));
    const float gap = want[r * vocab + b[r]] - want[r * vocab + a[r]];
    EXPECT_LE(gap, tolerance * scale)
        << what << ": sequence " << r << " chose token " << a[r] << ", the reference " << b[r]
        << " (reference logits " << want[r * vocab + a[r]] << " vs " << want[r * vocab + b[r]]
        << "), not a near-tie";
  }
  return differ;
}

class DeviceArena {
 public:
  ~DeviceArena() {
    if (base_ != nullptr) cudaFree(base_);
  }
  cudaError_t Allocate(size_t bytes) {
    bytes_ = bytes;
    cudaError_t e = cudaMalloc(&base_, bytes);
    if (e != cudaSuccess) return e;
    return cudaMemset(base_, 0, bytes);
  }
  std::byte* base() const { return static_cast<std::byte*>(base_); }
  size_t bytes() const { return bytes_; }

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
};

TEST(CudaLlamaDecodeTest, DecodeKernelsMatchPrefillAndTheCpuModel) {
  const LlamaConfig c = LlamaConfig::Small();  // 4 layers, 8 / 2 heads of 128, bf16
  ASSERT_EQ(c.dtype, kernels::KvDtype::kBFloat16);
  auto gpu = CreateSeededCudaLlama(c, kTpc, kSeed);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto weights = SeededLlamaWeights(c, kSeed);
  auto cpu = CreateCpuLlama(c, kTpc, weights->views);
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  // Chunk slots: the prompt's 3, then each conversation's own.
  const size_t chunk_bytes = c.Layout(kTpc).SliceBytes() * c.num_layers;
  std::vector<std::vector<int>> chunk_ids(kSequences);
  int num_chunks = kPromptChunks;
  for (int b = 0; b < kSequences; ++b) {
    for (int i = 0; i < kPromptChunks; ++i) chunk_ids[b].push_back(i);
    const int total = kPromptChunks * kTpc + kPrivate[b] + kSteps;
    while (static_cast<int>(chunk_ids[b].size()) * kTpc < total) chunk_ids[b].push_back(num_chunks++);
  }
  DeviceArena arena;
  ASSERT_CUDA(arena.Allocate(chunk_bytes * num_chunks));
  auto slots_in = [&](std::byte* base) {
    std::vector<std::vector<std::byte*>> s(kSequences);
    for (int b = 0; b < kSequences; ++b) {
      for (int id : chunk_ids[b]) s[b].push_back(base + static_cast<size_t>(id) * chunk_bytes);
    }
    return s;
  };
  const std::vector<std::vector<std::byte*>> dev_slots = slots_in(arena.base());

  // The prompt, then every private history, by prefill steps on the GPU.
  const int prompt = kPromptChunks * kTpc;
  std::vector<std::vector<int32_t>> tokens(kSequences);
  std::vector<float> logits;
  for (int b = 0; b < kSequences; ++b) {
    tokens[b] = Tokens(prompt, c.vocab, 0);
    const std::vector<int32_t> own = Tokens(kPrivate[b], c.vocab, b + 1);
    tokens[b].insert(tokens[b].end(), own.begin(), own.end());
  }
  {
    absl::StatusOr<SequenceStep> step =
        SequenceStep::Make(std::span(dev_slots[0]).first(kPromptChunks), 0, prompt, kTpc);
    ASSERT_TRUE(step.ok()) << step.status();
    ASSERT_TRUE((*gpu)->Forward(step->Batch(std::span(tokens[0]).first(prompt)), &logits).ok());
  }
  for (int b = 0; b < kSequences; ++b) {
    if (kPrivate[b] == 0) continue;
    const int length = static_cast<int>(tokens[b].size());
    absl::StatusOr<SequenceStep> step = SequenceStep::Make(
        std::span(dev_slots[b]).first((length + kTpc - 1) / kTpc), prompt, length, kTpc);
    ASSERT_TRUE(step.ok()) << step.status();
    absl::Status st = (*gpu)->Forward(step->Batch(std::span(tokens[b]).subspan(prompt)), &logits);
    ASSERT_TRUE(st.ok()) << "history of sequence " << b << ": " << st;
  }

  const AttentionKernel decode_kernels[] = {AttentionKernel::kPagedDecode,
                                            AttentionKernel::kPrefixAwareDecode,
                                            AttentionKernel::kRelayDecode};
  std::vector<int32_t> next;
  for (int b = 0; b < kSequences; ++b) next.push_back((b * 911 + 5) % c.vocab);
  int near_ties = 0;
  for (int s = 0; s < kSteps; ++s) {
    std::vector<int> lengths;
    for (int b = 0; b < kSequences; ++b) {
      tokens[b].push_back(next[b]);
      lengths.push_back(static_cast<int>(tokens[b].size()));
    }
    const DecodeBatch batch(dev_slots, lengths);
    if (s == 0) {
      // The batch shares what the test means it to.
      absl::StatusOr<DecodeStep> relay = BuildDecodeStep(
          c, kTpc, batch.Batch(next, AttentionKernel::kRelayDecode), kernels::PlanOptions());
      ASSERT_TRUE(relay.ok()) << relay.status();
      ASSERT_EQ(relay->relay_prefix_chunks, kPromptChunks);
    }
    // CPU reference: a host copy of the K/V as they are before this step
    // (256-byte aligned, as the device slots are).
    std::unique_ptr<std::byte, decltype(&std::free)> host(nullptr, &std::free);
    if (s == 0) {
      host.reset(static_cast<std::byte*>(std::aligned_alloc(256, arena.bytes())));
      ASSERT_NE(host, nullptr);
      ASSERT_CUDA(cudaMemcpy(host.get(), arena.base(), arena.bytes(), cudaMemcpyDeviceToHost));
    }
    // Every decode kernel, then the prefill kernel last (its K/V stay for the
    // next step: each run writes the new tokens' K/V before reading them).
    std::vector<std::vector<float>> decoded;
    for (AttentionKernel k : decode_kernels) {
      std::vector<float> out;
      absl::Status st = (*gpu)->Forward(batch.Batch(next, k), &out);
      ASSERT_TRUE(st.ok()) << AttentionKernelName(k) << " step " << s << ": " << st;
      ASSERT_EQ(out.size(), static_cast<size_t>(kSequences) * c.vocab);
      decoded.push_back(std::move(out));
    }
    std::vector<float> prefill;
    ASSERT_TRUE((*gpu)->Forward(batch.Batch(next, AttentionKernel::kPrefill), &prefill).ok());
    for (size_t k = 0; k < decoded.size(); ++k) {
      const std::string what =
          absl::StrCat(AttentionKernelName(decode_kernels[k]), " vs prefill, step ", s);
      const Diff d = Compare(decoded[k], prefill, c.vocab);
      std::printf("llama_cuda: %s: relative %.5f (tolerance %.3f)\n", what.c_str(), d.worst,
                  kDecodeTolerance);
      EXPECT_LE(d.worst, kDecodeTolerance) << what << ": " << d.Describe(c.vocab);
      near_ties += CheckGreedy(decoded[k], prefill, c.vocab, kDecodeTolerance, what);
    }
    if (s == 0) {
      // The CPU model over the same K/V bytes (host slots at the same offsets).
      const DecodeBatch host_batch(slots_in(host.get()), lengths);
      std::vector<float> want;
      absl::Status st = (*cpu)->Forward(host_batch.Batch(next, AttentionKernel::kPrefill), &want);
      ASSERT_TRUE(st.ok()) << st;
      std::vector<std::pair<std::string, const std::vector<float>*>> gpu_runs = {
          {"prefill", &prefill}};
      for (size_t k = 0; k < decoded.size(); ++k) {
        gpu_runs.push_back({AttentionKernelName(decode_kernels[k]), &decoded[k]});
      }
      for (const auto& [name, got] : gpu_runs) {
        const std::string what = absl::StrCat("GPU ", name, " vs CPU model, step 0");
        const Diff d = Compare(*got, want, c.vocab);
        std::printf("llama_cuda: %s: relative %.5f (tolerance %.3f)\n", what.c_str(), d.worst,
                    kCpuTolerance);
        EXPECT_LE(d.worst, kCpuTolerance) << what << ": " << d.Describe(c.vocab);
        near_ties += CheckGreedy(*got, want, c.vocab, kCpuTolerance, what);
      }
    }
    next = ArgmaxRows(prefill, c.vocab);
  }
  std::printf("llama_cuda: greedy tokens differing at near-ties: %d\n", near_ties);

  // The CUDA model refuses a decode batch with two new tokens in a sequence.
  std::vector<int> lengths;
  for (const auto& t : tokens) lengths.push_back(static_cast<int>(t.size()));
  DecodeBatch bad(dev_slots, lengths);
  bad.query_offsets[2] = 3;  // sequence 1: two tokens, sequence 2: none
  absl::Status st = (*gpu)->Forward(bad.Batch(next, AttentionKernel::kRelayDecode), &logits);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

}  // namespace
}  // namespace strata::runtime
