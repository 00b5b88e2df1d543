// EtcdRegistration: a store node's entry in its cluster's membership.
//
// Start() grants an etcd lease of `lease_ttl`, puts the node's record under
// /strata/<cluster>/nodes/<node_id> attached to it, and keeps the lease alive
// on a thread (a keep-alive every lease_ttl / 3). If the lease is lost (etcd
// was unreachable for longer than the TTL), the thread grants a new one and
// puts the record again once etcd answers. Deregister() revokes the lease,
// which deletes the record at once; a node that stops renewing (killed,
// hung, cut off) disappears when its lease expires, within lease_ttl.
#ifndef STRATA_STORE_CLUSTER_ETCD_REGISTRATION_H_
#define STRATA_STORE_CLUSTER_ETCD_REGISTRATION_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/cluster/node_record.h"

namespace strata::cluster {

struct EtcdRegistrationOptions {
  // etcd's client endpoints, "host:port[,host:port...]".
  std::string endpoints;
  std::string cluster;
  NodeRecord record;
  // Whole seconds (rounded up); etcd raises a TTL below its minimum
  // (about 1.5 election timeouts, 1.5 s with etcd's defaults).
  absl::Duration lease_ttl = absl::Seconds(5);
  // Deadline of each unary etcd call.
  absl::Duration rpc_timeout = absl::Seconds(3);
};

// Thread-safe.
class EtcdRegistration {
 public:
  // Registers the node and returns once the record is in etcd: Unavailable
  // when etcd does not answer; InvalidArgument for a bad cluster name, node
  // id or endpoint list; AlreadyExists when a live record holds the same id
  // at another gRPC address (at the same address it is taken over: a node
  // restarted before its old lease expired).
  static absl::StatusOr<std::unique_ptr<EtcdRegistration>> Start(
      const EtcdRegistrationOptions& options);
  // Deregisters (as Deregister()) if not done yet.
  virtual ~EtcdRegistration() = default;

  // Stops the keep-alives and revokes the lease (the record goes with it).
  // Idempotent. An error means etcd did not confirm the revocation: the
  // record then goes when the lease expires.
  virtual absl::Status Deregister() = 0;

  // The etcd lease the record is attached to now (it changes when a lost
  // lease is replaced).
  virtual int64_t lease_id() const = 0;
};

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_ETCD_REGISTRATION_H_
