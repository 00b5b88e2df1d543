// EtcdMembership: the live nodes of a cluster, from etcd.
//
// At start it lists /strata/<cluster>/nodes/ and watches the prefix from the
// revision it listed at; every put or delete (a node registering, revoking
// its lease, or its lease expiring) bumps the view's version and calls
// `on_change`. When etcd cannot be reached the last view is kept, marked not
// current, and one line is logged; the member list is read again and the
// watch restarted once etcd answers.
#ifndef STRATA_STORE_CLUSTER_ETCD_MEMBERSHIP_H_
#define STRATA_STORE_CLUSTER_ETCD_MEMBERSHIP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/cluster/membership.h"

namespace strata::cluster {

struct EtcdMembershipOptions {
  // etcd's client endpoints, "host:port[,host:port...]".
  std::string endpoints;
  // The cluster whose nodes to watch (node_record.h: ValidateClusterName).
  std::string cluster;
  // Deadline of each unary etcd call.
  absl::Duration rpc_timeout = absl::Seconds(3);
  // Pause between attempts while etcd is unreachable.
  absl::Duration retry_interval = absl::Milliseconds(500);
  // Called on the watch thread after each new view (not under any lock of
  // the membership; it may call Snapshot()). Optional.
  std::function<void(const MembershipView&)> on_change;
};

// Create() waits for the first listing: Unavailable (with the view not
// started) when etcd does not answer within rpc_timeout; InvalidArgument for
// bad endpoints or cluster name. Destroying the membership stops the watch.
absl::StatusOr<std::unique_ptr<Membership>> CreateEtcdMembership(
    const EtcdMembershipOptions& options);

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_ETCD_MEMBERSHIP_H_
