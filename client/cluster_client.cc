#include "client/cluster_client.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "store/cluster/etcd_membership.h"
#include "store/cluster/placement.h"
#include "store/common/log.h"

namespace strata::client {
namespace {

using cluster::MembershipView;
using cluster::NodeRecord;

constexpr uint32_t kMaxReplicas = 16;

bool NodeDown(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

// Runs every job at once (the first on the calling thread) and returns when
// all have returned.
void RunConcurrently(std::vector<std::function<void()>> jobs) {
  std::vector<std::thread> threads;
  for (size_t i = 1; i < jobs.size(); ++i) threads.emplace_back(std::move(jobs[i]));
  if (!jobs.empty()) jobs[0]();
  for (std::thread& t : threads) t.join();
}

// A load or save made of per-node parts. Each part is opened with Begin()
// and closed with End() once its node's transfer settled; the creator holds
// one more Begin() until every part is started.
class ClusterTransferImpl final : public ClusterTransfer {
 public:
  enum class Kind { kLoad, kSave };

  ClusterTransferImpl(Kind kind, size_t chunks, uint32_t layers,
                      std::function<void(uint32_t)> on_layer)
      : kind_(kind),
        chunks_(chunks),
        layers_(layers),
        on_layer_(std::move(on_layer)),
        layer_remaining_(layers, chunks),
        commits_(chunks, 0) {}

  absl::Status Wait() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ClusterTransferImpl* t)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) { return t->pending_ == 0; },
        this));
    return status_;
  }

  absl::Status WaitLayer(uint32_t layer) override {
    absl::MutexLock lock(&mu_);
    if (kind_ != Kind::kLoad || layer >= layers_) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " out of range"));
    }
    auto ready = [this, layer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return layer_remaining_[layer] == 0 || !first_error_.ok() || pending_ == 0;
    };
    mu_.Await(absl::Condition(&ready));
    if (!first_error_.ok()) return first_error_;
    if (pending_ == 0 && !status_.ok()) return status_;
    return absl::OkStatus();
  }

  bool done() const override {
    absl::MutexLock lock(&mu_);
    return pending_ == 0;
  }

  std::vector<size_t> missing() const override {
    absl::MutexLock lock(&mu_);
    return std::vector<size_t>(missing_.begin(), missing_.end());
  }

  void Begin() {
    absl::MutexLock lock(&mu_);
    ++pending_;
  }

  void End() {
    absl::MutexLock lock(&mu_);
    if (--pending_ > 0) return;
    if (kind_ == Kind::kSave) {
      for (size_t i = 0; i < chunks_; ++i) {
        if (commits_[i] == 0) missing_.insert(i);
      }
      if (!missing_.empty() && first_error_.ok()) {
        first_error_ = absl::UnavailableError("no live replica took the chunk");
      }
    }
    if (!missing_.empty()) {
      status_ =
          absl::Status(first_error_.code(),
                       absl::StrCat(missing_.size(), " of ", chunks_, " chunks not ",
                                    kind_ == Kind::kLoad ? "loaded" : "saved", " (first: chunk ",
                                    *missing_.begin(), "): ", first_error_.message()));
    }
  }

  // Layer `layer` of `chunks` more chunks arrived. Reports every layer, in
  // order, whose chunks have all arrived while nothing failed.
  void Credit(uint32_t layer, size_t chunks) {
    absl::MutexLock report(&report_mu_);
    std::vector<uint32_t> ready;
    {
      absl::MutexLock lock(&mu_);
      if (layer >= layers_) return;
      layer_remaining_[layer] -= std::min(layer_remaining_[layer], chunks);
      while (next_report_ < layers_ && layer_remaining_[next_report_] == 0 && first_error_.ok()) {
        ready.push_back(next_report_++);
      }
    }
    if (on_layer_) {
      for (uint32_t l : ready) on_layer_(l);
    }
  }

  // `chunks` will not arrive (load) or were not committed on one replica
  // (save), because of `status`.
  void Fail(std::span<const size_t> chunks, const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (first_error_.ok()) first_error_ = status;
    if (kind_ == Kind::kLoad) missing_.insert(chunks.begin(), chunks.end());
  }

  // Save: `chunks` were committed on one more replica.
  void Committed(std::span<const size_t> chunks) {
    absl::MutexLock lock(&mu_);
    for (size_t i : chunks) ++commits_[i];
  }

 private:
  const Kind kind_;
  const size_t chunks_;
  const uint32_t layers_;
  const std::function<void(uint32_t)> on_layer_;
  // Serializes on_layer calls so that layers are reported in order.
  absl::Mutex report_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::vector<size_t> layer_remaining_ ABSL_GUARDED_BY(mu_);
  uint32_t next_report_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint32_t> commits_ ABSL_GUARDED_BY(mu_);
  int64_t pending_ ABSL_GUARDED_BY(mu_) = 1;  // the creator's
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  std::set<size_t> missing_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// Which layers of one node's part of a load were reported to the transfer
// (so that a retry elsewhere only checks them, never rewrites them).
struct PartLayers {
  explicit PartLayers(uint32_t layers) : credited(layers, false) {}
  absl::Mutex mu;
  std::vector<bool> credited ABSL_GUARDED_BY(mu);
};

// Detached threads that wait for node transfers; the client's destructor
// waits until none is left. Shared with the threads, so that the last one
// may unlock after the client is gone.
struct Waiters {
  absl::Mutex mu;
  int64_t running ABSL_GUARDED_BY(mu) = 0;
};

class ClusterClientImpl final : public ClusterClient {
 public:
  ClusterClientImpl(const ClusterClientOptions& options,
                    std::unique_ptr<cluster::Membership> membership)
      : options_(options), membership_(std::move(membership)), hot_(options.hot) {}

  ~ClusterClientImpl() override {
    absl::MutexLock lock(&waiters_->mu);
    waiters_->mu.Await(absl::Condition(
        +[](Waiters* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu) { return w->running == 0; },
        waiters_.get()));
  }

  MembershipView View() const override { return membership_->Snapshot(); }
  std::vector<ClusterMember> Members() override;
  absl::StatusOr<ClusterNamespace> RegisterNamespace(const NamespaceSpec& spec,
                                                     std::string_view tenant,
                                                     uint32_t replicas) override;
  std::vector<std::string> Replicas(const ClusterNamespace& ns, const ChunkKey& key) override;
  absl::StatusOr<ClusterLookupResult> Lookup(const ClusterNamespace& ns,
                                             std::span<const ChunkKey> keys) override;
  absl::StatusOr<std::shared_ptr<ClusterTransfer>> Load(
      const ClusterNamespace& ns, std::span<const ChunkKey> keys, std::span<std::byte> dest,
      std::function<void(uint32_t)> on_layer) override;
  absl::StatusOr<std::shared_ptr<ClusterTransfer>> Save(const ClusterNamespace& ns,
                                                        std::span<const ChunkKey> keys,
                                                        std::span<const std::byte> src,
                                                        std::optional<ChunkKey> parent) override;
  absl::Status Hint(const ClusterNamespace& ns, std::string_view scheduler_id,
                    std::span<const ClusterHintJob> jobs, absl::Duration ttl) override;
  std::map<std::string, uint64_t> Stats() const override;
  std::map<std::string, absl::StatusOr<std::map<std::string, uint64_t>>> NodeStats() override;
  std::map<std::string, absl::Status> NodeHealth() override;

 private:
  // A member and this client's connection to it (one incarnation).
  struct NodeConn {
    NodeRecord record;
    std::shared_ptr<Client> client;                       // null until first use
    absl::flat_hash_map<uint32_t, Namespace> namespaces;  // on `client`, by handle
    absl::Time suspect_until = absl::InfinitePast();
  };
  struct NodeHandle {
    std::shared_ptr<Client> client;
    Namespace ns;
  };

  // The current view; brings nodes_ up to it (a member that left or
  // restarted loses its connection).
  MembershipView Refresh();
  bool Suspect(const std::string& id);
  // The node's client, connected, with namespace `handle` registered on it
  // (handle < 0: none).
  absl::StatusOr<NodeHandle> Node(const std::string& id, int64_t handle);
  // `client` of node `id` failed with `status`: a node that looks down is
  // skipped for suspect_for and reconnected after.
  void NodeFailed(const std::string& id, const std::shared_ptr<Client>& client,
                  const absl::Status& status);
  // The live nodes (not suspect) among the `count` best of `key`, best first.
  std::vector<std::string> LiveReplicas(const ChunkKey& key, const std::vector<std::string>& ids,
                                        size_t count);
  // How many nodes hold `key` now: R, plus the extra replicas while it is hot.
  size_t ReplicaCount(const ClusterNamespace& ns, bool hot) const {
    return ns.replicas + (hot ? options_.hot_extra_replicas : 0);
  }
  // Copies hot chunks (key, verified bytes) that node `served_by` sent to
  // their other replicas (those that hold them already move no bytes).
  void CopyHot(const ClusterNamespace& ns, const std::string& served_by,
               const std::vector<std::pair<ChunkKey, std::vector<std::byte>>>& copies);
  // Loads `chunks` (indices into keys) from node `id`; on failure, from
  // their next candidates; fails for t what none can serve.
  void LoadFrom(const std::shared_ptr<ClusterTransferImpl>& t, const ClusterNamespace& ns,
                std::span<const ChunkKey> keys, std::span<std::byte> dest,
                const std::vector<std::vector<std::string>>& candidates,
                const std::vector<bool>& hot, const std::string& id, std::vector<size_t> chunks,
                bool may_look_up);
  // A part of load `t` failed after its Get (`status`): loads its chunks
  // (indices `chunks` into the load's keys; their keys `keys` and
  // destinations `dests`) from their next live replicas (`next`, per chunk)
  // into scratch memory, checks the layers the failed part already reported
  // against them, and copies the rest. Fails for t what none can serve.
  void Recover(const std::shared_ptr<ClusterTransferImpl>& t, const ClusterNamespace& ns,
               const std::vector<size_t>& chunks, const std::vector<ChunkKey>& keys,
               const std::vector<std::span<std::byte>>& dests,
               const std::vector<std::vector<std::string>>& next, const std::vector<bool>& credited,
               absl::Status status);
  // One retry of Recover on node `id` for the part's chunks `js`.
  absl::Status LoadVerified(const std::shared_ptr<ClusterTransferImpl>& t,
                            const ClusterNamespace& ns, const std::string& id,
                            const std::vector<size_t>& js, const std::vector<size_t>& chunks,
                            const std::vector<ChunkKey>& keys,
                            const std::vector<std::span<std::byte>>& dests,
                            const std::vector<bool>& credited);
  void StartWaiter(std::function<void()> job);

  const ClusterClientOptions options_;
  const std::unique_ptr<cluster::Membership> membership_;
  const std::shared_ptr<Waiters> waiters_ = std::make_shared<Waiters>();
  mutable HotChunks hot_;

  absl::Mutex mu_;
  uint64_t seen_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool seen_current_ ABSL_GUARDED_BY(mu_) = true;
  std::map<std::string, NodeConn> nodes_ ABSL_GUARDED_BY(mu_);
  // Clients of nodes that left, restarted or failed: kept until this client
  // goes, so that no node client is destroyed on one of its own threads.
  std::vector<std::shared_ptr<Client>> retired_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<NamespaceSpec, std::string>> namespaces_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> node_errors_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> chunks_missing_{0};
  std::atomic<uint64_t> replica_writes_failed_{0};
  std::atomic<uint64_t> loads_{0};
  std::atomic<uint64_t> saves_{0};
  std::atomic<uint64_t> lookups_{0};
  std::atomic<uint64_t> hint_nodes_failed_{0};
  std::atomic<uint64_t> hot_copies_{0};
};

MembershipView ClusterClientImpl::Refresh() {
  MembershipView view = membership_->Snapshot();
  absl::MutexLock lock(&mu_);
  if (view.current != seen_current_) {
    seen_current_ = view.current;
    if (view.current) {
      LogInfo("strata cluster client: membership current again (version %llu, %zu nodes)",
              static_cast<unsigned long long>(view.version), view.nodes.size());
    } else {
      LogInfo(
          "strata cluster client: membership cannot be refreshed; routing on the last view "
          "(version %llu, %zu nodes)",
          static_cast<unsigned long long>(view.version), view.nodes.size());
    }
  }
  if (view.version == seen_version_) return view;
  seen_version_ = view.version;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    const NodeRecord* now = view.Find(it->first);
    if (now == nullptr || now->grpc_address != it->second.record.grpc_address ||
        now->start_unix_ms != it->second.record.start_unix_ms) {
      if (it->second.client != nullptr) retired_.push_back(std::move(it->second.client));
      it = nodes_.erase(it);
    } else {
      it->second.record = *now;
      ++it;
    }
  }
  for (const NodeRecord& r : view.nodes) {
    if (!nodes_.contains(r.node_id)) nodes_[r.node_id].record = r;
  }
  return view;
}

bool ClusterClientImpl::Suspect(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(id);
  return it == nodes_.end() || it->second.suspect_until > absl::Now();
}

absl::StatusOr<ClusterClientImpl::NodeHandle> ClusterClientImpl::Node(const std::string& id,
                                                                      int64_t handle) {
  NodeRecord record;
  NodeHandle out;
  bool have_ns = false;
  std::pair<NamespaceSpec, std::string> reg;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) {
      return absl::UnavailableError(absl::StrCat("node ", id, " left the cluster"));
    }
    record = it->second.record;
    out.client = it->second.client;
    if (handle >= 0) {
      reg = namespaces_[handle];
      auto ns = it->second.namespaces.find(handle);
      if (ns != it->second.namespaces.end()) {
        out.ns = ns->second;
        have_ns = true;
      }
    }
  }
  if (out.client == nullptr) {
    ClientOptions o = options_.node;
    o.server_address = record.grpc_address;
    // A node that restarts is a new member here (its chunks may be gone):
    // its failures route to replicas, and it is connected anew next time.
    o.reconnect = false;
    auto connected = Client::Connect(o);
    if (!connected.ok()) {
      NodeFailed(id, nullptr, connected.status());
      return connected.status();
    }
    std::shared_ptr<Client> fresh = *std::move(connected);
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end() || it->second.record != record) {
      retired_.push_back(std::move(fresh));
      return absl::UnavailableError(absl::StrCat("node ", id, " left the cluster"));
    }
    if (it->second.client != nullptr) {  // another call connected first
      retired_.push_back(std::move(fresh));
    } else {
      it->second.client = std::move(fresh);
      it->second.namespaces.clear();
    }
    out.client = it->second.client;
    if (handle >= 0) {
      auto ns = it->second.namespaces.find(handle);
      have_ns = ns != it->second.namespaces.end();
      if (have_ns) out.ns = ns->second;
    }
  }
  if (handle >= 0 && !have_ns) {
    auto ns = out.client->RegisterNamespace(reg.first, reg.second);
    if (!ns.ok()) {
      NodeFailed(id, out.client, ns.status());
      return ns.status();
    }
    out.ns = *ns;
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(id);
    if (it != nodes_.end() && it->second.client == out.client) {
      it->second.namespaces[handle] = out.ns;
    }
  }
  return out;
}

void ClusterClientImpl::NodeFailed(const std::string& id, const std::shared_ptr<Client>& client,
                                   const absl::Status& status) {
  ++node_errors_;
  if (!NodeDown(status)) return;
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return;
  const absl::Time now = absl::Now();
  if (it->second.suspect_until <= now) {
    LogInfo("strata cluster client: node %s (%s) failed: %s; skipped for %s", id.c_str(),
            it->second.record.grpc_address.c_str(), status.ToString().c_str(),
            absl::FormatDuration(options_.suspect_for).c_str());
  }
  it->second.suspect_until = now + options_.suspect_for;
  // Reconnect next time (the node may have restarted behind the address).
  if (it->second.client != nullptr && (client == nullptr || it->second.client == client)) {
    retired_.push_back(std::move(it->second.client));
    it->second.client = nullptr;
    it->second.namespaces.clear();
  }
}

std::vector<std::string> ClusterClientImpl::LiveReplicas(const ChunkKey& key,
                                                         const std::vector<std::string>& ids,
                                                         size_t count) {
  std::vector<std::string> out;
  for (size_t i : cluster::PlaceReplicas(key, ids, count)) {
    if (!Suspect(ids[i])) out.push_back(ids[i]);
  }
  return out;
}

void ClusterClientImpl::StartWaiter(std::function<void()> job) {
  {
    absl::MutexLock lock(&waiters_->mu);
    ++waiters_->running;
  }
  std::thread([waiters = waiters_, job = std::move(job)] {
    job();
    absl::MutexLock lock(&waiters->mu);
    --waiters->running;
  }).detach();
}

std::vector<ClusterMember> ClusterClientImpl::Members() {
  const MembershipView view = Refresh();
  std::vector<ClusterMember> out;
  for (const NodeRecord& r : view.nodes) out.push_back({r, Suspect(r.node_id)});
  return out;
}

absl::StatusOr<ClusterNamespace> ClusterClientImpl::RegisterNamespace(const NamespaceSpec& spec,
                                                                      std::string_view tenant,
                                                                      uint32_t replicas) {
  if (replicas < 1 || replicas > kMaxReplicas) {
    return absl::InvalidArgumentError(
        absl::StrCat("replicas ", replicas, ": want 1 to ", kMaxReplicas));
  }
  auto chain = KeyChain::Create(
      spec,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(tenant.data()), tenant.size()));
  if (!chain.ok()) return chain.status();
  ClusterNamespace ns;
  ns.spec = spec;
  ns.tenant = std::string(tenant);
  ns.replicas = replicas;
  const ChunkLayout layout(spec);
  ns.chunk_bytes = layout.chunk_bytes();
  ns.layer_bytes = layout.layer_bytes();
  ns.chain = *std::move(chain);
  {
    absl::MutexLock lock(&mu_);
    auto it = std::find(namespaces_.begin(), namespaces_.end(),
                        std::make_pair(spec, std::string(tenant)));
    ns.handle = static_cast<uint32_t>(it - namespaces_.begin());
    if (it == namespaces_.end()) namespaces_.emplace_back(spec, std::string(tenant));
  }
  const MembershipView view = Refresh();
  std::vector<absl::Status> results(view.nodes.size());
  std::vector<std::function<void()>> jobs;
  for (size_t i = 0; i < view.nodes.size(); ++i) {
    if (Suspect(view.nodes[i].node_id)) continue;
    jobs.push_back([this, &view, &results, &ns, i] {
      results[i] = Node(view.nodes[i].node_id, ns.handle).status();
    });
  }
  RunConcurrently(std::move(jobs));
  for (const absl::Status& s : results) {
    if (!s.ok() && !NodeDown(s)) return s;  // the node refuses the namespace
  }
  return ns;
}

std::vector<std::string> ClusterClientImpl::Replicas(const ClusterNamespace& ns,
                                                     const ChunkKey& key) {
  const std::vector<std::string> ids = Refresh().NodeIds();
  std::vector<std::string> out;
  for (size_t i : cluster::PlaceReplicas(key, ids, ns.replicas)) out.push_back(ids[i]);
  return out;
}

absl::StatusOr<ClusterLookupResult> ClusterClientImpl::Lookup(const ClusterNamespace& ns,
                                                              std::span<const ChunkKey> keys) {
  ++lookups_;
  const std::vector<std::string> ids = Refresh().NodeIds();
  // Per key its live replicas; per node the keys it is asked about.
  std::vector<std::vector<std::string>> replicas(keys.size());
  std::map<std::string, std::vector<size_t>> asked;
  for (size_t i = 0; i < keys.size(); ++i) {
    replicas[i] = LiveReplicas(keys[i], ids, ReplicaCount(ns, hot_.IsHot(keys[i])));
    for (const std::string& id : replicas[i]) asked[id].push_back(i);
  }
  struct Answer {
    std::vector<size_t> chunks;
    absl::StatusOr<LookupResult> result = absl::UnknownError("not asked");
  };
  std::map<std::string, Answer> answers;
  for (auto& [id, chunks] : asked) answers[id].chunks = chunks;
  std::vector<std::function<void()>> jobs;
  for (auto& [id, answer] : answers) {
    jobs.push_back([this, &ns, keys, id = id, a = &answer] {
      auto node = Node(id, ns.handle);
      if (!node.ok()) {
        a->result = node.status();
        return;
      }
      std::vector<ChunkKey> sub;
      for (size_t i : a->chunks) sub.push_back(keys[i]);
      a->result = node->client->Lookup(node->ns, sub);
      if (!a->result.ok()) NodeFailed(id, node->client, a->result.status());
    });
  }
  RunConcurrently(std::move(jobs));
  // Per node, the tier of each key it was asked about.
  std::map<std::string, absl::flat_hash_map<size_t, Tier>> tiers;
  ClusterLookupResult out;
  for (auto& [id, a] : answers) {
    if (!a.result.ok()) {
      out.unreachable.push_back(id);
      continue;
    }
    for (size_t j = 0; j < a.chunks.size(); ++j) tiers[id][a.chunks[j]] = a.result->tiers[j];
  }
  out.tiers.assign(keys.size(), Tier::kMissing);
  out.holders.assign(keys.size(), "");
  out.prefix_chunks = keys.size();
  for (size_t i = 0; i < keys.size(); ++i) {
    for (const std::string& id : replicas[i]) {
      auto node = tiers.find(id);
      if (node == tiers.end()) continue;
      const Tier t = node->second[i];
      if (t == Tier::kMissing) continue;
      if (out.holders[i].empty()) out.holders[i] = id;
      if (out.tiers[i] == Tier::kMissing || t == Tier::kDram) out.tiers[i] = t;
    }
    if (out.tiers[i] == Tier::kMissing && out.prefix_chunks == keys.size()) out.prefix_chunks = i;
  }
  return out;
}

void ClusterClientImpl::LoadFrom(const std::shared_ptr<ClusterTransferImpl>& t,
                                 const ClusterNamespace& ns, std::span<const ChunkKey> keys,
                                 std::span<std::byte> dest,
                                 const std::vector<std::vector<std::string>>& candidates,
                                 const std::vector<bool>& hot, const std::string& id,
                                 std::vector<size_t> chunks, bool may_look_up) {
  std::vector<ChunkKey> sub;
  std::vector<std::span<std::byte>> dests;
  for (size_t i : chunks) {
    sub.push_back(keys[i]);
    dests.push_back(dest.subspan(i * ns.chunk_bytes, ns.chunk_bytes));
  }
  absl::Status status;
  std::vector<size_t> elsewhere = chunks;  // what goes to the next replicas
  auto node = Node(id, ns.handle);
  if (node.ok()) {
    t->Begin();
    auto layers = std::make_shared<PartLayers>(ns.spec.num_layers);
    auto part =
        node->client->LoadChunks(node->ns, sub, dests, [t, layers, n = chunks.size()](uint32_t l) {
          {
            absl::MutexLock lock(&layers->mu);
            if (l < layers->credited.size()) {
              layers->credited[l] = true;
            }
          }
          t->Credit(l, n);
        });
    if (part.ok()) {
      // Per chunk, the replicas after this one (for a failure mid-transfer).
      std::vector<std::vector<std::string>> next(chunks.size());
      for (size_t j = 0; j < chunks.size(); ++j) {
        const std::vector<std::string>& c = candidates[chunks[j]];
        auto it = std::find(c.begin(), c.end(), id);
        if (it != c.end()) next[j].assign(it + 1, c.end());
      }
      std::vector<bool> part_hot(chunks.size());
      for (size_t j = 0; j < chunks.size(); ++j) part_hot[j] = hot[chunks[j]];
      StartWaiter([this, t, ns, part = *part, client = node->client, id, chunks, sub, dests,
                   next = std::move(next), layers, part_hot = std::move(part_hot)] {
        const absl::Status s = part->Wait();
        if (s.ok()) {
          // Hot chunks: copy the verified bytes before the caller may reuse
          // them, then to the extra replicas once the load is over.
          std::vector<std::pair<ChunkKey, std::vector<std::byte>>> copies;
          for (size_t j = 0; j < chunks.size(); ++j) {
            if (part_hot[j] && hot_.ClaimCopy(sub[j])) {
              copies.emplace_back(sub[j], std::vector<std::byte>(dests[j].begin(), dests[j].end()));
            }
          }
          t->End();
          if (!copies.empty()) CopyHot(ns, id, copies);
          return;
        }
        // Its bytes are not to be trusted: the chunks come from elsewhere or
        // are missing.
        NodeFailed(id, client, s);
        std::vector<bool> credited;
        {
          absl::MutexLock lock(&layers->mu);
          credited = layers->credited;
        }
        Recover(t, ns, chunks, sub, dests, next, credited, s);
        t->End();
      });
      return;
    }
    t->End();
    status = part.status();
    if (status.code() == absl::StatusCode::kNotFound && may_look_up) {
      // The node misses some of them: load the rest from it again.
      auto lookup = node->client->Lookup(node->ns, sub);
      if (lookup.ok()) {
        std::vector<size_t> here;
        elsewhere.clear();
        for (size_t j = 0; j < chunks.size(); ++j) {
          (lookup->tiers[j] == Tier::kMissing ? elsewhere : here).push_back(chunks[j]);
        }
        if (!here.empty()) {
          LoadFrom(t, ns, keys, dest, candidates, hot, id, std::move(here), /*may_look_up=*/false);
        }
      }
    } else {
      NodeFailed(id, node->client, status);
    }
  } else {
    status = node.status();
  }
  // The next live candidate of each chunk after `id`.
  std::map<std::string, std::vector<size_t>> next;
  std::vector<size_t> none;
  for (size_t i : elsewhere) {
    const std::vector<std::string>& c = candidates[i];
    auto it = std::find(c.begin(), c.end(), id);
    std::string to;
    for (it = it == c.end() ? c.end() : it + 1; it != c.end(); ++it) {
      if (!Suspect(*it)) {
        to = *it;
        break;
      }
    }
    (to.empty() ? none : next[to]).push_back(i);
  }
  if (!none.empty()) {
    chunks_missing_ += none.size();
    t->Fail(none, status);
  }
  for (auto& [to, moved] : next) {
    ++retries_;
    LoadFrom(t, ns, keys, dest, candidates, hot, to, std::move(moved), /*may_look_up=*/true);
  }
}

void ClusterClientImpl::CopyHot(
    const ClusterNamespace& ns, const std::string& served_by,
    const std::vector<std::pair<ChunkKey, std::vector<std::byte>>>& copies) {
  const std::vector<std::string> ids = Refresh().NodeIds();
  std::map<std::string, std::vector<size_t>> per_node;
  for (size_t c = 0; c < copies.size(); ++c) {
    for (const std::string& id : LiveReplicas(copies[c].first, ids, ReplicaCount(ns, true))) {
      if (id != served_by) per_node[id].push_back(c);
    }
  }
  for (const auto& [id, cs] : per_node) {
    auto node = Node(id, ns.handle);
    if (!node.ok()) continue;
    std::vector<ChunkKey> keys;
    std::vector<std::optional<ChunkKey>> parents(cs.size());
    std::vector<std::span<const std::byte>> srcs;
    for (size_t c : cs) {
      keys.push_back(copies[c].first);
      srcs.emplace_back(copies[c].second);
    }
    auto part = node->client->SaveChunks(node->ns, keys, parents, srcs);
    const absl::Status s = part.ok() ? (*part)->Wait() : part.status();
    if (s.ok()) {
      hot_copies_ += cs.size();
    } else {
      NodeFailed(id, node->client, s);
    }
  }
}

void ClusterClientImpl::Recover(const std::shared_ptr<ClusterTransferImpl>& t,
                                const ClusterNamespace& ns, const std::vector<size_t>& chunks,
                                const std::vector<ChunkKey>& keys,
                                const std::vector<std::span<std::byte>>& dests,
                                const std::vector<std::vector<std::string>>& next,
                                const std::vector<bool>& credited, absl::Status status) {
  std::vector<size_t> pos(chunks.size(), 0);  // per chunk, its next candidate
  std::vector<size_t> pending(chunks.size());
  for (size_t j = 0; j < chunks.size(); ++j) pending[j] = j;
  while (!pending.empty()) {
    std::map<std::string, std::vector<size_t>> groups;
    std::vector<size_t> none;
    for (size_t j : pending) {
      while (pos[j] < next[j].size() && Suspect(next[j][pos[j]])) ++pos[j];
      if (pos[j] < next[j].size()) {
        groups[next[j][pos[j]]].push_back(j);
      } else {
        none.push_back(chunks[j]);
      }
    }
    if (!none.empty()) {
      chunks_missing_ += none.size();
      t->Fail(none, status);
    }
    pending.clear();
    for (const auto& [id, js] : groups) {
      ++retries_;
      absl::Status s = LoadVerified(t, ns, id, js, chunks, keys, dests, credited);
      if (s.ok()) continue;
      status = s;
      for (size_t j : js) {
        ++pos[j];
        pending.push_back(j);
      }
    }
  }
}

absl::Status ClusterClientImpl::LoadVerified(const std::shared_ptr<ClusterTransferImpl>& t,
                                             const ClusterNamespace& ns, const std::string& id,
                                             const std::vector<size_t>& js,
                                             const std::vector<size_t>& chunks,
                                             const std::vector<ChunkKey>& keys,
                                             const std::vector<std::span<std::byte>>& dests,
                                             const std::vector<bool>& credited) {
  auto node = Node(id, ns.handle);
  if (!node.ok()) return node.status();
  std::vector<std::byte> scratch(js.size() * ns.chunk_bytes);
  std::vector<ChunkKey> sub;
  std::vector<std::span<std::byte>> into;
  for (size_t k = 0; k < js.size(); ++k) {
    sub.push_back(keys[js[k]]);
    into.push_back(std::span<std::byte>(scratch).subspan(k * ns.chunk_bytes, ns.chunk_bytes));
  }
  auto part = node->client->LoadChunks(node->ns, sub, into, nullptr);
  absl::Status s = part.ok() ? (*part)->Wait() : part.status();
  if (!s.ok()) {
    NodeFailed(id, node->client, s);
    return s;
  }
  // Verified bytes: the layers already reported must equal them (they came
  // from completed reads of the failed node); the others are copied.
  const uint32_t layers = ns.spec.num_layers;
  for (size_t k = 0; k < js.size(); ++k) {
    const std::span<std::byte> to = dests[js[k]];
    const std::span<const std::byte> from = into[k];
    bool differs = false;
    for (uint32_t l = 0; l < layers && !differs; ++l) {
      if (credited[l]) {
        differs = std::memcmp(to.data() + l * ns.layer_bytes, from.data() + l * ns.layer_bytes,
                              ns.layer_bytes) != 0;
      }
    }
    if (differs) {
      ++chunks_missing_;
      t->Fail(std::vector<size_t>{chunks[js[k]]},
              absl::DataLossError("a layer already reported differs from its replica's"));
      continue;
    }
    for (uint32_t l = 0; l < layers; ++l) {
      if (!credited[l]) {
        std::memcpy(to.data() + l * ns.layer_bytes, from.data() + l * ns.layer_bytes,
                    ns.layer_bytes);
      }
    }
  }
  for (uint32_t l = 0; l < layers; ++l) {
    if (!credited[l]) t->Credit(l, js.size());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ClusterTransfer>> ClusterClientImpl::Load(
    const ClusterNamespace& ns, std::span<const ChunkKey> keys, std::span<std::byte> dest,
    std::function<void(uint32_t)> on_layer) {
  if (keys.empty()) return absl::InvalidArgumentError("load: no keys");
  if (dest.size() != keys.size() * ns.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("load: destination of ", dest.size(),
                                                   " bytes for ", keys.size(), " chunks of ",
                                                   ns.chunk_bytes, " bytes"));
  }
  ++loads_;
  const std::vector<std::string> ids = Refresh().NodeIds();
  auto t = std::make_shared<ClusterTransferImpl>(ClusterTransferImpl::Kind::kLoad, keys.size(),
                                                 ns.spec.num_layers, std::move(on_layer));
  std::vector<std::vector<std::string>> candidates(keys.size());
  std::vector<bool> hot(keys.size());
  std::map<std::string, std::vector<size_t>> first;
  std::vector<size_t> none;
  for (size_t i = 0; i < keys.size(); ++i) {
    const HotChunks::Read read = hot_.RecordRead(keys[i]);
    hot[i] = read.hot;
    candidates[i] = LiveReplicas(keys[i], ids, ReplicaCount(ns, read.hot));
    if (read.hot && !candidates[i].empty()) {
      // Spread this client's reads of a hot chunk over its replicas.
      std::rotate(candidates[i].begin(),
                  candidates[i].begin() + read.sequence % candidates[i].size(),
                  candidates[i].end());
    }
    (candidates[i].empty() ? none : first[candidates[i][0]]).push_back(i);
  }
  if (!none.empty()) {
    chunks_missing_ += none.size();
    t->Fail(none, absl::UnavailableError(ids.empty() ? "the cluster has no live node"
                                                     : "every replica failed recently"));
  }
  std::vector<std::function<void()>> jobs;
  for (auto& [id, chunks] : first) {
    jobs.push_back([this, &t, &ns, keys, dest, &candidates, &hot, id = id, chunks = chunks] {
      LoadFrom(t, ns, keys, dest, candidates, hot, id, chunks, /*may_look_up=*/true);
    });
  }
  RunConcurrently(std::move(jobs));
  t->End();  // every part is started
  return std::shared_ptr<ClusterTransfer>(t);
}

absl::StatusOr<std::shared_ptr<ClusterTransfer>> ClusterClientImpl::Save(
    const ClusterNamespace& ns, std::span<const ChunkKey> keys, std::span<const std::byte> src,
    std::optional<ChunkKey> parent) {
  if (keys.empty()) return absl::InvalidArgumentError("save: no keys");
  if (src.size() != keys.size() * ns.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("save: source of ", src.size(), " bytes for ",
                                                   keys.size(), " chunks of ", ns.chunk_bytes,
                                                   " bytes"));
  }
  ++saves_;
  const std::vector<std::string> ids = Refresh().NodeIds();
  auto t = std::make_shared<ClusterTransferImpl>(ClusterTransferImpl::Kind::kSave, keys.size(), 0,
                                                 nullptr);
  std::map<std::string, std::vector<size_t>> per_node;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t r : cluster::PlaceReplicas(keys[i], ids, ns.replicas)) {
      if (Suspect(ids[r])) {
        ++replica_writes_failed_;
        t->Fail(std::vector<size_t>{i},
                absl::UnavailableError(absl::StrCat("replica ", ids[r], " failed recently")));
      } else {
        per_node[ids[r]].push_back(i);
      }
    }
  }
  std::vector<std::function<void()>> jobs;
  for (auto& [id, chunks] : per_node) {
    jobs.push_back([this, &t, &ns, keys, src, parent, id = id, chunks = chunks] {
      std::vector<ChunkKey> sub;
      std::vector<std::optional<ChunkKey>> parents;
      std::vector<std::span<const std::byte>> srcs;
      for (size_t i : chunks) {
        sub.push_back(keys[i]);
        parents.push_back(i > 0 ? std::optional<ChunkKey>(keys[i - 1]) : parent);
        srcs.push_back(src.subspan(i * ns.chunk_bytes, ns.chunk_bytes));
      }
      absl::Status status;
      auto node = Node(id, ns.handle);
      if (node.ok()) {
        auto part = node->client->SaveChunks(node->ns, sub, parents, srcs);
        if (part.ok()) {
          t->Begin();
          StartWaiter([this, t, part = *part, client = node->client, id, chunks] {
            const absl::Status s = part->Wait();
            if (s.ok()) {
              t->Committed(chunks);
            } else {
              replica_writes_failed_ += chunks.size();
              t->Fail(chunks, s);
              NodeFailed(id, client, s);
            }
            t->End();
          });
          return;
        }
        status = part.status();
        NodeFailed(id, node->client, status);
      } else {
        status = node.status();
      }
      replica_writes_failed_ += chunks.size();
      t->Fail(chunks, status);
    });
  }
  RunConcurrently(std::move(jobs));
  t->End();
  return std::shared_ptr<ClusterTransfer>(t);
}

absl::Status ClusterClientImpl::Hint(const ClusterNamespace& ns, std::string_view scheduler_id,
                                     std::span<const ClusterHintJob> jobs, absl::Duration ttl) {
  constexpr size_t kMaxJobsPerNode = 4096;  // the node's default max_hint_jobs
  const MembershipView view = Refresh();
  const std::vector<std::string> ids = view.NodeIds();
  // Soonest first, so that a node's limit drops the latest jobs.
  std::vector<size_t> order(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return jobs[a].queue_position < jobs[b].queue_position;
  });
  std::map<std::string, std::vector<HintJob>> per_node;
  for (const std::string& id : ids) per_node[id];
  for (size_t j : order) {
    const std::vector<ChunkKey>& chain = jobs[j].chain;
    // Per node, whether it holds chunk i (and so i's parent link, when it
    // holds i - 1 too).
    std::vector<std::vector<size_t>> holders(chain.size());
    for (size_t i = 0; i < chain.size(); ++i) {
      holders[i] = cluster::PlaceReplicas(chain[i], ids, ns.replicas);
    }
    for (size_t i = 0; i < chain.size(); ++i) {
      for (size_t n : holders[i]) {
        const bool run_ends =
            i + 1 == chain.size() ||
            std::find(holders[i + 1].begin(), holders[i + 1].end(), n) == holders[i + 1].end();
        std::vector<HintJob>& out = per_node[ids[n]];
        if (run_ends && out.size() < kMaxJobsPerNode) {
          out.push_back({chain[i], jobs[j].queue_position, jobs[j].expected_start});
        }
      }
    }
  }
  std::vector<std::pair<std::string, absl::Status>> results;
  for (const std::string& id : ids) results.emplace_back(id, absl::OkStatus());
  std::vector<std::function<void()>> calls;
  for (auto& [id, result] : results) {
    if (Suspect(id)) {
      result = absl::UnavailableError(absl::StrCat("node ", id, " failed recently"));
      continue;
    }
    calls.push_back([this, &ns, scheduler_id, ttl, &per_node, id = id, r = &result] {
      auto node = Node(id, ns.handle);
      if (!node.ok()) {
        *r = node.status();
        return;
      }
      *r = node->client->Hint(node->ns, scheduler_id, per_node.at(id), ttl);
      if (!r->ok()) NodeFailed(id, node->client, *r);
    });
  }
  RunConcurrently(std::move(calls));
  absl::Status unreachable;
  size_t took = 0;
  for (const auto& [id, r] : results) {
    if (r.ok()) {
      ++took;
    } else if (NodeDown(r)) {
      ++hint_nodes_failed_;
      if (unreachable.ok()) unreachable = r;
    } else {
      return r;  // the node refuses the hints themselves
    }
  }
  if (took == 0 && !ids.empty()) return unreachable;
  if (ids.empty()) return absl::UnavailableError("the cluster has no live node");
  return absl::OkStatus();
}

std::map<std::string, uint64_t> ClusterClientImpl::Stats() const {
  const MembershipView view = membership_->Snapshot();
  return {
      {"cluster.view_version", view.version},
      {"cluster.view_current", view.current ? 1 : 0},
      {"cluster.members", view.nodes.size()},
      {"cluster.lookups", lookups_.load()},
      {"cluster.loads", loads_.load()},
      {"cluster.saves", saves_.load()},
      {"cluster.node_errors", node_errors_.load()},
      {"cluster.load_retries", retries_.load()},
      {"cluster.chunks_missing", chunks_missing_.load()},
      {"cluster.replica_writes_failed", replica_writes_failed_.load()},
      {"cluster.hint_nodes_failed", hint_nodes_failed_.load()},
      {"cluster.hot_chunks", hot_.HotCount()},
      {"cluster.hot_copies", hot_copies_.load()},
  };
}

std::map<std::string, absl::StatusOr<std::map<std::string, uint64_t>>>
ClusterClientImpl::NodeStats() {
  const MembershipView view = Refresh();
  std::vector<absl::StatusOr<std::map<std::string, uint64_t>>> results(
      view.nodes.size(), absl::UnknownError("not asked"));
  std::vector<std::function<void()>> jobs;
  for (size_t i = 0; i < view.nodes.size(); ++i) {
    jobs.push_back([this, &view, &results, i] {
      auto node = Node(view.nodes[i].node_id, -1);
      results[i] = node.ok() ? node->client->Stats() : node.status();
    });
  }
  RunConcurrently(std::move(jobs));
  std::map<std::string, absl::StatusOr<std::map<std::string, uint64_t>>> out;
  for (size_t i = 0; i < view.nodes.size(); ++i) {
    out.emplace(view.nodes[i].node_id, std::move(results[i]));
  }
  return out;
}

std::map<std::string, absl::Status> ClusterClientImpl::NodeHealth() {
  const MembershipView view = Refresh();
  std::vector<absl::Status> results(view.nodes.size());
  std::vector<std::function<void()>> jobs;
  for (size_t i = 0; i < view.nodes.size(); ++i) {
    jobs.push_back([this, &view, &results, i] {
      auto node = Node(view.nodes[i].node_id, -1);
      results[i] = node.ok() ? node->client->Health() : node.status();
    });
  }
  RunConcurrently(std::move(jobs));
  std::map<std::string, absl::Status> out;
  for (size_t i = 0; i < view.nodes.size(); ++i) out[view.nodes[i].node_id] = results[i];
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::Create(
    const ClusterClientOptions& options) {
  const bool etcd = !options.etcd_endpoints.empty();
  const bool peers = !options.peers.empty();
  if (etcd == peers) {
    return absl::InvalidArgumentError(
        "a cluster client needs either etcd endpoints (with a cluster name) or static peers");
  }
  std::unique_ptr<cluster::Membership> membership;
  if (etcd) {
    cluster::EtcdMembershipOptions m;
    m.endpoints = options.etcd_endpoints;
    m.cluster = options.cluster;
    m.rpc_timeout = options.etcd_rpc_timeout;
    auto created = cluster::CreateEtcdMembership(m);
    if (!created.ok()) return created.status();
    membership = *std::move(created);
  } else {
    auto created = cluster::CreateStaticMembership(options.peers);
    if (!created.ok()) return created.status();
    membership = *std::move(created);
  }
  return std::unique_ptr<ClusterClient>(
      std::make_unique<ClusterClientImpl>(options, std::move(membership)));
}

}  // namespace strata::client
