// strata::client::ClusterClient: an inference worker's handle on a Strata
// cluster, several store nodes seen as one store.
//
// It keeps a live view of the members (etcd's watch, or a static peer list)
// and places every chunk key on R nodes by rendezvous hashing
// (store/cluster/placement.h), R chosen per namespace. Each node is reached
// through its own client::Client, connected on first use.
//
//   - Lookup asks every live replica of every key, all nodes at once; the
//     cached prefix is the longest prefix whose every chunk is on some live
//     replica.
//   - Load sends each node one Get for the chunks it serves, all nodes at
//     once, into the caller's buffer; the layer-wise contract holds across
//     nodes: on_layer(l) runs once layer l of every chunk arrived, whichever
//     node sent it. A node that fails a Get (down, restarted, or no longer
//     holding a chunk) is replaced by the chunk's next replica. A node that
//     fails after its bytes started moving is replaced too: its chunks are
//     loaded from their next replica into scratch memory, the layers already
//     reported are checked against those bytes (never rewritten) and the
//     rest copied. Chunks that no replica can serve are reported missing,
//     never filled with wrong or partial bytes (each chunk is checksummed by
//     the node that sent it).
//   - Save writes each chunk to its R replicas, all nodes at once.
//   - A chunk this client reads often (hot_chunks.h) gets extra replicas:
//     lookups and loads use R + hot_extra_replicas nodes, loads spread over
//     them, and after a load the first reader in a window copies the chunk
//     to those that lack it.
//   - A node that fails a call is skipped for `suspect_for`; a node that
//     leaves the membership is no longer routed to. While etcd is
//     unreachable the last view is kept (Stats: cluster.view_current = 0, and
//     one log line each way).
#ifndef STRATA_CLIENT_CLUSTER_CLIENT_H_
#define STRATA_CLIENT_CLUSTER_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/hot_chunks.h"
#include "store/cluster/membership.h"
#include "store/common/chunk_key.h"
#include "store/common/key_chain.h"
#include "store/common/namespace.h"

namespace strata::client {

struct ClusterClientOptions {
  // Membership: etcd endpoints ("host:port[,...]") and the cluster's name,
  // or a static list `peers` ("host:port,..."); exactly one of the two.
  std::string etcd_endpoints;
  std::string cluster;
  std::string peers;
  // Deadline of each etcd call (the first listing included).
  absl::Duration etcd_rpc_timeout = absl::Seconds(3);
  // Options of every node's client (server_address is taken from the
  // membership).
  ClientOptions node;
  // How long a node that failed a call is skipped.
  absl::Duration suspect_for = absl::Seconds(1);
  // Hot chunks (hot_chunks.h has the rule): a key this client reads
  // hot.reads times within hot.window (default 64 in 10 s; 0 turns it off)
  // is placed on replicas + hot_extra_replicas nodes while it stays hot.
  HotChunkOptions hot;
  uint32_t hot_extra_replicas = 2;
};

// A namespace of the cluster: registered on each node on first use.
struct ClusterNamespace {
  uint32_t handle = 0;  // this client's index of (spec, tenant)
  NamespaceSpec spec;
  std::string tenant;
  // Nodes that hold each chunk (capped at the number of live nodes).
  uint32_t replicas = 1;
  uint64_t chunk_bytes = 0;
  uint64_t layer_bytes = 0;
  std::optional<KeyChain> chain;

  std::vector<ChunkKey> Keys(std::span<const uint32_t> tokens) const { return chain->Keys(tokens); }
};

struct ClusterLookupResult {
  // Per key: the best tier over its live replicas (kMissing: on none).
  std::vector<Tier> tiers;
  // Per key: the node that holds it (the first of its replicas that does),
  // or empty.
  std::vector<std::string> holders;
  // The longest prefix whose every chunk is on some live replica.
  size_t prefix_chunks = 0;
  // Replicas that did not answer (their keys count as missing there).
  std::vector<std::string> unreachable;
};

// A load or save spread over nodes. Thread-safe.
class ClusterTransfer : public Transfer {
 public:
  // Once done(): the indices (into the call's keys, ascending) of the chunks
  // that were not loaded (their bytes in `dest` must be treated as
  // unwritten), or, for a save, that no replica committed. Empty exactly
  // when Wait() is OK.
  virtual std::vector<size_t> missing() const = 0;
};

// One upcoming job of a scheduler's queue: its chain's stored keys, in
// chain order, and when it runs.
struct ClusterHintJob {
  std::vector<ChunkKey> chain;
  uint32_t queue_position = 0;  // 0 runs next
  absl::Time expected_start = absl::InfinitePast();
};

// One member as this client sees it.
struct ClusterMember {
  cluster::NodeRecord record;
  // This client skips it for now: it failed a recent call.
  bool suspect = false;
};

// Safe for concurrent use.
class ClusterClient {
 public:
  // InvalidArgument unless exactly one of etcd_endpoints (with a valid
  // cluster name) and peers is given; Unavailable when etcd does not answer
  // within etcd_rpc_timeout. Nodes are connected on first use.
  static absl::StatusOr<std::unique_ptr<ClusterClient>> Create(const ClusterClientOptions& options);
  virtual ~ClusterClient() = default;

  // The membership as last seen (version, members, whether it is current).
  virtual cluster::MembershipView View() const = 0;
  // The members, with this client's opinion of each.
  virtual std::vector<ClusterMember> Members() = 0;

  // Checks `spec` and registers it on every live node (a node that cannot be
  // reached registers it on first use). InvalidArgument for a bad spec or
  // replicas outside 1..16; a node's refusal (other than Unavailable) is
  // returned as it is.
  virtual absl::StatusOr<ClusterNamespace> RegisterNamespace(const NamespaceSpec& spec,
                                                             std::string_view tenant,
                                                             uint32_t replicas = 1) = 0;

  // The ids of the R live nodes that hold `key`, best first (a hot key has
  // extra replicas after these).
  virtual std::vector<std::string> Replicas(const ClusterNamespace& ns, const ChunkKey& key) = 0;

  // Asks all live replicas of `keys` at once. Fails only for bad arguments;
  // unreachable nodes are listed in the result.
  virtual absl::StatusOr<ClusterLookupResult> Lookup(const ClusterNamespace& ns,
                                                     std::span<const ChunkKey> keys) = 0;

  // Loads `keys` into `dest` (keys.size() * chunk_bytes), each node's chunks
  // in one Get, all nodes at once; returns once every node's Get is answered
  // (the bytes move after). `on_layer(l)` runs (on an internal thread; keep
  // it short) once layer l of every chunk is in `dest`, in layer order.
  // Wait() is OK only when every chunk arrived and matched its checksum;
  // otherwise it returns why the first missing chunk is missing (NotFound:
  // no live replica holds it; Unavailable / DeadlineExceeded: its node
  // failed; DataLoss: a checksum) and missing() lists them all.
  // InvalidArgument for a wrong `dest` size or no keys.
  // REQUIRES: `dest` outlives the transfer.
  virtual absl::StatusOr<std::shared_ptr<ClusterTransfer>> Load(
      const ClusterNamespace& ns, std::span<const ChunkKey> keys, std::span<std::byte> dest,
      std::function<void(uint32_t layer)> on_layer = nullptr) = 0;

  // Saves `src` (keys.size() chunks) under `keys`, a key chain segment whose
  // first chunk follows `parent`, on every live replica of each chunk.
  // Returns once every node answered the start of its put. Wait() is OK when
  // every chunk was committed on at least one replica (Stats counts failed
  // replica writes); missing() lists the chunks committed nowhere.
  // REQUIRES: `src` outlives the transfer.
  virtual absl::StatusOr<std::shared_ptr<ClusterTransfer>> Save(
      const ClusterNamespace& ns, std::span<const ChunkKey> keys, std::span<const std::byte> src,
      std::optional<ChunkKey> parent = std::nullopt) = 0;

  // Sends the scheduler's upcoming jobs to the nodes that hold their chunks
  // and replaces the scheduler's previous hint set on every live node (a
  // node holding none of them gets an empty set). A node walks a hinted key
  // back through the parents it holds, so each node is sent, per job, the
  // last key of every run of consecutive chunks it holds; jobs past a node's
  // limit (4096 hinted keys) are left out, latest first. OK when every node
  // that answered took its set (Stats counts the nodes that failed);
  // InvalidArgument (a node's refusal: bad scheduler id, ttl) as the node
  // says; Unavailable when no node took it.
  virtual absl::Status Hint(const ClusterNamespace& ns, std::string_view scheduler_id,
                            std::span<const ClusterHintJob> jobs, absl::Duration ttl) = 0;

  // This client's counters (cluster.*: view version and currency, members,
  // node errors, retries, chunks missing, replica writes failed, hot chunks
  // and the copies made of them).
  virtual std::map<std::string, uint64_t> Stats() const = 0;
  // Every live member's own Stats(), by node id; a member that does not
  // answer maps to its error.
  virtual std::map<std::string, absl::StatusOr<std::map<std::string, uint64_t>>> NodeStats() = 0;
  // Every live member's Health(), by node id.
  virtual std::map<std::string, absl::Status> NodeHealth() = 0;
};

}  // namespace strata::client

#endif  // STRATA_CLIENT_CLUSTER_CLIENT_H_
