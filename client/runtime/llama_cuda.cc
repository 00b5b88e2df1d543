#include "client/runtime/llama_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/runtime/llama_kernels.h"
#include "kernels/attention.h"
#include "kernels/cuda_status.h"
#include "kernels/prefill.h"
#include "store/common/status_macros.h"

namespace strata::runtime {
namespace {

absl::Status BlasStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const absl::StatusCode code =
      s == CUBLAS_STATUS_ALLOC_FAILED    ? absl::StatusCode::kResourceExhausted
      : s == CUBLAS_STATUS_INVALID_VALUE ? absl::StatusCode::kInvalidArgument
                                         : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(what, ": cuBLAS: ", cublasGetStatusString(s)));
}

// A device buffer that grows (never shrinks) to the largest step.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  absl::Status Ensure(size_t want) {
    if (want <= bytes) return absl::OkStatus();
    if (ptr != nullptr) cudaFree(ptr);
    ptr = nullptr;
    bytes = 0;
    RETURN_IF_ERROR(kernels::CudaStatus(cudaMalloc(&ptr, want), "cudaMalloc (activations)"));
    bytes = want;
    return absl::OkStatus();
  }
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
};

// Rows of every matrix product of a step of n tokens: n rounded up to a
// bucket (16 up to 64, then 8 buckets per power of two, so at most 1/8 more
// rows). cuBLAS chooses and prepares a kernel the first time it sees a
// shape, which costs 15-25 ms per step on an H200 for Llama-3-8B's five
// products; steps of n tokens share a shape with their bucket, and Warmup
// prepares the buckets ahead of the first request.
int GemmRows(int n) {
  if (n <= 64) return std::max(16, (n + 15) / 16 * 16);
  int step = 1;
  while (step * 16 <= n) step *= 2;  // step = 2^(floor(log2 n) - 3)
  return (n + step - 1) / step * step;
}

class CudaLlamaImpl final : public CudaLlama {
 public:
  CudaLlamaImpl(const LlamaConfig& config, int tpc, int device)
      : config_(config), tpc_(tpc), device_(device), layout_(config.Layout(tpc)) {}

  ~CudaLlamaImpl() override {
    cudaSetDevice(device_);
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (blas_ != nullptr) cublasDestroy(blas_);
    for (void* p : weights_) cudaFree(p);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Allocates every weight and sets the pointers; fill(spec, dst) writes one.
  template <typename Fill>
  absl::Status Init(Fill fill) {
    RETURN_IF_ERROR(kernels::CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
    RETURN_IF_ERROR(kernels::CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                        "cudaStreamCreate"));
    RETURN_IF_ERROR(BlasStatus(cublasCreate(&blas_), "cublasCreate"));
    RETURN_IF_ERROR(BlasStatus(cublasSetStream(blas_, stream_), "cublasSetStream"));
    int sms = 0;
    RETURN_IF_ERROR(kernels::CudaStatus(
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_),
        "cudaDeviceGetAttribute"));
    plan_options_.num_sms = sms;
    const size_t h = config_.hidden;
    auto alloc = [&](size_t elements, void** out) -> absl::Status {
      RETURN_IF_ERROR(kernels::CudaStatus(cudaMalloc(out, elements * 2), "cudaMalloc (weights)"));
      weights_.push_back(*out);
      weight_bytes_ += elements * 2;
      return absl::OkStatus();
    };
    layers_.resize(static_cast<size_t>(config_.num_layers));
    RETURN_IF_ERROR(alloc(static_cast<size_t>(config_.vocab) * h, &embed_));
    RETURN_IF_ERROR(alloc(h, &final_norm_));
    RETURN_IF_ERROR(alloc(static_cast<size_t>(config_.vocab) * h, &lm_head_));
    for (Layer& l : layers_) {
      for (auto [elements, out] :
           {std::pair<size_t, void**>{h, &l.attn_norm},
            {static_cast<size_t>(config_.q_dim() + 2 * config_.kv_dim()) * h, &l.qkv},
            {static_cast<size_t>(config_.q_dim()) * h, &l.o},
            {h, &l.mlp_norm},
            {2 * static_cast<size_t>(config_.intermediate) * h, &l.gu},
            {static_cast<size_t>(config_.intermediate) * h, &l.down}}) {
        RETURN_IF_ERROR(alloc(elements, out));
      }
    }
    for (const LlamaTensorSpec& spec : LlamaTensorSpecs(config_)) {
      size_t elements = 1;
      for (int64_t d : spec.shape) elements *= static_cast<size_t>(d);
      RETURN_IF_ERROR(fill(spec, Destination(spec), elements));
    }
    RETURN_IF_ERROR(kernels::CudaStatus(cudaStreamSynchronize(stream_), "weights upload"));
    return absl::OkStatus();
  }

  const LlamaConfig& config() const override { return config_; }
  int tokens_per_chunk() const override { return tpc_; }
  CUstream_st* stream() const override { return stream_; }
  size_t weight_bytes() const override { return weight_bytes_; }
  size_t activation_bytes() const override {
    size_t total = 0;
    for (const DeviceBuffer* b : {&x_, &normed_, &qkv_, &q_, &attn_, &o_, &gu_, &act_, &down_,
                                  &logits_, &meta_, &workspace_, &pages_}) {
      total += b->bytes;
    }
    return total;
  }

  absl::Status Warmup(int max_rows) override {
    if (max_rows < 0) return absl::InvalidArgumentError("warmup: negative rows");
    RETURN_IF_ERROR(kernels::CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
    const int h = config_.hidden;
    const int inter = config_.intermediate;
    const int qkv_dim = config_.q_dim() + 2 * config_.kv_dim();
    for (int n = 1; n <= max_rows; n = GemmRows(n) + 1) {
      const int np = GemmRows(n);
      RETURN_IF_ERROR(EnsureRows(np, np));
      const Layer& w = layers_[0];
      RETURN_IF_ERROR(Gemm(w.qkv, normed_.ptr, qkv_.ptr, np, h, qkv_dim, false));
      RETURN_IF_ERROR(Gemm(w.o, attn_.ptr, o_.ptr, np, config_.q_dim(), h, false));
      RETURN_IF_ERROR(Gemm(w.gu, normed_.ptr, gu_.ptr, np, h, 2 * inter, false));
      RETURN_IF_ERROR(Gemm(w.down, act_.ptr, down_.ptr, np, inter, h, false));
      RETURN_IF_ERROR(Gemm(lm_head_, normed_.ptr, logits_.ptr, np, h, config_.vocab, true));
    }
    return kernels::CudaStatus(cudaStreamSynchronize(stream_), "warmup");
  }

  absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) override {
    absl::Status st = Step(batch, logits);
    // On an error part of the step may still be queued (K/V scatters into the
    // caller's slots among it): it finishes before the caller frees anything.
    if (!st.ok() && stream_ != nullptr) cudaStreamSynchronize(stream_);
    return st;
  }

 private:
  absl::Status Step(const ForwardBatch& batch, std::vector<float>* logits) {
    RETURN_IF_ERROR(ValidateForward(config_, tpc_, batch));
    RETURN_IF_ERROR(kernels::CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
    const int n = static_cast<int>(batch.tokens.size());
    const size_t h = config_.hidden;
    const int dt = config_.dtype == kernels::KvDtype::kBFloat16 ? 1 : 0;
    const int qkv_dim = config_.q_dim() + 2 * config_.kv_dim();
    const size_t inter = config_.intermediate;

    // Rows whose logits are wanted.
    rows_.clear();
    if (batch.all_logits) {
      for (int t = 0; t < n; ++t) rows_.push_back(t);
    } else {
      for (int b = 0; b < batch.attention.batch(); ++b) {
        if (batch.attention.query_offsets[b + 1] > batch.attention.query_offsets[b]) {
          rows_.push_back(batch.attention.query_offsets[b + 1] - 1);
        }
      }
    }
    const int nrows = static_cast<int>(rows_.size());
    // Products run over bucketed row counts (GemmRows); the rows past n hold
    // whatever the buffers held and their results are never read.
    const int np = GemmRows(n);
    const int nrp = GemmRows(nrows);
    RETURN_IF_ERROR(EnsureRows(np, nrp));
    RETURN_IF_ERROR(q_.Ensure(static_cast<size_t>(n) * config_.q_dim() * 2));

    // The decode kernels' plan (layer 0 slices), built on the host once per
    // step; its query positions and RoPE frequencies go up with the metadata.
    const bool decode = batch.attention_kernel != AttentionKernel::kPrefill;
    std::optional<DecodeStep> step;
    if (decode) {
      absl::StatusOr<DecodeStep> built = BuildDecodeStep(config_, tpc_, batch, plan_options_);
      if (!built.ok()) return built.status();
      step = *std::move(built);
    }
    const int half = config_.head_dim / 2;

    // Per-token metadata: K/V slot bases, tokens, indices, logit rows; for a
    // decode step the query positions and inv_freq.
    const size_t meta_used = n * (8 + 4 + 4) + nrows * 4 + (decode ? n * 4 + half * 4 : 0);
    RETURN_IF_ERROR(meta_.Ensure(meta_used + 64));
    host_meta_.resize(meta_used);
    std::byte* hm = host_meta_.data();
    auto* d_slots = static_cast<std::byte*>(meta_.ptr);
    std::memcpy(hm, batch.kv_slots.data(), n * 8);
    std::memcpy(hm + n * 8, batch.tokens.data(), n * 4);
    std::memcpy(hm + n * 12, batch.kv_index.data(), n * 4);
    std::memcpy(hm + n * 16, rows_.data(), nrows * 4);
    const size_t positions_at = n * 16 + nrows * 4;
    const size_t inv_freq_at = positions_at + n * 4;
    if (decode) {
      std::memcpy(hm + positions_at, step->query_positions.data(), n * 4);
      for (int i = 0; i < half; ++i) {
        const float f = kernels::PrefillRopeInvFreq(config_.rope_theta, i, config_.head_dim);
        std::memcpy(hm + inv_freq_at + i * 4, &f, 4);
      }
    }
    RETURN_IF_ERROR(kernels::CudaStatus(
        cudaMemcpyAsync(meta_.ptr, hm, meta_used, cudaMemcpyHostToDevice, stream_),
        "upload step metadata"));
    auto* slots = reinterpret_cast<void* const*>(d_slots);
    auto* tokens = reinterpret_cast<const int32_t*>(d_slots + n * 8);
    auto* kv_index = reinterpret_cast<const int32_t*>(d_slots + n * 12);
    auto* rows = reinterpret_cast<const int32_t*>(d_slots + n * 16);
    auto* query_positions = reinterpret_cast<const int32_t*>(d_slots + positions_at);
    auto* inv_freq = reinterpret_cast<const float*>(d_slots + inv_freq_at);

    // The attention plan (layer 0 slices) in the workspace, and every
    // layer's page table: the plan's pages moved by l x slice bytes.
    std::optional<kernels::DevicePrefillPlan> prefill_plan;
    std::optional<kernels::DevicePlan> decode_plan;
    const std::vector<const void*>* plan_pages = nullptr;
    std::optional<kernels::PrefillPlan> plan;
    if (decode) {
      RETURN_IF_ERROR(workspace_.Ensure(kernels::PlanWorkspaceBytes(step->plan)));
      absl::StatusOr<kernels::DevicePlan> uploaded =
          kernels::UploadPlan(step->plan, workspace_.ptr, workspace_.bytes, stream_);
      if (!uploaded.ok()) return uploaded.status();
      decode_plan = *uploaded;
      plan_pages = &step->plan.pages;
    } else {
      kernels::PrefillOptions options;
      options.num_q_heads = config_.num_q_heads;
      options.rope_theta = config_.rope_theta;
      // The planner's choice (PrefillOptions::KernelVariant::kAuto): the
      // pipelined 128-row wgmma kernel, w128 off sm_90.
      options.kernel_variant = kernels::PrefillOptions::KernelVariant::kAuto;
      absl::StatusOr<kernels::PrefillPlan> built =
          kernels::BuildPrefillPlan(layout_, options, batch.attention);
      if (!built.ok()) return built.status();
      plan = *std::move(built);
      RETURN_IF_ERROR(workspace_.Ensure(kernels::PrefillWorkspaceBytes(*plan)));
      absl::StatusOr<kernels::DevicePrefillPlan> uploaded =
          kernels::UploadPrefillPlan(*plan, workspace_.ptr, workspace_.bytes, stream_);
      if (!uploaded.ok()) return uploaded.status();
      prefill_plan = *uploaded;
      plan_pages = &plan->pages;
    }
    const size_t num_pages = plan_pages->size();
    const size_t slice = layout_.SliceBytes();
    host_pages_.resize(num_pages * config_.num_layers);
    for (int l = 0; l < config_.num_layers; ++l) {
      for (size_t e = 0; e < num_pages; ++e) {
        host_pages_[l * num_pages + e] =
            static_cast<const std::byte*>((*plan_pages)[e]) + l * slice;
      }
    }
    RETURN_IF_ERROR(pages_.Ensure(host_pages_.size() * sizeof(void*)));
    RETURN_IF_ERROR(kernels::CudaStatus(
        cudaMemcpyAsync(pages_.ptr, host_pages_.data(), host_pages_.size() * sizeof(void*),
                        cudaMemcpyHostToDevice, stream_),
        "upload page tables"));
    auto* d_pages = static_cast<const void* const*>(pages_.ptr);

    RETURN_IF_ERROR(kernels::CudaStatus(
        LaunchEmbed(dt, tokens, embed_, x_.ptr, n, static_cast<int>(h), stream_), "embed"));
    const void* delta = nullptr;
    for (int l = 0; l < config_.num_layers; ++l) {
      const Layer& w = layers_[l];
      RETURN_IF_ERROR(
          kernels::CudaStatus(LaunchAddNorm(dt, x_.ptr, delta, w.attn_norm, normed_.ptr, n,
                                            static_cast<int>(h), config_.rms_eps, nullptr, stream_),
                              "attention norm"));
      RETURN_IF_ERROR(Gemm(w.qkv, normed_.ptr, qkv_.ptr, np, static_cast<int>(h), qkv_dim, false));
      RETURN_IF_ERROR(kernels::CudaStatus(
          LaunchScatterQkv(qkv_.ptr, q_.ptr, slots, kv_index, l * slice, n, config_.q_dim(),
                           config_.num_kv_heads, config_.head_dim, tpc_, stream_),
          "scatter K/V"));
      if (decode) {
        RETURN_IF_ERROR(kernels::CudaStatus(
            LaunchRopeQueries(dt, q_.ptr, query_positions, inv_freq, n, config_.num_q_heads,
                              config_.head_dim, stream_),
            "query RoPE"));
      }
      if (batch.before_attention) {
        RETURN_IF_ERROR(batch.before_attention(l));
      }
      if (decode) {
        kernels::DevicePlan layer_plan = *decode_plan;
        layer_plan.pages = d_pages + l * num_pages;
        RETURN_IF_ERROR(kernels::RunAttention(layer_plan, q_.ptr, attn_.ptr, nullptr, stream_));
      } else {
        const kernels::DevicePrefillPlan layer_plan = kernels::MovedPrefillPlan(
            *prefill_plan, d_pages + l * num_pages, static_cast<int64_t>(l * slice));
        RETURN_IF_ERROR(kernels::RunPrefill(layer_plan, q_.ptr, attn_.ptr, nullptr, stream_));
      }
      RETURN_IF_ERROR(Gemm(w.o, attn_.ptr, o_.ptr, np, config_.q_dim(), static_cast<int>(h), false));
      RETURN_IF_ERROR(
          kernels::CudaStatus(LaunchAddNorm(dt, x_.ptr, o_.ptr, w.mlp_norm, normed_.ptr, n,
                                            static_cast<int>(h), config_.rms_eps, nullptr, stream_),
                              "MLP norm"));
      RETURN_IF_ERROR(Gemm(w.gu, normed_.ptr, gu_.ptr, np, static_cast<int>(h),
                           2 * static_cast<int>(inter), false));
      RETURN_IF_ERROR(kernels::CudaStatus(
          LaunchSwiGlu(dt, gu_.ptr, act_.ptr, n, static_cast<int>(inter), stream_), "SwiGLU"));
      RETURN_IF_ERROR(Gemm(w.down, act_.ptr, down_.ptr, np, static_cast<int>(inter),
                           static_cast<int>(h), false));
      delta = down_.ptr;
    }
    RETURN_IF_ERROR(
        kernels::CudaStatus(LaunchAddNorm(dt, x_.ptr, delta, final_norm_, normed_.ptr, nrows,
                                          static_cast<int>(h), config_.rms_eps, rows, stream_),
                            "final norm"));
    RETURN_IF_ERROR(
        Gemm(lm_head_, normed_.ptr, logits_.ptr, nrp, static_cast<int>(h), config_.vocab, true));
    logits->resize(static_cast<size_t>(nrows) * config_.vocab);
    RETURN_IF_ERROR(
        kernels::CudaStatus(cudaMemcpyAsync(logits->data(), logits_.ptr, logits->size() * 4,
                                            cudaMemcpyDeviceToHost, stream_),
                            "logits to host"));
    RETURN_IF_ERROR(kernels::CudaStatus(cudaStreamSynchronize(stream_), "model step"));
    return absl::OkStatus();
  }

 private:
  struct Layer {
    void* attn_norm = nullptr;
    void* qkv = nullptr;
    void* o = nullptr;
    void* mlp_norm = nullptr;
    void* gu = nullptr;
    void* down = nullptr;
  };

  // Activation buffers for products of `rows` rows and logits of
  // `logit_rows` rows.
  absl::Status EnsureRows(int rows, int logit_rows) {
    const size_t n = static_cast<size_t>(rows);
    const size_t h = config_.hidden;
    const size_t inter = config_.intermediate;
    const size_t qkv_dim = config_.q_dim() + 2 * config_.kv_dim();
    for (auto [buf, bytes] :
         {std::pair<DeviceBuffer*, size_t>{&x_, n * h * 2},
          {&normed_, n * h * 2},
          {&qkv_, n * qkv_dim * 2},
          {&attn_, n * config_.q_dim() * 2},
          {&o_, n * h * 2},
          {&gu_, n * 2 * inter * 2},
          {&act_, n * inter * 2},
          {&down_, n * h * 2},
          {&logits_, static_cast<size_t>(logit_rows) * config_.vocab * 4}}) {
      RETURN_IF_ERROR(buf->Ensure(bytes));
    }
    return absl::OkStatus();
  }

  void* Destination(const LlamaTensorSpec& spec) const {
    const size_t h = config_.hidden;
    if (spec.layer < 0) return spec.slot == 0 ? embed_ : spec.slot == 1 ? final_norm_ : lm_head_;
    const Layer& l = layers_[spec.layer];
    auto at = [](void* base, size_t elements) {
      return static_cast<std::byte*>(base) + elements * 2;
    };
    switch (spec.slot) {
      case 0:
        return l.attn_norm;
      case 1:
        return l.qkv;
      case 2:
        return at(l.qkv, config_.q_dim() * h);
      case 3:
        return at(l.qkv, (config_.q_dim() + config_.kv_dim()) * h);
      case 4:
        return l.o;
      case 5:
        return l.mlp_norm;
      case 6:
        return l.gu;
      case 7:
        return at(l.gu, config_.intermediate * h);
      default:
        return l.down;
    }
  }

  // y[n][out] = x[n][in] . w[out][in]^T (fp32 accumulation; y 16-bit, or
  // fp32 with f32_out).
  absl::Status Gemm(const void* w, const void* x, void* y, int n, int in, int out, bool f32_out) {
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t dt =
        config_.dtype == kernels::KvDtype::kBFloat16 ? CUDA_R_16BF : CUDA_R_16F;
    return BlasStatus(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, dt, in,
                                   x, dt, in, &beta, y, f32_out ? CUDA_R_32F : dt, out,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      "GEMM");
  }

  const LlamaConfig config_;
  const int tpc_;
  const int device_;
  const kernels::KvLayout layout_;
  kernels::PlanOptions plan_options_;  // num_sms of the device
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::vector<void*> weights_;
  size_t weight_bytes_ = 0;
  void* embed_ = nullptr;
  void* final_norm_ = nullptr;
  void* lm_head_ = nullptr;
  std::vector<Layer> layers_;
  DeviceBuffer x_, normed_, qkv_, q_, attn_, o_, gu_, act_, down_, logits_, meta_, workspace_,
      pages_;
  std::vector<int32_t> rows_;
  std::vector<std::byte> host_meta_;
  std::vector<const void*> host_pages_;
};

absl::Status CheckModel(const LlamaConfig& config, int tokens_per_chunk) {
  RETURN_IF_ERROR(config.Validate());
  return config.CheckNamespace(config.Namespace("model", tokens_per_chunk));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaLlama>> CreateCudaLlama(const LlamaConfig& config,
                                                           int tokens_per_chunk,
                                                           const LlamaWeightViews& weights,
                                                           int device) {
  RETURN_IF_ERROR(CheckModel(config, tokens_per_chunk));
  if (weights.layers.size() != static_cast<size_t>(config.num_layers)) {
    return absl::InvalidArgumentError("weights: layer count differs from the config");
  }
  auto model = std::make_unique<CudaLlamaImpl>(config, tokens_per_chunk, device);
  LlamaWeightViews views = weights;
  absl::Status st =
      model->Init([&](const LlamaTensorSpec& spec, void* dst, size_t elements) -> absl::Status {
        std::span<const uint16_t> src = spec.ViewIn(views);
        if (src.size() != elements) {
          return absl::InvalidArgumentError(absl::StrCat(
              "weights: ", spec.name, " has ", src.size(), " elements, expected ", elements));
        }
        RETURN_IF_ERROR(kernels::CudaStatus(
            cudaMemcpy(dst, src.data(), elements * 2, cudaMemcpyHostToDevice), "weights upload"));
        return absl::OkStatus();
      });
  if (!st.ok()) return st;
  return std::unique_ptr<CudaLlama>(std::move(model));
}

absl::StatusOr<std::unique_ptr<CudaLlama>> CreateSeededCudaLlama(const LlamaConfig& config,
                                                                 int tokens_per_chunk,
                                                                 uint64_t seed, int device) {
  RETURN_IF_ERROR(CheckModel(config, tokens_per_chunk));
  auto model = std::make_unique<CudaLlamaImpl>(config, tokens_per_chunk, device);
  CUstream_st* stream = nullptr;
  absl::Status st =
      model->Init([&](const LlamaTensorSpec& spec, void* dst, size_t elements) -> absl::Status {
        if (stream == nullptr) stream = model->stream();
        RETURN_IF_ERROR(kernels::CudaStatus(
            LaunchSeedFill(config.dtype == kernels::KvDtype::kBFloat16 ? 1 : 0, dst, elements, seed,
                           spec.id, spec.kind, spec.in_features, config.hidden, stream),
            "seeded weights"));
        return absl::OkStatus();
      });
  if (!st.ok()) return st;
  return std::unique_ptr<CudaLlama>(std::move(model));
}

}  // namespace strata::runtime
