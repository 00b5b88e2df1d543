#include "store/cluster/etcd_registration.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "store/cluster/etcd_client.h"
#include "store/common/log.h"
#include "store/common/status_macros.h"

namespace strata::cluster {
namespace {

class EtcdRegistrationImpl final : public EtcdRegistration {
 public:
  EtcdRegistrationImpl(const EtcdRegistrationOptions& options, std::unique_ptr<EtcdClient> etcd)
      : options_(options),
        key_(NodeKey(options.cluster, options.record.node_id)),
        value_(EncodeNodeRecord(options.record)),
        etcd_(std::move(etcd)) {}

  ~EtcdRegistrationImpl() override { (void)Deregister(); }

  absl::Status Register() {
    // A live record under our id at another address is another node
    // configured with the same id: refuse. At our own address it is an
    // earlier incarnation of this node whose lease has not expired yet:
    // our put takes the key over (etcd re-attaches it to our lease).
    ASSIGN_OR_RETURN(EtcdRangeResult existing, etcd_->RangePrefix(key_));
    for (const EtcdKeyValue& kv : existing.kvs) {
      if (kv.key != key_) continue;
      absl::StatusOr<NodeRecord> other = DecodeNodeRecord(kv.value);
      if (other.ok() && other->grpc_address == options_.record.grpc_address) continue;
      return absl::AlreadyExistsError(absl::StrCat(
          "node id ", options_.record.node_id, " is registered already in cluster ",
          options_.cluster, other.ok() ? absl::StrCat(" by ", other->grpc_address) : "",
          " (if that node is gone, its record goes when its lease expires, within ",
          absl::FormatDuration(options_.lease_ttl), ")"));
    }
    RETURN_IF_ERROR(GrantAndPut());
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  absl::Status Deregister() override {
    absl::MutexLock lock(&deregister_mu_);
    if (deregistered_) return absl::OkStatus();
    deregistered_ = true;
    canceller_.Cancel();
    if (thread_.joinable()) thread_.join();
    const int64_t id = lease_id();
    if (id == 0) return absl::OkStatus();
    absl::Status s = etcd_->LeaseRevoke(id);
    if (s.code() == absl::StatusCode::kNotFound) return absl::OkStatus();  // expired already
    return s;
  }

  int64_t lease_id() const override {
    absl::MutexLock lock(&mu_);
    return lease_id_;
  }

 private:
  absl::Status GrantAndPut() {
    ASSIGN_OR_RETURN(int64_t id, etcd_->LeaseGrant(options_.lease_ttl));
    absl::Status put = etcd_->Put(key_, value_, id);
    if (!put.ok()) {
      (void)etcd_->LeaseRevoke(id);
      return put;
    }
    absl::MutexLock lock(&mu_);
    lease_id_ = id;
    return absl::OkStatus();
  }

  // Keeps the lease alive; replaces it when etcd says it is gone.
  void Run() {
    const absl::Duration interval = options_.lease_ttl / 3;
    while (!canceller_.cancelled()) {
      absl::Status s = etcd_->KeepAlive(lease_id(), interval, &canceller_);
      if (canceller_.cancelled()) return;
      LogError("cluster %s: keep-alive of node %s stopped: %s", options_.cluster.c_str(),
               options_.record.node_id.c_str(), s.ToString().c_str());
      if (s.code() == absl::StatusCode::kNotFound) {
        // The lease expired (etcd was out of reach too long): register anew.
        while (!canceller_.WaitForCancel(absl::Milliseconds(200))) {
          absl::Status again = GrantAndPut();
          if (again.ok()) {
            LogInfo("cluster %s: node %s registered again (lease %lld)", options_.cluster.c_str(),
                    options_.record.node_id.c_str(), static_cast<long long>(lease_id()));
            break;
          }
        }
      } else {
        // The stream broke: try again soon; the lease may still be alive.
        canceller_.WaitForCancel(absl::Milliseconds(200));
      }
    }
  }

  // Constant after construction.
  const EtcdRegistrationOptions options_;
  const std::string key_;
  const std::string value_;
  const std::unique_ptr<EtcdClient> etcd_;

  EtcdCanceller canceller_;
  std::thread thread_;

  absl::Mutex deregister_mu_;
  bool deregistered_ ABSL_GUARDED_BY(deregister_mu_) = false;

  mutable absl::Mutex mu_;
  int64_t lease_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdRegistration>> EtcdRegistration::Start(
    const EtcdRegistrationOptions& options) {
  RETURN_IF_ERROR(ValidateClusterName(options.cluster));
  RETURN_IF_ERROR(ValidateNodeId(options.record.node_id));
  if (options.record.grpc_address.empty()) {
    return absl::InvalidArgumentError("the node record has no gRPC address");
  }
  if (options.lease_ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError("the etcd lease TTL must be at least 1s");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd,
                   EtcdClient::Create(options.endpoints, options.rpc_timeout));
  auto registration = std::make_unique<EtcdRegistrationImpl>(options, std::move(etcd));
  RETURN_IF_ERROR(registration->Register());
  return std::unique_ptr<EtcdRegistration>(std::move(registration));
}

}  // namespace strata::cluster
