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
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/engine.h"
#include "transport/ucx_transport.h"

namespace strata::store {

// The tenant a data-plane call acts for. Until calls are authenticated
// (`authenticated` empty), the tenant namespace `ns` was registered with:
// naming a namespace is acting as its tenant. The seam for authenticated
// identity: with one, a namespace of another tenant is PermissionDenied.
// NotFound for an unknown namespace.
absl::StatusOr<std::string> CallerTenant(const Engine& engine, uint32_t ns,
                                         std::string_view authenticated);

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

  // Connects to `client_id`'s worker. AlreadyExists when the id is attached.
  absl::Status Attach(const std::string& client_id, std::string_view worker_address);

  // Copies lease `lease` (held by the caller) out of the pool, releases it,
  // and sends the chunks to `client_id` as transfer `transfer_id`, layer by
  // layer (`layers` slices of `layer_bytes` per chunk). FailedPrecondition
  // when the client is not attached; DataLoss when a chunk does not match its
  // checksum (the DRAM copy is dropped); Unavailable when its endpoint broke.
  // The lease is released whatever the outcome.
  absl::Status SendGet(const std::string& client_id, uint64_t transfer_id, const ReadLease& lease,
                       uint32_t ns, uint32_t layers, uint64_t layer_bytes);

  // Registers write lease `lease` of `client_id`, whose slots `expected`
  // (positions in the request) will arrive as messages.
  void ExpectPut(uint64_t lease, const std::string& client_id, std::vector<uint32_t> expected,
                 uint64_t chunk_bytes);
  // Waits until every expected chunk of `lease` was written into its slot;
  // FailedPrecondition at `deadline` (naming how many are missing). OK for a
  // lease it does not know (nothing to wait for).
  absl::Status AwaitPut(uint64_t lease, absl::Time deadline);
  void ForgetPut(uint64_t lease);

  const Counters& counters() const { return counters_; }

 private:
  struct Inbound {
    std::string client_id;
    absl::flat_hash_map<uint32_t, bool> received;  // position -> written
    size_t pending = 0;
    uint64_t chunk_bytes = 0;
  };

  transport::MessageTarget OnMessage(std::span<const std::byte> header, size_t bytes);

  Engine* const engine_;
  const size_t max_clients_;
  transport::UcxContext* ucx_ = nullptr;
  Counters counters_;

  absl::Mutex clients_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<transport::Endpoint>> clients_
      ABSL_GUARDED_BY(clients_mu_);

  absl::Mutex in_mu_;
  absl::CondVar in_cv_;
  absl::flat_hash_map<uint64_t, Inbound> inbound_ ABSL_GUARDED_BY(in_mu_);
};

}  // namespace strata::store

#endif  // STRATA_STORE_ISOLATED_DATA_PLANE_H_
