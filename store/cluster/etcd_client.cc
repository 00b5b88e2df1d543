#include "store/cluster/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proto/etcd/etcdserverpb/rpc.grpc.pb.h"
#include "proto/grpc_status.h"

namespace strata::cluster {

void EtcdCanceller::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (abort_) abort_();
}

bool EtcdCanceller::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool EtcdCanceller::WaitForCancel(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&cancelled_), timeout);
}

bool EtcdCanceller::Attach(std::function<void()> abort) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  abort_ = std::move(abort);
  return true;
}

void EtcdCanceller::Detach() {
  absl::MutexLock lock(&mu_);
  abort_ = nullptr;
}

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

namespace {

namespace epb = ::etcdserverpb;

EtcdKeyValue FromProto(const mvccpb::KeyValue& kv) {
  EtcdKeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.mod_revision = kv.mod_revision();
  out.lease = kv.lease();
  return out;
}

bool Unreachable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

absl::Status Annotate(const grpc::Status& s, const std::string& what, const std::string& endpoint) {
  absl::Status st = FromGrpcStatus(s);
  return absl::Status(st.code(), absl::StrCat("etcd ", what, " at ", endpoint, ": ", st.message()));
}

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<epb::KV::Stub> kv;
  std::unique_ptr<epb::Lease::Stub> lease;
  std::unique_ptr<epb::Watch::Stub> watch;
};

class EtcdClientImpl final : public EtcdClient {
 public:
  EtcdClientImpl(std::vector<Endpoint> endpoints, absl::Duration rpc_timeout)
      : endpoints_(std::move(endpoints)), rpc_timeout_(rpc_timeout) {}

  absl::StatusOr<int64_t> LeaseGrant(absl::Duration ttl) override {
    epb::LeaseGrantRequest req;
    req.set_ttl(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(ttl)))));
    epb::LeaseGrantResponse resp;
    absl::Status s = Unary("LeaseGrant", [&](Endpoint& e, grpc::ClientContext* ctx) {
      return e.lease->LeaseGrant(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (!resp.error().empty()) {
      return absl::UnavailableError(absl::StrCat("etcd LeaseGrant: ", resp.error()));
    }
    return resp.id();
  }

  absl::Status LeaseRevoke(int64_t lease_id) override {
    epb::LeaseRevokeRequest req;
    req.set_id(lease_id);
    epb::LeaseRevokeResponse resp;
    return Unary("LeaseRevoke", [&](Endpoint& e, grpc::ClientContext* ctx) {
      return e.lease->LeaseRevoke(ctx, req, &resp);
    });
  }

  absl::Status Put(std::string_view key, std::string_view value, int64_t lease_id) override {
    epb::PutRequest req;
    req.set_key(std::string(key));
    req.set_value(std::string(value));
    req.set_lease(lease_id);
    epb::PutResponse resp;
    return Unary("Put", [&](Endpoint& e, grpc::ClientContext* ctx) {
      return e.kv->Put(ctx, req, &resp);
    });
  }

  absl::StatusOr<EtcdRangeResult> RangePrefix(std::string_view prefix) override {
    epb::RangeRequest req;
    req.set_key(std::string(prefix));
    req.set_range_end(PrefixRangeEnd(prefix));
    epb::RangeResponse resp;
    absl::Status s = Unary("Range", [&](Endpoint& e, grpc::ClientContext* ctx) {
      return e.kv->Range(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    EtcdRangeResult out;
    out.revision = resp.header().revision();
    for (const mvccpb::KeyValue& kv : resp.kvs()) out.kvs.push_back(FromProto(kv));
    return out;
  }

  absl::Status KeepAlive(int64_t lease_id, absl::Duration interval,
                         EtcdCanceller* canceller) override {
    Endpoint& e = Current();
    grpc::ClientContext ctx;
    if (!canceller->Attach([&ctx] { ctx.TryCancel(); })) {
      return absl::CancelledError("keep-alive cancelled");
    }
    auto stream = e.lease->LeaseKeepAlive(&ctx);
    absl::Status result;
    while (true) {
      epb::LeaseKeepAliveRequest req;
      req.set_id(lease_id);
      epb::LeaseKeepAliveResponse resp;
      if (!stream->Write(req) || !stream->Read(&resp)) break;  // Finish() says why
      if (resp.ttl() <= 0) {
        result = absl::NotFoundError(absl::StrCat("etcd lease ", lease_id, " has expired"));
        break;
      }
      if (canceller->WaitForCancel(interval)) break;
    }
    canceller->Detach();
    ctx.TryCancel();
    grpc::Status s = stream->Finish();
    if (!result.ok()) return result;
    if (canceller->cancelled()) return absl::CancelledError("keep-alive cancelled");
    if (Unreachable(s)) Rotate(e);
    return s.ok() ? absl::UnavailableError("etcd closed the keep-alive stream")
                  : Annotate(s, "LeaseKeepAlive", e.address);
  }

  absl::Status Watch(std::string_view prefix, int64_t start_revision, EtcdCanceller* canceller,
                     const std::function<void()>& on_created,
                     const std::function<void(const std::vector<EtcdEvent>&)>& on_events) override {
    Endpoint& e = Current();
    grpc::ClientContext ctx;
    if (!canceller->Attach([&ctx] { ctx.TryCancel(); })) {
      return absl::CancelledError("watch cancelled");
    }
    auto stream = e.watch->Watch(&ctx);
    epb::WatchRequest req;
    epb::WatchCreateRequest* create = req.mutable_create_request();
    create->set_key(std::string(prefix));
    create->set_range_end(PrefixRangeEnd(prefix));
    create->set_start_revision(start_revision);
    absl::Status result;
    if (stream->Write(req)) {
      epb::WatchResponse resp;
      bool created = false;
      while (stream->Read(&resp)) {
        if (resp.canceled()) {
          result = resp.compact_revision() > 0
                       ? absl::OutOfRangeError(absl::StrCat("etcd watch: revision ", start_revision,
                                                            " compacted (now ",
                                                            resp.compact_revision(), ")"))
                       : absl::AbortedError(absl::StrCat("etcd cancelled the watch: ",
                                                         resp.cancel_reason()));
          break;
        }
        if (resp.created() && !created) {
          created = true;
          on_created();
        }
        if (resp.events_size() == 0) continue;
        std::vector<EtcdEvent> events;
        events.reserve(resp.events_size());
        for (const mvccpb::Event& ev : resp.events()) {
          EtcdEvent out;
          out.deleted = ev.type() == mvccpb::Event::DELETE;
          out.kv = FromProto(ev.kv());
          events.push_back(std::move(out));
        }
        on_events(events);
      }
    }
    canceller->Detach();
    ctx.TryCancel();
    grpc::Status s = stream->Finish();
    if (!result.ok()) return result;
    if (canceller->cancelled()) return absl::CancelledError("watch cancelled");
    if (Unreachable(s)) Rotate(e);
    return s.ok() ? absl::UnavailableError("etcd closed the watch stream")
                  : Annotate(s, "Watch", e.address);
  }

 private:
  Endpoint& Current() {
    absl::MutexLock lock(&mu_);
    return endpoints_[current_];
  }

  // Moves on from `e` when it is still the current endpoint.
  void Rotate(const Endpoint& e) {
    absl::MutexLock lock(&mu_);
    if (&endpoints_[current_] == &e) current_ = (current_ + 1) % endpoints_.size();
  }

  // Runs `call` on the current endpoint, then on each other one while the
  // endpoint tried is unreachable.
  absl::Status Unary(const std::string& what,
                     const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& call) {
    absl::Status last;
    for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
      Endpoint& e = Current();
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
      grpc::Status s = call(e, &ctx);
      if (s.ok()) return absl::OkStatus();
      last = Annotate(s, what, e.address);
      if (!Unreachable(s)) return last;
      Rotate(e);
    }
    return last;
  }

  // Constant after construction (the vector is never resized).
  std::vector<Endpoint> endpoints_;
  const absl::Duration rpc_timeout_;

  absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(std::string_view endpoints,
                                                               absl::Duration rpc_timeout) {
  std::vector<Endpoint> parsed;
  const absl::string_view list(endpoints.data(), endpoints.size());
  for (absl::string_view raw : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    absl::string_view ep = absl::StripAsciiWhitespace(raw);
    absl::ConsumePrefix(&ep, "http://");
    absl::ConsumeSuffix(&ep, "/");
    const size_t colon = ep.rfind(':');
    if (ep.empty() || colon == absl::string_view::npos || colon == 0 || colon + 1 == ep.size()) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint '", raw, "': want host:port"));
    }
    if (absl::StartsWith(ep, "https://")) {
      return absl::InvalidArgumentError("etcd over TLS is not supported yet");
    }
    Endpoint e;
    e.address = std::string(ep);
    grpc::ChannelArguments args;
    // Notice a silent etcd (a partition) on the streams; etcd refuses pings
    // more often than every 5 s.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    // Try a lost etcd again at least every second (gRPC's default backoff
    // grows to minutes, so a membership would stay stale long after etcd
    // came back).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Its own connections: a client made again after etcd came back does
    // not inherit a connection of another that lost it.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    e.channel = grpc::CreateCustomChannel(e.address, grpc::InsecureChannelCredentials(), args);
    e.kv = epb::KV::NewStub(e.channel);
    e.lease = epb::Lease::NewStub(e.channel);
    e.watch = epb::Watch::NewStub(e.channel);
    parsed.push_back(std::move(e));
  }
  if (parsed.empty()) return absl::InvalidArgumentError("no etcd endpoints given");
  if (rpc_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd rpc_timeout must be positive");
  }
  return std::unique_ptr<EtcdClient>(
      std::make_unique<EtcdClientImpl>(std::move(parsed), rpc_timeout));
}

}  // namespace strata::cluster
