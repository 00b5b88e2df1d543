// strata::client::Client: an inference worker's handle on a Strata store node.
//
// Metadata goes over gRPC; chunk bytes move by UCX one-sided RMA directly
// between the caller's buffers and the node's registered DRAM pool. On the
// node's host, loads copy the chunks out of the pool mapped read-only
// (ClientOptions::same_host), without a lease for chunks the node's read
// index vouches for (ClientOptions::lease_free). Loads
// arrive layer by layer (AttentionStore's layer-wise pre-loading: compute on
// layer 0 while later layers are in flight) and saves return at once while the
// bytes move (asynchronous saving).
#ifndef STRATA_CLIENT_CLIENT_H_
#define STRATA_CLIENT_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/common/chunk_key.h"
#include "store/common/key_chain.h"
#include "store/common/namespace.h"

namespace strata::client {

// Whether loads from a node on this host read its DRAM pool through shared
// memory.
enum class SameHost : uint8_t {
  // Shared memory when the node shares its pool and runs on this host (same
  // boot id) and the pool can be mapped; UCX otherwise.
  kAuto = 0,
  // UCX always.
  kOff = 1,
};

// Checks that `address` names a node a client can dial: "host:port" or
// "[v6-address]:port", a non-empty host and a port in 1..65535. OK, or
// InvalidArgument whose message says what is wrong with `address` (without
// naming the option or flag it came from, so that callers can). Pure: no
// name resolution.
absl::Status CheckServerAddress(std::string_view address);

// `status` with every whole-word ClientOptions field name in its message
// (as `names` lists them: {"tls_ca_file", "--tls_ca"}) replaced by the name a
// front end's users set it by: a command-line flag, a keyword argument. The
// code is kept. Error messages of this library name the fields of
// ClientOptions; front ends with other names translate them with this.
absl::Status RenameOptions(const absl::Status& status,
                           std::span<const std::pair<std::string_view, std::string_view>> names);

struct ClientOptions {
  std::string server_address;  // host:port of a store node
  std::string ucx_transports;  // "" = UCX's default (or UCX_TLS)
  absl::Duration rpc_timeout = absl::Seconds(10);
  // A load or save not finished after this long is aborted (DeadlineExceeded).
  absl::Duration transfer_timeout = absl::Seconds(30);
  // Lease the node grants per load or save (0: the node's default).
  absl::Duration lease_ttl = absl::ZeroDuration();
  // Identifies this client's leases; empty picks a random id.
  std::string client_id;
  // Loads over shared memory from a node on this host (saves always use UCX).
  SameHost same_host = SameHost::kAuto;
  // With shared memory and a node that publishes its read index: a load of
  // chunks committed in the node's DRAM copies them out of the pool without
  // a Get round trip, and keeps the copy only if the index entry of every
  // chunk stayed the same while it copied and every checksum matches;
  // otherwise (a chunk absent from the index, evicted or replaced meanwhile)
  // the load takes a lease as usual. A namespace reads lease-free only after
  // one leased load in it succeeded (the node's authorisation, once per
  // namespace); such reads are reported to the node in batches (Touch) so
  // that they count for eviction. false: every load takes a lease.
  bool lease_free = true;

  // TLS to the node's gRPC port (the data plane is not encrypted). TLS is
  // used when tls_ca_file is set: a PEM file of the CA(s) that signed the
  // node's certificate.
  std::string tls_ca_file;
  // Mutual TLS: this client's certificate (chain) and key, PEM files.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the node's certificate must carry; empty: the host of
  // server_address.
  std::string tls_server_name;
  // Tenant token ("TENANT:SECRET") sent with every call to a node that
  // authenticates; or a file holding it (surrounding white space ignored).
  // At most one of the two.
  std::string token;
  std::string token_file;

  // When the node restarts behind server_address (it answers as a new
  // incarnation, proto/call_metadata.h): connect anew with these options,
  // register again the namespaces this client registered, and retry the call
  // that found out once (nothing had moved yet: loads and saves check the
  // incarnation before any byte). Transfers started before finish or fail on
  // the old connection. Namespace ids stay those this client handed out.
  // false: from then on loads and saves fail with Unavailable ("restarted
  // since this client connected; connect a new client").
  bool reconnect = true;
};

// A namespace registered on the node, with the key chain derived from it
// (the tenant doubles as the key chain's salt).
struct Namespace {
  uint32_t id = 0;
  NamespaceSpec spec;
  std::string tenant;
  uint64_t chunk_bytes = 0;
  uint64_t layer_bytes = 0;
  std::optional<KeyChain> chain;

  // Keys of every full chunk of `tokens`.
  std::vector<ChunkKey> Keys(std::span<const uint32_t> tokens) const { return chain->Keys(tokens); }
};

enum class Tier : uint8_t { kMissing = 0, kDram = 1, kNvme = 2 };

struct LookupResult {
  std::vector<Tier> tiers;
  size_t prefix_chunks = 0;
  // Per key: a copy is on the node's NVMe tier (survives a restart of the
  // node; a save commits before its chunks are written back).
  std::vector<bool> persisted;
};

struct NodeInfo {
  std::string node_id;
  std::string server_version;
  std::string ucx_transports;
  uint64_t dram_bytes = 0;
  uint64_t nvme_capacity_bytes = 0;
  // Drawn anew at every start of the node: a different value means another
  // run of the node (its pool mapped anew, on the same host).
  uint64_t incarnation = 0;
};

// One hinted job of a scheduler's queue: the last key of its chain (its
// parents follow) and when it is expected to run.
struct HintJob {
  ChunkKey last_key;
  uint32_t queue_position = 0;
  absl::Time expected_start = absl::InfinitePast();
};

// An asynchronous load or save. Thread-safe.
class Transfer {
 public:
  virtual ~Transfer() = default;
  // Blocks until the transfer finished. OK only when every byte arrived and
  // matched its checksum (load) or every chunk was committed (save); after an
  // error the destination must be treated as unwritten.
  virtual absl::Status Wait() = 0;
  // Load only: blocks until layer `layer` of every chunk has arrived (its
  // bytes may be used; Wait() still reports the checksum verdict), or the
  // transfer failed (its error is returned).
  virtual absl::Status WaitLayer(uint32_t layer) = 0;
  virtual bool done() const = 0;
};

// Chunks under a read lease, seen in place in the node's DRAM pool mapped
// read-only by a client on the node's host: what a GPU copies from directly
// (after registering Client::shared_pool() with CUDA). The lease keeps the
// node from evicting or replacing them; it is released when this object
// goes. The bytes are not verified until Verify: check every chunk before
// trusting what was computed from it.
class MappedChunks {
 public:
  virtual ~MappedChunks() = default;
  virtual size_t size() const = 0;
  virtual std::span<const std::byte> chunk(size_t i) const = 0;
  // OK when chunk i matches its checksum; DataLoss otherwise. Thread-safe.
  virtual absl::Status Verify(size_t i) const = 0;
};

// What this client did, counted in the client (not the node).
struct ClientCounters {
  uint64_t lease_free_loads = 0;      // loads served out of the read index
  uint64_t lease_free_fallbacks = 0;  // loads that tried it and took a lease
  uint64_t reconnects = 0;            // connections made anew after a node restart
};

// Thread-safe.
class Client {
 public:
  // Connects the control plane and the data plane. Unavailable when the node
  // cannot be reached or the TLS handshake fails (the message says which
  // options to check); Unauthenticated when the node authenticates and the
  // token is missing or wrong; FailedPrecondition for an incompatible
  // protocol; NotFound / InvalidArgument for unreadable or bad TLS or token
  // files.
  // InvalidArgument, before any connection attempt, when server_address is
  // not host:port with a port in 1..65535 (see CheckServerAddress).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  virtual ~Client() = default;

  virtual const NodeInfo& node() const = 0;
  // How loads move bytes: "shm" (copied out of the node's pool mapped
  // read-only, on the node's host) or "ucx".
  virtual std::string_view data_path() const = 0;
  virtual absl::StatusOr<Namespace> RegisterNamespace(const NamespaceSpec& spec,
                                                      std::string_view tenant) = 0;
  virtual absl::StatusOr<LookupResult> Lookup(const Namespace& ns,
                                              std::span<const ChunkKey> keys) = 0;

  // Loads `keys` into `dest`, chunk after chunk in the store's layout
  // (dest.size() must be keys.size() * chunk_bytes). Layers arrive in order;
  // `on_layer(l)` runs (on an internal thread; keep it short) once layer l of
  // every chunk is in `dest`. REQUIRES: `dest` outlives the transfer.
  // NotFound when a key is not stored (nothing is transferred).
  virtual absl::StatusOr<std::shared_ptr<Transfer>> Load(
      const Namespace& ns, std::span<const ChunkKey> keys, std::span<std::byte> dest,
      std::function<void(uint32_t layer)> on_layer = nullptr) = 0;

  // Load with each chunk's destination given apart: dests[i] (chunk_bytes
  // long) receives keys[i]. The same contract otherwise; a cluster client
  // loads the chunks one node holds, scattered over the caller's buffer, in
  // one call. REQUIRES: every dests[i] outlives the transfer.
  virtual absl::StatusOr<std::shared_ptr<Transfer>> LoadChunks(
      const Namespace& ns, std::span<const ChunkKey> keys,
      std::span<const std::span<std::byte>> dests,
      std::function<void(uint32_t layer)> on_layer = nullptr) = 0;

  // Saves `src` (keys.size() chunks in the store's layout) under `keys`, a
  // key chain segment whose first chunk follows `parent` (if any). Returns at
  // once; the transfer commits the chunks when their bytes are in place.
  // Keys already stored are skipped. REQUIRES: `src` outlives the transfer.
  virtual absl::StatusOr<std::shared_ptr<Transfer>> Save(
      const Namespace& ns, std::span<const ChunkKey> keys, std::span<const std::byte> src,
      std::optional<ChunkKey> parent = std::nullopt) = 0;

  // Save with each chunk given apart: srcs[i] (chunk_bytes long) under
  // keys[i], whose parent in its key chain is parents[i] (if any). The chunks
  // need not be one chain segment. REQUIRES: every srcs[i] outlives the
  // transfer; the three spans have one size.
  virtual absl::StatusOr<std::shared_ptr<Transfer>> SaveChunks(
      const Namespace& ns, std::span<const ChunkKey> keys,
      std::span<const std::optional<ChunkKey>> parents,
      std::span<const std::span<const std::byte>> srcs) = 0;

  // The node's DRAM pool as this client maps it (empty unless data_path()
  // is "shm"), for registering once with a GPU runtime.
  virtual std::span<const std::byte> shared_pool() const { return {}; }
  // Leases `keys` and returns them in place in shared_pool(): one Get, no
  // copy. FailedPrecondition unless data_path() is "shm"; NotFound when a
  // key is not stored; InvalidArgument for no keys.
  virtual absl::StatusOr<std::unique_ptr<MappedChunks>> LeaseMapped(
      const Namespace& ns, std::span<const ChunkKey> keys) {
    (void)ns;
    (void)keys;
    return absl::FailedPreconditionError("lease-mapped: not supported by this client");
  }

  // Sends the scheduler's upcoming jobs; replaces its previous hint set.
  virtual absl::Status Hint(const Namespace& ns, std::string_view scheduler_id,
                            std::span<const HintJob> jobs, absl::Duration ttl) = 0;
  // The node's counters and, prefixed "client_", this client's
  // (ClientCounters).
  virtual absl::StatusOr<std::map<std::string, uint64_t>> Stats() = 0;
  virtual ClientCounters counters() const { return {}; }
  // True once a response of the node showed that it restarted since this
  // client connected (see ClientOptions::reconnect). A reconnecting client
  // says so only until it reconnected.
  virtual bool node_restarted() const { return false; }
  // OK when the node serves and persists. Unavailable while it shuts down;
  // FailedPrecondition (with the NVMe error) while it serves reads but is
  // not persisting, so refuses puts.
  virtual absl::Status Health() = 0;
  // Removes the namespace registered as (spec, tenant) with all its chunks;
  // returns how many chunks went. NotFound if it is not registered;
  // FailedPrecondition while leases on it are open.
  virtual absl::StatusOr<uint64_t> RemoveNamespace(const NamespaceSpec& spec,
                                                   std::string_view tenant) = 0;
};

}  // namespace strata::client

#endif  // STRATA_CLIENT_CLIENT_H_
