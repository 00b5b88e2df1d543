// EtcdClient: the few calls of etcd's v3 gRPC API that membership needs
// (proto/etcd/, a subset of etcd's rpc.proto), behind plain C++ types.
// Internal to store/cluster: registration and membership use it.
//
// Several endpoints: calls go to one of them; a call that finds it
// unreachable (Unavailable, DeadlineExceeded) is retried once on each other
// endpoint, and the first that answers becomes the current one.
#ifndef STRATA_STORE_CLUSTER_ETCD_CLIENT_H_
#define STRATA_STORE_CLUSTER_ETCD_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace strata::cluster {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdRangeResult {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;  // the store's revision the range was read at
};

struct EtcdEvent {
  bool deleted = false;  // DELETE (or lease expiry) rather than PUT
  EtcdKeyValue kv;
};

// Lets one thread abort another's long-running Watch or KeepAlive: Cancel()
// aborts the call in progress and makes every later one return Cancelled at
// once. Safe for concurrent use.
class EtcdCanceller {
 public:
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);
  bool cancelled() const ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps up to `timeout`; returns early, true, once cancelled.
  bool WaitForCancel(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

  // For the calls: runs `abort` on Cancel() until Detach(). Returns false
  // (and keeps nothing) when already cancelled.
  bool Attach(std::function<void()> abort) ABSL_LOCKS_EXCLUDED(mu_);
  void Detach() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> abort_ ABSL_GUARDED_BY(mu_);
};

// Safe for concurrent use.
class EtcdClient {
 public:
  // `endpoints`: "host:port[,host:port...]" (an "http://" prefix is
  // accepted). InvalidArgument for an empty or malformed list. Connects
  // lazily: an etcd that is down fails the calls, not Create.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(std::string_view endpoints,
                                                            absl::Duration rpc_timeout);
  virtual ~EtcdClient() = default;

  // A lease of `ttl` (whole seconds, rounded up; etcd may raise it to its
  // minimum). Returns the lease id.
  virtual absl::StatusOr<int64_t> LeaseGrant(absl::Duration ttl) = 0;
  // Revokes the lease and deletes every key attached to it. NotFound when
  // the lease is gone already.
  virtual absl::Status LeaseRevoke(int64_t lease_id) = 0;
  virtual absl::Status Put(std::string_view key, std::string_view value, int64_t lease_id) = 0;
  // Every key starting with `prefix`.
  virtual absl::StatusOr<EtcdRangeResult> RangePrefix(std::string_view prefix) = 0;

  // Keeps `lease_id` alive on one stream: a keep-alive every `interval`
  // until the stream fails, `canceller` is cancelled (Cancelled) or etcd says
  // the lease is gone (NotFound). Blocks; returns why it stopped.
  virtual absl::Status KeepAlive(int64_t lease_id, absl::Duration interval,
                                 EtcdCanceller* canceller) = 0;

  // Watches every key starting with `prefix` from `start_revision` on one
  // stream: `on_created` once the watch is in place, then `on_events` for
  // each batch of events in revision order. Blocks until the stream fails or
  // is cancelled through `canceller` (Cancelled), or etcd cancels the watch
  // (OutOfRange when the revision was compacted).
  virtual absl::Status Watch(std::string_view prefix, int64_t start_revision,
                             EtcdCanceller* canceller,
                             const std::function<void()>& on_created,
                             const std::function<void(const std::vector<EtcdEvent>&)>& on_events) = 0;
};

// The end of the range of keys that start with `prefix` (etcd's range_end
// for a prefix: the prefix with its last byte incremented).
std::string PrefixRangeEnd(std::string_view prefix);

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_ETCD_CLIENT_H_
