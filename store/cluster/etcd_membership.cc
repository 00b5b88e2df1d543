#include "store/cluster/etcd_membership.h"

#include <algorithm>
#include <map>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "store/cluster/etcd_client.h"
#include "store/common/log.h"
#include "store/common/status_macros.h"

namespace strata::cluster {
namespace {

class EtcdMembership final : public Membership {
 public:
  EtcdMembership(const EtcdMembershipOptions& options, std::unique_ptr<EtcdClient> etcd)
      : options_(options), prefix_(NodesPrefix(options.cluster)), etcd_(std::move(etcd)) {}

  ~EtcdMembership() override {
    canceller_.Cancel();
    if (thread_.joinable()) thread_.join();
  }

  // Lists the members once, then keeps them current on a thread.
  absl::Status Start() {
    ASSIGN_OR_RETURN(EtcdRangeResult listed, etcd_->RangePrefix(prefix_));
    int64_t revision = Relist(listed);
    thread_ = std::thread([this, revision] { Run(revision); });
    return absl::OkStatus();
  }

  MembershipView Snapshot() const override {
    absl::MutexLock lock(&mu_);
    return view_;
  }

  MembershipView WaitForChange(uint64_t after_version, absl::Duration timeout) const override {
    absl::MutexLock lock(&mu_);
    auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return view_.version > after_version; };
    mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
    return view_;
  }

 private:
  // The watch loop: watch from `next_revision`; when the watch breaks, mark
  // the view stale, wait, list again and watch from there.
  void Run(int64_t next_revision) {
    while (!canceller_.cancelled()) {
      absl::Status s = etcd_->Watch(
          prefix_, next_revision, &canceller_, [this] { SetCurrent(true); },
          [&](const std::vector<EtcdEvent>& events) {
            next_revision = Apply(events) + 1;
          });
      if (canceller_.cancelled()) return;
      SetCurrent(false);
      LogError("cluster %s: membership watch on etcd stopped (%s); keeping the last view",
               options_.cluster.c_str(), s.ToString().c_str());
      while (!canceller_.WaitForCancel(options_.retry_interval)) {
        // A fresh connection each time: a channel that lost etcd may keep
        // failing after etcd came back.
        absl::StatusOr<std::unique_ptr<EtcdClient>> fresh =
            EtcdClient::Create(options_.endpoints, options_.rpc_timeout);
        if (fresh.ok()) etcd_ = *std::move(fresh);
        absl::StatusOr<EtcdRangeResult> listed = etcd_->RangePrefix(prefix_);
        if (listed.ok()) {
          next_revision = Relist(*listed);
          LogInfo("cluster %s: membership listed again from etcd", options_.cluster.c_str());
          break;
        }
      }
    }
  }

  // Replaces the members with a listing; returns the revision to watch from.
  int64_t Relist(const EtcdRangeResult& listed) {
    std::map<std::string, NodeRecord> members;
    for (const EtcdKeyValue& kv : listed.kvs) AddRecord(kv, &members);
    absl::MutexLock lock(&mu_);
    members_ = std::move(members);
    const bool was_current = view_.current;
    view_.current = true;
    PublishLocked(/*changed=*/!was_current);
    return listed.revision + 1;
  }

  // Applies one batch of watch events; returns the last revision seen.
  int64_t Apply(const std::vector<EtcdEvent>& events) {
    int64_t revision = 0;
    absl::MutexLock lock(&mu_);
    for (const EtcdEvent& ev : events) {
      revision = std::max(revision, ev.kv.mod_revision);
      if (ev.deleted) {
        members_.erase(ev.kv.key.substr(prefix_.size()));
      } else {
        AddRecord(ev.kv, &members_);
      }
    }
    PublishLocked(/*changed=*/false);
    return revision;
  }

  void AddRecord(const EtcdKeyValue& kv, std::map<std::string, NodeRecord>* members) {
    const std::string id = kv.key.substr(prefix_.size());
    absl::StatusOr<NodeRecord> record = DecodeNodeRecord(kv.value);
    if (!record.ok() || record->node_id != id) {
      LogError("cluster %s: ignoring the record under %s: %s", options_.cluster.c_str(),
               kv.key.c_str(),
               record.ok() ? "its node id differs from the key's" : record.status().ToString().c_str());
      members->erase(id);
      return;
    }
    (*members)[id] = *std::move(record);
  }

  void SetCurrent(bool current) {
    absl::MutexLock lock(&mu_);
    if (view_.current == current) return;
    view_.current = current;
    PublishLocked(/*changed=*/true);
  }

  // Publishes members_ as a new view when it differs from the last one (or
  // `changed` says the view's `current` flag changed).
  void PublishLocked(bool changed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<NodeRecord> nodes;
    nodes.reserve(members_.size());
    for (const auto& [id, record] : members_) nodes.push_back(record);
    if (!changed && nodes == view_.nodes && view_.version > 0) return;
    view_.nodes = std::move(nodes);
    ++view_.version;
    if (options_.on_change) {
      // Called without the lock: a copy of the view.
      MembershipView copy = view_;
      mu_.Unlock();
      options_.on_change(copy);
      mu_.Lock();
    }
  }

  // Constant after construction.
  const EtcdMembershipOptions options_;
  const std::string prefix_;

  // Used by Start() and then by the watch thread only.
  std::unique_ptr<EtcdClient> etcd_;
  EtcdCanceller canceller_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::map<std::string, NodeRecord> members_ ABSL_GUARDED_BY(mu_);
  MembershipView view_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Membership>> CreateEtcdMembership(
    const EtcdMembershipOptions& options) {
  RETURN_IF_ERROR(ValidateClusterName(options.cluster));
  ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd,
                   EtcdClient::Create(options.endpoints, options.rpc_timeout));
  auto membership = std::make_unique<EtcdMembership>(options, std::move(etcd));
  RETURN_IF_ERROR(membership->Start());
  return std::unique_ptr<Membership>(std::move(membership));
}

}  // namespace strata::cluster
