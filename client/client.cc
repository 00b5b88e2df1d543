#include "client/client.h"
#include "client/reconnecting_client.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <atomic>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "proto/call_metadata.h"
#include "proto/data_message.h"
#include "proto/grpc_status.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/key_scope.h"
#include "store/auth/tls.h"
#include "store/common/checksum.h"
#include "store/common/log.h"
#include "store/common/read_index.h"
#include "store/common/status_macros.h"
#include "transport/ucx_transport.h"

namespace strata::client {
namespace {

namespace pb = ::strata::v1;

constexpr uint32_t kProtocolVersion = 1;

std::string KeyBytes(const ChunkKey& key) {
  return std::string(reinterpret_cast<const char*>(key.bytes.data()), ChunkKey::kSize);
}

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

Tier FromProto(int tier) {
  switch (tier) {
    case pb::TIER_DRAM:
      return Tier::kDram;
    case pb::TIER_NVME:
      return Tier::kNvme;
    default:
      return Tier::kMissing;
  }
}

// Runs jobs in order on one background thread.
class JobQueue {
 public:
  JobQueue() : thread_([this] { Loop(); }) {}
  ~JobQueue() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void Push(std::function<void()> job) {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(std::move(job));
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](JobQueue* q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(q->mu_) { return q->stop_ || !q->jobs_.empty(); },
            this));
        if (jobs_.empty()) return;  // stopping and drained
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Records the node incarnation that every answer carries in its trailing
// metadata (proto/call_metadata.h), failed calls included.
class IncarnationInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit IncarnationInterceptor(std::shared_ptr<std::atomic<uint64_t>> seen)
      : seen_(std::move(seen)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS)) {
      const auto* trailers = methods->GetRecvTrailingMetadata();
      if (trailers != nullptr) {
        auto it = trailers->find(proto::kNodeIncarnationKey);
        if (it != trailers->end()) {
          const std::optional<uint64_t> v =
              proto::ParseIncarnation(std::string_view(it->second.data(), it->second.size()));
          if (v.has_value()) seen_->store(*v, std::memory_order_relaxed);
        }
      }
    }
    methods->Proceed();
  }

 private:
  const std::shared_ptr<std::atomic<uint64_t>> seen_;
};

class IncarnationInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit IncarnationInterceptorFactory(std::shared_ptr<std::atomic<uint64_t>> seen)
      : seen_(std::move(seen)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new IncarnationInterceptor(seen_);
  }

 private:
  const std::shared_ptr<std::atomic<uint64_t>> seen_;
};

class ClientImpl;

// Shared between the caller, the transport's completion callbacks and the
// job queue.
class TransferImpl final : public Transfer {
 public:
  TransferImpl(ClientImpl* client, uint32_t layers, uint32_t ops_per_layer, int64_t total_ops,
               absl::Time deadline)
      : client_(client),
        layer_remaining_(layers, ops_per_layer),
        pending_(total_ops + 1),  // +1: released once every op is posted
        deadline_(deadline) {}

  absl::Status Wait() override;
  absl::Status WaitLayer(uint32_t layer) override;
  bool done() const override {
    absl::MutexLock lock(&mu_);
    return done_;
  }

  // One operation finished (or was never posted, with its error).
  void OpDone(uint32_t layer, const absl::Status& status);
  void Finish(absl::Status status);

  std::function<void()> on_all_ops_done;          // runs on the job queue
  std::function<void(uint32_t)> on_layer;         // runs where the op completed

 private:
  ClientImpl* const client_;
  mutable absl::Mutex mu_;
  std::vector<uint32_t> layer_remaining_ ABSL_GUARDED_BY(mu_);
  int64_t pending_ ABSL_GUARDED_BY(mu_);
  absl::Status ops_status_ ABSL_GUARDED_BY(mu_);
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  const absl::Time deadline_;

  friend class ClientImpl;
};

class ClientImpl final : public Client {
 public:
  explicit ClientImpl(const ClientOptions& options) : options_(options) {}
  ~ClientImpl() override {
    // Abort what is still in flight so every callback has run before the
    // job queue (and then the endpoint) goes.
    {
      absl::MutexLock lock(&ep_mu_);
      if (endpoint_ != nullptr) (void)endpoint_->WaitAll(options_.transfer_timeout);
    }
    jobs_.reset();
    // Then release what the finished loads left to release.
    {
      absl::MutexLock lock(&rel_mu_);
      rel_stop_ = true;
    }
    if (release_thread_.joinable()) release_thread_.join();
    SendReleases(TakeReleases());
    {
      absl::MutexLock lock(&lf_mu_);
      touch_stop_ = true;
    }
    if (touch_thread_.joinable()) touch_thread_.join();
    SendTouches(TakeTouches());
    if (index_base_ != nullptr) munmap(const_cast<std::byte*>(index_base_), index_bytes_);
    if (shm_base_ != nullptr) munmap(const_cast<std::byte*>(shm_base_), shm_bytes_);
  }

  absl::Status Init();

  const NodeInfo& node() const override { return node_; }
  std::string_view data_path() const override { return shm_base_ != nullptr ? "shm" : "ucx"; }
  absl::StatusOr<Namespace> RegisterNamespace(const NamespaceSpec& spec,
                                              std::string_view tenant) override;
  absl::StatusOr<LookupResult> Lookup(const Namespace& ns,
                                      std::span<const ChunkKey> keys) override;
  absl::StatusOr<std::shared_ptr<Transfer>> Load(const Namespace& ns,
                                                 std::span<const ChunkKey> keys,
                                                 std::span<std::byte> dest,
                                                 std::function<void(uint32_t)> on_layer) override;
  absl::StatusOr<std::shared_ptr<Transfer>> LoadChunks(
      const Namespace& ns, std::span<const ChunkKey> keys,
      std::span<const std::span<std::byte>> dests,
      std::function<void(uint32_t)> on_layer) override;
  absl::StatusOr<std::shared_ptr<Transfer>> Save(const Namespace& ns,
                                                 std::span<const ChunkKey> keys,
                                                 std::span<const std::byte> src,
                                                 std::optional<ChunkKey> parent) override;
  absl::StatusOr<std::shared_ptr<Transfer>> SaveChunks(
      const Namespace& ns, std::span<const ChunkKey> keys,
      std::span<const std::optional<ChunkKey>> parents,
      std::span<const std::span<const std::byte>> srcs) override;
  // Load from an isolated node: the node sends the bytes (see InboundLoad).
  absl::StatusOr<std::shared_ptr<Transfer>> LoadIsolated(const Namespace& ns,
                                                         std::span<const ChunkKey> keys,
                                                         std::vector<std::span<std::byte>> dests,
                                                         std::function<void(uint32_t)> on_layer);
  absl::Status Hint(const Namespace& ns, std::string_view scheduler_id,
                    std::span<const HintJob> jobs, absl::Duration ttl) override;
  absl::StatusOr<std::map<std::string, uint64_t>> Stats() override;
  bool node_restarted() const override {
    return restarted_.load(std::memory_order_relaxed) ||
           NodeRestarted(seen_incarnation_->load(std::memory_order_relaxed));
  }
  ClientCounters counters() const override {
    ClientCounters c;
    c.lease_free_loads = lf_loads_.load(std::memory_order_relaxed);
    c.lease_free_fallbacks = lf_fallbacks_.load(std::memory_order_relaxed);
    return c;
  }
  absl::Status Health() override;
  absl::StatusOr<uint64_t> RemoveNamespace(const NamespaceSpec& spec,
                                           std::string_view tenant) override;

  std::span<const std::byte> shared_pool() const override {
    return shm_base_ != nullptr ? std::span<const std::byte>(shm_base_, shm_bytes_)
                                : std::span<const std::byte>();
  }
  absl::StatusOr<std::unique_ptr<MappedChunks>> LeaseMapped(
      const Namespace& ns, std::span<const ChunkKey> keys) override;

  // Aborts every operation in flight on the endpoint (a stuck transfer).
  void AbortTransfers() {
    absl::MutexLock lock(&ep_mu_);
    if (endpoint_ != nullptr) (void)endpoint_->WaitAll(absl::ZeroDuration());
    broken_ = true;
    // Isolated nodes: messages of loads that arrive from now on are dropped
    // (a receive already under way still completes into its buffer).
    absl::MutexLock in_lock(&in_mu_);
    inbound_.clear();
  }
  void Enqueue(std::function<void()> job) { jobs_->Push(std::move(job)); }
  absl::Duration rpc_timeout() const { return options_.rpc_timeout; }

 private:
  void Prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::microseconds(absl::ToInt64Microseconds(options_.rpc_timeout)));
    if (!token_.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  }
  // The channel's credentials (TLS when tls_ca_file is set) and the token.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
      grpc::ChannelArguments* args);
  uint32_t LeaseMs() const {
    return static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.lease_ttl));
  }
  // A read lease on chunks: its id, and each chunk's node address, offset in
  // the shared pool (when mapped) and checksum.
  struct Leased {
    uint64_t lease = 0;
    std::vector<uint64_t> addresses;
    std::vector<uint64_t> offsets;
    std::vector<uint64_t> checksums;
  };
  // One Get: the lease (released again on any error). Carries queued
  // releases.
  absl::StatusOr<Leased> Lease(const Namespace& ns, std::span<const ChunkKey> keys);
  friend class MappedChunksImpl;

  // Maps the node's shared pool read-only when the node offers it and runs
  // on this host; leaves shm_base_ null (loads over UCX) otherwise.
  void MapSharedPool();
  // With the pool mapped and ClientOptions::lease_free: maps the node's read
  // index read-only when it offers one; leaves index_ empty otherwise.
  void MapReadIndex();

  // Lease-free loads (ClientOptions::lease_free; see
  // store/common/read_index.h for the protocol). The index entry of every
  // key, when namespace `ns` may read lease-free and every key is published
  // with the namespace's chunk size inside the pool; nullopt otherwise.
  std::optional<std::vector<ReadIndexHit>> FindLeaseFree(const Namespace& ns,
                                                         std::span<const ChunkKey> keys);
  bool AllUnchanged(std::span<const ReadIndexHit> hits) const {
    for (const ReadIndexHit& h : hits) {
      if (!index_->Unchanged(h)) return false;
    }
    return true;
  }
  // A load of chunks found in the index: copied on the caller's thread when
  // nobody waits for layers (nullptr when a chunk changed or failed its
  // checksum: the caller then takes a lease), else on the job queue, layer by
  // layer, each layer reported only once every chunk's entry is unchanged.
  std::shared_ptr<TransferImpl> LoadLeaseFree(const Namespace& ns, std::span<const ChunkKey> keys,
                                              std::vector<std::span<std::byte>> dests,
                                              std::function<void(uint32_t)> on_layer,
                                              std::vector<ReadIndexHit> hits);
  // The rest of a lease-free load whose chunks changed at layer `first`:
  // leases them, copies layers first.. and verifies every chunk. Aborted when
  // a chunk's bytes changed after earlier layers were reported.
  absl::Status FinishFromLease(TransferImpl* t, const Namespace& ns,
                               std::span<const ChunkKey> keys,
                               std::span<const std::span<std::byte>> dests, uint32_t first,
                               std::span<const ReadIndexHit> hits);
  // Lease-free reads are reported to the node in batches (Touch) by a
  // background thread every kTouchDelay, so that they count for eviction.
  void QueueTouches(uint32_t ns, std::span<const ChunkKey> keys);
  absl::flat_hash_map<uint32_t, absl::flat_hash_set<ChunkKey>> TakeTouches();
  void SendTouches(absl::flat_hash_map<uint32_t, absl::flat_hash_set<ChunkKey>> touches);
  void TouchLoop();
  // Copies the leased chunks at pool offsets `offsets` into `dests` on the
  // job queue, layer by layer, hashing each slice as it is copied, and
  // reports each slice to `t`. (*sums)[c] is chunk c's ChunkChecksum (of its
  // destination) before the chunk's last slice is reported.
  // REQUIRES: sums->size() == offsets.size().
  void CopyFromSharedPool(TransferImpl* t, std::vector<std::span<std::byte>> dests,
                          std::vector<uint64_t> offsets, uint32_t layers, uint64_t layer_bytes,
                          std::shared_ptr<std::vector<uint64_t>> sums);
  // The data-plane endpoint, reconnected if an earlier transfer broke it.
  absl::Status EnsureEndpoint() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ep_mu_);
  // True when a response names another incarnation of the node than the one
  // this client connected to: the node restarted behind its address, and its
  // pool, remote key and data-plane address are new (0 = not reported).
  bool NodeRestarted(uint64_t incarnation) const {
    const bool restarted =
        incarnation != 0 && info_.incarnation() != 0 && incarnation != info_.incarnation();
    if (restarted) restarted_.store(true, std::memory_order_relaxed);
    return restarted;
  }
  // Gives a write lease back (best effort: it expires anyway).
  void AbortPut(uint64_t lease) {
    pb::PutAbortRequest req;
    req.set_client_id(client_id_);
    req.set_lease_id(lease);
    pb::PutAbortResponse ignored;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    (void)stub_->PutAbort(&ctx, req, &ignored);
  }
  // `status` of a call (`op`), or RestartedError when it failed and an
  // answer showed the node restarted: the namespace ids, leases and
  // attachment it was refused for are the old node's (a NotFound "unknown
  // namespace" would wrongly say the caller's namespace is gone).
  absl::Status RestartedOr(absl::string_view op, absl::Status status) const {
    if (status.ok() || !node_restarted()) return status;
    return absl::UnavailableError(
        absl::StrCat(RestartedError(op).message(), " (it answered: ", status.message(), ")"));
  }
  // Unavailable, for a call (`op`) answered by a restarted node.
  absl::Status RestartedError(absl::string_view op) const {
    return absl::UnavailableError(absl::StrCat(op, ": the node at ", options_.server_address,
                                               " restarted since this client connected; "
                                               "connect a new client"));
  }

  // Isolated nodes (NodeInfo.isolated_data_plane): the node sends a get's
  // layer slices as messages carrying the load's transfer id; they land in
  // the load's per-chunk destinations.
  struct InboundLoad {
    std::shared_ptr<TransferImpl> transfer;
    std::vector<std::span<std::byte>> dests;  // one per chunk, chunk_bytes each
    uint64_t layer_bytes = 0;
    uint32_t chunks = 0;
    uint32_t layers = 0;
  };
  transport::MessageTarget OnDataMessage(std::span<const std::byte> header, size_t bytes);
  bool isolated() const { return info_.isolated_data_plane(); }

  // Read leases are released lazily: ReleaseLease queues the id; the next
  // Load carries the queued ids in its Get (no round trip of their own), and
  // a background thread sends what no Load took within kReleaseDelay in one
  // Release call (at once past kMaxQueuedReleases).
  void ReleaseLease(uint64_t lease);
  std::vector<uint64_t> TakeReleases();
  // One Release RPC for `leases` (best effort: leases expire anyway).
  void SendReleases(std::vector<uint64_t> leases);
  void ReleaseLoop();

  const ClientOptions options_;
  std::string client_id_;
  std::string token_;
  // The incarnation the node's last answer named (0: none yet); set by the
  // channel's IncarnationInterceptor.
  const std::shared_ptr<std::atomic<uint64_t>> seen_incarnation_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  // Set once an answer named another incarnation than info_'s.
  mutable std::atomic<bool> restarted_{false};
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Strata::Stub> stub_;
  NodeInfo node_;
  pb::NodeInfo info_;
  // Loads from an isolated node waiting for their messages (declared before
  // ucx_ so that they outlive its progress thread).
  absl::Mutex in_mu_;
  absl::flat_hash_map<uint64_t, InboundLoad> inbound_ ABSL_GUARDED_BY(in_mu_);
  std::atomic<uint64_t> next_transfer_id_{absl::Uniform<uint64_t>(absl::BitGen()) | 1};
  std::unique_ptr<transport::UcxContext> ucx_;
  // The node's pool mapped read-only (same host), or null; constant after Init.
  const std::byte* shm_base_ = nullptr;
  uint64_t shm_bytes_ = 0;

  absl::Mutex ep_mu_;
  std::unique_ptr<transport::Endpoint> endpoint_ ABSL_GUARDED_BY(ep_mu_);
  std::unique_ptr<transport::RemoteMemory> remote_ ABSL_GUARDED_BY(ep_mu_);
  // Endpoints replaced after a failure; kept until the client goes so that
  // callbacks of their aborted operations never outlive them.
  std::vector<std::unique_ptr<transport::Endpoint>> retired_ ABSL_GUARDED_BY(ep_mu_);
  std::vector<std::unique_ptr<transport::RemoteMemory>> retired_remotes_ ABSL_GUARDED_BY(ep_mu_);
  bool broken_ ABSL_GUARDED_BY(ep_mu_) = false;

  std::unique_ptr<JobQueue> jobs_ = std::make_unique<JobQueue>();


  static constexpr absl::Duration kReleaseDelay = absl::Milliseconds(2);
  static constexpr size_t kMaxQueuedReleases = 256;
  absl::Mutex rel_mu_;
  std::vector<uint64_t> releases_ ABSL_GUARDED_BY(rel_mu_);
  bool rel_stop_ ABSL_GUARDED_BY(rel_mu_) = false;
  std::thread release_thread_{[this] { ReleaseLoop(); }};

  // The node's read index mapped read-only, or null; constant after Init.
  const std::byte* index_base_ = nullptr;
  uint64_t index_bytes_ = 0;
  std::optional<ReadIndexView> index_;
  // Set when the node is gone or restarted (seen by Touch): lease-free loads
  // stop, since the mapped index and pool are no longer the node's.
  std::atomic<bool> index_stale_{false};
  std::atomic<uint64_t> lf_loads_{0};
  std::atomic<uint64_t> lf_fallbacks_{0};
  static constexpr absl::Duration kTouchDelay = absl::Milliseconds(50);
  static constexpr size_t kMaxQueuedTouches = 4096;
  absl::Mutex lf_mu_;
  // Namespaces in which a leased load succeeded: the node authorised this
  // client there (Touch failing with PermissionDenied, Unauthenticated or
  // NotFound takes the namespace out again).
  absl::flat_hash_set<uint32_t> lease_free_ns_ ABSL_GUARDED_BY(lf_mu_);
  absl::flat_hash_map<uint32_t, absl::flat_hash_set<ChunkKey>> touches_ ABSL_GUARDED_BY(lf_mu_);
  size_t queued_touches_ ABSL_GUARDED_BY(lf_mu_) = 0;
  bool touch_stop_ ABSL_GUARDED_BY(lf_mu_) = false;
  std::thread touch_thread_{[this] { TouchLoop(); }};
};

// ------------------------------------------------------------- Transfer

void TransferImpl::OpDone(uint32_t layer, const absl::Status& status) {
  bool layer_done = false, all_done = false;
  {
    absl::MutexLock lock(&mu_);
    if (!status.ok() && ops_status_.ok()) ops_status_ = status;
    if (layer < layer_remaining_.size() && --layer_remaining_[layer] == 0) layer_done = true;
    all_done = --pending_ == 0;
  }
  if (layer_done && status.ok() && on_layer) on_layer(layer);
  if (all_done) client_->Enqueue(std::move(on_all_ops_done));
}

void TransferImpl::Finish(absl::Status status) {
  absl::MutexLock lock(&mu_);
  final_status_ = std::move(status);
  done_ = true;
}

absl::Status TransferImpl::Wait() {
  // Finished, or failed with every operation over (no buffer is touched any
  // more; the lease is released or aborted behind the caller's back).
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ || (pending_ == 0 && !ops_status_.ok());
  };
  // The node is gone: operations still in flight may never complete.
  auto peer_failed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ops_status_.code() == absl::StatusCode::kUnavailable;
  };
  auto result = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ ? final_status_ : ops_status_;
  };
  auto settled_or_peer_failed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return settled() || peer_failed();
  };
  {
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithDeadline(absl::Condition(&settled_or_peer_failed), deadline_) &&
        settled()) {
      return result();
    }
  }
  // Stuck, or the node failed: abort the data plane, which fails every op in
  // flight (within the transport's close timeout, even when UCX never
  // completes them).
  client_->AbortTransfers();
  absl::MutexLock lock(&mu_);
  // Op callbacks ran inside the abort; what may remain is the commit RPC of
  // a save whose bytes all landed (bounded by rpc_timeout).
  if (!mu_.AwaitWithDeadline(absl::Condition(&settled),
                             absl::Now() + client_->rpc_timeout())) {
    return absl::DeadlineExceededError("transfer did not finish in time; aborted");
  }
  absl::Status status = result();
  if (status.ok() || peer_failed()) return status;
  return absl::DeadlineExceededError(
      absl::StrCat("transfer did not finish in time: ", status.message()));
}

absl::Status TransferImpl::WaitLayer(uint32_t layer) {
  {
    absl::MutexLock lock(&mu_);
    if (layer >= layer_remaining_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " out of range"));
    }
    auto ready = [this, layer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return layer_remaining_[layer] == 0 || !ops_status_.ok() || done_;
    };
    if (mu_.AwaitWithDeadline(absl::Condition(&ready), deadline_)) {
      if (!ops_status_.ok()) return ops_status_;
      if (done_ && !final_status_.ok()) return final_status_;
      return absl::OkStatus();
    }
  }
  // The transfer's deadline passed: Wait aborts it and reports why.
  absl::Status status = Wait();
  return status.ok() ? absl::OkStatus() : status;
}

// --------------------------------------------------------------- Client

absl::Status ClientImpl::Init() {
  client_id_ = options_.client_id;
  if (client_id_.empty()) {
    absl::BitGen gen;
    client_id_ = absl::StrCat("client-", absl::Hex(absl::Uniform<uint64_t>(gen)),
                              absl::Hex(absl::Uniform<uint64_t>(gen)));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // A node that comes back (a restart behind the same address) is dialled
  // again within a second or two, not after gRPC's default backoff (1 s
  // growing to 2 minutes, and a re-resolution at most every 30 s): until
  // then every call fails with Unavailable.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 500);
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials, Credentials(&args));
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<IncarnationInterceptorFactory>(seen_incarnation_));
  channel_ = grpc::experimental::CreateCustomChannelWithInterceptors(
      options_.server_address, credentials, args, std::move(interceptors));
  stub_ = pb::Strata::NewStub(channel_);
  grpc::ClientContext ctx;
  Prepare(&ctx);
  grpc::Status s = stub_->GetNodeInfo(&ctx, pb::NodeInfoRequest(), &info_);
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
      s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    return FromGrpcStatus(s);
  }
  if (!s.ok()) {
    const bool tls = !options_.tls_ca_file.empty();
    // A refused connection or an unknown host is no matter of TLS.
    const bool refused = absl::StrContains(s.error_message(), "Connection refused");
    const bool unresolved = absl::StrContains(s.error_message(), "DNS resolution failed");
    return absl::UnavailableError(absl::StrCat(
        "cannot reach the store node at ", options_.server_address, ": ", s.error_message(),
        refused      ? " (nothing listens there: is the node running, on that port?)"
        : unresolved ? ""
        : tls        ? " (with TLS: the node's certificate must be signed by the CA in tls_ca_file and "
              "name the server (tls_server_name); a node that requires client certificates "
              "accepts only one signed by its client CA (tls_cert_file, tls_key_file); a node "
              "without TLS refuses the handshake)"
            : " (a node with TLS needs tls_ca_file)"));
  }
  if (info_.protocol_version() != kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the node speaks protocol ", info_.protocol_version(), "; this client ", kProtocolVersion));
  }
  node_.node_id = info_.node_id();
  node_.server_version = info_.server_version();
  node_.ucx_transports = info_.ucx_transports();
  node_.dram_bytes = info_.dram_bytes();
  node_.nvme_capacity_bytes = info_.nvme_capacity_bytes();
  node_.incarnation = info_.incarnation();
  transport::UcxOptions ucx;
  ucx.transports = options_.ucx_transports;
  ucx.progress_thread = true;
  // Send the node segments as large as it receives (see
  // UcxOptions::tcp_send_segment): fewer messages and acknowledgements per
  // put over tcp. A node that does not say keeps UCX's default receive size,
  // which the default send segment fits.
  if (info_.ucx_tcp_receive_segment() != 0) {
    ucx.tcp_send_segment =
        std::min<uint64_t>(info_.ucx_tcp_receive_segment(), ucx.tcp_receive_segment);
  }
  if (isolated()) {
    // Nothing of this process is exposed either: the node sends messages.
    ucx.remote_access = false;
    ucx.on_message = [this](std::span<const std::byte> header, size_t bytes) {
      return OnDataMessage(header, bytes);
    };
  }
  ASSIGN_OR_RETURN(ucx_, transport::UcxContext::Create(ucx));
  if (isolated()) {
    pb::AttachDataPlaneRequest attach;
    attach.set_client_id(client_id_);
    attach.set_worker_address(ucx_->worker_address());
    pb::AttachDataPlaneResponse attached;
    grpc::ClientContext actx;
    Prepare(&actx);
    RETURN_IF_ERROR(FromGrpcStatus(stub_->AttachDataPlane(&actx, attach, &attached)));
  } else if (options_.same_host == SameHost::kAuto) {
    MapSharedPool();
    if (shm_base_ != nullptr && options_.lease_free) MapReadIndex();
  }
  absl::MutexLock lock(&ep_mu_);
  return EnsureEndpoint();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientImpl::Credentials(
    grpc::ChannelArguments* args) {
  if (!options_.token.empty() && !options_.token_file.empty()) {
    return absl::InvalidArgumentError("give a token or a token file, not both");
  }
  token_ = options_.token;
  if (!options_.token_file.empty()) {
    ASSIGN_OR_RETURN(token_, auth::ReadWholeFile(options_.token_file, "token file"));
    while (!token_.empty() && std::isspace(static_cast<unsigned char>(token_.back()))) {
      token_.pop_back();
    }
    while (!token_.empty() && std::isspace(static_cast<unsigned char>(token_.front()))) {
      token_.erase(token_.begin());
    }
    if (token_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", options_.token_file, " is empty"));
    }
  }
  for (char c : token_) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "the token holds a character that is not printable ASCII (expected TENANT:SECRET)");
    }
  }
  if (options_.tls_ca_file.empty()) {
    if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty() ||
        !options_.tls_server_name.empty()) {
      return absl::InvalidArgumentError(
          "TLS options given without tls_ca_file (the CA that signed the node's certificate)");
    }
    return grpc::InsecureChannelCredentials();
  }
  // Checked here, so that a bad file is named instead of failing the handshake.
  ASSIGN_OR_RETURN(auth::ClientTlsPem pem,
                   auth::LoadClientTls(options_.tls_ca_file, options_.tls_cert_file,
                                       options_.tls_key_file));
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = std::move(pem.root_certs);
  ssl.pem_cert_chain = std::move(pem.cert_chain);
  ssl.pem_private_key = std::move(pem.private_key);
  if (!options_.tls_server_name.empty()) {
    args->SetSslTargetNameOverride(options_.tls_server_name);
  }
  return grpc::SslCredentials(ssl);
}

void ClientImpl::MapSharedPool() {
  if (info_.shm_path().empty() || info_.host_boot_id().empty() ||
      info_.host_boot_id() != BootId() || info_.shm_bytes() < info_.dram_bytes()) {
    return;  // not shared, or another host
  }
  const int fd = open(info_.shm_path().c_str(), O_RDONLY | O_CLOEXEC);
  std::string why;
  struct stat st{};
  if (fd < 0) {
    why = std::strerror(errno);
  } else if (fstat(fd, &st) != 0 || st.st_ino != info_.shm_inode() ||
             static_cast<uint64_t>(st.st_size) != info_.shm_bytes()) {
    why = "it is not the node's pool (another process namespace?)";
  } else {
    void* p = mmap(nullptr, info_.shm_bytes(), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      why = std::strerror(errno);
    } else {
      shm_base_ = static_cast<const std::byte*>(p);
      shm_bytes_ = info_.shm_bytes();
    }
  }
  if (fd >= 0) close(fd);  // the mapping keeps the pool
  if (shm_base_ == nullptr) {
    LogInfo("strata client: node %s is on this host but its DRAM pool (%s) cannot be mapped: "
            "%s; loads use UCX",
            info_.node_id().c_str(), info_.shm_path().c_str(), why.c_str());
  }
}

void ClientImpl::MapReadIndex() {
  if (info_.read_index_path().empty()) return;  // the node publishes none
  const int fd = open(info_.read_index_path().c_str(), O_RDONLY | O_CLOEXEC);
  std::string why;
  struct stat st{};
  if (fd < 0) {
    why = std::strerror(errno);
  } else if (fstat(fd, &st) != 0 || st.st_ino != info_.read_index_inode() ||
             static_cast<uint64_t>(st.st_size) != info_.read_index_bytes()) {
    why = "it is not the node's read index (another process namespace?)";
  } else {
    void* p = mmap(nullptr, info_.read_index_bytes(), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      why = std::strerror(errno);
    } else {
      auto view = ReadIndexView::Open(
          std::span<const std::byte>(static_cast<const std::byte*>(p), info_.read_index_bytes()));
      if (view.ok()) {
        index_base_ = static_cast<const std::byte*>(p);
        index_bytes_ = info_.read_index_bytes();
        index_ = *view;
      } else {
        why = std::string(view.status().message());
        munmap(p, info_.read_index_bytes());
      }
    }
  }
  if (fd >= 0) close(fd);
  if (!index_.has_value()) {
    LogInfo("strata client: node %s's read index (%s) cannot be used: %s; every load takes a "
            "lease",
            info_.node_id().c_str(), info_.read_index_path().c_str(), why.c_str());
  }
}

std::optional<std::vector<ReadIndexHit>> ClientImpl::FindLeaseFree(
    const Namespace& ns, std::span<const ChunkKey> keys) {
  // A node that restarted publishes its chunks in another index: the one
  // mapped here is the old node's (see Lease for the answer instead).
  if (!index_.has_value() || index_stale_.load(std::memory_order_relaxed) || !ns.chain ||
      node_restarted()) {
    return std::nullopt;
  }
  {
    absl::MutexLock lock(&lf_mu_);
    if (!lease_free_ns_.contains(ns.id)) return std::nullopt;  // not authorised yet
  }
  std::vector<ReadIndexHit> hits;
  hits.reserve(keys.size());
  const ChunkKey& root = ns.chain->root();
  for (const ChunkKey& key : keys) {
    std::optional<ReadIndexHit> hit = index_->Find(auth::ScopeKey(root, key), ns.id);
    if (!hit || hit->size != ns.chunk_bytes || hit->offset > shm_bytes_ ||
        shm_bytes_ - hit->offset < hit->size) {
      lf_fallbacks_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    hits.push_back(*hit);
  }
  return hits;
}

std::shared_ptr<TransferImpl> ClientImpl::LoadLeaseFree(const Namespace& ns,
                                                        std::span<const ChunkKey> keys,
                                                        std::vector<std::span<std::byte>> dests,
                                                        std::function<void(uint32_t)> on_layer,
                                                        std::vector<ReadIndexHit> hits) {
  const uint32_t layers = ns.spec.num_layers;
  const uint32_t n = static_cast<uint32_t>(keys.size());
  const absl::Time deadline = absl::Now() + options_.transfer_timeout;
  if (!on_layer) {
    // Nobody waits for single layers: copy here and hand back a finished
    // transfer (no thread hop).
    // Copied and hashed in one pass over the pool (block by block, each
    // hashed while in the cache); the generations are re-checked after.
    std::vector<uint64_t> sums(n);
    for (uint32_t c = 0; c < n; ++c) {
      sums[c] = CopyAndChecksum(dests[c], shm_base_ + hits[c].offset);  // sizes checked above
    }
    bool good = AllUnchanged(hits);
    for (uint32_t c = 0; good && c < n; ++c) good = sums[c] == hits[c].checksum;
    if (!good) {
      lf_fallbacks_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    lf_loads_.fetch_add(1, std::memory_order_relaxed);
    QueueTouches(ns.id, keys);
    auto transfer = std::make_shared<TransferImpl>(this, layers, 0, 0, deadline);
    transfer->Finish(absl::OkStatus());
    return transfer;
  }
  auto transfer = std::make_shared<TransferImpl>(this, layers, n, int64_t{layers} * n, deadline);
  transfer->on_layer = std::move(on_layer);
  transfer->on_all_ops_done = [] {};  // the job below finishes the transfer
  TransferImpl* t = transfer.get();
  Enqueue([this, t, transfer, ns, keys = std::vector<ChunkKey>(keys.begin(), keys.end()),
           dests = std::move(dests), hits = std::move(hits), layers, n]() mutable {
    const uint64_t lb = ns.layer_bytes;
    // Each slice is hashed right after its copy, while it is in the cache.
    std::vector<ChunkChecksumStream> sums(n);
    uint32_t l = 0;
    for (; l < layers; ++l) {
      for (uint32_t c = 0; c < n; ++c) {
        sums[c].CopyAndAppend(dests[c].subspan(l * lb, lb), shm_base_ + hits[c].offset + l * lb);
      }
      if (!AllUnchanged(hits)) break;  // layer l may hold bytes of another chunk
      for (uint32_t c = 0; c < n; ++c) t->OpDone(l, absl::OkStatus());
    }
    absl::Status status;
    if (l == layers) {
      for (uint32_t c = 0; status.ok() && c < n; ++c) {
        if (sums[c].Checksum() != hits[c].checksum) {
          status = absl::DataLossError(
              absl::StrCat("load: chunk ", c, " does not match its checksum"));
        }
      }
      if (status.ok()) {
        lf_loads_.fetch_add(1, std::memory_order_relaxed);
        QueueTouches(ns.id, keys);
      }
    } else {
      lf_fallbacks_.fetch_add(1, std::memory_order_relaxed);
      status = FinishFromLease(t, ns, keys, dests, l, hits);
    }
    t->OpDone(layers, absl::OkStatus());  // the +1 guard
    t->Finish(status);
    transfer.reset();
  });
  return transfer;
}

absl::Status ClientImpl::FinishFromLease(TransferImpl* t, const Namespace& ns,
                                         std::span<const ChunkKey> keys,
                                         std::span<const std::span<std::byte>> dests,
                                         uint32_t first, std::span<const ReadIndexHit> hits) {
  const uint32_t layers = ns.spec.num_layers;
  const size_t n = keys.size();
  absl::StatusOr<Leased> leased = Lease(ns, keys);
  if (!leased.ok()) {
    for (uint32_t l = first; l < layers; ++l) {
      for (size_t c = 0; c < n; ++c) t->OpDone(l, leased.status());
    }
    return leased.status();
  }
  const uint64_t lb = ns.layer_bytes;
  // Every chunk is verified whole: the layers before `first` (copied
  // lease-free, already in place) are hashed, the rest as they are copied.
  std::vector<ChunkChecksumStream> sums(n);
  for (size_t c = 0; c < n; ++c) sums[c].Append(dests[c].first(first * lb));
  for (uint32_t l = first; l < layers; ++l) {
    for (size_t c = 0; c < n; ++c) {
      sums[c].CopyAndAppend(dests[c].subspan(l * lb, lb), shm_base_ + leased->offsets[c] + l * lb);
      t->OpDone(l, absl::OkStatus());
    }
  }
  absl::Status status;
  for (size_t c = 0; status.ok() && c < n; ++c) {
    if (sums[c].Checksum() == leased->checksums[c]) continue;
    if (first > 0 && leased->checksums[c] != hits[c].checksum) {
      // Layers before `first` were reported with the bytes of the chunk that
      // was replaced: the caller must not use what it computed from them.
      status = absl::AbortedError(absl::StrCat(
          "load: chunk ", c, " was replaced by other bytes while it was read; load it again"));
    } else {
      status = absl::DataLossError(absl::StrCat("load: chunk ", c, " does not match its checksum"));
    }
  }
  ReleaseLease(leased->lease);
  return status;
}

void ClientImpl::QueueTouches(uint32_t ns, std::span<const ChunkKey> keys) {
  absl::MutexLock lock(&lf_mu_);
  auto& set = touches_[ns];
  for (const ChunkKey& k : keys) queued_touches_ += set.insert(k).second ? 1 : 0;
}

absl::flat_hash_map<uint32_t, absl::flat_hash_set<ChunkKey>> ClientImpl::TakeTouches() {
  absl::MutexLock lock(&lf_mu_);
  queued_touches_ = 0;
  return std::exchange(touches_, {});
}

void ClientImpl::SendTouches(absl::flat_hash_map<uint32_t, absl::flat_hash_set<ChunkKey>> touches) {
  if (stub_ == nullptr) return;
  const size_t batch = info_.max_keys_per_call() > 0 ? info_.max_keys_per_call() : 1024;
  for (auto& [ns, keys] : touches) {
    std::vector<ChunkKey> all(keys.begin(), keys.end());
    for (size_t i = 0; i < all.size(); i += batch) {
      pb::TouchRequest req;
      req.set_client_id(client_id_);
      req.set_namespace_id(ns);
      for (size_t k = i; k < std::min(all.size(), i + batch); ++k) req.add_keys(KeyBytes(all[k]));
      pb::TouchResponse resp;
      grpc::ClientContext ctx;
      Prepare(&ctx);
      const grpc::Status s = stub_->Touch(&ctx, req, &resp);
      if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
          s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
          s.error_code() == grpc::StatusCode::NOT_FOUND) {
        absl::MutexLock lock(&lf_mu_);
        lease_free_ns_.erase(ns);  // back to leases, which say why
        break;
      }
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
          (s.ok() && NodeRestarted(resp.node_incarnation()))) {
        index_stale_.store(true, std::memory_order_relaxed);
        return;
      }
    }
  }
}

void ClientImpl::TouchLoop() {
  absl::MutexLock lock(&lf_mu_);
  while (!touch_stop_) {
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lf_mu_) {
      return touch_stop_ || queued_touches_ >= kMaxQueuedTouches;
    };
    lf_mu_.AwaitWithTimeout(absl::Condition(&wake), kTouchDelay);
    if (touch_stop_) return;
    if (touches_.empty()) continue;
    auto touches = std::exchange(touches_, {});
    queued_touches_ = 0;
    lf_mu_.Unlock();
    SendTouches(std::move(touches));
    lf_mu_.Lock();
  }
}

void ClientImpl::CopyFromSharedPool(TransferImpl* t, std::vector<std::span<std::byte>> dests,
                                    std::vector<uint64_t> offsets, uint32_t layers,
                                    uint64_t layer_bytes,
                                    std::shared_ptr<std::vector<uint64_t>> sums) {
  Enqueue([this, t, dests = std::move(dests), offsets = std::move(offsets), layers, layer_bytes,
           sums = std::move(sums)] {
    std::vector<ChunkChecksumStream> streams(offsets.size());
    for (uint32_t l = 0; l < layers; ++l) {
      for (size_t c = 0; c < offsets.size(); ++c) {
        streams[c].CopyAndAppend(dests[c].subspan(l * layer_bytes, layer_bytes),
                                 shm_base_ + offsets[c] + l * layer_bytes);
        // Before the chunk's last op is reported: on_all_ops_done reads it.
        if (l + 1 == layers) (*sums)[c] = streams[c].Checksum();
        t->OpDone(l, absl::OkStatus());
      }
    }
  });
}

absl::Status ClientImpl::EnsureEndpoint() {
  if (endpoint_ != nullptr && !broken_) return absl::OkStatus();
  if (endpoint_ != nullptr) {
    retired_remotes_.push_back(std::move(remote_));
    retired_.push_back(std::move(endpoint_));
  }
  ASSIGN_OR_RETURN(endpoint_, ucx_->Connect(info_.ucx_worker_address()));
  if (isolated()) {  // messages only: there is no remote memory to import
    broken_ = false;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(remote_,
                   endpoint_->ImportRemote(info_.dram_base(), info_.dram_bytes(), info_.dram_rkey()));
  broken_ = false;
  return absl::OkStatus();
}

pb::NamespaceSpec SpecToProto(const NamespaceSpec& spec) {
  pb::NamespaceSpec p;
  p.set_model_id(spec.model_id);
  p.set_num_layers(spec.num_layers);
  p.set_num_kv_heads(spec.num_kv_heads);
  p.set_head_dim(spec.head_dim);
  p.set_dtype(spec.dtype == DType::kBFloat16 ? pb::DTYPE_BF16 : pb::DTYPE_FP16);
  p.set_tokens_per_chunk(spec.tokens_per_chunk);
  for (const auto& [name, value] : spec.extra_keys) {
    pb::ExtraKey* e = p.add_extra_keys();
    e->set_name(name);
    e->set_value(value);
  }
  return p;
}

absl::StatusOr<Namespace> ClientImpl::RegisterNamespace(const NamespaceSpec& spec,
                                                        std::string_view tenant) {
  auto chain = KeyChain::Create(
      spec, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(tenant.data()), tenant.size()));
  if (!chain.ok()) return chain.status();
  pb::RegisterNamespaceRequest req;
  *req.mutable_spec() = SpecToProto(spec);
  req.set_tenant(std::string(tenant));
  pb::RegisterNamespaceResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  RETURN_IF_ERROR(FromGrpcStatus(stub_->RegisterNamespace(&ctx, req, &resp)));
  Namespace ns;
  ns.id = resp.namespace_id();
  ns.spec = spec;
  ns.tenant = std::string(tenant);
  ns.chunk_bytes = resp.chunk_bytes();
  ns.layer_bytes = resp.layer_bytes();
  ns.chain = *chain;
  if (ns.chunk_bytes != ChunkLayout(spec).chunk_bytes()) {
    return absl::InternalError("the node reports a chunk size that differs from the layout's");
  }
  return ns;
}

absl::StatusOr<LookupResult> ClientImpl::Lookup(const Namespace& ns,
                                                std::span<const ChunkKey> keys) {
  pb::LookupRequest req;
  req.set_namespace_id(ns.id);
  for (const ChunkKey& k : keys) req.add_keys(KeyBytes(k));
  pb::LookupResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Lookup(&ctx, req, &resp)));
  LookupResult result;
  for (int t : resp.tiers()) result.tiers.push_back(FromProto(t));
  result.prefix_chunks = resp.prefix_chunks();
  result.persisted.assign(resp.persisted().begin(), resp.persisted().end());
  result.persisted.resize(keys.size(), false);  // older nodes do not say
  if (result.tiers.size() != keys.size() || result.prefix_chunks > keys.size()) {
    return absl::InternalError("malformed lookup response");
  }
  return result;
}

void ClientImpl::ReleaseLease(uint64_t lease) {
  std::vector<uint64_t> now;
  {
    absl::MutexLock lock(&rel_mu_);
    releases_.push_back(lease);
    if (releases_.size() >= kMaxQueuedReleases) now.swap(releases_);
  }
  SendReleases(std::move(now));
}

std::vector<uint64_t> ClientImpl::TakeReleases() {
  std::vector<uint64_t> out;
  absl::MutexLock lock(&rel_mu_);
  out.swap(releases_);
  return out;
}

void ClientImpl::SendReleases(std::vector<uint64_t> leases) {
  if (leases.empty() || stub_ == nullptr) return;
  pb::ReleaseRequest req;
  req.set_client_id(client_id_);
  req.set_lease_id(leases[0]);
  for (size_t i = 1; i < leases.size(); ++i) req.add_more_lease_ids(leases[i]);
  pb::ReleaseResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  (void)stub_->Release(&ctx, req, &resp);  // best effort: leases expire anyway
}

void ClientImpl::ReleaseLoop() {
  absl::MutexLock lock(&rel_mu_);
  while (!rel_stop_) {
    rel_mu_.Await(absl::Condition(
        +[](ClientImpl* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->rel_mu_) {
          return c->rel_stop_ || !c->releases_.empty();
        },
        this));
    if (rel_stop_) return;
    // Give the next Load the chance to carry them.
    rel_mu_.AwaitWithTimeout(absl::Condition(&rel_stop_), kReleaseDelay);
    if (rel_stop_) return;
    std::vector<uint64_t> leases;
    leases.swap(releases_);
    rel_mu_.Unlock();
    SendReleases(std::move(leases));
    rel_mu_.Lock();
  }
}

absl::StatusOr<ClientImpl::Leased> ClientImpl::Lease(const Namespace& ns,
                                                     std::span<const ChunkKey> keys) {
  if (node_restarted()) return RestartedError("get");
  pb::GetRequest req;
  req.set_client_id(client_id_);
  req.set_namespace_id(ns.id);
  req.set_lease_ms(LeaseMs());
  for (const ChunkKey& k : keys) req.add_keys(KeyBytes(k));
  const std::vector<uint64_t> carried = TakeReleases();
  for (uint64_t id : carried) req.add_release_lease_ids(id);
  pb::GetResponse resp;
  {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    grpc::Status rpc = stub_->Get(&ctx, req, &resp);
    if (!rpc.ok() && (rpc.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                      rpc.error_code() == grpc::StatusCode::UNAVAILABLE)) {
      // The node may not have seen the releases: queue them again.
      for (uint64_t id : carried) ReleaseLease(id);
    }
    RETURN_IF_ERROR(RestartedOr("get", FromGrpcStatus(rpc)));
  }
  const uint64_t lease = resp.lease_id();
  if (NodeRestarted(resp.node_incarnation())) {
    // Its pool and data-plane address are new: what this client mapped or
    // imported at connect would read another node's memory.
    ReleaseLease(lease);
    return RestartedError("get");
  }
  if (static_cast<size_t>(resp.chunks_size()) != keys.size()) {
    ReleaseLease(lease);
    return absl::InternalError("get: the node returned a different number of chunks");
  }
  std::vector<uint64_t> offsets;  // in the shared pool, when mapped
  for (const pb::ChunkLocation& c : resp.chunks()) {
    if (c.size() != ns.chunk_bytes) {
      ReleaseLease(lease);
      return absl::InternalError("get: the node returned a chunk of the wrong size");
    }
    if (shm_base_ != nullptr) {
      const uint64_t offset = c.address() - info_.dram_base();
      if (c.address() < info_.dram_base() || offset > shm_bytes_ ||
          shm_bytes_ - offset < c.size()) {
        ReleaseLease(lease);
        return absl::InternalError("get: the node returned a chunk outside its pool");
      }
      offsets.push_back(offset);
    }
  }
  if (index_.has_value()) {  // the node admitted this client to the namespace
    absl::MutexLock lock(&lf_mu_);
    lease_free_ns_.insert(ns.id);
  }
  Leased out;
  out.lease = lease;
  out.offsets = std::move(offsets);
  for (const pb::ChunkLocation& c : resp.chunks()) {
    out.addresses.push_back(c.address());
    out.checksums.push_back(c.checksum());
  }
  return out;
}

class MappedChunksImpl final : public MappedChunks {
 public:
  MappedChunksImpl(ClientImpl* client, uint64_t lease, std::vector<std::span<const std::byte>> chunks,
                   std::vector<uint64_t> checksums)
      : client_(client), lease_(lease), chunks_(std::move(chunks)), checksums_(std::move(checksums)) {}
  ~MappedChunksImpl() override { client_->ReleaseLease(lease_); }
  size_t size() const override { return chunks_.size(); }
  std::span<const std::byte> chunk(size_t i) const override { return chunks_[i]; }
  absl::Status Verify(size_t i) const override {
    if (ChunkChecksum(chunks_[i]) != checksums_[i]) {
      return absl::DataLossError(absl::StrCat("load: chunk ", i, " does not match its checksum"));
    }
    return absl::OkStatus();
  }

 private:
  ClientImpl* const client_;
  const uint64_t lease_;
  const std::vector<std::span<const std::byte>> chunks_;
  const std::vector<uint64_t> checksums_;
};

absl::StatusOr<std::unique_ptr<MappedChunks>> ClientImpl::LeaseMapped(
    const Namespace& ns, std::span<const ChunkKey> keys) {
  if (isolated()) {
    return absl::FailedPreconditionError(
        "lease-mapped: the node isolates tenants (--isolate_tenants) and shares no pool; "
        "use Load");
  }
  if (shm_base_ == nullptr) {
    return absl::FailedPreconditionError(
        "lease-mapped: the node's pool is not mapped (not on this host, or same_host off)");
  }
  if (keys.empty()) return absl::InvalidArgumentError("lease-mapped: no keys");
  absl::StatusOr<Leased> leased = Lease(ns, keys);
  if (!leased.ok()) return leased.status();
  std::vector<std::span<const std::byte>> chunks;
  for (uint64_t off : leased->offsets) chunks.emplace_back(shm_base_ + off, ns.chunk_bytes);
  return std::unique_ptr<MappedChunks>(
      new MappedChunksImpl(this, leased->lease, std::move(chunks), std::move(leased->checksums)));
}

absl::StatusOr<std::shared_ptr<Transfer>> ClientImpl::Load(
    const Namespace& ns, std::span<const ChunkKey> keys, std::span<std::byte> dest,
    std::function<void(uint32_t)> on_layer) {
  if (keys.empty()) return absl::InvalidArgumentError("load: no keys");
  if (dest.size() != keys.size() * ns.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("load: destination of ", dest.size(),
                                                   " bytes for ", keys.size(), " chunks of ",
                                                   ns.chunk_bytes, " bytes"));
  }
  std::vector<std::span<std::byte>> dests;
  for (size_t i = 0; i < keys.size(); ++i) {
    dests.push_back(dest.subspan(i * ns.chunk_bytes, ns.chunk_bytes));
  }
  return LoadChunks(ns, keys, dests, std::move(on_layer));
}

absl::StatusOr<std::shared_ptr<Transfer>> ClientImpl::LoadChunks(
    const Namespace& ns, std::span<const ChunkKey> keys,
    std::span<const std::span<std::byte>> dests_in, std::function<void(uint32_t)> on_layer) {
  if (keys.empty()) return absl::InvalidArgumentError("load: no keys");
  if (dests_in.size() != keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat("load: ", dests_in.size(),
                                                   " destinations for ", keys.size(), " chunks"));
  }
  for (const std::span<std::byte>& d : dests_in) {
    if (d.size() != ns.chunk_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("load: a destination of ", d.size(),
                                                     " bytes for a chunk of ", ns.chunk_bytes,
                                                     " bytes"));
    }
  }
  std::vector<std::span<std::byte>> dests(dests_in.begin(), dests_in.end());
  if (isolated()) return LoadIsolated(ns, keys, std::move(dests), std::move(on_layer));
  if (std::optional<std::vector<ReadIndexHit>> hits = FindLeaseFree(ns, keys)) {
    if (std::shared_ptr<TransferImpl> t =
            LoadLeaseFree(ns, keys, dests, on_layer, std::move(*hits))) {
      return std::shared_ptr<Transfer>(std::move(t));
    }
  }
  absl::StatusOr<Leased> leased = Lease(ns, keys);
  if (!leased.ok()) return leased.status();
  const uint64_t lease = leased->lease;
  std::vector<uint64_t> offsets = std::move(leased->offsets);
  const uint32_t layers = ns.spec.num_layers;
  const uint32_t n = static_cast<uint32_t>(keys.size());
  auto transfer = std::make_shared<TransferImpl>(this, layers, n, int64_t{layers} * n,
                                                 absl::Now() + options_.transfer_timeout);
  transfer->on_layer = std::move(on_layer);
  std::vector<uint64_t> checksums = leased->checksums;
  TransferImpl* t = transfer.get();
  // Out of the shared pool, each chunk's checksum is computed as it is
  // copied (CopyFromSharedPool); over UCX, here once every slice landed.
  std::shared_ptr<std::vector<uint64_t>> copied_sums;
  if (shm_base_ != nullptr) copied_sums = std::make_shared<std::vector<uint64_t>>(n);
  // Runs once every slice has landed (or failed): verify, release, finish.
  transfer->on_all_ops_done = [this, t, transfer, lease, dests, checksums,
                               copied_sums]() mutable {
    absl::Status status;
    {
      absl::MutexLock lock(&t->mu_);
      status = t->ops_status_;
    }
    for (size_t i = 0; status.ok() && i < checksums.size(); ++i) {
      const uint64_t sum = copied_sums != nullptr ? (*copied_sums)[i] : ChunkChecksum(dests[i]);
      if (sum != checksums[i]) {
        status = absl::DataLossError(absl::StrCat("load: chunk ", i, " does not match its checksum"));
      }
    }
    // The caller may go on as soon as the bytes are verified; the lease is
    // released behind it.
    t->Finish(status);
    ReleaseLease(lease);
    transfer.reset();  // drop the self-reference held by this job
  };
  if (shm_base_ != nullptr) {
    CopyFromSharedPool(t, std::move(dests), std::move(offsets), layers, ns.layer_bytes,
                       copied_sums);
    t->OpDone(layers, absl::OkStatus());  // the +1 guard
    return std::shared_ptr<Transfer>(transfer);
  }
  // Post layer by layer, so that layer 0 of every chunk is requested first.
  absl::Status post_error;
  {
    absl::MutexLock lock(&ep_mu_);
    post_error = EnsureEndpoint();
    for (uint32_t l = 0; l < layers; ++l) {
      for (uint32_t c = 0; c < n; ++c) {
        if (!post_error.ok()) {
          t->OpDone(l, post_error);
          continue;
        }
        std::span<std::byte> local = dests[c].subspan(l * ns.layer_bytes, ns.layer_bytes);
        const uint64_t remote = leased->addresses[c] + l * ns.layer_bytes;
        post_error = endpoint_->PostGet(local, *remote_, remote,
                                        [t, l](absl::Status s) { t->OpDone(l, s); });
        if (!post_error.ok()) {
          if (post_error.code() == absl::StatusCode::kUnavailable) broken_ = true;
          t->OpDone(l, post_error);
        }
      }
    }
  }
  t->OpDone(layers, absl::OkStatus());  // the +1 guard: everything is posted
  return std::shared_ptr<Transfer>(transfer);
}

transport::MessageTarget ClientImpl::OnDataMessage(std::span<const std::byte> header,
                                                   size_t bytes) {
  std::optional<proto::DataMessage> m = proto::DataMessage::Decode(header);
  if (!m.has_value() || m->kind != proto::DataMessage::Kind::kGetSlice) return {};
  absl::MutexLock lock(&in_mu_);
  auto it = inbound_.find(m->id);
  if (it == inbound_.end()) return {};
  const InboundLoad& in = it->second;
  if (m->index >= in.chunks || m->layer >= in.layers || bytes != in.layer_bytes) return {};
  transport::MessageTarget target;
  target.dest = in.dests[m->index].subspan(m->layer * in.layer_bytes, in.layer_bytes);
  target.done = [t = in.transfer, layer = m->layer](absl::Status s) { t->OpDone(layer, s); };
  return target;
}

absl::StatusOr<std::shared_ptr<Transfer>> ClientImpl::LoadIsolated(
    const Namespace& ns, std::span<const ChunkKey> keys, std::vector<std::span<std::byte>> dests,
    std::function<void(uint32_t)> on_layer) {
  if (node_restarted()) return RestartedError("get");
  pb::GetRequest req;
  req.set_client_id(client_id_);
  req.set_namespace_id(ns.id);
  req.set_lease_ms(LeaseMs());
  const uint32_t layers = ns.spec.num_layers;
  const uint32_t n = static_cast<uint32_t>(keys.size());
  auto transfer = std::make_shared<TransferImpl>(this, layers, n, int64_t{layers} * n,
                                                 absl::Now() + options_.transfer_timeout);
  transfer->on_layer = std::move(on_layer);
  const uint64_t id = next_transfer_id_.fetch_add(1);
  {
    absl::MutexLock lock(&in_mu_);
    inbound_[id] = InboundLoad{transfer, dests, ns.layer_bytes, n, layers};
  }
  auto forget = [this, id] {
    absl::MutexLock lock(&in_mu_);
    inbound_.erase(id);
  };
  req.set_transfer_id(id);
  for (const ChunkKey& k : keys) req.add_keys(KeyBytes(k));
  const std::vector<uint64_t> carried = TakeReleases();
  for (uint64_t lease : carried) req.add_release_lease_ids(lease);
  pb::GetResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  absl::Status rpc = RestartedOr("get", FromGrpcStatus(stub_->Get(&ctx, req, &resp)));
  if (!rpc.ok()) {
    forget();
    return rpc;
  }
  if (NodeRestarted(resp.node_incarnation())) {
    // A restarted node: it knows neither this client's attachment nor the
    // transfer, so nothing will arrive.
    forget();
    return RestartedError("get");
  }
  if (static_cast<size_t>(resp.chunks_size()) != keys.size() || !resp.released()) {
    forget();
    return absl::InternalError("get: malformed response of an isolated node");
  }
  std::vector<uint64_t> checksums;
  for (const pb::ChunkLocation& c : resp.chunks()) checksums.push_back(c.checksum());
  TransferImpl* t = transfer.get();
  transfer->on_all_ops_done = [this, t, transfer, dests = std::move(dests), checksums,
                               forget]() mutable {
    forget();  // late or repeated messages for this transfer are dropped
    absl::Status status;
    {
      absl::MutexLock lock(&t->mu_);
      status = t->ops_status_;
    }
    for (size_t i = 0; status.ok() && i < checksums.size(); ++i) {
      if (ChunkChecksum(dests[i]) != checksums[i]) {
        status = absl::DataLossError(absl::StrCat("load: chunk ", i, " does not match its checksum"));
      }
    }
    t->Finish(status);
    transfer.reset();
  };
  t->OpDone(layers, absl::OkStatus());  // the +1 guard: the node sends the rest
  return std::shared_ptr<Transfer>(transfer);
}

absl::StatusOr<std::shared_ptr<Transfer>> ClientImpl::Save(const Namespace& ns,
                                                           std::span<const ChunkKey> keys,
                                                           std::span<const std::byte> src,
                                                           std::optional<ChunkKey> parent) {
  if (keys.empty()) return absl::InvalidArgumentError("save: no keys");
  if (src.size() != keys.size() * ns.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("save: source of ", src.size(), " bytes for ",
                                                   keys.size(), " chunks of ", ns.chunk_bytes,
                                                   " bytes"));
  }
  std::vector<std::optional<ChunkKey>> parents;
  std::vector<std::span<const std::byte>> srcs;
  for (size_t i = 0; i < keys.size(); ++i) {
    parents.push_back(i > 0 ? std::optional<ChunkKey>(keys[i - 1]) : parent);
    srcs.push_back(src.subspan(i * ns.chunk_bytes, ns.chunk_bytes));
  }
  return SaveChunks(ns, keys, parents, srcs);
}

absl::StatusOr<std::shared_ptr<Transfer>> ClientImpl::SaveChunks(
    const Namespace& ns, std::span<const ChunkKey> keys,
    std::span<const std::optional<ChunkKey>> parents,
    std::span<const std::span<const std::byte>> srcs_in) {
  if (keys.empty()) return absl::InvalidArgumentError("save: no keys");
  if (parents.size() != keys.size() || srcs_in.size() != keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat("save: ", keys.size(), " keys with ",
                                                   parents.size(), " parents and ",
                                                   srcs_in.size(), " sources"));
  }
  for (const std::span<const std::byte>& s : srcs_in) {
    if (s.size() != ns.chunk_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("save: a source of ", s.size(),
                                                     " bytes for a chunk of ", ns.chunk_bytes,
                                                     " bytes"));
    }
  }
  if (node_restarted()) return RestartedError("put");
  std::vector<std::span<const std::byte>> srcs(srcs_in.begin(), srcs_in.end());
  pb::PutBeginRequest req;
  req.set_client_id(client_id_);
  req.set_namespace_id(ns.id);
  req.set_lease_ms(LeaseMs());
  for (size_t i = 0; i < keys.size(); ++i) {
    pb::PutItem* item = req.add_items();
    item->set_key(KeyBytes(keys[i]));
    if (parents[i]) item->set_parent_key(KeyBytes(*parents[i]));
  }
  pb::PutBeginResponse resp;
  {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    RETURN_IF_ERROR(RestartedOr("put", FromGrpcStatus(stub_->PutBegin(&ctx, req, &resp))));
  }
  const uint64_t lease = resp.lease_id();
  if (NodeRestarted(resp.node_incarnation())) {
    // The slots are in the new node's pool, which this client never imported
    // (nor attached to, when isolated): give the write lease back at once
    // instead of leaving its slots reserved until it expires.
    AbortPut(lease);
    return RestartedError("put");
  }
  if (static_cast<size_t>(resp.slots_size()) != keys.size()) {
    return absl::InternalError("put: the node returned a different number of slots");
  }
  std::vector<uint32_t> to_write;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    if (!resp.slots(i).already_present()) to_write.push_back(i);
  }
  auto transfer = std::make_shared<TransferImpl>(this, 0, 0, to_write.size(),
                                                 absl::Now() + options_.transfer_timeout);
  TransferImpl* t = transfer.get();
  transfer->on_all_ops_done = [this, t, transfer, lease, srcs]() mutable {
    absl::Status status;
    {
      absl::MutexLock lock(&t->mu_);
      status = t->ops_status_;
    }
    if (status.ok()) {
      pb::PutCommitRequest commit;
      commit.set_client_id(client_id_);
      commit.set_lease_id(lease);
      for (const std::span<const std::byte>& s : srcs) commit.add_checksums(ChunkChecksum(s));
      pb::PutCommitResponse out;
      grpc::ClientContext ctx;
      Prepare(&ctx);
      status = RestartedOr("put", FromGrpcStatus(stub_->PutCommit(&ctx, commit, &out)));
    } else {
      AbortPut(lease);
    }
    t->Finish(status);
    transfer.reset();
  };
  absl::Status post_error;
  {
    absl::MutexLock lock(&ep_mu_);
    post_error = EnsureEndpoint();
    proto::DataMessage m;
    m.kind = proto::DataMessage::Kind::kPutChunk;
    m.id = lease;
    m.client_id = client_id_;
    for (uint32_t i : to_write) {
      if (isolated()) {  // the node copies it into slot i of the lease
        if (post_error.ok()) {
          m.index = i;
          const std::string header = m.Encode();
          post_error = endpoint_->PostSend(std::as_bytes(std::span(header)),
                                           srcs[i], [t](absl::Status s) { t->OpDone(0, s); });
          if (post_error.code() == absl::StatusCode::kUnavailable) broken_ = true;
        }
        if (!post_error.ok()) t->OpDone(0, post_error);
        continue;
      }
      const pb::PutSlot& slot = resp.slots(i);
      if (post_error.ok() && slot.size() != ns.chunk_bytes) {
        post_error = absl::InternalError("put: the node returned a slot of the wrong size");
      }
      if (!post_error.ok()) {
        t->OpDone(0, post_error);
        continue;
      }
      post_error = endpoint_->PostPut(srcs[i], *remote_,
                                      slot.address(), [t](absl::Status s) { t->OpDone(0, s); });
      if (!post_error.ok()) {
        if (post_error.code() == absl::StatusCode::kUnavailable) broken_ = true;
        t->OpDone(0, post_error);
      }
    }
  }
  t->OpDone(0, absl::OkStatus());  // the +1 guard
  return std::shared_ptr<Transfer>(transfer);
}

absl::Status ClientImpl::Hint(const Namespace& ns, std::string_view scheduler_id,
                              std::span<const HintJob> jobs, absl::Duration ttl) {
  pb::HintRequest req;
  req.set_scheduler_id(std::string(scheduler_id));
  req.set_namespace_id(ns.id);
  req.set_ttl_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(ttl)));
  for (const HintJob& job : jobs) {
    pb::HintJob* j = req.add_jobs();
    j->set_last_key(KeyBytes(job.last_key));
    j->set_queue_position(job.queue_position);
    if (job.expected_start != absl::InfinitePast()) {
      j->set_expected_start_unix_ms(absl::ToUnixMillis(job.expected_start));
    }
  }
  pb::HintResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return FromGrpcStatus(stub_->Hint(&ctx, req, &resp));
}

absl::StatusOr<std::map<std::string, uint64_t>> ClientImpl::Stats() {
  pb::StatsResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Stats(&ctx, pb::StatsRequest(), &resp)));
  std::map<std::string, uint64_t> stats(resp.values().begin(), resp.values().end());
  const ClientCounters mine = counters();
  stats["client_lease_free_loads"] = mine.lease_free_loads;
  stats["client_lease_free_fallbacks"] = mine.lease_free_fallbacks;
  return stats;
}

absl::Status ClientImpl::Health() {
  pb::HealthResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Health(&ctx, pb::HealthRequest(), &resp)));
  if (!resp.serving()) return absl::UnavailableError("the node is shutting down");
  if (!resp.persisting() && !resp.detail().empty()) {
    return absl::FailedPreconditionError(resp.detail());
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ClientImpl::RemoveNamespace(const NamespaceSpec& spec,
                                                     std::string_view tenant) {
  pb::RemoveNamespaceRequest req;
  *req.mutable_spec() = SpecToProto(spec);
  req.set_tenant(std::string(tenant));
  pb::RemoveNamespaceResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  RETURN_IF_ERROR(FromGrpcStatus(stub_->RemoveNamespace(&ctx, req, &resp)));
  return resp.chunks_removed();
}

// One connection to one incarnation of the node.
absl::StatusOr<std::unique_ptr<Client>> ConnectOnce(const ClientOptions& options) {
  auto client = std::make_unique<ClientImpl>(options);
  RETURN_IF_ERROR(client->Init());
  return std::unique_ptr<Client>(std::move(client));
}

}  // namespace

absl::Status RenameOptions(const absl::Status& status,
                           std::span<const std::pair<std::string_view, std::string_view>> names) {
  if (status.ok() || names.empty()) return status;
  const absl::string_view message = status.message();
  auto word_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  };
  std::string out;
  size_t i = 0;
  while (i < message.size()) {
    bool replaced = false;
    if (i == 0 || !word_char(message[i - 1])) {
      for (const auto& [from, to] : names) {
        const absl::string_view name(from.data(), from.size());
        if (!name.empty() && message.substr(i, name.size()) == name &&
            (i + name.size() == message.size() || !word_char(message[i + name.size()]))) {
          out.append(to.data(), to.size());
          i += name.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.push_back(message[i++]);
  }
  return absl::Status(status.code(), out);
}

absl::Status CheckServerAddress(std::string_view address_view) {
  // absl::string_view: Debian's Abseil does not take std::string_view.
  const absl::string_view address(address_view.data(), address_view.size());
  const std::string quoted = absl::StrCat("'", address, "'");
  constexpr char kForm[] = "expected host:port, e.g. 127.0.0.1:7400";
  if (address.empty()) return absl::InvalidArgumentError(absl::StrCat("empty; ", kForm));
  absl::string_view host, port;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has an unbalanced '['; ", kForm));
    }
    host = address.substr(1, close - 1);
    if (close + 1 >= address.size() || address[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has no port; ", kForm));
    }
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has no port; ", kForm));
    }
    if (address.find(':') != colon) {
      return absl::InvalidArgumentError(absl::StrCat(
          quoted, " is ambiguous; ", kForm, " (an IPv6 host in brackets: [::1]:7400)"));
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat(quoted, " has no host; ", kForm));
  if (port.empty()) return absl::InvalidArgumentError(absl::StrCat(quoted, " has no port; ", kForm));
  int value = 0;
  if (!std::all_of(port.begin(), port.end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      port.size() > 5 || !absl::SimpleAtoi(port, &value) || value < 1 || value > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted, ": port '", port, "' is not 1..65535; ", kForm));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (absl::Status s = CheckServerAddress(options.server_address); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("server_address ", s.message()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Client> first, ConnectOnce(options));
  if (!options.reconnect) return first;
  return NewReconnectingClient(options, std::move(first), ConnectOnce);
}

}  // namespace strata::client
