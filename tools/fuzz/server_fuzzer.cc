// Fuzzes the store node's request handlers in-process: two real StoreServers
// (store/server.h) in this process, each over an engine with a small DRAM
// pool and no NVMe, one plain and one with a tenants file (authentication
// on), called over gRPC on 127.0.0.1 with request bytes from the fuzzer.
//
// Input: one byte choosing the node (bit 0: the authenticated one), then
// calls, each
//   method (1 byte: bits 0-3 the RPC, mod 13, in the order of strata.proto;
//           bits 4-5 the caller: tenant a's token, tenant b's, none, or a
//           malformed one)
//   length (2 bytes, little-endian) | that many bytes of the request message
// Bytes that do not parse as the RPC's request message are skipped (gRPC
// refuses them before any handler runs).
//
// So that the fuzzer can reach state beyond one call, the harness plays the
// data plane and the client's memory of ids:
//   - lease ids 1..16 in Release, PutCommit, PutAbort and the release lists
//     of Get and Release name the leases this input opened, in order;
//   - after PutBegin it writes a pattern into every new slot, as a client's
//     RMA put would, and a checksum of 1 in PutCommit stands for the right
//     checksum of that item.
// After the calls it aborts or releases every lease the input opened,
// withdraws its hints and removes its namespaces, then checks that the node
// is back where it started: no lease open, no namespace, no DRAM in use, no
// DRAM reserved for puts. Every slot and chunk address a node hands out must
// lie inside its DRAM pool.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/tenants.h"
#include "store/common/checksum.h"
#include "store/engine.h"
#include "store/server.h"
#include "tools/fuzz/fuzz_check.h"

namespace strata::fuzz {
const char* const kTargetName = "server_fuzzer";
}  // namespace strata::fuzz

namespace {

namespace pb = ::strata::v1;
using strata::fuzz::Check;
using strata::fuzz::Fail;
using strata::fuzz::Verbose;

enum Caller { kTenantA = 0, kTenantB = 1, kNoToken = 2, kBadToken = 3 };

struct Node {
  std::unique_ptr<strata::store::StoreServer> server;
  strata::store::Engine* engine = nullptr;  // owned by `server`
  std::unique_ptr<pb::Strata::Stub> stub;
  uint64_t dram_base = 0;  // the pool's address as the node announces it
  bool authenticated = false;
};

struct Harness {
  Node nodes[2];
  std::string token_a, token_b;
};

// Tokens are only checked by the authenticated node; sending them to the
// plain one too keeps the two runs of an input alike.
void SetCaller(const Harness& h, Caller caller, grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  switch (caller) {
    case kTenantA:
      ctx->AddMetadata("authorization", "Bearer " + h.token_a);
      break;
    case kTenantB:
      ctx->AddMetadata("authorization", "Bearer " + h.token_b);
      break;
    case kNoToken:
      break;
    case kBadToken:
      ctx->AddMetadata("authorization", "Bearer a:00");
      break;
  }
}

Node StartNode(const std::string& tenants_file) {
  strata::store::EngineOptions eo;
  eo.dram_bytes = 4 << 20;
  eo.max_lease_ttl = absl::Minutes(10);
  auto engine = strata::store::Engine::Open(eo);
  Check(engine.ok(), "engine: " + engine.status().ToString());
  Node node;
  node.engine = engine->get();
  strata::store::ServerOptions so;
  so.listen_address = "127.0.0.1:0";
  so.ucx_transports = "tcp";
  so.max_namespaces_per_peer = 64;
  so.tenants_file = tenants_file;
  auto server = strata::store::StoreServer::Start(*std::move(engine), so);
  Check(server.ok(), "server: " + server.status().ToString());
  node.server = *std::move(server);
  node.authenticated = !tenants_file.empty();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  node.stub = pb::Strata::NewStub(grpc::CreateCustomChannel(
      node.server->address(), grpc::InsecureChannelCredentials(), args));
  return node;
}

Harness* Setup() {
  // Request bytes with invalid UTF-8 in a string field are refused by the
  // parser, which logs each; that is expected here.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  auto* h = new Harness;
  auto a = strata::auth::NewToken("a");
  auto b = strata::auth::NewToken("b");
  Check(a.ok() && b.ok(), "tokens");
  h->token_a = *a;
  h->token_b = *b;
  const char* tmp = std::getenv("TMPDIR");
  const std::string file = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                        "/strata_server_fuzz_tenants.", getpid());
  {
    std::ofstream out(file, std::ios::trunc);
    out << "a " << strata::auth::HashToken(h->token_a) << "\n"
        << "b " << strata::auth::HashToken(h->token_b) << "\n";
  }
  h->nodes[0] = StartNode("");
  h->nodes[1] = StartNode(file);
  std::filesystem::remove(file);
  for (Node& node : h->nodes) {
    grpc::ClientContext ctx;
    SetCaller(*h, kTenantA, &ctx);
    pb::NodeInfo info;
    grpc::Status s = node.stub->GetNodeInfo(&ctx, pb::NodeInfoRequest(), &info);
    Check(s.ok(), "node info: " + s.error_message());
    node.dram_base = info.dram_base();
  }
  return h;
}

struct OpenLease {
  uint64_t id;
  bool write;
  std::string client_id;
  Caller caller;
};

struct Registered {
  pb::RegisterNamespaceRequest request;
  Caller caller;
};

struct Hinted {
  std::string scheduler_id;
  uint32_t namespace_id;
  Caller caller;
};

// What one input did to a node, to be undone after it.
class Session {
 public:
  Session(const Harness& h, Node& node) : h_(h), node_(node) {}

  void Run(uint8_t method, Caller caller, const uint8_t* data, size_t size) {
    switch (method % 13) {
      case 0:
        Call<pb::NodeInfoRequest, pb::NodeInfo>(&pb::Strata::Stub::GetNodeInfo, caller, data,
                                                size);
        break;
      case 1: {
        pb::RegisterNamespaceRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        pb::RegisterNamespaceResponse resp;
        if (Invoke(&pb::Strata::Stub::RegisterNamespace, caller, req, &resp).ok()) {
          registered_.push_back({req, caller});
        }
        break;
      }
      case 2: {
        pb::LookupRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        pb::LookupResponse resp;
        grpc::Status s = Invoke(&pb::Strata::Stub::Lookup, caller, req, &resp);
        if (s.ok()) {
          Check(resp.tiers_size() == req.keys_size(), "lookup: one tier per key");
          Check(resp.prefix_chunks() <= static_cast<uint32_t>(req.keys_size()),
                "lookup: prefix longer than the keys");
        }
        break;
      }
      case 3: {
        pb::GetRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        for (uint64_t& id : *req.mutable_release_lease_ids()) id = LeaseId(id);
        pb::GetResponse resp;
        if (Invoke(&pb::Strata::Stub::Get, caller, req, &resp).ok()) {
          leases_.push_back({resp.lease_id(), false, req.client_id(), caller});
          Check(resp.chunks_size() == req.keys_size(), "get: one chunk per key");
          for (const pb::ChunkLocation& c : resp.chunks()) CheckInPool(c.address(), c.size());
        }
        break;
      }
      case 4: {
        pb::ReleaseRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        req.set_lease_id(LeaseId(req.lease_id()));
        for (uint64_t& id : *req.mutable_more_lease_ids()) id = LeaseId(id);
        pb::ReleaseResponse resp;
        Invoke(&pb::Strata::Stub::Release, caller, req, &resp);
        break;
      }
      case 5: {
        pb::PutBeginRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        pb::PutBeginResponse resp;
        if (Invoke(&pb::Strata::Stub::PutBegin, caller, req, &resp).ok()) {
          Check(resp.slots_size() == req.items_size(), "put: one slot per item");
          leases_.push_back({resp.lease_id(), true, req.client_id(), caller});
          std::vector<uint64_t>& sums = checksums_[resp.lease_id()];
          for (int i = 0; i < resp.slots_size(); ++i) {
            const pb::PutSlot& slot = resp.slots(i);
            sums.push_back(slot.already_present() ? 0 : WriteSlot(slot, i));
          }
        }
        break;
      }
      case 6: {
        pb::PutCommitRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        req.set_lease_id(LeaseId(req.lease_id()));
        auto it = checksums_.find(req.lease_id());
        for (int i = 0; i < req.checksums_size(); ++i) {
          if (req.checksums(i) == 1 && it != checksums_.end() && i < it->second.size()) {
            req.set_checksums(i, it->second[i]);
          }
        }
        pb::PutCommitResponse resp;
        Invoke(&pb::Strata::Stub::PutCommit, caller, req, &resp);
        break;
      }
      case 7: {
        pb::PutAbortRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        req.set_lease_id(LeaseId(req.lease_id()));
        pb::PutAbortResponse resp;
        Invoke(&pb::Strata::Stub::PutAbort, caller, req, &resp);
        break;
      }
      case 8: {
        pb::HintRequest req;
        if (!req.ParseFromArray(data, static_cast<int>(size))) return;
        pb::HintResponse resp;
        if (Invoke(&pb::Strata::Stub::Hint, caller, req, &resp).ok()) {
          hinted_.push_back({req.scheduler_id(), req.namespace_id(), caller});
        }
        break;
      }
      case 9:
        Call<pb::StatsRequest, pb::StatsResponse>(&pb::Strata::Stub::Stats, caller, data, size);
        break;
      case 10:
        Call<pb::HealthRequest, pb::HealthResponse>(&pb::Strata::Stub::Health, caller, data,
                                                    size);
        break;
      case 11:
        Call<pb::RemoveNamespaceRequest, pb::RemoveNamespaceResponse>(
            &pb::Strata::Stub::RemoveNamespace, caller, data, size);
        break;
      case 12:
        Call<pb::AttachDataPlaneRequest, pb::AttachDataPlaneResponse>(
            &pb::Strata::Stub::AttachDataPlane, caller, data, size);
        break;
    }
  }

  // Undoes the input and checks that the node is back where it started.
  void Finish() {
    for (const OpenLease& l : leases_) {
      if (l.write) {
        pb::PutAbortRequest req;
        req.set_client_id(l.client_id);
        req.set_lease_id(l.id);
        pb::PutAbortResponse resp;
        Invoke(&pb::Strata::Stub::PutAbort, l.caller, req, &resp);
      } else {
        pb::ReleaseRequest req;
        req.set_client_id(l.client_id);
        req.set_lease_id(l.id);
        pb::ReleaseResponse resp;
        Invoke(&pb::Strata::Stub::Release, l.caller, req, &resp);
      }
    }
    for (const Hinted& hint : hinted_) {
      pb::HintRequest req;
      req.set_scheduler_id(hint.scheduler_id);
      req.set_namespace_id(hint.namespace_id);
      pb::HintResponse resp;
      Invoke(&pb::Strata::Stub::Hint, hint.caller, req, &resp);
    }
    for (const Registered& r : registered_) {
      pb::RemoveNamespaceRequest req;
      *req.mutable_spec() = r.request.spec();
      req.set_tenant(r.request.tenant());
      pb::RemoveNamespaceResponse resp;
      Invoke(&pb::Strata::Stub::RemoveNamespace, r.caller, req, &resp);
    }
    const strata::store::EngineStats stats = node_.engine->Stats();
    Check(stats.active_read_leases == 0 && stats.active_write_leases == 0,
          absl::StrCat("after the input: ", stats.active_read_leases, " read and ",
                       stats.active_write_leases, " write leases left open"));
    Check(stats.namespaces == 0, absl::StrCat("after the input: ", stats.namespaces,
                                              " namespaces left registered"));
    Check(stats.dram_used_bytes == 0,
          absl::StrCat("after the input: ", stats.dram_used_bytes, " bytes of DRAM in use"));
    if (node_.authenticated) {
      for (Caller caller : {kTenantA, kTenantB}) {
        pb::StatsResponse resp;
        grpc::Status s = Invoke(&pb::Strata::Stub::Stats, caller, pb::StatsRequest(), &resp);
        Check(s.ok(), "stats: " + s.error_message());
        const auto& v = resp.values();
        Check(v.at("tenant_put_reserved_bytes") == 0,
              absl::StrCat("after the input: ", v.at("tenant_put_reserved_bytes"),
                           " bytes reserved for a tenant's puts"));
        Check(v.at("tenant_namespaces_registered") == 0,
              "after the input: namespaces still counted against a tenant");
      }
    }
  }

 private:
  template <typename Req, typename Resp>
  grpc::Status Invoke(grpc::Status (pb::Strata::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                 Resp*),
                      Caller caller, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    SetCaller(h_, caller, &ctx);
    grpc::Status s = ((*node_.stub).*method)(&ctx, req, resp);
    if (Verbose()) {
      std::fprintf(stderr, "  %s -> %d %s\n", Req::descriptor()->name().c_str(),
                   s.error_code(), s.error_message().c_str());
    }
    Check(s.error_code() != grpc::StatusCode::UNKNOWN &&
              s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
              s.error_code() != grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("a call failed with code ", s.error_code(), ": ", s.error_message()));
    return s;
  }

  template <typename Req, typename Resp>
  void Call(grpc::Status (pb::Strata::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
            Caller caller, const uint8_t* data, size_t size) {
    Req req;
    if (!req.ParseFromArray(data, static_cast<int>(size))) return;
    Resp resp;
    Invoke(method, caller, req, &resp);
  }

  // 1..16: the input's own leases, in order; anything else as given.
  uint64_t LeaseId(uint64_t id) const {
    if (id >= 1 && id <= 16 && id <= leases_.size()) return leases_[id - 1].id;
    return id;
  }

  void CheckInPool(uint64_t address, uint64_t size) const {
    const std::span<std::byte> pool = node_.engine->dram_region();
    Check(address >= node_.dram_base && size <= pool.size() &&
              address - node_.dram_base <= pool.size() - size,
          absl::StrCat("address ", address, " (+", size, ") outside the DRAM pool"));
  }

  // Fills a new slot as a client's RMA put would; returns its checksum.
  uint64_t WriteSlot(const pb::PutSlot& slot, int index) {
    CheckInPool(slot.address(), slot.size());
    std::byte* dest = node_.engine->dram_region().data() + (slot.address() - node_.dram_base);
    for (uint64_t i = 0; i < slot.size(); ++i) {
      dest[i] = static_cast<std::byte>((i * 131 + static_cast<uint64_t>(index) * 7 + 1) & 0xff);
    }
    return strata::ChunkChecksum(std::span<const std::byte>(dest, slot.size()));
  }

  const Harness& h_;
  Node& node_;
  std::vector<OpenLease> leases_;
  std::vector<Registered> registered_;
  std::vector<Hinted> hinted_;
  std::map<uint64_t, std::vector<uint64_t>> checksums_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* const harness = Setup();
  if (size == 0) return 0;
  Session session(*harness, harness->nodes[data[0] & 1]);
  size_t at = 1;
  while (at + 3 <= size) {
    const uint8_t method = data[at];
    const size_t length = std::min<size_t>(data[at + 1] | (size_t{data[at + 2]} << 8),
                                           size - at - 3);
    session.Run(method & 0x0f, static_cast<Caller>((method >> 4) & 3), data + at + 3, length);
    at += 3 + length;
  }
  session.Finish();
  return 0;
}
