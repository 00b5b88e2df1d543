// IsolatedDataPlane: the data plane of a node that isolates tenants
// (ServerOptions::isolate_tenants). The node grants no remote access to its
// memory (its UCX context has no RMA feature, nothing is registered, no
// remote key or shared pool is published): bytes move as two-sided messages
// (proto/data_message.h) whose destination the receiver chooses.
//
// - Get: the node copies the leased chunks out of the pool (verifying each
//   against its checksum: a corrupt DRAM copy is dropped and counted, the get
//   fails with DataLoss), releases the lease, and sends the copies, layer by
//   layer, to the endpoint of the client that asked (AttachDataPlane).
// - Put: a client sends each chunk with its write lease and client id; the
//   node receives it into a buffer of its own and copies it into that slot of
//   the lease (Engine::WriteSlot) only if the lease is open and the sender is
//   its owner. Everything else is dropped and counted.
//
// So a client reaches exactly the bytes of its own gets and the slots of its
// own write leases, whatever it sends.
//
// Thread-safe.
#ifndef STRATA_STORE_ISOLATED_DATA_PLANE_H_
#define STRATA_STORE_ISOLATED_DATA_PLANE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/engine.h"
#include "transport/ucx_transport.h"

namespace strata::store {

// The tenant a data-plane transfer on namespace `ns` acts for. With
// authentication (`authenticated`: the tenant of the call's token), that
// tenant, and a namespace of another tenant is PermissionDenied. Without it
// (`authenticated` empty), the tenant `ns` was registered with: naming a
// namespace is acting as its tenant. NotFound for an unknown namespace.
absl::StatusOr<std::string> CallerTenant(const Engine& engine, uint32_t ns,
                                         std::string_view authenticated);

// Whom a data-plane attachment belongs to: the same three things a lease
// belongs to on the control plane (store/server.cc), so that a client id
// replayed from another connection or tenant reaches nothing.
struct DataPlaneCaller {
  std::string tenant;     // authenticated tenant; empty without authentication
  std::string peer;       // the gRPC connection ("ipv4:127.0.0.1:51234")
  std::string client_id;  // the client's id (GetRequest.client_id, ...)

  bool operator==(const DataPlaneCaller&) const = default;
};

class IsolatedDataPlane {
 public:
  struct Counters {
    std::atomic<uint64_t> messages_rejected{0};  // put chunks dropped
    std::atomic<uint64_t> bytes_sent{0};
    std::atomic<uint64_t> bytes_received{0};
  };

  // `engine` must outlive this object. `max_clients` bounds attached
  // clients (ResourceExhausted past it).
  IsolatedDataPlane(Engine* engine, size_t max_clients) : engine_(engine), max_clients_(max_clients) {}
  ~IsolatedDataPlane();

  // The sink to give UcxOptions::on_message of the node's context.
  transport::MessageSink Sink();
  // The context to connect to clients with; set once, before Attach.
  void SetContext(transport::UcxContext* ucx) { ucx_ = ucx; }

  // Connects to the worker of `caller.client_id`, which from then on
  // belongs to `caller`. AlreadyExists when the id is attached (by anyone).
  absl::Status Attach(const DataPlaneCaller& caller, std::string_view worker_address);

  // OK when `caller.client_id` is attached by `caller` itself.
  // FailedPrecondition when it is not attached; PermissionDenied when it was
  // attached on another connection or by another tenant.
  absl::Status CheckAttached(const DataPlaneCaller& caller) const;

  // Copies lease `lease` (held by the caller) out of the pool, releases it,
  // and sends the chunks to the endpoint `caller` attached, as transfer
  // `transfer_id`, layer by layer (`layers` slices of `layer_bytes` per
  // chunk). FailedPrecondition / PermissionDenied as CheckAttached (nothing is
  // sent); DataLoss when a chunk does not match its checksum (the DRAM copy
  // is dropped); Unavailable when its endpoint broke. The lease is released
  // whatever the outcome.
  absl::Status SendGet(const DataPlaneCaller& caller, uint64_t transfer_id,
                       const ReadLease& lease, uint32_t ns, uint32_t layers,
                       uint64_t layer_bytes);

  // Registers write lease `lease` of `client_id`, whose slots `expected`
  // (positions in the request) will arrive as messages until the lease
  // `expires`. Leases registered before and expired by now are forgotten
  // (ForgetPut) first: a client that lets its leases run out, instead of
  // committing or aborting them, leaves nothing behind here.
  void ExpectPut(uint64_t lease, const std::string& client_id, std::vector<uint32_t> expected,
                 uint64_t chunk_bytes, absl::Time expires);
  // Waits until every expected chunk of `lease` was written into its slot;
  // FailedPrecondition at `deadline` (naming how many are missing), or at
  // once when the lease expired with chunks missing (also one forgotten
  // since, among the last kMaxExpiredPuts). OK for a lease it does not know
  // (nothing to wait for).
  absl::Status AwaitPut(uint64_t lease, absl::Time deadline);
  void ForgetPut(uint64_t lease);

  const Counters& counters() const { return counters_; }
  // Write leases whose chunks it is waiting for (ExpectPut, not yet
  // forgotten).
  size_t awaited_puts() const;

 private:
  struct Inbound {
    std::string client_id;
    absl::flat_hash_map<uint32_t, bool> received;  // position -> written
    size_t pending = 0;
    uint64_t chunk_bytes = 0;
    absl::Time expires;
  };

  struct Attachment {
    DataPlaneCaller owner;
    std::shared_ptr<transport::Endpoint> endpoint;
  };

  transport::MessageTarget OnMessage(std::span<const std::byte> header, size_t bytes);
  // The endpoint `caller` attached, or why there is none for it.
  absl::StatusOr<std::shared_ptr<transport::Endpoint>> EndpointOf(
      const DataPlaneCaller& caller) const;

  Engine* const engine_;
  const size_t max_clients_;
  transport::UcxContext* ucx_ = nullptr;
  Counters counters_;

  mutable absl::Mutex clients_mu_;
  // By client id.
  absl::flat_hash_map<std::string, Attachment> clients_ ABSL_GUARDED_BY(clients_mu_);

  // Remembers that `lease` expired with chunks missing.
  void NoteExpiredLocked(uint64_t lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(in_mu_);
  static absl::Status ExpiredError(uint64_t lease, size_t pending);

  static constexpr size_t kMaxExpiredPuts = 4096;

  mutable absl::Mutex in_mu_;
  absl::CondVar in_cv_;
  absl::flat_hash_map<uint64_t, Inbound> inbound_ ABSL_GUARDED_BY(in_mu_);
  // Leases forgotten after they expired with chunks missing: the last
  // kMaxExpiredPuts, oldest first in expired_order_.
  absl::flat_hash_set<uint64_t> expired_ ABSL_GUARDED_BY(in_mu_);
  std::deque<uint64_t> expired_order_ ABSL_GUARDED_BY(in_mu_);
};

}  // namespace strata::store

#endif  // STRATA_STORE_ISOLATED_DATA_PLANE_H_
