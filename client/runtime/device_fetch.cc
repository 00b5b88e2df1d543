#include "client/runtime/device_fetch.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cuda_status.h"

namespace strata::runtime {
namespace {

using kernels::CudaStatus;

// Makes `device` current for a scope and restores the caller's device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    status_ = CudaStatus(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  int previous_ = -1;
  absl::Status status_;
};

// The copies of one load, shared with the client's on_layer callback: a
// callback of a failed transfer may still run after Transfer::Wait returned,
// so it holds this state and finds it closed.
class LayerCopies {
 public:
  // Consecutive slots: chunks [first, first + count) of the staging buffer go
  // to `dest` (the first slot's base), one after the other.
  struct Run {
    size_t first = 0;
    size_t count = 0;
    std::byte* dest = nullptr;
  };

  LayerCopies(int device, cudaStream_t stream, const std::byte* staging, uint64_t chunk_bytes,
              uint64_t layer_bytes, std::vector<Run> runs)
      : device_(device),
        stream_(stream),
        staging_(staging),
        chunk_bytes_(chunk_bytes),
        layer_bytes_(layer_bytes),
        runs_(std::move(runs)) {}
  ~LayerCopies() {
    for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
  }
  LayerCopies(const LayerCopies&) = delete;
  LayerCopies& operator=(const LayerCopies&) = delete;

  // One event per layer. Before the load starts.
  absl::Status CreateEvents(uint32_t layers) {
    DeviceScope scope(device_);
    if (!scope.status().ok()) return scope.status();
    absl::MutexLock lock(&mu_);
    enqueued_.assign(layers, false);
    for (uint32_t l = 0; l < layers; ++l) {
      cudaEvent_t ev = nullptr;
      absl::Status s =
          CudaStatus(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
      if (!s.ok()) return s;
      events_.push_back(ev);
    }
    return absl::OkStatus();
  }

  // The client's on_layer: layer `layer` is in the staging buffer. Enqueues
  // its copies and records its event; nothing once closed or after an error.
  void OnLayer(uint32_t layer) {
    absl::MutexLock lock(&mu_);
    if (closed_ || !status_.ok() || layer >= events_.size()) return;
    DeviceScope scope(device_);
    absl::Status s = scope.status();
    const size_t offset = static_cast<size_t>(layer) * layer_bytes_;
    for (const Run& run : runs_) {
      if (!s.ok()) break;
      s = CudaStatus(cudaMemcpy2DAsync(run.dest + offset, chunk_bytes_,
                                       staging_ + run.first * chunk_bytes_ + offset, chunk_bytes_,
                                       layer_bytes_, run.count, cudaMemcpyHostToDevice, stream_),
                     "cudaMemcpy2DAsync of a layer");
    }
    if (s.ok()) s = CudaStatus(cudaEventRecord(events_[layer], stream_), "cudaEventRecord");
    if (s.ok()) {
      enqueued_[layer] = true;
    } else {
      status_ = s;
    }
  }

  // Blocks until layer `layer`'s copies are enqueued (the transfer said the
  // layer arrived, so its callback runs) or copying failed; its event.
  absl::StatusOr<cudaEvent_t> AwaitEnqueued(uint32_t layer) {
    absl::MutexLock lock(&mu_);
    auto settled = [this, layer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return enqueued_[layer] || !status_.ok() || closed_;
    };
    mu_.Await(absl::Condition(&settled));
    if (!status_.ok()) return status_;
    if (!enqueued_[layer]) return absl::AbortedError("the load ended before the layer was copied");
    return events_[layer];
  }

  // No copy is enqueued after this; the copy errors seen so far.
  absl::Status Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    return status_;
  }

 private:
  // Constant after construction.
  const int device_;
  const cudaStream_t stream_;
  const std::byte* const staging_;
  const uint64_t chunk_bytes_;
  const uint64_t layer_bytes_;
  const std::vector<Run> runs_;

  absl::Mutex mu_;
  std::vector<cudaEvent_t> events_ ABSL_GUARDED_BY(mu_);  // fixed once created
  std::vector<bool> enqueued_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class DeviceFetcherImpl;

// What both loads share: the slots, the layer waits on per-layer events.
class EventLayerLoad : public LayerwiseDeviceLoad {
 public:
  EventLayerLoad(ChunkPool* pool, absl::Status start_status)
      : pool_(pool), num_layers_(pool->num_layers()), start_status_(std::move(start_status)) {}

  std::span<const SlotId> slots() const override { return slots_; }

  absl::Status WaitLayer(uint32_t layer, CUstream_st* stream) override {
    auto ev = LayerEvent(layer);
    if (!ev.ok()) return ev.status();
    if (*ev == nullptr) return absl::OkStatus();
    return CudaStatus(cudaStreamWaitEvent(stream, *ev, 0), "cudaStreamWaitEvent");
  }

  absl::Status WaitLayer(uint32_t layer) override {
    auto ev = LayerEvent(layer);
    if (!ev.ok()) return ev.status();
    if (*ev == nullptr) return absl::OkStatus();
    return CudaStatus(cudaEventSynchronize(*ev), "cudaEventSynchronize");
  }

 protected:
  // Layer `layer`'s event once its copies are enqueued; null when nothing is
  // loaded. Called after the range and start checks.
  virtual absl::StatusOr<cudaEvent_t> Event(uint32_t layer) = 0;

  ChunkPool* const pool_;
  const uint32_t num_layers_;
  const absl::Status start_status_;
  std::vector<SlotId> slots_;

 private:
  absl::StatusOr<cudaEvent_t> LayerEvent(uint32_t layer) {
    if (layer >= num_layers_) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, " out of range [0, ", num_layers_, ")"));
    }
    if (!start_status_.ok()) return start_status_;
    return Event(layer);
  }
};

class LayerwiseDeviceLoadImpl final : public EventLayerLoad {
 public:
  LayerwiseDeviceLoadImpl(DeviceFetcherImpl* fetcher, ChunkPool* pool,
                          FetchReservation reservation, std::shared_ptr<LayerCopies> copies,
                          std::shared_ptr<client::Transfer> transfer, absl::Status start_status)
      : EventLayerLoad(pool, std::move(start_status)),
        fetcher_(fetcher),
        copies_(std::move(copies)),
        transfer_(std::move(transfer)),
        reservation_(std::move(reservation)) {
    slots_ = reservation_.result.slots;
    slots_.insert(slots_.end(), reservation_.loading.begin(), reservation_.loading.end());
  }
  ~LayerwiseDeviceLoadImpl() override {
    bool waited;
    {
      absl::MutexLock lock(&mu_);
      waited = result_.has_value();
    }
    if (waited) return;
    for (SlotId slot : Wait().slots) (void)pool_->Release(slot);
  }

  FetchResult Wait() override;

 private:
  absl::StatusOr<cudaEvent_t> Event(uint32_t layer) override {
    if (transfer_ == nullptr) return nullptr;
    if (absl::Status s = transfer_->WaitLayer(layer); !s.ok()) return s;
    return copies_->AwaitEnqueued(layer);
  }

  // Constant after construction.
  DeviceFetcherImpl* const fetcher_;
  const std::shared_ptr<LayerCopies> copies_;  // null when nothing is loaded
  const std::shared_ptr<client::Transfer> transfer_;

  absl::Mutex mu_;
  FetchReservation reservation_ ABSL_GUARDED_BY(mu_);
  std::optional<FetchResult> result_ ABSL_GUARDED_BY(mu_);
};

// A load on the same host: the leased chunks are read by the GPU straight out
// of the node's pool (mapped by the client, registered with CUDA), every
// layer's copies enqueued at once on the fetcher's stream, while host
// threads check every chunk's checksum against the same bytes.
class MappedDeviceLoad final : public EventLayerLoad {
 public:
  // A run of chunks consecutive both in the pool and in the node's pool.
  struct Run {
    std::byte* dest;
    const std::byte* src;
    size_t count;
  };

  MappedDeviceLoad(DeviceFetcherImpl* fetcher, ChunkPool* pool, FetchReservation reservation,
                   std::unique_ptr<client::MappedChunks> mapped, std::vector<Run> runs,
                   std::vector<cudaEvent_t> events, cudaEvent_t timing[2], uint64_t chunk_bytes,
                   uint64_t layer_bytes, uint64_t min_copy_bytes, size_t verify_threads,
                   absl::Status start_status)
      : EventLayerLoad(pool, std::move(start_status)),
        fetcher_(fetcher),
        mapped_(std::move(mapped)),
        runs_(std::move(runs)),
        events_(std::move(events)),
        timing_{timing[0], timing[1]},
        chunk_bytes_(chunk_bytes),
        layer_bytes_(layer_bytes),
        min_copy_bytes_(min_copy_bytes),
        reservation_(std::move(reservation)) {
    slots_ = reservation_.result.slots;
    slots_.insert(slots_.end(), reservation_.loading.begin(), reservation_.loading.end());
    if (mapped_ != nullptr && start_status_.ok()) {
      verdicts_.resize(mapped_->size());
      // Chunks handed out in order, so that the verified prefix grows from
      // the front.
      const size_t threads = std::min(verify_threads, mapped_->size());
      for (size_t k = 0; k < threads; ++k) {
        verifiers_.emplace_back([this] {
          for (size_t i = next_.fetch_add(1); i < verdicts_.size(); i = next_.fetch_add(1)) {
            verdicts_[i] = mapped_->Verify(i);
          }
        });
      }
    }
  }
  ~MappedDeviceLoad() override {
    bool waited;
    {
      absl::MutexLock lock(&mu_);
      waited = result_.has_value();
    }
    if (!waited) {
      for (SlotId slot : Wait().slots) (void)pool_->Release(slot);
    }
    for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
    for (cudaEvent_t ev : timing_) {
      if (ev != nullptr) cudaEventDestroy(ev);
    }
  }

  FetchResult Wait() override;

 private:
  absl::StatusOr<cudaEvent_t> Event(uint32_t layer) override {
    if (events_.empty()) return nullptr;
    if (absl::Status s = Enqueue(); !s.ok()) return s;
    return events_[layer];
  }

  // Enqueues every layer's copies, once, at the first WaitLayer (or Wait):
  // by then the caller's own small host-to-device uploads for its step are
  // ahead of them on the copy engine instead of behind the whole load.
  absl::Status Enqueue();

  DeviceFetcherImpl* const fetcher_;
  std::unique_ptr<client::MappedChunks> mapped_;  // released by Wait
  const std::vector<Run> runs_;
  const std::vector<cudaEvent_t> events_;         // one per layer; empty when nothing loads
  const cudaEvent_t timing_[2];                   // around the copies (timed), or null
  const uint64_t chunk_bytes_;
  const uint64_t layer_bytes_;
  const uint64_t min_copy_bytes_;
  absl::Mutex enqueue_mu_;
  bool enqueued_ ABSL_GUARDED_BY(enqueue_mu_) = false;
  absl::Status enqueue_status_ ABSL_GUARDED_BY(enqueue_mu_);
  std::vector<absl::Status> verdicts_;  // one per loaded chunk, written by verifiers_
  std::atomic<size_t> next_{0};         // the next chunk to verify
  std::vector<std::thread> verifiers_;
  const absl::Time start_ = absl::Now();

  absl::Mutex mu_;
  FetchReservation reservation_ ABSL_GUARDED_BY(mu_);
  std::optional<FetchResult> result_ ABSL_GUARDED_BY(mu_);
};

class DeviceFetcherImpl final : public DeviceFetcher {
 public:
  ~DeviceFetcherImpl() override {
    if (registered_ != nullptr) cudaHostUnregister(registered_);
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    if (staging_ != nullptr) cudaFreeHost(staging_);
  }

  absl::Status Init(const Options& options) {
    device_ = options.device;
    DeviceScope scope(device_);
    if (!scope.status().ok()) return scope.status();
    if (absl::Status s = CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                    "cudaStreamCreate");
        !s.ok()) {
      return s;
    }
    void* p = nullptr;
    if (absl::Status s = CudaStatus(cudaHostAlloc(&p, options.staging_bytes, cudaHostAllocDefault),
                                    "cudaHostAlloc of the staging buffer");
        !s.ok()) {
      return s;
    }
    staging_ = static_cast<std::byte*>(p);
    staging_bytes_ = options.staging_bytes;
    same_host_direct_ = options.same_host_direct;
    min_copy_bytes_ = options.min_copy_bytes;
    const size_t cores = std::max<size_t>(std::thread::hardware_concurrency(), 2);
    verify_threads_ = options.verify_threads > 0 ? options.verify_threads : std::min<size_t>(cores / 2, 16);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<LayerwiseDeviceLoad>> Start(
      client::Client& client, const client::Namespace& ns, ChunkPool& pool,
      std::span<const ChunkKey> keys) override {
    if (pool.host_accessible()) {
      return absl::FailedPreconditionError("the pool is host memory: fetch it with Fetch");
    }
    const size_t max_load = ns.chunk_bytes == 0 ? 0 : staging_bytes_ / ns.chunk_bytes;
    if (max_load == 0) {
      return absl::InvalidArgumentError(absl::StrCat("a staging buffer of ", staging_bytes_,
                                                     " bytes cannot hold a chunk of ",
                                                     ns.chunk_bytes));
    }
    {
      absl::MutexLock lock(&mu_);
      if (busy_) {
        return absl::FailedPreconditionError("the fetcher's previous load has not been waited for");
      }
      busy_ = true;
    }
    if (UseMapped(client)) return StartMapped(client, ns, pool, keys);
    auto reserved = ReserveFetch(client, ns, pool, keys, max_load);
    if (!reserved.ok()) {
      EndLoad();
      return reserved.status();
    }
    std::shared_ptr<LayerCopies> copies;
    std::shared_ptr<client::Transfer> transfer;
    absl::Status start_status;
    const std::vector<SlotId>& loading = reserved->loading;
    if (!loading.empty()) {
      std::vector<LayerCopies::Run> runs;
      for (size_t i = 0; i < loading.size(); ++i) {
        if (runs.empty() || loading[i] != loading[i - 1] + 1) {
          runs.push_back({i, 0, *pool.SlotBase(loading[i])});  // a slot of the pool: valid
        }
        ++runs.back().count;
      }
      copies = std::make_shared<LayerCopies>(device_, stream_, staging_, ns.chunk_bytes,
                                             ns.layer_bytes, std::move(runs));
      start_status = copies->CreateEvents(pool.num_layers());
      if (start_status.ok()) {
        std::span<std::byte> dest(staging_, loading.size() * ns.chunk_bytes);
        auto t = client.Load(ns, reserved->load_keys, dest,
                             [copies](uint32_t layer) { copies->OnLayer(layer); });
        if (t.ok()) {
          transfer = *std::move(t);
        } else {
          start_status = t.status();
        }
      }
    }
    return std::unique_ptr<LayerwiseDeviceLoad>(new LayerwiseDeviceLoadImpl(
        this, &pool, *std::move(reserved), std::move(copies), std::move(transfer),
        std::move(start_status)));
  }

  absl::Status Prepare(client::Client& client) override {
    if (!same_host_direct_ || client.data_path() != "shm" || client.shared_pool().empty()) {
      return absl::OkStatus();
    }
    {
      // A registration replaced under a load in flight would pull the
      // memory from under its copies.
      absl::MutexLock lock(&mu_);
      if (busy_) {
        return absl::FailedPreconditionError("prepare: the fetcher's load is still in flight");
      }
      busy_ = true;
    }
    const bool mapped = UseMapped(client);
    EndLoad();
    if (mapped) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    return register_error_;
  }

  // Whether loads from `client` go straight from its mapping of the node's
  // pool to the GPU: same host, enabled, and the mapping registered with
  // CUDA (once; a failure is logged and the staging path used).
  bool UseMapped(client::Client& client) {
    if (!same_host_direct_ || client.data_path() != "shm") return false;
    const std::span<const std::byte> pool = client.shared_pool();
    if (pool.empty()) return false;
    // A client that reconnected to a restarted node maps the new pool; the
    // old mapping may be gone and its address reused, so the incarnation
    // decides too.
    const uint64_t incarnation = client.node().incarnation;
    absl::MutexLock lock(&mu_);
    if (registered_ == pool.data() && registered_incarnation_ == incarnation) return true;
    if (register_failed_) return false;
    DeviceScope scope(device_);
    if (registered_ != nullptr) {
      cudaHostUnregister(registered_);
      (void)cudaGetLastError();  // a mapping already gone is no error here
    }
    registered_ = nullptr;
    void* base = const_cast<std::byte*>(pool.data());
    absl::Status s = scope.status();
    if (s.ok()) {
      s = CudaStatus(cudaHostRegister(base, pool.size(), cudaHostRegisterReadOnly),
                     "cudaHostRegister of the node's shared pool");
    }
    if (!s.ok()) {
      (void)cudaGetLastError();
      register_failed_ = true;
      register_error_ = s;
      std::fprintf(stderr, "device fetch: loads go through pinned staging: %s\n",
                   std::string(s.message()).c_str());
      return false;
    }
    registered_ = base;
    registered_incarnation_ = incarnation;
    return true;
  }

  absl::StatusOr<std::unique_ptr<LayerwiseDeviceLoad>> StartMapped(
      client::Client& client, const client::Namespace& ns, ChunkPool& pool,
      std::span<const ChunkKey> keys) {
    auto reserved = ReserveFetch(client, ns, pool, keys);
    if (!reserved.ok()) {
      EndLoad();
      return reserved.status();
    }
    std::unique_ptr<client::MappedChunks> mapped;
    std::vector<MappedDeviceLoad::Run> runs;
    std::vector<cudaEvent_t> events;
    cudaEvent_t timing[2] = {nullptr, nullptr};
    absl::Status start_status;
    if (!reserved->loading.empty()) {
      DeviceScope scope(device_);
      start_status = scope.status();
      if (start_status.ok()) {
        auto m = client.LeaseMapped(ns, reserved->load_keys);
        if (m.ok()) {
          mapped = *std::move(m);
        } else {
          start_status = m.status();
        }
      }
      // Runs of chunks consecutive both in the pool and in the node's pool
      // (a chain saved in one put usually is): one pitched copy per run
      // and layer.
      for (size_t c = 0; start_status.ok() && c < reserved->loading.size(); ++c) {
        std::byte* dest = *pool.SlotBase(reserved->loading[c]);
        const std::byte* src = mapped->chunk(c).data();
        if (!runs.empty() && runs.back().dest + runs.back().count * ns.chunk_bytes == dest &&
            runs.back().src + runs.back().count * ns.chunk_bytes == src) {
          ++runs.back().count;
        } else {
          runs.push_back({dest, src, 1});
        }
      }
      for (uint32_t l = 0; start_status.ok() && l < pool.num_layers(); ++l) {
        cudaEvent_t ev = nullptr;
        start_status =
            CudaStatus(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
        if (ev != nullptr) events.push_back(ev);
      }
      for (cudaEvent_t& ev : timing) {
        if (start_status.ok()) start_status = CudaStatus(cudaEventCreate(&ev), "cudaEventCreate");
      }
    }
    return std::unique_ptr<LayerwiseDeviceLoad>(
        new MappedDeviceLoad(this, &pool, *std::move(reserved), std::move(mapped), std::move(runs),
                             std::move(events), timing, ns.chunk_bytes, ns.layer_bytes,
                             min_copy_bytes_, verify_threads_, std::move(start_status)));
  }

  // The load ended: no byte of staging or the copy stream is in use.
  void EndLoad() {
    absl::MutexLock lock(&mu_);
    busy_ = false;
  }

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

 private:
  // Constant after Init.
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::byte* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  bool same_host_direct_ = true;
  size_t verify_threads_ = 1;
  uint64_t min_copy_bytes_ = 0;

  absl::Mutex mu_;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  void* registered_ ABSL_GUARDED_BY(mu_) = nullptr;  // the client's pool mapping, registered
  uint64_t registered_incarnation_ ABSL_GUARDED_BY(mu_) = 0;  // of the node it maps
  bool register_failed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status register_error_ ABSL_GUARDED_BY(mu_);
};

FetchResult LayerwiseDeviceLoadImpl::Wait() {
  absl::MutexLock lock(&mu_);
  if (result_.has_value()) return *result_;
  absl::Status failure = start_status_;
  if (transfer_ != nullptr) {
    // The checksum verdict; after it no byte lands in the staging buffer.
    absl::Status verdict = transfer_->Wait();
    absl::Status copy_status = copies_->Close();
    absl::Status sync =
        CudaStatus(cudaStreamSynchronize(fetcher_->stream()), "cudaStreamSynchronize");
    for (const absl::Status& s : {verdict, copy_status, sync}) {
      if (failure.ok() && !s.ok()) failure = s;
    }
  } else if (copies_ != nullptr) {
    (void)copies_->Close();
  }
  const size_t verified = failure.ok() ? reservation_.loading.size() : 0;
  result_ = FinishFetch(*pool_, std::move(reservation_), verified, std::move(failure));
  fetcher_->EndLoad();
  return *result_;
}

absl::Status MappedDeviceLoad::Enqueue() {
  absl::MutexLock lock(&enqueue_mu_);
  if (enqueued_) return enqueue_status_;
  enqueued_ = true;
  const cudaStream_t stream = fetcher_->stream();
  DeviceScope scope(fetcher_->device());  // the caller's device is restored
  absl::Status st = scope.status();
  if (st.ok() && timing_[0] != nullptr) st = CudaStatus(cudaEventRecord(timing_[0], stream), "cudaEventRecord");
  // Layers go in groups of `group` consecutive layers (contiguous in every
  // chunk), so that each copy moves at least min_copy_bytes per chunk.
  const uint32_t group = static_cast<uint32_t>(std::clamp<uint64_t>(
      (min_copy_bytes_ + layer_bytes_ - 1) / layer_bytes_, 1, num_layers_));
  for (uint32_t first = 0; st.ok() && first < num_layers_; first += group) {
    const uint32_t layers = std::min(group, num_layers_ - first);
    const size_t offset = static_cast<size_t>(first) * layer_bytes_;
    for (size_t r = 0; st.ok() && r < runs_.size(); ++r) {
      st = CudaStatus(cudaMemcpy2DAsync(runs_[r].dest + offset, chunk_bytes_, runs_[r].src + offset,
                                        chunk_bytes_, layers * layer_bytes_, runs_[r].count,
                                        cudaMemcpyHostToDevice, stream),
                      "cudaMemcpy2DAsync of layers from the shared pool");
    }
    for (uint32_t l = first; st.ok() && l < first + layers; ++l) {
      st = CudaStatus(cudaEventRecord(events_[l], stream), "cudaEventRecord");
    }
  }
  if (st.ok() && timing_[1] != nullptr) st = CudaStatus(cudaEventRecord(timing_[1], stream), "cudaEventRecord");
  enqueue_status_ = st;
  return st;
}

FetchResult MappedDeviceLoad::Wait() {
  absl::MutexLock lock(&mu_);
  if (result_.has_value()) return *result_;
  absl::Status failure = start_status_;
  absl::Duration copied, verified_at;
  if (!events_.empty() && failure.ok()) failure = Enqueue();
  if (!events_.empty()) {
    // Copies were enqueued (some may have failed to be): let them drain
    // before the slots or the lease go.
    absl::Status sync =
        CudaStatus(cudaStreamSynchronize(fetcher_->stream()), "cudaStreamSynchronize");
    if (failure.ok()) failure = sync;
    float ms = 0;
    if (timing_[0] != nullptr && timing_[1] != nullptr &&
        cudaEventElapsedTime(&ms, timing_[0], timing_[1]) == cudaSuccess) {
      copied = absl::Milliseconds(ms);  // the copies' own time on the GPU
    } else {
      (void)cudaGetLastError();
      copied = absl::Now() - start_;
    }
  }
  for (std::thread& t : verifiers_) t.join();
  verifiers_.clear();
  verified_at = absl::Now() - start_;
  // The verified prefix: chunks up to the first that failed its check.
  size_t verified = 0;
  if (failure.ok()) {
    while (verified < verdicts_.size() && verdicts_[verified].ok()) ++verified;
    if (verified < verdicts_.size()) failure = verdicts_[verified];
  }
  mapped_.reset();  // releases the lease
  result_ = FinishFetch(*pool_, std::move(reservation_), verified, std::move(failure));
  result_->copied_after = copied;
  result_->verified_after = verified_at;
  fetcher_->EndLoad();
  return *result_;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceFetcher>> DeviceFetcher::Create(const Options& options) {
  if (options.staging_bytes == 0) {
    return absl::InvalidArgumentError("a device fetcher needs staging_bytes > 0");
  }
  auto fetcher = std::make_unique<DeviceFetcherImpl>();
  if (absl::Status s = fetcher->Init(options); !s.ok()) return s;
  return std::unique_ptr<DeviceFetcher>(std::move(fetcher));
}

}  // namespace strata::runtime
