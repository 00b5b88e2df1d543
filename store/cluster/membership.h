// Membership: the live store nodes of a cluster, as a watchable snapshot with
// a version (as etcd clients keep a revisioned view).
//
// Two implementations behind one interface:
//   - EtcdMembership (etcd_membership.h): the nodes registered under
//     /strata/<cluster>/nodes/ in etcd, kept current by a watch;
//   - StaticMembership (below): a fixed list of peers (--peers), no etcd.
#ifndef STRATA_STORE_CLUSTER_MEMBERSHIP_H_
#define STRATA_STORE_CLUSTER_MEMBERSHIP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/cluster/node_record.h"

namespace strata::cluster {

// One consistent view of the members. A value type.
struct MembershipView {
  // Grows by at least one whenever the member set or a member's record
  // changes; never shrinks. Views with equal versions are equal.
  uint64_t version = 0;
  // Sorted by node id; ids are distinct.
  std::vector<NodeRecord> nodes;
  // False while the view cannot be refreshed (etcd unreachable): `nodes` is
  // then the last view known. Always true for a static list.
  bool current = true;

  // The node ids, in the order of `nodes` (for placement.h).
  std::vector<std::string> NodeIds() const;
  // The member with this id, or null.
  const NodeRecord* Find(std::string_view node_id) const;
};

// Safe for concurrent use.
class Membership {
 public:
  virtual ~Membership() = default;

  // The current view.
  virtual MembershipView Snapshot() const = 0;

  // Blocks until the version passes `after_version` or `timeout` passes;
  // returns the view then (its version tells which happened).
  virtual MembershipView WaitForChange(uint64_t after_version, absl::Duration timeout) const = 0;
};

// A fixed member list: `peers` as "host:port,host:port,...". Each member's
// node id and gRPC address are its host:port (its other record fields are
// unknown, 0 or empty). The version is 1 and never changes.
// InvalidArgument for an empty list, an entry without a port, or a repeat.
absl::StatusOr<std::unique_ptr<Membership>> CreateStaticMembership(std::string_view peers);

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_MEMBERSHIP_H_
