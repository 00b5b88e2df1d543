#include "store/server.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "proto/call_metadata.h"
#include "proto/grpc_status.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/key_scope.h"
#include "store/auth/tenants.h"
#include "store/auth/tls.h"
#include "store/common/key_chain.h"
#include "store/common/log.h"
#include "store/common/status_macros.h"
#include "store/isolated_data_plane.h"
#include "store/metrics.h"
#include "store/metrics_http.h"
#include "transport/ucx_transport.h"

namespace strata::store {
namespace {

namespace pb = ::strata::v1;

constexpr uint32_t kProtocolVersion = 1;
constexpr char kServerVersion[] = "strata-0.2";
constexpr size_t kMaxClientIdBytes = 128;

absl::StatusOr<ChunkKey> ParseKey(const std::string& raw, size_t index) {
  auto key = ChunkKey::FromBytes(std::string_view(raw));
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("key ", index, ": ", key.status().message()));
  }
  return *key;
}

// Keys of a namespace as the engine stores them (auth::ScopeKey with the
// namespace's root).
absl::StatusOr<std::vector<ChunkKey>> ParseScopedKeys(
    const google::protobuf::RepeatedPtrField<std::string>& raw, const ChunkKey& root) {
  std::vector<ChunkKey> keys;
  keys.reserve(raw.size());
  for (int i = 0; i < raw.size(); ++i) {
    ASSIGN_OR_RETURN(ChunkKey key, ParseKey(raw[i], i));
    keys.push_back(auth::ScopeKey(root, key));
  }
  return keys;
}

// `status` with every key the engine named in its scoped form (as it stores
// it) written as the caller's key, which is the one the caller knows.
// `scoped[i]` is the scoped form of the caller's `raw[i]`.
absl::Status UnscopeKeyNames(const absl::Status& status, const std::vector<ChunkKey>& scoped,
                             const std::vector<ChunkKey>& raw) {
  if (status.ok()) return status;
  std::string message(status.message());
  bool changed = false;
  for (size_t i = 0; i < scoped.size() && i < raw.size(); ++i) {
    for (const std::string& form : {scoped[i].ToHex(), scoped[i].ShortHex()}) {
      if (message.find(form) == std::string::npos) continue;
      const std::string mine = form.size() == 64 ? raw[i].ToHex() : raw[i].ShortHex();
      message = absl::StrReplaceAll(message, {{form, mine}});
      changed = true;
    }
  }
  return changed ? absl::Status(status.code(), message) : status;
}

// Who makes a call: established once per call at the edge
// (StrataService::TenantOfCall) and handed to every handler.
struct CallIdentity {
  // The authenticated tenant; empty when the node does not authenticate.
  std::string tenant;
  // The connection, as gRPC names it ("ipv4:10.0.0.7:51234").
  std::string peer;
};

// A namespace a caller may use, with the root its keys are scoped by.
struct AuthorizedNamespace {
  NamespaceInfo info;
  ChunkKey root;
};

bool IsLoopbackHost(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]" || host == "::1";
}

absl::Status CheckClientId(const std::string& id) {
  if (id.empty() || id.size() > kMaxClientIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_id must be 1 to ", kMaxClientIdBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NamespaceSpec> FromProto(const pb::NamespaceSpec& p) {
  NamespaceSpec spec;
  spec.model_id = p.model_id();
  spec.num_layers = p.num_layers();
  spec.num_kv_heads = p.num_kv_heads();
  spec.head_dim = p.head_dim();
  switch (p.dtype()) {
    case pb::DTYPE_FP16:
      spec.dtype = DType::kFloat16;
      break;
    case pb::DTYPE_BF16:
      spec.dtype = DType::kBFloat16;
      break;
    default:
      return absl::InvalidArgumentError("namespace dtype must be DTYPE_FP16 or DTYPE_BF16");
  }
  spec.tokens_per_chunk = p.tokens_per_chunk();
  for (const pb::ExtraKey& e : p.extra_keys()) spec.extra_keys.emplace_back(e.name(), e.value());
  return spec;
}

pb::Tier ToProto(Tier tier) {
  switch (tier) {
    case Tier::kDram:
      return pb::TIER_DRAM;
    case Tier::kNvme:
      return pb::TIER_NVME;
    case Tier::kMissing:
      break;
  }
  return pb::TIER_MISSING;
}

// This host's boot id (empty if unreadable): tells a client whether it runs
// on the node's host.
std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

absl::Duration LeaseTtl(uint32_t ms) { return absl::Milliseconds(ms); }  // 0: engine default

// The quotas of a tenants file, for Engine::SetTenantQuotas.
std::map<std::string, TenantQuota, std::less<>> QuotasOf(const auth::TenantTable& table) {
  std::map<std::string, TenantQuota, std::less<>> quotas;
  for (const auto& [name, entry] : table.tenants()) {
    const auth::TenantQuota& q = entry.quota;
    if (q.dram_bytes == 0 && q.nvme_bytes == 0 && q.hint_jobs == 0) continue;
    quotas[name] = TenantQuota{q.dram_bytes, q.nvme_bytes, q.hint_jobs};
  }
  return quotas;
}

class StrataService final : public pb::Strata::Service {
 public:
  StrataService(Engine* engine, const ServerOptions& options, pb::NodeInfo info,
                IsolatedDataPlane* isolated, std::shared_ptr<const auth::TenantTable> tenants)
      : engine_(engine),
        options_(options),
        info_(std::move(info)),
        incarnation_text_(proto::FormatIncarnation(info_.incarnation())),
        dram_base_(info_.dram_base()),
        put_reservation_cap_(options.max_put_reservation_bytes != 0
                                 ? options.max_put_reservation_bytes
                                 : engine->dram_region().size() / 2),
        isolated_(isolated),
        tenants_(std::move(tenants)) {}

  bool authentication() const {
    absl::MutexLock lock(&tenants_mu_);
    return tenants_ != nullptr;
  }

  absl::Status ReloadTenants() {
    if (options_.tenants_file.empty()) {
      return absl::FailedPreconditionError("the node runs without a tenants file (--tenants)");
    }
    // One reload at a time, so that two cannot leave one file's tokens with
    // the other's quotas.
    absl::MutexLock reload(&reload_mu_);
    ASSIGN_OR_RETURN(auth::TenantTable table, auth::TenantTable::Load(options_.tenants_file));
    const size_t n = table.size();
    engine_->SetTenantQuotas(QuotasOf(table));
    {
      absl::MutexLock lock(&tenants_mu_);
      tenants_ = std::make_shared<const auth::TenantTable>(std::move(table));
    }
    LogInfo("tenants file %s reloaded: %zu tenants", options_.tenants_file.c_str(), n);
    return absl::OkStatus();
  }

  // The identity of a call: its connection and, when the node authenticates,
  // the tenant its token names. Unauthenticated without a valid token. This
  // is the one place where credentials are read; handlers get the result.
  absl::StatusOr<CallIdentity> TenantOfCall(const grpc::ServerContext& ctx) const {
    CallIdentity who;
    who.peer = ctx.peer();
    std::shared_ptr<const auth::TenantTable> table;
    {
      absl::MutexLock lock(&tenants_mu_);
      table = tenants_;
    }
    if (table == nullptr) return who;
    const auto& md = ctx.client_metadata();
    auto it = md.find("authorization");
    if (it == md.end()) {
      return absl::UnauthenticatedError(
          "this node authenticates its callers: send a tenant token (the client's token "
          "option, `strata --token_file`)");
    }
    const std::string_view value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.substr(0, kBearer.size()) != kBearer) {
      return absl::UnauthenticatedError("malformed authorization metadata: expected 'Bearer TOKEN'");
    }
    ASSIGN_OR_RETURN(who.tenant, table->Authenticate(value.substr(kBearer.size())));
    return who;
  }

  // The tenant namespace `ns` belongs to (the tenant it was registered for).
  // NotFound for an unknown namespace.
  absl::StatusOr<std::string> TenantOfNamespace(uint32_t ns) const {
    ASSIGN_OR_RETURN(NamespaceInfo info, engine_->GetNamespace(ns));
    return info.tenant;
  }

  // Namespace `ns` if `who` may use it. NotFound: unknown; PermissionDenied:
  // with authentication, another tenant's (nothing about its chunks is said).
  absl::StatusOr<AuthorizedNamespace> AuthorizeNamespace(const CallIdentity& who, uint32_t ns) {
    AuthorizedNamespace out;
    ASSIGN_OR_RETURN(out.info, engine_->GetNamespace(ns));
    if (!who.tenant.empty() && out.info.tenant != who.tenant) {
      return absl::PermissionDeniedError(absl::StrCat(
          "namespace ", ns, " belongs to another tenant; tenant '", who.tenant,
          "' may not use it"));
    }
    const std::string& t = out.info.tenant;
    ASSIGN_OR_RETURN(KeyChain chain,
                     KeyChain::Create(out.info.spec,
                                      std::span<const uint8_t>(
                                          reinterpret_cast<const uint8_t*>(t.data()), t.size())));
    out.root = chain.root();
    return out;
  }

  void StartDraining() { draining_ = true; }

  // The metrics page (Prometheus text format).
  std::string RenderMetrics() const {
    return metrics_.Render(engine_->Stats(), engine_->AllTenantStats(), info_.node_id());
  }

  grpc::Status GetNodeInfo(grpc::ServerContext* ctx, const pb::NodeInfoRequest* req,
                           pb::NodeInfo* out) override {
    return Handle(ServerMetrics::kGetNodeInfo, *ctx, [&](const CallIdentity& who) { return GetNodeInfoImpl(who, ctx, req, out); });
  }

  grpc::Status GetNodeInfoImpl(const CallIdentity& who, grpc::ServerContext*, const pb::NodeInfoRequest*,
                               pb::NodeInfo* out) {
    *out = info_;
    return grpc::Status::OK;
  }

  grpc::Status RegisterNamespace(grpc::ServerContext* ctx, const pb::RegisterNamespaceRequest* req,
                                 pb::RegisterNamespaceResponse* out) override {
    return Handle(ServerMetrics::kRegisterNamespace, *ctx, [&](const CallIdentity& who) { return RegisterNamespaceImpl(who, ctx, req, out); });
  }

  grpc::Status RegisterNamespaceImpl(const CallIdentity& who, grpc::ServerContext*,
                                     const pb::RegisterNamespaceRequest* req,
                                     pb::RegisterNamespaceResponse* out) {
    auto spec = FromProto(req->spec());
    if (!spec.ok()) return ToGrpcStatus(spec.status());
    if (!who.tenant.empty() && req->tenant() != who.tenant) {
      return ToGrpcStatus(absl::PermissionDeniedError(
          absl::StrCat("register namespace: tenant '", who.tenant,
                       "' may register namespaces of its own tenant only, not of '",
                       req->tenant(), "'")));
    }
    // Bound how many namespaces one caller can create (the caller: its
    // tenant with authentication, its host otherwise).
    const std::string peer = CallerKey(who);
    absl::MutexLock lock(&ns_mu_);
    const bool exists = engine_->FindNamespace(*spec, req->tenant()).ok();
    auto& mine = ns_by_peer_[peer];
    if (!exists && options_.max_namespaces_per_peer > 0 &&
        mine.size() >= static_cast<size_t>(options_.max_namespaces_per_peer)) {
      return ToGrpcStatus(absl::ResourceExhaustedError(
          absl::StrCat("register namespace: ", peer, " has registered ", mine.size(),
                       " live namespaces, the limit per caller (--max_namespaces_per_peer); "
                       "remove unused ones first")));
    }
    auto id = engine_->RegisterNamespace(*spec, req->tenant());
    if (!id.ok()) return ToGrpcStatus(id.status());
    if (!exists) {
      mine.insert(*id);
      owner_of_ns_[*id] = peer;
    }
    ChunkLayout layout(*spec);
    out->set_namespace_id(*id);
    out->set_chunk_bytes(layout.chunk_bytes());
    out->set_layer_bytes(layout.layer_bytes());
    return grpc::Status::OK;
  }

  grpc::Status Lookup(grpc::ServerContext* ctx, const pb::LookupRequest* req,
                      pb::LookupResponse* out) override {
    return Handle(ServerMetrics::kLookup, *ctx, [&](const CallIdentity& who) { return LookupImpl(who, ctx, req, out); });
  }

  grpc::Status LookupImpl(const CallIdentity& who, grpc::ServerContext*, const pb::LookupRequest* req,
                          pb::LookupResponse* out) {
    auto ns = AuthorizeNamespace(who, req->namespace_id());
    if (!ns.ok()) return ToGrpcStatus(ns.status());
    auto keys = ParseScopedKeys(req->keys(), ns->root);
    if (!keys.ok()) return ToGrpcStatus(keys.status());
    auto result = engine_->Lookup(req->namespace_id(), *keys);
    if (!result.ok()) return ToGrpcStatus(result.status());
    for (Tier t : result->tiers) out->add_tiers(ToProto(t));
    for (bool p : result->persisted) out->add_persisted(p);
    out->set_prefix_chunks(static_cast<uint32_t>(result->prefix_chunks));
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext* ctx, const pb::GetRequest* req,
                   pb::GetResponse* out) override {
    return Handle(ServerMetrics::kGet, *ctx, [&](const CallIdentity& who) { return GetImpl(who, ctx, req, out); });
  }

  grpc::Status GetImpl(const CallIdentity& who, grpc::ServerContext*, const pb::GetRequest* req, pb::GetResponse* out) {
    if (absl::Status s = CheckClientId(req->client_id()); !s.ok()) return ToGrpcStatus(s);
    // Piggybacked releases first, even while draining: they free leases.
    for (uint64_t id : req->release_lease_ids()) ReleaseOwned(id, who, req->client_id());
    if (draining_) return ToGrpcStatus(absl::UnavailableError("the server is shutting down"));
    auto ns = AuthorizeNamespace(who, req->namespace_id());
    if (!ns.ok()) return ToGrpcStatus(ns.status());
    auto keys = ParseScopedKeys(req->keys(), ns->root);
    if (!keys.ok()) return ToGrpcStatus(keys.status());
    if (isolated_ != nullptr) {  // nothing is pinned for a caller the bytes cannot go to
      if (absl::Status s = isolated_->CheckAttached(DataPlaneCallerOf(who, req->client_id()));
          !s.ok()) {
        return ToGrpcStatus(s);
      }
    }
    auto lease = engine_->Acquire(req->namespace_id(), *keys, LeaseTtl(req->lease_ms()));
    if (!lease.ok()) {
      std::vector<ChunkKey> raw;
      for (int i = 0; i < req->keys_size(); ++i) raw.push_back(*ParseKey(req->keys(i), i));
      return ToGrpcStatus(UnscopeKeyNames(lease.status(), *keys, raw));
    }
    if (isolated_ != nullptr) return IsolatedGet(who, *req, *lease, out);
    RecordOwner(lease->id, who, req->client_id(), lease->expires);
    out->set_lease_id(lease->id);
    out->set_expires_unix_ms(absl::ToUnixMillis(lease->expires));
    out->set_node_incarnation(info_.incarnation());
    uint64_t bytes = 0;
    for (const ReadChunk& c : lease->chunks) bytes += c.data.size();
    metrics_.ObserveTransfer(/*get=*/true, bytes);
    for (const ReadChunk& c : lease->chunks) {
      pb::ChunkLocation* loc = out->add_chunks();
      loc->set_address(dram_base_ + c.pool_offset);
      loc->set_size(c.data.size());
      loc->set_checksum(c.checksum);
      loc->set_found_in(ToProto(c.found_in));
    }
    return grpc::Status::OK;
  }

  grpc::Status Release(grpc::ServerContext* ctx, const pb::ReleaseRequest* req,
                       pb::ReleaseResponse* out) override {
    return Handle(ServerMetrics::kRelease, *ctx, [&](const CallIdentity& who) { return ReleaseImpl(who, ctx, req, out); });
  }

  grpc::Status ReleaseImpl(const CallIdentity& who, grpc::ServerContext*, const pb::ReleaseRequest* req,
                           pb::ReleaseResponse*) {
    if (absl::Status s = CheckOwner(req->lease_id(), who, req->client_id()); !s.ok()) {
      return ToGrpcStatus(s);
    }
    absl::Status s = engine_->Release(req->lease_id());
    if (LeaseIsGone(s)) ForgetOwner(req->lease_id());
    for (uint64_t id : req->more_lease_ids()) ReleaseOwned(id, who, req->client_id());
    return ToGrpcStatus(s);
  }

  grpc::Status Touch(grpc::ServerContext* ctx, const pb::TouchRequest* req,
                     pb::TouchResponse* out) override {
    return Handle(ServerMetrics::kTouch, *ctx, [&](const CallIdentity& who) { return TouchImpl(who, ctx, req, out); });
  }

  // Lease-free reads, reported: authorised as a Get of the same keys would be
  // (a client whose token no longer admits it learns it here).
  grpc::Status TouchImpl(const CallIdentity& who, grpc::ServerContext*, const pb::TouchRequest* req,
                         pb::TouchResponse* out) {
    if (absl::Status s = CheckClientId(req->client_id()); !s.ok()) return ToGrpcStatus(s);
    auto ns = AuthorizeNamespace(who, req->namespace_id());
    if (!ns.ok()) return ToGrpcStatus(ns.status());
    auto keys = ParseScopedKeys(req->keys(), ns->root);
    if (!keys.ok()) return ToGrpcStatus(keys.status());
    auto counted = engine_->Touch(req->namespace_id(), *keys);
    if (!counted.ok()) return ToGrpcStatus(counted.status());
    out->set_counted(static_cast<uint32_t>(*counted));
    out->set_node_incarnation(info_.incarnation());
    return grpc::Status::OK;
  }

  grpc::Status PutBegin(grpc::ServerContext* ctx, const pb::PutBeginRequest* req,
                        pb::PutBeginResponse* out) override {
    return Handle(ServerMetrics::kPutBegin, *ctx, [&](const CallIdentity& who) { return PutBeginImpl(who, ctx, req, out); });
  }

  grpc::Status PutBeginImpl(const CallIdentity& who, grpc::ServerContext*, const pb::PutBeginRequest* req,
                            pb::PutBeginResponse* out) {
    if (draining_) return ToGrpcStatus(absl::UnavailableError("the server is shutting down"));
    if (absl::Status s = CheckClientId(req->client_id()); !s.ok()) return ToGrpcStatus(s);
    auto ns = AuthorizeNamespace(who, req->namespace_id());
    if (!ns.ok()) return ToGrpcStatus(ns.status());
    if (isolated_ != nullptr) {
      // The chunks will arrive as messages naming this client id: only the
      // caller that attached it may open a lease for them.
      if (absl::Status s = CheckIsolatedCaller(who, req->client_id(), req->namespace_id());
          !s.ok()) {
        return ToGrpcStatus(s);
      }
    }
    std::vector<PutItem> items;
    std::vector<ChunkKey> raw_keys, scoped_keys;  // to name keys in errors as the caller does
    items.reserve(req->items_size());
    for (int i = 0; i < req->items_size(); ++i) {
      const pb::PutItem& item = req->items(i);
      auto key = ParseKey(item.key(), i);
      if (!key.ok()) return ToGrpcStatus(key.status());
      PutItem p{auth::ScopeKey(ns->root, *key), std::nullopt};
      raw_keys.push_back(*key);
      scoped_keys.push_back(p.key);
      if (!item.parent_key().empty()) {
        auto parent = ParseKey(item.parent_key(), i);
        if (!parent.ok()) {
          return ToGrpcStatus(
              absl::InvalidArgumentError(absl::StrCat("parent of ", parent.status().message())));
        }
        p.parent = auth::ScopeKey(ns->root, *parent);
      }
      items.push_back(p);
    }
    // Reserve the worst case (every slot new) before the engine allocates,
    // so that one caller cannot take the whole pool under write leases.
    const std::string caller = CallerKey(who);
    const uint64_t want = static_cast<uint64_t>(items.size()) * ns->info.chunk_bytes;
    if (absl::Status s = Reserve(caller, want); !s.ok()) return ToGrpcStatus(s);
    auto lease = engine_->BeginPut(req->namespace_id(), items, LeaseTtl(req->lease_ms()));
    uint64_t reserved = 0;
    if (lease.ok()) {
      for (const PutSlot& slot : lease->slots) reserved += slot.dest.size();
    }
    Unreserve(caller, want);
    if (!lease.ok()) return ToGrpcStatus(UnscopeKeyNames(lease.status(), scoped_keys, raw_keys));
    RecordOwner(lease->id, who, req->client_id(), lease->expires, reserved);
    if (isolated_ != nullptr) ExpectIsolatedPut(*req, *lease);
    out->set_lease_id(lease->id);
    out->set_expires_unix_ms(absl::ToUnixMillis(lease->expires));
    out->set_node_incarnation(info_.incarnation());
    uint64_t bytes = 0;
    for (const PutSlot& slot : lease->slots) bytes += slot.dest.size();
    metrics_.ObserveTransfer(/*get=*/false, bytes);
    for (const PutSlot& slot : lease->slots) {
      pb::PutSlot* s = out->add_slots();
      s->set_already_present(slot.already_present);
      if (!slot.already_present) {
        if (isolated_ == nullptr) s->set_address(dram_base_ + slot.pool_offset);
        s->set_size(slot.dest.size());
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status PutCommit(grpc::ServerContext* ctx, const pb::PutCommitRequest* req,
                         pb::PutCommitResponse* out) override {
    return Handle(ServerMetrics::kPutCommit, *ctx, [&](const CallIdentity& who) { return PutCommitImpl(who, ctx, req, out); });
  }

  grpc::Status PutCommitImpl(const CallIdentity& who, grpc::ServerContext* ctx,
                             const pb::PutCommitRequest* req,
                             pb::PutCommitResponse*) {
    if (absl::Status s = CheckOwner(req->lease_id(), who, req->client_id()); !s.ok()) {
      return ToGrpcStatus(s);
    }
    if (isolated_ != nullptr) {
      absl::Status arrived = isolated_->AwaitPut(req->lease_id(), CommitDeadline(ctx));
      if (!arrived.ok()) return ToGrpcStatus(arrived);
    }
    std::vector<uint64_t> sums(req->checksums().begin(), req->checksums().end());
    absl::Status s = engine_->CommitPut(req->lease_id(), sums);
    if (isolated_ != nullptr && LeaseIsGone(s)) isolated_->ForgetPut(req->lease_id());
    if (LeaseIsGone(s)) ForgetOwner(req->lease_id());
    return ToGrpcStatus(s);
  }

  grpc::Status PutAbort(grpc::ServerContext* ctx, const pb::PutAbortRequest* req,
                        pb::PutAbortResponse* out) override {
    return Handle(ServerMetrics::kPutAbort, *ctx, [&](const CallIdentity& who) { return PutAbortImpl(who, ctx, req, out); });
  }

  grpc::Status PutAbortImpl(const CallIdentity& who, grpc::ServerContext*, const pb::PutAbortRequest* req,
                            pb::PutAbortResponse*) {
    if (absl::Status s = CheckOwner(req->lease_id(), who, req->client_id()); !s.ok()) {
      return ToGrpcStatus(s);
    }
    absl::Status s = engine_->AbortPut(req->lease_id());
    if (LeaseIsGone(s)) ForgetOwner(req->lease_id());
    if (isolated_ != nullptr && LeaseIsGone(s)) isolated_->ForgetPut(req->lease_id());
    return ToGrpcStatus(s);
  }

  grpc::Status Hint(grpc::ServerContext* ctx, const pb::HintRequest* req,
                    pb::HintResponse* out) override {
    return Handle(ServerMetrics::kHint, *ctx, [&](const CallIdentity& who) { return HintImpl(who, ctx, req, out); });
  }

  grpc::Status HintImpl(const CallIdentity& who, grpc::ServerContext*, const pb::HintRequest* req, pb::HintResponse* out) {
    auto ns = AuthorizeNamespace(who, req->namespace_id());
    if (!ns.ok()) return ToGrpcStatus(ns.status());
    // With authentication a scheduler id names a scheduler of the caller's
    // tenant: another tenant's set of the same name is another set.
    std::string scheduler = req->scheduler_id();
    if (!who.tenant.empty()) {
      if (scheduler.empty() || scheduler.size() > kMaxClientIdBytes) {
        return ToGrpcStatus(absl::InvalidArgumentError(
            absl::StrCat("hint: scheduler id must be 1 to ", kMaxClientIdBytes, " bytes")));
      }
      scheduler = auth::ScopeName(who.tenant, scheduler);
    }
    std::vector<JobHint> jobs;
    jobs.reserve(req->jobs_size());
    for (int i = 0; i < req->jobs_size(); ++i) {
      auto key = ParseKey(req->jobs(i).last_key(), i);
      if (!key.ok()) return ToGrpcStatus(key.status());
      JobHint job;
      job.last_key = auth::ScopeKey(ns->root, *key);
      job.queue_position = req->jobs(i).queue_position();
      if (req->jobs(i).expected_start_unix_ms() != 0) {
        job.expected_start = absl::FromUnixMillis(req->jobs(i).expected_start_unix_ms());
      }
      jobs.push_back(job);
    }
    absl::Status s = engine_->SetHints(scheduler, req->namespace_id(), jobs,
                                       absl::Milliseconds(req->ttl_ms()));
    if (s.ok()) out->set_accepted_jobs(static_cast<uint32_t>(jobs.size()));
    return ToGrpcStatus(s);
  }

  grpc::Status Stats(grpc::ServerContext* ctx, const pb::StatsRequest* req,
                     pb::StatsResponse* out) override {
    return Handle(ServerMetrics::kStats, *ctx, [&](const CallIdentity& who) { return StatsImpl(who, ctx, req, out); });
  }

  grpc::Status StatsImpl(const CallIdentity& who, grpc::ServerContext*, const pb::StatsRequest*, pb::StatsResponse* out) {
    auto& v = *out->mutable_values();
    for (const auto& [name, value] : StatsValues(engine_->Stats())) v[name] = value;
    if (isolated_ != nullptr) {
      v["data_plane_messages_rejected"] = isolated_->counters().messages_rejected.load();
      v["data_plane_puts_awaited"] = isolated_->awaited_puts();
    }
    if (!who.tenant.empty()) {
      // The caller's own tenant; other tenants' figures are not shown.
      uint64_t namespaces = 0;
      {
        absl::MutexLock lock(&ns_mu_);
        auto it = ns_by_peer_.find(CallerKey(who));
        if (it != ns_by_peer_.end()) namespaces = it->second.size();
      }
      v["tenant_namespaces_registered"] = namespaces;
      absl::MutexLock lock(&mu_);
      PruneExpiredWrites(absl::Now());
      auto it = reserved_.find(CallerKey(who));
      v["tenant_put_reserved_bytes"] = it == reserved_.end() ? 0 : it->second;
      v["tenant_put_reservation_limit_bytes"] = put_reservation_cap_;
      // Its bytes and quotas (0: no limit).
      for (const auto& [name, value] : TenantStatsValues(engine_->GetTenantStats(who.tenant))) {
        v[absl::StrCat("tenant_", name)] = value;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Health(grpc::ServerContext* ctx, const pb::HealthRequest* req,
                      pb::HealthResponse* out) override {
    return Handle(ServerMetrics::kHealth, *ctx, [&](const CallIdentity& who) { return HealthImpl(who, ctx, req, out); });
  }

  grpc::Status HealthImpl(const CallIdentity& who, grpc::ServerContext*, const pb::HealthRequest*, pb::HealthResponse* out) {
    out->set_serving(!draining_);
    const absl::Status persistence = engine_->PersistenceStatus();
    out->set_persisting(persistence.ok());
    if (!persistence.ok()) {
      out->set_detail(absl::StrCat("not persisting: NVMe write-back fails (",
                                   persistence.ToString(), "); puts are refused"));
    }
    return grpc::Status::OK;
  }

  grpc::Status RemoveNamespace(grpc::ServerContext* ctx, const pb::RemoveNamespaceRequest* req,
                               pb::RemoveNamespaceResponse* out) override {
    return Handle(ServerMetrics::kRemoveNamespace, *ctx, [&](const CallIdentity& who) { return RemoveNamespaceImpl(who, ctx, req, out); });
  }

  grpc::Status RemoveNamespaceImpl(const CallIdentity& who, grpc::ServerContext*, const pb::RemoveNamespaceRequest* req,
                                   pb::RemoveNamespaceResponse* out) {
    if (draining_) return ToGrpcStatus(absl::UnavailableError("the server is shutting down"));
    auto spec = FromProto(req->spec());
    if (!spec.ok()) return ToGrpcStatus(spec.status());
    // Without authentication, knowing the namespace's spec and tenant is the
    // authority to remove it; with it, only its tenant may.
    if (!who.tenant.empty() && req->tenant() != who.tenant) {
      return ToGrpcStatus(absl::PermissionDeniedError(
          absl::StrCat("remove namespace: tenant '", who.tenant,
                       "' may remove namespaces of its own tenant only")));
    }
    auto id = engine_->FindNamespace(*spec, req->tenant());
    if (!id.ok()) {
      return ToGrpcStatus(absl::NotFoundError(
          absl::StrCat("remove namespace: no namespace of model '", spec->model_id,
                       "' for tenant '", req->tenant(), "' with this layout is registered")));
    }
    auto removed = engine_->RemoveNamespace(*id);
    if (!removed.ok()) return ToGrpcStatus(removed.status());
    {
      absl::MutexLock lock(&ns_mu_);
      auto it = owner_of_ns_.find(*id);
      if (it != owner_of_ns_.end()) {
        ns_by_peer_[it->second].erase(*id);
        owner_of_ns_.erase(it);
      }
    }
    out->set_namespace_id(*id);
    out->set_chunks_removed(*removed);
    return grpc::Status::OK;
  }

  grpc::Status AttachDataPlane(grpc::ServerContext* ctx, const pb::AttachDataPlaneRequest* req,
                               pb::AttachDataPlaneResponse* out) override {
    return Handle(ServerMetrics::kAttachDataPlane, *ctx, [&](const CallIdentity& who) {
      return AttachDataPlaneImpl(who, ctx, req, out);
    });
  }

  grpc::Status AttachDataPlaneImpl(const CallIdentity& who, grpc::ServerContext*,
                                   const pb::AttachDataPlaneRequest* req,
                                   pb::AttachDataPlaneResponse*) {
    if (isolated_ == nullptr) {
      return ToGrpcStatus(absl::FailedPreconditionError(
          "this node does not isolate tenants: read node info's dram_rkey instead"));
    }
    if (draining_) return ToGrpcStatus(absl::UnavailableError("the server is shutting down"));
    if (absl::Status s = CheckClientId(req->client_id()); !s.ok()) return ToGrpcStatus(s);
    return ToGrpcStatus(
        isolated_->Attach(DataPlaneCallerOf(who, req->client_id()), req->worker_address()));
  }

 private:
  // --- isolated data plane (ServerOptions::isolate_tenants) ---

  // The data-plane owner of `client_id` as called by `who`: the same three
  // things a lease belongs to (Owner).
  static DataPlaneCaller DataPlaneCallerOf(const CallIdentity& who, const std::string& client_id) {
    return DataPlaneCaller{who.tenant, who.peer, client_id};
  }

  // Whether `who` may move bytes of namespace `ns` over the data plane
  // attached as `client_id`: its tenant's namespace (CallerTenant), and an
  // attachment of its own.
  absl::Status CheckIsolatedCaller(const CallIdentity& who, const std::string& client_id,
                                   uint32_t ns) {
    RETURN_IF_ERROR(CallerTenant(*engine_, ns, who.tenant).status());
    return isolated_->CheckAttached(DataPlaneCallerOf(who, client_id));
  }

  grpc::Status IsolatedGet(const CallIdentity& who, const pb::GetRequest& req,
                           const ReadLease& lease, pb::GetResponse* out) {
    auto tenant = CallerTenant(*engine_, req.namespace_id(), who.tenant);
    auto info = engine_->GetNamespace(req.namespace_id());
    if (!tenant.ok() || !info.ok()) {
      (void)engine_->Release(lease.id);
      return ToGrpcStatus(!tenant.ok() ? tenant.status() : info.status());
    }
    ChunkLayout layout(info->spec);
    absl::Status sent = isolated_->SendGet(DataPlaneCallerOf(who, req.client_id()),
                                           req.transfer_id(), lease, req.namespace_id(),
                                           info->spec.num_layers, layout.layer_bytes());
    if (!sent.ok()) return ToGrpcStatus(sent);
    out->set_lease_id(lease.id);
    out->set_released(true);
    out->set_expires_unix_ms(absl::ToUnixMillis(lease.expires));
    out->set_node_incarnation(info_.incarnation());
    uint64_t bytes = 0;
    for (const ReadChunk& c : lease.chunks) {
      bytes += c.data.size();
      pb::ChunkLocation* loc = out->add_chunks();
      loc->set_size(c.data.size());
      loc->set_checksum(c.checksum);
      loc->set_found_in(ToProto(c.found_in));
    }
    metrics_.ObserveTransfer(/*get=*/true, bytes);
    return grpc::Status::OK;
  }

  void ExpectIsolatedPut(const pb::PutBeginRequest& req, const PutLease& lease) {
    std::vector<uint32_t> expected;
    uint64_t chunk_bytes = 0;
    for (uint32_t i = 0; i < lease.slots.size(); ++i) {
      if (lease.slots[i].already_present) continue;
      expected.push_back(i);
      chunk_bytes = lease.slots[i].dest.size();
    }
    isolated_->ExpectPut(lease.id, req.client_id(), std::move(expected), chunk_bytes,
                         lease.expires);
  }

  static absl::Time CommitDeadline(grpc::ServerContext* ctx) {
    // Answer before the caller gives up, so that it learns why.
    const absl::Time cap = absl::Now() + absl::Seconds(30);
    const absl::Time deadline = absl::FromChrono(ctx->deadline()) - absl::Milliseconds(100);
    return deadline < cap ? deadline : cap;
  }

  // A lease belongs to the identity that took it: its tenant, its connection
  // and its client id, all three (a client id alone is a bearer token that
  // anyone who sees it could replay).
  struct Owner {
    std::string tenant;
    std::string peer;
    std::string client_id;
    absl::Time expires;
  };
  // DRAM one write lease holds, charged to its caller (CallerKey).
  struct WriteReservation {
    std::string caller;
    uint64_t bytes = 0;
    absl::Time expires;
  };

  // Whom limits are charged to: the tenant with authentication, the client's
  // host without ("ipv4:127.0.0.1").
  static std::string CallerKey(const CallIdentity& who) {
    return who.tenant.empty() ? PeerHost(who.peer) : absl::StrCat("tenant ", who.tenant);
  }

  // Charges `bytes` to `caller` for an allocation about to happen.
  // ResourceExhausted past the per-caller limit.
  absl::Status Reserve(const std::string& caller, uint64_t bytes) {
    absl::MutexLock lock(&mu_);
    PruneExpiredWrites(absl::Now());
    uint64_t& held = reserved_[caller];
    if (held + bytes > put_reservation_cap_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "put: ", caller, " holds ", held, " bytes of DRAM under open writes; ", bytes,
          " more would pass the per-caller limit of ", put_reservation_cap_,
          " bytes (--max_put_reservation); commit or abort open puts, or put fewer chunks at "
          "once"));
    }
    held += bytes;
    return absl::OkStatus();
  }

  void Unreserve(const std::string& caller, uint64_t bytes) {
    absl::MutexLock lock(&mu_);
    UnreserveLocked(caller, bytes);
  }

  void UnreserveLocked(const std::string& caller, uint64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = reserved_.find(caller);
    if (it == reserved_.end()) return;
    it->second -= std::min(it->second, bytes);
    if (it->second == 0) reserved_.erase(it);
  }

  // Write leases past their expiry no longer count (the engine frees their
  // slots when it reaps them).
  void PruneExpiredWrites(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = writes_.begin(); it != writes_.end();) {
      if (it->second.expires <= now) {
        UnreserveLocked(it->second.caller, it->second.bytes);
        writes_.erase(it++);
      } else {
        ++it;
      }
    }
  }

  void RecordOwner(uint64_t lease, const CallIdentity& who, const std::string& client,
                   absl::Time expires, uint64_t write_bytes = 0) {
    absl::MutexLock lock(&mu_);
    owners_[lease] = {who.tenant, who.peer, client, expires};
    if (write_bytes > 0) {
      const std::string caller = CallerKey(who);
      writes_[lease] = {caller, write_bytes, expires};
      reserved_[caller] += write_bytes;
    }
    // Leases that expired in the engine are dropped here now and then.
    if (owners_.size() > 2 * last_prune_size_ + 1024) {
      const absl::Time now = absl::Now();
      absl::erase_if(owners_,
                     [&](const auto& kv) { return kv.second.expires + absl::Minutes(1) < now; });
      last_prune_size_ = owners_.size();
    }
  }

  absl::Status CheckOwner(uint64_t lease, const CallIdentity& who, const std::string& client) {
    RETURN_IF_ERROR(CheckClientId(client));
    absl::MutexLock lock(&mu_);
    auto it = owners_.find(lease);
    if (it == owners_.end()) {
      return absl::NotFoundError(absl::StrCat("lease ", lease, " is unknown, expired or done"));
    }
    const Owner& owner = it->second;
    if (owner.client_id != client || owner.tenant != who.tenant || owner.peer != who.peer) {
      return absl::PermissionDeniedError(
          absl::StrCat("lease ", lease, " belongs to another client"));
    }
    return absl::OkStatus();
  }

  // Authenticates the call, runs one RPC's body with the caller's identity
  // and records its latency and outcome.
  template <typename Body>
  grpc::Status Handle(ServerMetrics::Rpc rpc, grpc::ServerContext& ctx, Body body) {
    const absl::Time start = absl::Now();
    // On every answer, errors included (proto/call_metadata.h).
    ctx.AddTrailingMetadata(proto::kNodeIncarnationKey, incarnation_text_);
    auto who = TenantOfCall(ctx);
    grpc::Status status = who.ok() ? body(*who) : ToGrpcStatus(who.status());
    metrics_.ObserveRpc(rpc, absl::ToDoubleSeconds(absl::Now() - start),
                        static_cast<absl::StatusCode>(status.error_code()));
    return status;
  }

  // Whether the engine no longer holds the lease after a call that returned
  // `s`: a call of the wrong kind (FailedPrecondition) or with the wrong
  // number of checksums (InvalidArgument) leaves it open, still the caller's.
  static bool LeaseIsGone(const absl::Status& s) {
    return s.code() != absl::StatusCode::kFailedPrecondition &&
           s.code() != absl::StatusCode::kInvalidArgument;
  }

  // "ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1"; "ipv6:[::1]:5000" -> "ipv6:[::1]".
  static std::string PeerHost(const std::string& peer) {
    const size_t colon = peer.rfind(':');
    const size_t first = peer.find(':');
    if (colon == std::string::npos || colon == first) return peer;
    return peer.substr(0, colon);
  }

  // Releases read lease `lease` if `client` owns it; anything else is
  // skipped (best effort, for releases carried on other calls).
  void ReleaseOwned(uint64_t lease, const CallIdentity& who, const std::string& client) {
    if (!CheckOwner(lease, who, client).ok()) return;
    if (LeaseIsGone(engine_->Release(lease))) ForgetOwner(lease);
  }

  void ForgetOwner(uint64_t lease) {
    absl::MutexLock lock(&mu_);
    owners_.erase(lease);
    auto w = writes_.find(lease);
    if (w != writes_.end()) {
      UnreserveLocked(w->second.caller, w->second.bytes);
      writes_.erase(w);
    }
  }

  Engine* const engine_;
  const ServerOptions options_;
  const pb::NodeInfo info_;
  const std::string incarnation_text_;  // the trailer every answer carries
  const uint64_t dram_base_;
  const uint64_t put_reservation_cap_;
  IsolatedDataPlane* const isolated_;  // null unless isolate_tenants
  std::atomic<bool> draining_{false};
  ServerMetrics metrics_;

  absl::Mutex reload_mu_;  // held by ReloadTenants, before tenants_mu_
  mutable absl::Mutex tenants_mu_;
  // Null without authentication; replaced whole by ReloadTenants.
  std::shared_ptr<const auth::TenantTable> tenants_ ABSL_GUARDED_BY(tenants_mu_);

  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Owner> owners_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, WriteReservation> writes_ ABSL_GUARDED_BY(mu_);
  // Bytes charged per caller: open write leases and puts being allocated.
  absl::flat_hash_map<std::string, uint64_t> reserved_ ABSL_GUARDED_BY(mu_);
  // Namespaces each caller registered (for max_namespaces_per_peer).
  absl::Mutex ns_mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<uint32_t>> ns_by_peer_
      ABSL_GUARDED_BY(ns_mu_);
  absl::flat_hash_map<uint32_t, std::string> owner_of_ns_ ABSL_GUARDED_BY(ns_mu_);
  size_t last_prune_size_ ABSL_GUARDED_BY(mu_) = 0;
};

class StoreServerImpl final : public StoreServer {
 public:
  StoreServerImpl() = default;
  ~StoreServerImpl() override { (void)Shutdown(absl::ZeroDuration()); }

  absl::Status Init(std::unique_ptr<Engine> engine, const ServerOptions& options) {
    engine_ = std::move(engine);
    transport::UcxOptions ucx;
    ucx.transports = options.ucx_transports;
    ucx.data_listen = options.data_listen;
    if (ucx.data_listen.empty()) {
      const std::string& addr = options.listen_address;
      ucx.data_listen = addr.substr(0, addr.rfind(':'));
    }
    ucx.progress_thread = true;
    if (options.isolate_tenants) {
      isolated_ = std::make_unique<IsolatedDataPlane>(engine_.get(), kMaxAttachedClients);
      ucx.remote_access = false;
      ucx.on_message = isolated_->Sink();
    }
    ASSIGN_OR_RETURN(ucx_, transport::UcxContext::Create(ucx));
    if (isolated_ != nullptr) {
      isolated_->SetContext(ucx_.get());
    } else {
      ASSIGN_OR_RETURN(dram_, ucx_->Register(engine_->dram_region()));
    }

    pb::NodeInfo info;
    info.set_protocol_version(kProtocolVersion);
    info.set_server_version(kServerVersion);
    info.set_ucx_worker_address(ucx_->worker_address());
    info.set_dram_bytes(engine_->dram_region().size());
    if (dram_ != nullptr) {
      info.set_dram_base(dram_->base());
      info.set_dram_rkey(dram_->packed_rkey());
    }
    info.set_isolated_data_plane(isolated_ != nullptr);
    info.set_ucx_transports(ucx_->transports_in_use());
    info.set_ucx_tcp_receive_segment(ucx_->tcp_receive_segment());
    info.set_nvme_capacity_bytes(engine_->Stats().nvme_capacity_bytes);
    info.set_max_keys_per_call(static_cast<uint32_t>(engine_->max_keys_per_call()));
    info.set_incarnation(absl::Uniform<uint64_t>(absl::BitGen()) | 1);
    const std::string share = engine_->dram_share_path();
    struct stat st{};
    const std::string boot_id = BootId();
    if (isolated_ == nullptr && !share.empty() && !boot_id.empty() &&
        stat(share.c_str(), &st) == 0) {
      info.set_shm_path(share);
      info.set_shm_bytes(engine_->dram_region().size());
      info.set_shm_inode(st.st_ino);
      info.set_host_boot_id(boot_id);
      info.set_node_pid(static_cast<uint32_t>(getpid()));
      const std::string index = engine_->read_index_share_path();
      struct stat ist{};
      if (!index.empty() && stat(index.c_str(), &ist) == 0) {
        info.set_read_index_path(index);
        info.set_read_index_bytes(static_cast<uint64_t>(ist.st_size));
        info.set_read_index_inode(ist.st_ino);
      }
    }

    std::shared_ptr<const auth::TenantTable> tenants;
    if (!options.tenants_file.empty()) {
      ASSIGN_OR_RETURN(auth::TenantTable table, auth::TenantTable::Load(options.tenants_file));
      engine_->SetTenantQuotas(QuotasOf(table));
      tenants = std::make_shared<const auth::TenantTable>(std::move(table));
    }
    std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
    tls_ = !options.tls_cert_file.empty() || !options.tls_key_file.empty() ||
           !options.tls_client_ca_file.empty();
    if (tls_) {
      ASSIGN_OR_RETURN(auth::ServerTlsPem pem,
                       auth::LoadServerTls(options.tls_cert_file, options.tls_key_file,
                                           options.tls_client_ca_file));
      grpc::SslServerCredentialsOptions ssl(
          pem.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      ssl.pem_root_certs = pem.client_ca;
      ssl.pem_key_cert_pairs.push_back({pem.private_key, pem.cert_chain});
      credentials = grpc::SslServerCredentials(ssl);
    }
    grpc::ServerBuilder builder;
    // gRPC sets SO_REUSEPORT by default, so a second node on a port in use
    // would start and take half of the first one's connections.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort(options.listen_address, credentials, &port_);
    builder.SetMaxReceiveMessageSize(options.max_message_bytes);
    info.set_node_id(options.node_id.empty() ? options.listen_address : options.node_id);
    node_id_ = info.node_id();
    service_ =
        std::make_unique<StrataService>(engine_.get(), options, info, isolated_.get(), tenants);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address,
                                                 " (address in use or invalid)"));
    }
    const std::string& addr = options.listen_address;
    address_ = absl::StrCat(addr.substr(0, addr.rfind(':')), ":", port_);
    transports_ = ucx_->transports_in_use();
    const std::string host = addr.substr(0, addr.rfind(':'));
    if (!tls_ && !IsLoopbackHost(host)) {
      LogInfo("gRPC on %s is plaintext: calls%s can be read and altered on the network; give "
              "--tls_cert and --tls_key (and --tls_client_ca for mutual TLS) to encrypt them",
              address_.c_str(), tenants != nullptr ? " and their tenant tokens" : "");
    }
    if (!options.metrics_listen.empty()) {
      StrataService* service = service_.get();
      ASSIGN_OR_RETURN(metrics_http_, MetricsHttpServer::Start(options.metrics_listen, [service] {
                         return service->RenderMetrics();
                       }));
    }
    return absl::OkStatus();
  }

  int metrics_port() const override { return metrics_http_ != nullptr ? metrics_http_->port() : 0; }

  int port() const override { return port_; }
  bool authentication() const override { return service_->authentication(); }
  bool tls() const override { return tls_; }
  absl::Status ReloadTenants() override { return service_->ReloadTenants(); }
  std::string address() const override { return address_; }
  std::string ucx_transports() const override { return transports_; }
  std::string node_id() const override { return node_id_; }
  std::string server_version() const override { return kServerVersion; }

  absl::Status Shutdown(absl::Duration grace) override {
    absl::MutexLock lock(&shutdown_mu_);
    if (stopped_) return absl::OkStatus();
    stopped_ = true;
    if (service_ != nullptr) service_->StartDraining();
    const absl::Time deadline = absl::Now() + grace;
    while (engine_ != nullptr && absl::Now() < deadline) {
      EngineStats s = engine_->Stats();
      if (s.active_read_leases + s.active_write_leases == 0) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
      server_->Wait();
    }
    if (metrics_http_ != nullptr) metrics_http_->Stop();
    absl::Status status;
    if (engine_ != nullptr) status = engine_->FlushWriteBack();
    dram_.reset();
    isolated_.reset();  // its endpoints before the context
    ucx_.reset();
    engine_.reset();  // joins background threads, closes RocksDB
    return status;
  }

 private:
  static constexpr size_t kMaxAttachedClients = 4096;

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<IsolatedDataPlane> isolated_;
  std::unique_ptr<transport::UcxContext> ucx_;
  std::unique_ptr<transport::RegisteredMemory> dram_;
  std::unique_ptr<StrataService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool tls_ = false;
  std::string address_;
  std::string transports_;
  std::string node_id_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  absl::Mutex shutdown_mu_;
  bool stopped_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

// The port of a listen address "host:port" must be a number in [0, 65535]
// (gRPC would take 99999 modulo 65536 and listen on 34463).
absl::Status CheckListenPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon + 1 == address.size() ||
      address.find_first_not_of("0123456789", colon + 1) != std::string::npos ||
      address.size() - colon - 1 > 5 || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address '", address, "' is not host:port with a port in [0, 65535]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<StoreServer>> StoreServer::Start(std::unique_ptr<Engine> engine,
                                                                const ServerOptions& options) {
  if (engine == nullptr) return absl::InvalidArgumentError("no engine given");
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError("max_message_bytes must be positive");
  }
  RETURN_IF_ERROR(CheckListenPort(options.listen_address));
  auto server = std::make_unique<StoreServerImpl>();
  RETURN_IF_ERROR(server->Init(std::move(engine), options));
  return std::unique_ptr<StoreServer>(std::move(server));
}

}  // namespace strata::store
