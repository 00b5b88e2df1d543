// Fuzzes an isolated node's data plane (--isolate_tenants,
// store/isolated_data_plane.h) from a hostile client that holds a valid
// token: one real StoreServer in this process (isolate_tenants, tenants a
// and b with DRAM quotas that add up to less than its 4 MiB pool, no NVMe),
// reached over real gRPC and real UCX (tcp on 127.0.0.1).
//
// Who is there:
//   - the honest reader: the client library (client/client.h) with tenant
//     a's token; at start-up it saves 8 chunks, which every input must leave
//     intact;
//   - the honest writer: tenant a, its own connection, UCX context and a
//     random client id; each input it opens a write lease on 2 new chunks
//     before the attacker's messages and fills it after them;
//   - the attacker: tenant b, its own connection, UCX context and client id
//     ("mallory"), attached as a client should be. The input drives it.
//
// Input: operations, each an op byte (mod 6) and its operands (bytes past
// the end read as 0):
//   0 put-begin  b: 1 + (b & 3) chunks, in its own namespace (b & 4: in the
//                honest writer's, refused); b & 8: a byte follows and the
//                lease lasts 1 + (byte % 8) ms, and is left to expire; then
//                the keys' bytes
//   1 send       ref, index, flags, u16 length, fill: a put-chunk header
//                built from them (ref: below; flags bit 0: get-slice kind;
//                bits 1-2: client id its own, empty, from the input (u8
//                length, bytes) or its own with one more byte; bit 3: a
//                layer byte follows; bit 4: the payload is exactly the
//                chunk size instead of `length`), payload bytes `fill`
//   2 raw send   u8 header length, the header's bytes, u16 payload length,
//                fill
//   3 commit     ref, with the right checksum of what it sent to each slot
//                (only once every slot was sent one); a ref to the honest
//                writer's lease: refused; a short-lived lease past its
//                expiry may be refused as expired (NotFound, or
//                FailedPrecondition when it expired with chunks in flight)
//   4 abort      ref (the honest writer's: refused)
//   5 wait       for the attacker's sends to complete locally
// ref: bit 7 clear: the attacker's own lease number ref (mod how many it
// opened; the honest lease if none); bit 7 set: the honest writer's lease
// id plus (ref & 3) - 1; 0xff: a u64 id from the input.
//
// After the operations the attacker sends one valid chunk of a fresh lease
// of its own and commits it (the node still serves it, and every message
// sent before was handled), the honest writer fills and commits its lease
// (OK: nothing of the attacker's landed in it), the reader loads those 2
// chunks and the 8 of start-up and compares every byte, the attacker's
// leases are aborted and the input's namespaces removed; then the node must
// hold exactly the 8 chunks of start-up: no lease, no other namespace, no
// DRAM or put reservation beyond them.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "proto/data_message.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/tenants.h"
#include "store/common/checksum.h"
#include "store/engine.h"
#include "store/server.h"
#include "tools/fuzz/fuzz_check.h"
#include "transport/ucx_transport.h"

namespace strata::fuzz {
const char* const kTargetName = "isolated_fuzzer";
}  // namespace strata::fuzz

namespace {

namespace pb = ::strata::v1;
using strata::fuzz::Check;
using strata::fuzz::Fail;
using strata::fuzz::Verbose;
using strata::ChunkKey;
using strata::proto::DataMessage;

constexpr int kSetupChunks = 8;
constexpr int kHonestChunks = 2;
// At most 4 chunks each: 256 KiB of open leases, a quarter of the
// attacker's quota.
constexpr int kMaxPutBegins = 32;

strata::NamespaceSpec Spec(const std::string& model) {
  strata::NamespaceSpec s;
  s.model_id = model;
  s.num_layers = 2;
  s.num_kv_heads = 1;
  s.head_dim = 16;
  s.dtype = strata::DType::kFloat16;
  s.tokens_per_chunk = 16;
  return s;  // 2 KiB chunks
}

pb::NamespaceSpec ToProto(const strata::NamespaceSpec& s) {
  pb::NamespaceSpec p;
  p.set_model_id(s.model_id);
  p.set_num_layers(s.num_layers);
  p.set_num_kv_heads(s.num_kv_heads);
  p.set_head_dim(s.head_dim);
  p.set_dtype(pb::DTYPE_FP16);
  p.set_tokens_per_chunk(s.tokens_per_chunk);
  return p;
}

std::vector<std::byte> Pattern(size_t size, uint64_t seed) {
  std::vector<std::byte> out(size);
  for (size_t i = 0; i < size; ++i) {
    out[i] = static_cast<std::byte>((i * 131 + seed * 7 + (i >> 8) * seed + 1) & 0xff);
  }
  return out;
}

std::string KeyBytes(uint8_t tag, uint8_t k) {
  std::string key(ChunkKey::kSize, static_cast<char>(k));
  key[0] = static_cast<char>(tag);
  return key;
}

// A client speaking gRPC and UCX itself, as an attacker would (and as the
// honest writer does here, to hold a lease open across the input).
class RawClient {
 public:
  RawClient(const std::string& address, const std::string& node_worker, std::string token,
            std::string client_id)
      : token_(std::move(token)), client_id_(std::move(client_id)), node_worker_(node_worker) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
    stub_ = pb::Strata::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
    strata::transport::UcxOptions o;
    o.transports = "tcp";
    o.remote_access = false;
    o.on_message = [](std::span<const std::byte>, size_t) {
      return strata::transport::MessageTarget{};
    };
    auto ucx = strata::transport::UcxContext::Create(o);
    Check(ucx.ok(), "ucx: " + ucx.status().ToString());
    ucx_ = *std::move(ucx);
    Reconnect();
    pb::AttachDataPlaneRequest req;
    req.set_client_id(client_id_);
    req.set_worker_address(ucx_->worker_address());
    pb::AttachDataPlaneResponse resp;
    grpc::Status s = Call(&pb::Strata::Stub::AttachDataPlane, req, &resp);
    Check(s.ok(), "attach: " + s.error_message());
  }

  const std::string& client_id() const { return client_id_; }
  strata::transport::Endpoint& ep() { return *ep_; }

  void Reconnect() {
    ep_.reset();
    auto ep = ucx_->Connect(node_worker_);
    Check(ep.ok(), "connect to the node's worker: " + ep.status().ToString());
    ep_ = *std::move(ep);
  }

  // Posts a message; a failed endpoint is replaced (the node may drop a
  // peer that misbehaves; that is its right).
  void Send(const std::string& header, std::shared_ptr<std::vector<std::byte>> payload) {
    absl::Status s = ep_->PostSend(std::as_bytes(std::span(header)), *payload,
                                   [payload](absl::Status) {});
    if (Verbose()) std::fprintf(stderr, "  send %zu+%zu -> %s\n", header.size(), payload->size(),
                                s.ToString().c_str());
    if (s.code() == absl::StatusCode::kUnavailable) {
      Reconnect();
      return;
    }
    Check(s.ok(), "send: " + s.ToString());
  }

  // Waits for every send to complete locally; replaces a failed endpoint.
  void Drain() {
    absl::Status s = ep_->WaitAll(absl::Seconds(5));
    if (Verbose()) std::fprintf(stderr, "  drain -> %s\n", s.ToString().c_str());
    Check(s.code() != absl::StatusCode::kDeadlineExceeded,
          "the attacker's sends did not complete within 5 s");
    if (s.code() == absl::StatusCode::kUnavailable) Reconnect();
  }

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (pb::Strata::Stub::*method)(grpc::ClientContext*, const Req&,
                                                               Resp*),
                    const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + token_);
    grpc::Status s = ((*stub_).*method)(&ctx, req, resp);
    if (Verbose()) {
      std::fprintf(stderr, "  %s -> %d %s\n", Req::descriptor()->name().c_str(), s.error_code(),
                   s.error_message().c_str());
    }
    Check(s.error_code() != grpc::StatusCode::UNKNOWN &&
              s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
              s.error_code() != grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("a call failed with code ", s.error_code(), ": ", s.error_message()));
    return s;
  }

  // Registers (spec, tenant); returns its id and chunk size.
  std::pair<uint32_t, uint64_t> Register(const strata::NamespaceSpec& spec,
                                         const std::string& tenant) {
    pb::RegisterNamespaceRequest req;
    *req.mutable_spec() = ToProto(spec);
    req.set_tenant(tenant);
    pb::RegisterNamespaceResponse resp;
    grpc::Status s = Call(&pb::Strata::Stub::RegisterNamespace, req, &resp);
    Check(s.ok(), "register: " + s.error_message());
    return {resp.namespace_id(), resp.chunk_bytes()};
  }

  void Remove(const strata::NamespaceSpec& spec, const std::string& tenant) {
    pb::RemoveNamespaceRequest req;
    *req.mutable_spec() = ToProto(spec);
    req.set_tenant(tenant);
    pb::RemoveNamespaceResponse resp;
    grpc::Status s = Call(&pb::Strata::Stub::RemoveNamespace, req, &resp);
    Check(s.ok(), "remove namespace: " + s.error_message());
  }

  grpc::Status PutBegin(uint32_t ns, const std::vector<std::string>& keys,
                        pb::PutBeginResponse* resp, uint32_t lease_ms = 0) {
    pb::PutBeginRequest req;
    req.set_client_id(client_id_);
    req.set_namespace_id(ns);
    req.set_lease_ms(lease_ms);
    for (const std::string& k : keys) req.add_items()->set_key(k);
    return Call(&pb::Strata::Stub::PutBegin, req, resp);
  }

  grpc::Status Commit(uint64_t lease, const std::vector<uint64_t>& sums) {
    pb::PutCommitRequest req;
    req.set_client_id(client_id_);
    req.set_lease_id(lease);
    for (uint64_t s : sums) req.add_checksums(s);
    pb::PutCommitResponse resp;
    return Call(&pb::Strata::Stub::PutCommit, req, &resp);
  }

  grpc::Status Abort(uint64_t lease) {
    pb::PutAbortRequest req;
    req.set_client_id(client_id_);
    req.set_lease_id(lease);
    pb::PutAbortResponse resp;
    return Call(&pb::Strata::Stub::PutAbort, req, &resp);
  }

  uint64_t Stat(const std::string& name) {
    pb::StatsResponse resp;
    grpc::Status s = Call(&pb::Strata::Stub::Stats, pb::StatsRequest(), &resp);
    Check(s.ok(), "stats: " + s.error_message());
    return resp.values().at(name);
  }

 private:
  const std::string token_;
  const std::string client_id_;
  const std::string node_worker_;
  std::unique_ptr<pb::Strata::Stub> stub_;
  std::unique_ptr<strata::transport::UcxContext> ucx_;
  std::unique_ptr<strata::transport::Endpoint> ep_;
};

struct Harness {
  std::unique_ptr<strata::store::StoreServer> server;
  strata::store::Engine* engine = nullptr;  // owned by `server`
  std::unique_ptr<strata::client::Client> reader;
  strata::client::Namespace setup_ns;
  std::vector<ChunkKey> setup_keys;
  std::vector<std::byte> setup_bytes;
  std::unique_ptr<RawClient> writer;    // tenant a
  std::unique_ptr<RawClient> attacker;  // tenant b
  uint64_t inputs = 0;
};

Harness* Setup() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  auto* h = new Harness;
  auto token_a = strata::auth::NewToken("a");
  auto token_b = strata::auth::NewToken("b");
  Check(token_a.ok() && token_b.ok(), "tokens");
  const char* tmp = std::getenv("TMPDIR");
  const std::string file = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                        "/strata_isolated_fuzz_tenants.", getpid());
  {
    std::ofstream out(file, std::ios::trunc);
    out << "a " << strata::auth::HashToken(*token_a) << " dram=1MiB\n"
        << "b " << strata::auth::HashToken(*token_b) << " dram=1MiB\n";
  }
  strata::store::EngineOptions eo;
  eo.dram_bytes = 4 << 20;
  eo.max_lease_ttl = absl::Minutes(10);
  auto engine = strata::store::Engine::Open(eo);
  Check(engine.ok(), "engine: " + engine.status().ToString());
  h->engine = engine->get();
  strata::store::ServerOptions so;
  so.listen_address = "127.0.0.1:0";
  so.ucx_transports = "tcp";
  so.isolate_tenants = true;
  so.tenants_file = file;
  auto server = strata::store::StoreServer::Start(*std::move(engine), so);
  Check(server.ok(), "server: " + server.status().ToString());
  h->server = *std::move(server);
  std::filesystem::remove(file);

  strata::client::ClientOptions co;
  co.server_address = h->server->address();
  co.ucx_transports = "tcp";
  co.token = *token_a;
  auto reader = strata::client::Client::Connect(co);
  Check(reader.ok(), "client: " + reader.status().ToString());
  h->reader = *std::move(reader);
  Check(h->reader->data_path() == "ucx", "the client does not use the isolated data plane");
  auto ns = h->reader->RegisterNamespace(Spec("honest"), "a");
  Check(ns.ok(), "register: " + ns.status().ToString());
  h->setup_ns = *ns;
  std::vector<uint32_t> tokens(kSetupChunks * 16);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 7 + 3);
  h->setup_keys = ns->Keys(tokens);
  h->setup_bytes = Pattern(kSetupChunks * ns->chunk_bytes, 99);
  auto saved = h->reader->Save(*ns, h->setup_keys, h->setup_bytes);
  Check(saved.ok(), "save: " + saved.status().ToString());
  absl::Status s = (*saved)->Wait();
  Check(s.ok(), "save: " + s.ToString());

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + *token_a);
  auto stub = pb::Strata::NewStub(
      grpc::CreateChannel(h->server->address(), grpc::InsecureChannelCredentials()));
  pb::NodeInfo info;
  grpc::Status got = stub->GetNodeInfo(&ctx, pb::NodeInfoRequest(), &info);
  Check(got.ok() && info.isolated_data_plane(), "node info: " + got.error_message());
  uint8_t secret[16];
  std::FILE* random = std::fopen("/dev/urandom", "rb");
  Check(random != nullptr && std::fread(secret, 1, sizeof(secret), random) == sizeof(secret),
        "/dev/urandom");
  std::fclose(random);
  const std::string writer_id =
      "writer-" + absl::BytesToHexString(
                      absl::string_view(reinterpret_cast<const char*>(secret), sizeof(secret)));
  h->writer = std::make_unique<RawClient>(h->server->address(), info.ucx_worker_address(),
                                          *token_a, writer_id);
  h->attacker = std::make_unique<RawClient>(h->server->address(), info.ucx_worker_address(),
                                            *token_b, "mallory");
  // Torn down at exit, clients before the node, so that no UCX endpoint is
  // left for the leak check to report.
  static Harness* const torn_down = h;
  std::atexit([] {
    torn_down->attacker.reset();
    torn_down->writer.reset();
    torn_down->reader.reset();
    torn_down->server.reset();
  });
  return h;
}

// Reads operands; past the end, zeros.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }
  uint8_t U8() { return p_ < end_ ? *p_++ : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | U8() << 8); }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return v;
  }
  std::string Bytes(size_t n) {
    std::string out;
    while (n-- > 0 && p_ < end_) out.push_back(static_cast<char>(*p_++));
    return out;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

struct AttackerLease {
  uint64_t id = 0;
  uint64_t chunk_bytes = 0;
  size_t items = 0;
  // Position -> checksums of the well-formed chunks sent to it.
  std::map<uint32_t, std::set<uint64_t>> expected;
  bool open = true;
  // No earlier than this, the node expires a short-lived lease (the time
  // before its put-begin plus its lease): only past it may the node refuse
  // the lease as expired. Infinite: a lease of the default length.
  absl::Time earliest_expiry = absl::InfiniteFuture();

  // It may expire during the input.
  bool short_lived() const { return earliest_expiry != absl::InfiniteFuture(); }

  // Whether `s` is the node refusing this lease as expired: NotFound (reaped)
  // or FailedPrecondition (it expired while the commit waited for chunks
  // still in flight).
  bool RefusedAsExpired(const grpc::Status& s) const {
    return absl::Now() >= earliest_expiry &&
           (s.error_code() == grpc::StatusCode::NOT_FOUND ||
            s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  }
};

class Session {
 public:
  explicit Session(Harness& h) : h_(h), m_(*h.attacker), w_(*h.writer) {}

  void Begin() {
    std::tie(attacker_ns_, chunk_bytes_) = m_.Register(Spec("mallory"), "b");
    writer_ns_ = w_.Register(Spec("honest-writes"), "a").first;
    std::vector<std::string> keys;
    for (int i = 0; i < kHonestChunks; ++i) keys.push_back(KeyBytes(0x77, static_cast<uint8_t>(i)));
    pb::PutBeginResponse resp;
    grpc::Status s = w_.PutBegin(writer_ns_, keys, &resp);
    Check(s.ok() && resp.slots_size() == kHonestChunks, "honest put-begin: " + s.error_message());
    for (const pb::PutSlot& slot : resp.slots()) {
      Check(!slot.already_present() && slot.address() == 0 && slot.size() == chunk_bytes_,
            "honest put-begin: a slot that is present, has an address or another size");
    }
    honest_lease_ = resp.lease_id();
  }

  void Run(uint8_t op, Reader& in) {
    switch (op % 6) {
      case 0: {
        const uint8_t b = in.U8();
        if (++put_begins_ > kMaxPutBegins) return;  // stays within its quota
        const bool foreign = (b & 4) != 0;
        const uint32_t lease_ms = (b & 8) ? 1 + in.U8() % 8 : 0;
        std::vector<std::string> keys;
        for (int i = 0; i < 1 + (b & 3); ++i) keys.push_back(KeyBytes(0xa5, in.U8()));
        pb::PutBeginResponse resp;
        const absl::Time before = absl::Now();
        grpc::Status s = m_.PutBegin(foreign ? writer_ns_ : attacker_ns_, keys, &resp, lease_ms);
        if (foreign) {
          Check(s.error_code() == grpc::StatusCode::PERMISSION_DENIED,
                "a put into another tenant's namespace was not PermissionDenied: " +
                    s.error_message());
        }
        if (!s.ok()) return;
        AttackerLease lease;
        lease.id = resp.lease_id();
        lease.chunk_bytes = chunk_bytes_;
        lease.items = keys.size();
        if (lease_ms != 0) lease.earliest_expiry = before + absl::Milliseconds(lease_ms);
        lease_expiry_ = std::max(lease_expiry_, absl::Now() + absl::Milliseconds(lease_ms));
        for (int i = 0; i < resp.slots_size(); ++i) {
          Check(resp.slots(i).address() == 0, "an isolated node handed out an address");
          if (!resp.slots(i).already_present()) lease.expected[i];
        }
        leases_.push_back(std::move(lease));
        break;
      }
      case 1: {
        const uint8_t ref = in.U8();
        const uint32_t index = in.U8();
        const uint8_t flags = in.U8();
        const uint16_t length = in.U16();
        const uint8_t fill = in.U8();
        DataMessage m;
        m.kind = (flags & 1) ? DataMessage::Kind::kGetSlice : DataMessage::Kind::kPutChunk;
        m.id = LeaseId(ref, in);
        m.index = index;
        switch ((flags >> 1) & 3) {
          case 0:
            m.client_id = m_.client_id();
            break;
          case 1:
            break;
          case 2:
            m.client_id = in.Bytes(in.U8());
            break;
          case 3:
            m.client_id = m_.client_id() + static_cast<char>(in.U8());
            break;
        }
        if (flags & 8) m.layer = in.U8();
        const size_t bytes = (flags & 16) ? chunk_bytes_ : length;
        Send(m.Encode(), std::make_shared<std::vector<std::byte>>(bytes, std::byte{fill}));
        break;
      }
      case 2: {
        const std::string header = in.Bytes(in.U8());
        const uint16_t length = in.U16();
        Send(header, std::make_shared<std::vector<std::byte>>(length, std::byte{in.U8()}));
        break;
      }
      case 3: {
        const uint64_t id = LeaseId(in.U8(), in);
        AttackerLease* own = Own(id);
        if (own == nullptr) {
          if (id == honest_lease_) {
            grpc::Status s = m_.Commit(id, std::vector<uint64_t>(kHonestChunks, 0));
            Check(s.error_code() == grpc::StatusCode::PERMISSION_DENIED,
                  "another client's commit of the honest lease: " + s.error_message());
          }
          return;
        }
        if (!own->open) return;
        std::vector<uint64_t> sums(own->items, 0);
        bool single = true;
        for (const auto& [position, sent] : own->expected) {
          if (sent.empty()) return;  // it would wait for a chunk never sent
          sums[position] = *sent.begin();
          single &= sent.size() == 1;
        }
        grpc::Status s = m_.Commit(own->id, sums);
        Check(s.ok() || (!single && s.error_code() == grpc::StatusCode::DATA_LOSS) ||
                  own->RefusedAsExpired(s),
              absl::StrCat("the attacker's commit of the chunks it sent: ", s.error_code(), " ",
                           s.error_message()));
        own->open = false;
        break;
      }
      case 4: {
        const uint64_t id = LeaseId(in.U8(), in);
        AttackerLease* own = Own(id);
        if (own == nullptr) {
          if (id == honest_lease_) {
            grpc::Status s = m_.Abort(id);
            Check(s.error_code() == grpc::StatusCode::PERMISSION_DENIED,
                  "another client's abort of the honest lease: " + s.error_message());
          }
          return;
        }
        if (!own->open) return;
        grpc::Status s = m_.Abort(own->id);
        Check(s.ok() || (own->RefusedAsExpired(s) &&
                         s.error_code() == grpc::StatusCode::NOT_FOUND),
              "the attacker's abort of its own lease: " + s.error_message());
        own->open = false;
        break;
      }
      case 5:
        m_.Drain();
        break;
    }
  }

  void Finish() {
    // Leases the attacker opened for a few milliseconds are left to expire
    // (the engine reaps them), not aborted: the node must forget them by
    // itself.
    if (const absl::Duration left = lease_expiry_ - absl::Now(); left > absl::ZeroDuration()) {
      absl::SleepFor(left + absl::Milliseconds(1));
    }
    h_.engine->ReapExpiredLeases();
    // The attacker still gets a valid chunk through, after everything it
    // sent before (so that was handled).
    m_.Drain();
    pb::PutBeginResponse fence;
    grpc::Status s = m_.PutBegin(attacker_ns_, {KeyBytes(0x5a, 0)}, &fence);
    Check(s.ok() && fence.slots_size() == 1 && !fence.slots(0).already_present(),
          "the attacker's last put-begin: " + s.error_message());
    auto chunk = std::make_shared<std::vector<std::byte>>(Pattern(chunk_bytes_, 5));
    DataMessage m;
    m.kind = DataMessage::Kind::kPutChunk;
    m.id = fence.lease_id();
    m.client_id = m_.client_id();
    m_.Send(m.Encode(), chunk);
    s = m_.Commit(fence.lease_id(), {strata::ChunkChecksum(*chunk)});
    Check(s.ok(), "the attacker's last valid chunk was not stored: " + s.error_message());

    // The honest writer's lease holds only what it writes now.
    std::vector<std::shared_ptr<std::vector<std::byte>>> honest;
    std::vector<uint64_t> sums;
    for (int i = 0; i < kHonestChunks; ++i) {
      honest.push_back(std::make_shared<std::vector<std::byte>>(
          Pattern(chunk_bytes_, 1000 + h_.inputs * kHonestChunks + i)));
      sums.push_back(strata::ChunkChecksum(*honest.back()));
      DataMessage hm;
      hm.kind = DataMessage::Kind::kPutChunk;
      hm.id = honest_lease_;
      hm.index = static_cast<uint32_t>(i);
      hm.client_id = w_.client_id();
      w_.Send(hm.Encode(), honest.back());
    }
    s = w_.Commit(honest_lease_, sums);
    Check(s.ok(), absl::StrCat("the honest writer's commit: ", s.error_code(), " ",
                               s.error_message()));
    auto writer_ns = h_.reader->RegisterNamespace(Spec("honest-writes"), "a");
    Check(writer_ns.ok() && writer_ns->id == writer_ns_, "the honest writer's namespace");
    std::vector<ChunkKey> keys;
    std::vector<std::byte> expected;
    for (int i = 0; i < kHonestChunks; ++i) {
      keys.push_back(*ChunkKey::FromBytes(KeyBytes(0x77, static_cast<uint8_t>(i))));
      expected.insert(expected.end(), honest[i]->begin(), honest[i]->end());
    }
    CheckLoad(*writer_ns, keys, expected, "the honest writer's chunks");
    CheckLoad(h_.setup_ns, h_.setup_keys, h_.setup_bytes, "the chunks saved at start-up");

    for (const AttackerLease& l : leases_) {
      if (!l.open || l.short_lived()) continue;
      s = m_.Abort(l.id);
      Check(s.ok(), "the attacker's abort of its own lease: " + s.error_message());
    }
    m_.Remove(Spec("mallory"), "b");
    w_.Remove(Spec("honest-writes"), "a");

    const strata::store::EngineStats stats = h_.engine->Stats();
    Check(stats.active_read_leases == 0 && stats.active_write_leases == 0,
          absl::StrCat("after the input: ", stats.active_read_leases, " read and ",
                       stats.active_write_leases, " write leases left open"));
    Check(stats.namespaces == 1, absl::StrCat("after the input: ", stats.namespaces,
                                              " namespaces instead of the one of start-up"));
    Check(stats.dram_used_bytes == h_.setup_bytes.size(),
          absl::StrCat("after the input: ", stats.dram_used_bytes,
                       " bytes of DRAM in use instead of the ", h_.setup_bytes.size(),
                       " of start-up"));
    Check(m_.Stat("tenant_put_reserved_bytes") == 0 && w_.Stat("tenant_put_reserved_bytes") == 0,
          "after the input: DRAM still reserved for a tenant's puts");
    const uint64_t awaited = m_.Stat("data_plane_puts_awaited");
    Check(awaited == 0, absl::StrCat("after the input: the data plane still awaits the chunks of ",
                                     awaited, " write leases"));
  }

 private:
  // The lease a ref names (see the input format).
  uint64_t LeaseId(uint8_t ref, Reader& in) {
    if (ref == 0xff) return in.U64();
    if (ref & 0x80) return honest_lease_ + (ref & 3) - 1;
    if (leases_.empty()) return honest_lease_;
    return leases_[ref % leases_.size()].id;
  }

  // The attacker's lease `id`, or null.
  AttackerLease* Own(uint64_t id) {
    for (AttackerLease& l : leases_) {
      if (l.id == id) return &l;
    }
    return nullptr;
  }

  // Sends a message as the attacker. What the node should write (a put
  // chunk of the right size for a slot of an open lease of the attacker's,
  // under its own client id) is noted as a checksum the slot may hold.
  void Send(const std::string& header, std::shared_ptr<std::vector<std::byte>> payload) {
    if (header.size() > 1024) return;  // PostSend's limit
    std::optional<DataMessage> m = DataMessage::Decode(std::as_bytes(std::span(header)));
    AttackerLease* own = m.has_value() ? Own(m->id) : nullptr;
    if (own != nullptr && own->open && m->kind == DataMessage::Kind::kPutChunk &&
        m->client_id == m_.client_id() && payload->size() == own->chunk_bytes) {
      auto slot = own->expected.find(m->index);
      if (slot != own->expected.end()) slot->second.insert(strata::ChunkChecksum(*payload));
    }
    m_.Send(header, std::move(payload));
  }

  void CheckLoad(const strata::client::Namespace& ns, const std::vector<ChunkKey>& keys,
                 const std::vector<std::byte>& expected, const std::string& what) {
    std::vector<std::byte> got(expected.size());
    auto load = h_.reader->Load(ns, keys, got);
    Check(load.ok(), "loading " + what + ": " + load.status().ToString());
    absl::Status s = (*load)->Wait();
    Check(s.ok(), "loading " + what + ": " + s.ToString());
    Check(got == expected, what + " do not read back byte for byte");
  }

  Harness& h_;
  RawClient& m_;
  RawClient& w_;
  uint32_t attacker_ns_ = 0;
  uint32_t writer_ns_ = 0;
  uint64_t chunk_bytes_ = 0;
  uint64_t honest_lease_ = 0;
  std::vector<AttackerLease> leases_;
  int put_begins_ = 0;
  absl::Time lease_expiry_ = absl::InfinitePast();  // of its short-lived leases
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* const harness = Setup();
  Session session(*harness);
  session.Begin();
  Reader in(data, size);
  while (!in.done()) session.Run(in.U8(), in);
  session.Finish();
  ++harness->inputs;
  return 0;
}
