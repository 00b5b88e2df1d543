#include "client/reconnecting_client.h"

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "store/common/log.h"

namespace strata::client {
namespace {

absl::Status StatusOf(const absl::Status& s) { return s; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// A connection's transfer, keeping the connection until it is gone.
class HeldTransfer final : public Transfer {
 public:
  HeldTransfer(std::shared_ptr<Client> connection, std::shared_ptr<Transfer> inner)
      : connection_(std::move(connection)), inner_(std::move(inner)) {}
  absl::Status Wait() override { return inner_->Wait(); }
  absl::Status WaitLayer(uint32_t layer) override { return inner_->WaitLayer(layer); }
  bool done() const override { return inner_->done(); }

 private:
  const std::shared_ptr<Client> connection_;  // destroyed after inner_
  const std::shared_ptr<Transfer> inner_;
};

// A connection's mapped chunks (in its mapping of the pool), keeping the
// connection until they are gone.
class HeldMappedChunks final : public MappedChunks {
 public:
  HeldMappedChunks(std::shared_ptr<Client> connection, std::unique_ptr<MappedChunks> inner)
      : connection_(std::move(connection)), inner_(std::move(inner)) {}
  size_t size() const override { return inner_->size(); }
  std::span<const std::byte> chunk(size_t i) const override { return inner_->chunk(i); }
  absl::Status Verify(size_t i) const override { return inner_->Verify(i); }

 private:
  const std::shared_ptr<Client> connection_;  // destroyed after inner_
  const std::unique_ptr<MappedChunks> inner_;
};

// Whether two specs name one namespace: their canonical encodings are equal
// (extra keys in any order), as the node decides.
// (Equal specs first: the common case costs no encoding.)
bool SameNamespace(const NamespaceSpec& a, const NamespaceSpec& b) {
  return a == b || a.CanonicalBytes() == b.CanonicalBytes();
}

// One connection of a reconnecting client.
struct Connection {
  std::shared_ptr<Client> client;
  uint64_t generation = 0;  // reconnects before it
};

// A namespace registered through this client: the id callers see
// (`handle`), and the current connection's namespace once it registered
// it there.
struct Registration {
  uint32_t handle = 0;
  NamespaceSpec spec;
  std::string tenant;
  Namespace inner;
  uint64_t generation = 0;  // of the connection `inner` belongs to
  // Removed through this client (RemoveNamespace): NotFound, and never
  // registered again by a reconnect, until the caller registers it again.
  bool removed = false;
};

// What a connection reported at connect.
struct Seen {
  NodeInfo node;
  std::string data_path;
};

class ReconnectingClient final : public Client {
 public:
  ReconnectingClient(const ClientOptions& options, std::unique_ptr<Client> first,
                     ConnectFn connect)
      : options_(options), connect_(std::move(connect)), connection_(std::move(first)) {
    seen_.push_back({connection_->node(), std::string(connection_->data_path())});
  }
  ~ReconnectingClient() override {
    // Transfers the caller still holds keep their connections; the rest
    // close here, on the caller's thread.
    std::shared_ptr<Client> last;
    std::vector<std::shared_ptr<Client>> retired;
    {
      absl::MutexLock lock(&mu_);
      last = std::move(connection_);
      retired.swap(retired_);
    }
  }

  const NodeInfo& node() const override {
    absl::MutexLock lock(&mu_);
    return seen_.back().node;  // a deque keeps its elements in place
  }
  std::string_view data_path() const override {
    absl::MutexLock lock(&mu_);
    return seen_.back().data_path;
  }

  absl::StatusOr<Namespace> RegisterNamespace(const NamespaceSpec& spec,
                                              std::string_view tenant) override {
    return Call(nullptr, [&](const Connection& c, const Namespace&) -> absl::StatusOr<Namespace> {
      absl::StatusOr<Namespace> ns = c.client->RegisterNamespace(spec, tenant);
      if (!ns.ok()) return ns;
      return Record(*ns, c.generation);
    });
  }

  absl::StatusOr<LookupResult> Lookup(const Namespace& ns,
                                      std::span<const ChunkKey> keys) override {
    return Call(
        &ns, [&](const Connection& c, const Namespace& n) { return c.client->Lookup(n, keys); },
        /*redo_answers=*/true);
  }

  absl::StatusOr<std::shared_ptr<Transfer>> Load(
      const Namespace& ns, std::span<const ChunkKey> keys, std::span<std::byte> dest,
      std::function<void(uint32_t layer)> on_layer) override {
    return Call(&ns, [&](const Connection& c, const Namespace& n) {
      return Hold(c, c.client->Load(n, keys, dest, on_layer));
    });
  }

  absl::StatusOr<std::shared_ptr<Transfer>> LoadChunks(
      const Namespace& ns, std::span<const ChunkKey> keys,
      std::span<const std::span<std::byte>> dests,
      std::function<void(uint32_t layer)> on_layer) override {
    return Call(&ns, [&](const Connection& c, const Namespace& n) {
      return Hold(c, c.client->LoadChunks(n, keys, dests, on_layer));
    });
  }

  absl::StatusOr<std::shared_ptr<Transfer>> Save(const Namespace& ns,
                                                 std::span<const ChunkKey> keys,
                                                 std::span<const std::byte> src,
                                                 std::optional<ChunkKey> parent) override {
    return Call(&ns, [&](const Connection& c, const Namespace& n) {
      return Hold(c, c.client->Save(n, keys, src, parent));
    });
  }

  absl::StatusOr<std::shared_ptr<Transfer>> SaveChunks(
      const Namespace& ns, std::span<const ChunkKey> keys,
      std::span<const std::optional<ChunkKey>> parents,
      std::span<const std::span<const std::byte>> srcs) override {
    return Call(&ns, [&](const Connection& c, const Namespace& n) {
      return Hold(c, c.client->SaveChunks(n, keys, parents, srcs));
    });
  }

  // The current connection's mapping. A reconnect maps the new node's pool
  // elsewhere: callers that registered the span (with CUDA) compare it and
  // node().incarnation before each use.
  // The span stays mapped until a later shared_pool() returns another one
  // (this client keeps its connection till then), so a caller that checks
  // it before each use never reads an unmapped range.
  std::span<const std::byte> shared_pool() const override {
    absl::MutexLock lock(&mu_);
    pool_owner_ = connection_;
    return connection_->shared_pool();
  }

  absl::StatusOr<std::unique_ptr<MappedChunks>> LeaseMapped(
      const Namespace& ns, std::span<const ChunkKey> keys) override {
    return Call(&ns, [&](const Connection& c, const Namespace& n)
                         -> absl::StatusOr<std::unique_ptr<MappedChunks>> {
      absl::StatusOr<std::unique_ptr<MappedChunks>> m = c.client->LeaseMapped(n, keys);
      if (!m.ok()) return m.status();
      return std::unique_ptr<MappedChunks>(new HeldMappedChunks(c.client, *std::move(m)));
    });
  }

  absl::Status Hint(const Namespace& ns, std::string_view scheduler_id,
                    std::span<const HintJob> jobs, absl::Duration ttl) override {
    return Call(
        &ns,
        [&](const Connection& c, const Namespace& n) {
          return c.client->Hint(n, scheduler_id, jobs, ttl);
        },
        /*redo_answers=*/true);
  }

  absl::StatusOr<std::map<std::string, uint64_t>> Stats() override {
    absl::StatusOr<std::map<std::string, uint64_t>> stats =
        Call(nullptr, [&](const Connection& c, const Namespace&) { return c.client->Stats(); });
    if (stats.ok()) {
      const ClientCounters mine = counters();
      (*stats)["client_lease_free_loads"] = mine.lease_free_loads;
      (*stats)["client_lease_free_fallbacks"] = mine.lease_free_fallbacks;
      (*stats)["client_reconnects"] = mine.reconnects;
    }
    return stats;
  }

  ClientCounters counters() const override {
    std::shared_ptr<Client> current;
    ClientCounters earlier;
    {
      absl::MutexLock lock(&mu_);  // one connection with the sums before it
      current = connection_;
      earlier = earlier_;
      earlier.reconnects = generation_;
    }
    ClientCounters c = current->counters();
    c.lease_free_loads += earlier.lease_free_loads;
    c.lease_free_fallbacks += earlier.lease_free_fallbacks;
    c.reconnects = earlier.reconnects;
    return c;
  }

  bool node_restarted() const override { return Current().client->node_restarted(); }

  absl::Status Health() override {
    return Call(nullptr, [&](const Connection& c, const Namespace&) { return c.client->Health(); });
  }

  absl::StatusOr<uint64_t> RemoveNamespace(const NamespaceSpec& spec,
                                           std::string_view tenant) override {
    absl::StatusOr<uint64_t> removed = Call(nullptr, [&](const Connection& c, const Namespace&) {
      return c.client->RemoveNamespace(spec, tenant);
    });
    if (removed.ok()) {
      absl::MutexLock lock(&mu_);
      for (auto& [handle, reg] : registrations_) {
        if (reg.tenant == tenant && SameNamespace(reg.spec, spec)) reg.removed = true;
      }
    }
    return removed;
  }

 private:
  static absl::StatusOr<std::shared_ptr<Transfer>> Hold(
      const Connection& c, absl::StatusOr<std::shared_ptr<Transfer>> t) {
    if (!t.ok()) return t.status();
    return std::shared_ptr<Transfer>(std::make_shared<HeldTransfer>(c.client, *std::move(t)));
  }

  Connection Current() const {
    absl::MutexLock lock(&mu_);
    return {connection_, generation_};
  }

  // Runs f(connection, namespace translated to it) on the current
  // connection; reconnects first when that connection knows its node
  // restarted, and once more when f's failure was how it found out. With
  // `redo_answers`, an answer that showed the restart is not kept either:
  // the new node read the namespace id the old one gave, which may name
  // another namespace there (for calls that only read or hint; a load or a
  // save that started is never repeated).
  template <typename F>
  auto Call(const Namespace* ns, F f, bool redo_answers = false)
      -> decltype(f(Connection(), Namespace())) {
    using R = decltype(f(Connection(), Namespace()));
    CloseUnused();
    std::optional<R> result;
    for (int attempt = 0;; ++attempt) {
      Connection c = Current();
      if (c.client->node_restarted()) {
        if (absl::Status s = Reconnect(c.generation); !s.ok()) return R(s);
        c = Current();
      }
      Namespace inner;
      absl::Status translated = absl::OkStatus();
      if (ns != nullptr) {
        absl::StatusOr<Namespace> t = Translate(*ns, c);
        if (t.ok()) {
          inner = *std::move(t);
        } else {
          translated = t.status();
        }
      }
      if (translated.ok()) {
        result.emplace(f(c, inner));
      } else {
        result.emplace(translated);
      }
      const bool keep = StatusOf(*result).ok() && !redo_answers;
      if (keep || attempt > 0 || !c.client->node_restarted()) return *std::move(result);
    }
  }

  // A new connection in place of generation `generation`'s (unless another
  // call replaced it already).
  absl::Status Reconnect(uint64_t generation) {
    const absl::Time asked = absl::Now();
    absl::MutexLock serial(&reconnect_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (generation_ != generation) return absl::OkStatus();
    }
    // Callers that queued behind an attempt that failed get its answer
    // instead of trying (and waiting) once each.
    if (failed_at_ >= asked) return failure_;
    absl::StatusOr<std::unique_ptr<Client>> fresh = connect_(options_);
    if (!fresh.ok()) {
      // The new node's own answer keeps its code (a token it refuses is
      // Unauthenticated, another protocol FailedPrecondition); a node that
      // cannot be reached is Unavailable already.
      failure_ = absl::Status(fresh.status().code(),
                              absl::StrCat("the node at ", options_.server_address,
                                           " restarted; reconnecting failed: ",
                                           fresh.status().message()));
      failed_at_ = absl::Now();
      return failure_;
    }
    std::shared_ptr<Client> next = *std::move(fresh);
    absl::MutexLock lock(&mu_);
    // Loads that end on the old connection after this are not counted.
    const ClientCounters before = connection_->counters();
    earlier_.lease_free_loads += before.lease_free_loads;
    earlier_.lease_free_fallbacks += before.lease_free_fallbacks;
    retired_.push_back(std::move(connection_));
    connection_ = std::move(next);
    ++generation_;
    seen_.push_back({connection_->node(), std::string(connection_->data_path())});
    LogInfo("strata client: the node at %s restarted (node id %s); reconnected",
            options_.server_address.c_str(), seen_.back().node.node_id.c_str());
    return absl::OkStatus();
  }

  // Closes retired connections that nothing holds any more (no transfer or
  // mapped chunks of theirs left), outside the lock.
  void CloseUnused() {
    std::vector<std::shared_ptr<Client>> closing;
    {
      absl::MutexLock lock(&mu_);
      if (retired_.empty()) return;
      for (auto it = retired_.begin(); it != retired_.end();) {
        if (it->use_count() == 1) {
          closing.push_back(std::move(*it));
          it = retired_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  // The caller's namespace `ns` on connection `c`: registered there again
  // first if it was registered on an earlier connection. A namespace not
  // registered through this client goes as it is (the node judges its id),
  // also one whose id (another client's, given by the node) equals a handle
  // of this client for another spec or tenant.
  absl::StatusOr<Namespace> Translate(const Namespace& ns, const Connection& c) {
    NamespaceSpec spec;
    std::string tenant;
    {
      absl::MutexLock lock(&mu_);
      auto it = registrations_.find(ns.id);
      if (it == registrations_.end() || !SameNamespace(it->second.spec, ns.spec) ||
          it->second.tenant != ns.tenant) {
        return ns;
      }
      if (it->second.removed) {
        return absl::NotFoundError(absl::StrCat("namespace ", ns.id,
                                                " was removed; register it again to use it"));
      }
      if (it->second.generation == c.generation) return it->second.inner;
      spec = it->second.spec;
      tenant = it->second.tenant;
    }
    absl::StatusOr<Namespace> fresh = c.client->RegisterNamespace(spec, tenant);
    if (!fresh.ok()) return fresh.status();
    absl::MutexLock lock(&mu_);
    Registration& r = registrations_[ns.id];
    if (c.generation >= r.generation) {
      r.inner = *fresh;
      r.generation = c.generation;
    }
    return *std::move(fresh);
  }

  // Notes a registration on connection `generation` and returns the
  // namespace as callers see it (the handle as its id).
  Namespace Record(const Namespace& ns, uint64_t generation) {
    absl::MutexLock lock(&mu_);
    Registration* r = nullptr;
    for (auto& [handle, reg] : registrations_) {
      if (reg.tenant == ns.tenant && SameNamespace(reg.spec, ns.spec)) r = &reg;
    }
    if (r == nullptr) {
      uint32_t handle = ns.id;
      if (registrations_.contains(handle)) handle = registrations_.rbegin()->first + 1;
      r = &registrations_[handle];
      r->handle = handle;
      r->spec = ns.spec;
      r->tenant = ns.tenant;
    }
    if (generation >= r->generation) {
      r->inner = ns;
      r->generation = generation;
      r->removed = false;
    }
    Namespace out = ns;
    out.id = r->handle;
    return out;
  }

  const ClientOptions options_;
  const ConnectFn connect_;
  absl::Mutex reconnect_mu_;  // one reconnect at a time
  // The last failed attempt's answer, and when it came.
  absl::Status failure_ ABSL_GUARDED_BY(reconnect_mu_);
  absl::Time failed_at_ ABSL_GUARDED_BY(reconnect_mu_) = absl::InfinitePast();
  mutable absl::Mutex mu_;
  std::shared_ptr<Client> connection_ ABSL_GUARDED_BY(mu_);
  // The connection whose pool shared_pool() last returned.
  mutable std::shared_ptr<Client> pool_owner_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Connections replaced, until nothing of theirs is held.
  std::vector<std::shared_ptr<Client>> retired_ ABSL_GUARDED_BY(mu_);
  // What each connection reported (node(), data_path() return references).
  std::deque<Seen> seen_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, Registration> registrations_ ABSL_GUARDED_BY(mu_);
  ClientCounters earlier_ ABSL_GUARDED_BY(mu_);  // of replaced connections
};

}  // namespace

std::unique_ptr<Client> NewReconnectingClient(const ClientOptions& options,
                                              std::unique_ptr<Client> first, ConnectFn connect) {
  return std::make_unique<ReconnectingClient>(options, std::move(first), std::move(connect));
}

}  // namespace strata::client
