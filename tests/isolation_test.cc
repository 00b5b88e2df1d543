// The attack of a client that ignores the protocol, with raw UCX: a tenant's
// client, holding the node's worker address, reads another tenant's committed
// chunk and overwrites it with one-sided operations (any remote key will do:
// UCX does not confine emulated or cma one-sided operations to a
// registration). Against a node that isolates tenants the read never
// completes and the write changes nothing; the owner's gets still verify.
// The same attack against a node that does not isolate tenants succeeds (so
// the attack code works). A forged data-plane put message naming the owner's
// write lease is rejected too.
//
// With tenant authentication (--tenants) on an isolated node: a client id's
// data plane belongs to the connection and tenant that attached it, as a
// lease does, so a client id attached first by another tenant, or replayed
// from another connection, receives nothing and opens no lease.
#include <grpcpp/grpcpp.h>
#include <ucp/api/ucp.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/data_message.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/key_scope.h"
#include "store/auth/tenants.h"
#include "store/engine.h"
#include "store/server.h"
#include "tests/node_fixture.h"
#include "tests/test_data.h"
#include "transport/envelope.h"
#include "transport/ucx_transport.h"

namespace strata {
namespace {

namespace pb = ::strata::v1;

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "isolation-test";
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 16;  // 32 KiB chunks
  return spec;
}

// A hostile peer speaking raw UCX to the node's worker.
class RawUcxAttacker {
 public:
  RawUcxAttacker(const std::string& transports, const std::string& node_worker) {
    ucp_config_t* config = nullptr;
    EXPECT_EQ(ucp_config_read(nullptr, nullptr, &config), UCS_OK);
    ucp_config_modify(config, "TLS", transports.c_str());
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM;
    EXPECT_EQ(ucp_init(&params, config, &context_), UCS_OK);
    ucp_config_release(config);
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    EXPECT_EQ(ucp_worker_create(context_, &wp, &worker_), UCS_OK);
    ucp_am_handler_param_t pong{};
    pong.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG;
    pong.id = 0x5355;  // the transport's handshake pong
    pong.cb = [](void* arg, const void*, size_t, void*, size_t, const ucp_am_recv_param_t*) {
      *static_cast<bool*>(arg) = true;
      return UCS_OK;
    };
    pong.arg = &ponged_;
    EXPECT_EQ(ucp_worker_set_am_recv_handler(worker_, &pong), UCS_OK);
    auto address = transport::internal::UnwrapWorkerAddress(node_worker);
    EXPECT_TRUE(address.ok()) << address.status();
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep.address = reinterpret_cast<const ucp_address_t*>(address->data());
    EXPECT_EQ(ucp_ep_create(worker_, &ep, &ep_), UCS_OK);
    // A forged remote key: one of the attacker's own memory.
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = own_.data();
    mp.length = own_.size();
    EXPECT_EQ(ucp_mem_map(context_, &mp, &memh_), UCS_OK);
    void* packed = nullptr;
    size_t packed_size = 0;
    EXPECT_EQ(ucp_rkey_pack(context_, memh_, &packed, &packed_size), UCS_OK);
    EXPECT_EQ(ucp_ep_rkey_unpack(ep_, packed, &rkey_), UCS_OK);
    ucp_rkey_buffer_release(packed);
  }
  ~RawUcxAttacker() {
    for (void* r : pending_) {
      if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker_, r);
    }
    ucp_rkey_destroy(rkey_);
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* close = ucp_ep_close_nbx(ep_, &param);
    if (UCS_PTR_IS_PTR(close)) Progress(close);
    ucp_mem_unmap(context_, memh_);
    ucp_worker_destroy(worker_);
    ucp_cleanup(context_);
  }

  // Posts a one-sided read of `out.size()` bytes at `address` of the node.
  void* PostRead(uint64_t address, std::span<std::byte> out) {
    ucp_request_param_t param{};
    void* r = ucp_get_nbx(ep_, out.data(), out.size(), address, rkey_, &param);
    EXPECT_FALSE(UCS_PTR_IS_ERR(r));
    if (UCS_PTR_IS_PTR(r)) pending_.push_back(r);
    return r;
  }
  void PostWrite(uint64_t address, std::span<const std::byte> bytes) {
    ucp_request_param_t param{};
    void* r = ucp_put_nbx(ep_, bytes.data(), bytes.size(), address, rkey_, &param);
    EXPECT_FALSE(UCS_PTR_IS_ERR(r));
    if (UCS_PTR_IS_PTR(r)) pending_.push_back(r);
  }
  // Sends a raw message to the node's data-plane handler.
  void PostMessage(const std::string& header, std::span<const std::byte> payload) {
    ucp_request_param_t param{};
    void* r = ucp_am_send_nbx(ep_, 0x5356, header.data(), header.size(), payload.data(),
                              payload.size(), &param);
    EXPECT_FALSE(UCS_PTR_IS_ERR(r));
    if (UCS_PTR_IS_PTR(r)) pending_.push_back(r);
  }
  // A round trip behind everything posted so far on the same connection (the
  // node answers the transport's handshake ping in order): once the pong is
  // back, the node has handled (or dropped) every earlier message.
  bool RoundTrip() {
    ponged_ = false;
    static uint64_t token = 42;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_AM_SEND_FLAG_REPLY;
    void* r = ucp_am_send_nbx(ep_, 0x5354, nullptr, 0, &token, sizeof(token), &param);
    if (UCS_PTR_IS_ERR(r)) return false;
    if (UCS_PTR_IS_PTR(r)) pending_.push_back(r);
    const absl::Time limit = absl::Now() + absl::Seconds(20);  // a bound, not a measure
    while (!ponged_ && absl::Now() < limit) ucp_worker_progress(worker_);
    for (int i = 0; i < 1000; ++i) ucp_worker_progress(worker_);
    return ponged_;
  }
  static bool Done(void* request) {
    return request == nullptr || ucp_request_check_status(request) != UCS_INPROGRESS;
  }

 private:
  void Progress(void* r) {
    const absl::Time limit = absl::Now() + absl::Seconds(5);
    while (ucp_request_check_status(r) == UCS_INPROGRESS && absl::Now() < limit) {
      ucp_worker_progress(worker_);
    }
    ucp_request_free(r);
  }

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
  ucp_mem_h memh_ = nullptr;
  ucp_rkey_h rkey_ = nullptr;
  std::vector<std::byte> own_ = std::vector<std::byte>(4096);
  std::vector<void*> pending_;
  bool ponged_ = false;
};

// A UCX worker that only receives data-plane messages and counts them: the
// worker a client (or an attacker) attaches.
class MessageWorker {
 public:
  static absl::StatusOr<std::unique_ptr<MessageWorker>> Create(const std::string& transports) {
    auto w = std::unique_ptr<MessageWorker>(new MessageWorker());
    transport::UcxOptions o;
    o.transports = transports;
    o.remote_access = false;
    MessageWorker* self = w.get();
    o.on_message = [self](std::span<const std::byte>, size_t) {
      ++self->received_;
      return transport::MessageTarget{};  // dropped
    };
    auto ucx = transport::UcxContext::Create(o);
    if (!ucx.ok()) return ucx.status();
    w->ucx_ = *std::move(ucx);
    return w;
  }
  std::string address() const { return ucx_->worker_address(); }
  int received() const { return received_.load(); }

 private:
  MessageWorker() = default;
  std::atomic<int> received_{0};
  std::unique_ptr<transport::UcxContext> ucx_;
};

// (isolate_tenants, UCX transports)
class IsolationTest : public ::testing::TestWithParam<std::tuple<bool, std::string>> {
 protected:
  void SetUp() override {
    store::EngineOptions eo;
    eo.dram_bytes = 16 << 20;
    auto engine = store::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->get();
    store::ServerOptions so;
    so.listen_address = "127.0.0.1:0";
    so.ucx_transports = transports();
    so.isolate_tenants = isolated();
    auto server = store::StoreServer::Start(*std::move(engine), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = pb::Strata::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    clients_.clear();
    if (server_) {
      EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    }
  }
  bool isolated() const { return std::get<0>(GetParam()); }
  std::string transports() const { return std::get<1>(GetParam()); }

  client::Client* NewClient() {
    client::ClientOptions o;
    o.server_address = server_->address();
    o.ucx_transports = transports();
    o.same_host = client::SameHost::kOff;
    auto c = client::Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    clients_.push_back(*std::move(c));
    return clients_.back().get();
  }
  pb::NodeInfo Info() {
    pb::NodeInfo info;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->GetNodeInfo(&ctx, pb::NodeInfoRequest(), &info).ok());
    return info;
  }
  uint64_t Stat(const std::string& name) {
    pb::StatsResponse out;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->Stats(&ctx, pb::StatsRequest(), &out).ok());
    auto it = out.values().find(name);
    return it == out.values().end() ? 0 : it->second;
  }

  store::Engine* engine_ = nullptr;  // owned by server_
  std::unique_ptr<store::StoreServer> server_;
  std::unique_ptr<pb::Strata::Stub> stub_;
  std::vector<std::unique_ptr<client::Client>> clients_;
};

TEST_P(IsolationTest, RawUcxReadAndWriteOfAnotherTenantsChunk) {
  client::Client* owner = NewClient();
  client::Client* mallory = NewClient();
  ASSERT_NE(owner, nullptr);
  ASSERT_NE(mallory, nullptr);
  auto ns = owner->RegisterNamespace(Spec(), "tenant-a");
  auto evil_ns = mallory->RegisterNamespace(Spec(), "tenant-b");
  ASSERT_TRUE(ns.ok() && evil_ns.ok());
  const std::vector<std::byte> secret = testing::Bytes(ns->chunk_bytes, 7);
  const ChunkKey key = ns->Keys(std::vector<uint32_t>(16, 3))[0];
  auto saved = owner->Save(*ns, std::span(&key, 1), secret);
  ASSERT_TRUE(saved.ok());
  ASSERT_TRUE((*saved)->Wait().ok());
  // Mallory stores a chunk of her own, as a valid client would.
  const std::vector<std::byte> hers = testing::Bytes(ns->chunk_bytes, 8);
  const ChunkKey her_key = evil_ns->Keys(std::vector<uint32_t>(16, 4))[0];
  auto her_save = mallory->Save(*evil_ns, std::span(&her_key, 1), hers);
  ASSERT_TRUE(her_save.ok());
  ASSERT_TRUE((*her_save)->Wait().ok());

  // Where the owner's chunk lies in the node's memory (the attacker is
  // granted that knowledge: the worst case). The node stores it under the
  // namespace-scoped key.
  const ChunkKey stored = auth::ScopeKey(ns->chain->root(), key);
  auto lease = engine_->Acquire(ns->id, std::span(&stored, 1));
  ASSERT_TRUE(lease.ok());
  const uint64_t address = reinterpret_cast<uint64_t>(lease->chunks[0].data.data());
  ASSERT_TRUE(engine_->Release(lease->id).ok());

  const pb::NodeInfo info = Info();
  EXPECT_EQ(info.isolated_data_plane(), isolated());
  if (isolated()) {  // nothing in node info grants access to memory
    EXPECT_TRUE(info.dram_rkey().empty());
    EXPECT_EQ(info.dram_base(), 0u);
    EXPECT_TRUE(info.shm_path().empty());
  }

  RawUcxAttacker attacker(transports(), info.ucx_worker_address());
  std::vector<std::byte> stolen(256);
  void* read = attacker.PostRead(address, stolen);
  const std::vector<std::byte> garbage(4096, std::byte{0x5a});
  attacker.PostWrite(address + 1024, garbage);
  ASSERT_TRUE(attacker.RoundTrip());

  std::vector<std::byte> out(ns->chunk_bytes);
  auto load = owner->Load(*ns, std::span(&key, 1), out);
  ASSERT_TRUE(load.ok()) << load.status();
  const absl::Status loaded = (*load)->Wait();
  if (isolated()) {
    EXPECT_FALSE(RawUcxAttacker::Done(read)) << "the node served a one-sided read";
    EXPECT_EQ(stolen, std::vector<std::byte>(256));
    EXPECT_TRUE(loaded.ok()) << loaded;
    EXPECT_EQ(out, secret);
  } else {
    // The control: without isolation the same attack succeeds.
    EXPECT_TRUE(RawUcxAttacker::Done(read));
    EXPECT_TRUE(std::equal(stolen.begin(), stolen.end(), secret.begin()));
    EXPECT_EQ(loaded.code(), absl::StatusCode::kDataLoss) << loaded;
  }
}

// Chunks given apart (the cluster client's calls) on both data planes: each
// source and destination is its own buffer, loaded in another order than
// saved; on an isolated node the node's messages land in the right buffer.
TEST_P(IsolationTest, ChunksGivenApartSaveAndLoadIntoTheirOwnBuffers) {
  client::Client* c = NewClient();
  ASSERT_NE(c, nullptr);
  auto ns = c->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const std::vector<ChunkKey> keys = ns->Keys(std::vector<uint32_t>(3 * 16, 9));
  std::vector<std::vector<std::byte>> bytes;
  std::vector<std::span<const std::byte>> srcs;
  std::vector<std::optional<ChunkKey>> parents;
  for (size_t i = 0; i < keys.size(); ++i) {
    bytes.push_back(testing::Bytes(ns->chunk_bytes, 40 + static_cast<int>(i)));
    parents.push_back(i > 0 ? std::optional<ChunkKey>(keys[i - 1]) : std::nullopt);
  }
  for (const auto& b : bytes) srcs.emplace_back(b);
  auto saved = c->SaveChunks(*ns, keys, parents, srcs);
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE((*saved)->Wait().ok());

  const std::vector<ChunkKey> picked = {keys[2], keys[0], keys[1]};
  std::vector<std::vector<std::byte>> outs(3, std::vector<std::byte>(ns->chunk_bytes));
  std::vector<std::span<std::byte>> dests;
  for (auto& o : outs) dests.emplace_back(o);
  auto load = c->LoadChunks(*ns, picked, dests);
  ASSERT_TRUE(load.ok()) << load.status();
  const absl::Status loaded = (*load)->Wait();
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_EQ(outs[0], bytes[2]);
  EXPECT_EQ(outs[1], bytes[0]);
  EXPECT_EQ(outs[2], bytes[1]);

  std::vector<std::byte> short_dest(ns->chunk_bytes / 2);
  dests[1] = short_dest;
  EXPECT_EQ(c->LoadChunks(*ns, picked, dests).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(IsolationTest, ForgedPutMessageForAnotherClientsLeaseIsRejected) {
  if (!isolated()) GTEST_SKIP() << "data-plane messages exist on isolated nodes only";
  client::Client* owner = NewClient();
  ASSERT_NE(owner, nullptr);
  auto ns = owner->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok());
  const ChunkKey key = ns->Keys(std::vector<uint32_t>(16, 5))[0];
  // The owner attaches its data plane and takes a write lease, over gRPC;
  // the attacker learns the lease's id.
  auto owner_worker = MessageWorker::Create(transports());
  ASSERT_TRUE(owner_worker.ok()) << owner_worker.status();
  {
    pb::AttachDataPlaneRequest attach;
    attach.set_client_id("owner-client");
    attach.set_worker_address((*owner_worker)->address());
    pb::AttachDataPlaneResponse attached;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->AttachDataPlane(&ctx, attach, &attached).ok());
  }
  pb::PutBeginRequest begin;
  begin.set_client_id("owner-client");
  begin.set_namespace_id(ns->id);
  begin.add_items()->set_key(std::string(reinterpret_cast<const char*>(key.bytes.data()), 32));
  pb::PutBeginResponse slots;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->PutBegin(&ctx, begin, &slots).ok());
  }
  EXPECT_EQ(slots.slots(0).address(), 0u);  // no address is handed out

  RawUcxAttacker attacker(transports(), Info().ucx_worker_address());
  const std::vector<std::byte> payload = testing::Bytes(ns->chunk_bytes, 9);
  proto::DataMessage m;
  m.kind = proto::DataMessage::Kind::kPutChunk;
  m.id = slots.lease_id();
  m.index = 0;
  m.client_id = "mallory-client";  // not the lease's owner
  attacker.PostMessage(m.Encode(), payload);
  m.id = slots.lease_id() ^ 1;  // no such lease
  m.client_id = "owner-client";
  attacker.PostMessage(m.Encode(), payload);
  ASSERT_TRUE(attacker.RoundTrip());
  EXPECT_EQ(Stat("data_plane_messages_rejected"), 2u);

  // Nothing arrived for the owner's slot: the commit cannot pass it off.
  pb::PutCommitRequest commit;
  commit.set_client_id("owner-client");
  commit.set_lease_id(slots.lease_id());
  commit.add_checksums(0);
  pb::PutCommitResponse committed;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(600));
  const grpc::Status s = stub_->PutCommit(&ctx, commit, &committed);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
}

TEST_P(IsolationTest, AttachDataPlaneOnlyOnIsolatedNodesAndOncePerClientId) {
  auto worker = MessageWorker::Create(transports());
  ASSERT_TRUE(worker.ok()) << worker.status();
  auto attach = [&](const std::string& id) {
    pb::AttachDataPlaneRequest req;
    req.set_client_id(id);
    req.set_worker_address((*worker)->address());
    pb::AttachDataPlaneResponse out;
    grpc::ClientContext ctx;
    return stub_->AttachDataPlane(&ctx, req, &out).error_code();
  };
  if (!isolated()) {
    EXPECT_EQ(attach("some-client"), grpc::StatusCode::FAILED_PRECONDITION);
    return;
  }
  EXPECT_EQ(attach(""), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(attach("some-client"), grpc::StatusCode::OK);
  EXPECT_EQ(attach("some-client"), grpc::StatusCode::ALREADY_EXISTS);
  // A get naming a client id that never attached pins nothing.
  client::Client* owner = NewClient();
  ASSERT_NE(owner, nullptr);
  auto ns = owner->RegisterNamespace(Spec(), "tenant-a");
  ASSERT_TRUE(ns.ok());
  const ChunkKey key = ns->Keys(std::vector<uint32_t>(16, 6))[0];
  const std::vector<std::byte> bytes = testing::Bytes(ns->chunk_bytes, 6);
  auto saved = owner->Save(*ns, std::span(&key, 1), bytes);
  ASSERT_TRUE(saved.ok());
  ASSERT_TRUE((*saved)->Wait().ok());
  pb::GetRequest get;
  get.set_client_id("never-attached");
  get.set_namespace_id(ns->id);
  get.add_keys(std::string(key.AsStringView()));
  pb::GetResponse got;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->Get(&ctx, get, &got).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(engine_->Stats().active_read_leases, 0u);
  // The GPU runtime's same-host path does not exist on an isolated node.
  EXPECT_TRUE(owner->shared_pool().empty());
  auto mapped = owner->LeaseMapped(*ns, std::span(&key, 1));
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kFailedPrecondition) << mapped.status();
  EXPECT_NE(mapped.status().message().find("isolate"), std::string::npos) << mapped.status();
}

INSTANTIATE_TEST_SUITE_P(
    Transports, IsolationTest,
    ::testing::Combine(::testing::Bool(), ::testing::Values("tcp", "posix,sysv,cma,self")),
    [](const auto& info) {
      return absl::StrCat(std::get<0>(info.param) ? "Isolated" : "Open",
                          std::get<1>(info.param) == "tcp" ? "Tcp" : "SharedMemory");
    });

// ------------------------------------------- isolation with tenants

// An isolated node that authenticates tenants "a" and "b" (tcp).
class IsolatedTenantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / "isolation_test_tenants";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    token_a_ = *auth::NewToken("a");
    token_b_ = *auth::NewToken("b");
    std::ofstream(dir_ / "tenants") << "a " << auth::HashToken(token_a_) << "\n"
                                    << "b " << auth::HashToken(token_b_) << "\n";
    ASSERT_NO_FATAL_FAILURE(StartNode("127.0.0.1:0"));
    auto a = Connect(token_a_, "client-a");
    ASSERT_TRUE(a.ok()) << a.status();
    a_ = *std::move(a);
    auto ns = a_->RegisterNamespace(Spec(), "a");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_a_ = *ns;
    key_ = ns_a_.Keys(std::vector<uint32_t>(16, 21))[0];
    bytes_ = testing::Bytes(ns_a_.chunk_bytes, 21);
    auto saved = a_->Save(ns_a_, std::span(&key_, 1), bytes_);
    ASSERT_TRUE(saved.ok()) << saved.status();
    ASSERT_TRUE((*saved)->Wait().ok());
  }
  // An isolated node with tenants a and b, DRAM only, on `listen`.
  void StartNode(const std::string& listen) {
    store::EngineOptions eo;
    eo.dram_bytes = 16 << 20;
    auto engine = store::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->get();
    store::ServerOptions so;
    so.listen_address = listen;
    so.ucx_transports = "tcp";
    so.isolate_tenants = true;
    so.tenants_file = (dir_ / "tenants").string();
    auto server = store::StoreServer::Start(*std::move(engine), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    a_.reset();
    if (server_) {
      EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    }
    std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<std::unique_ptr<client::Client>> Connect(const std::string& token,
                                                          const std::string& id) {
    client::ClientOptions o;
    o.server_address = server_->address();
    o.ucx_transports = "tcp";
    o.client_id = id;
    o.token = token;
    return client::Client::Connect(o);
  }

  // A gRPC connection of its own (not shared with other channels of this
  // process), sending `token`.
  struct Raw {
    std::unique_ptr<pb::Strata::Stub> stub;
    std::string token;
    template <typename Req, typename Resp>
    grpc::StatusCode Call(grpc::Status (pb::Strata::Stub::*method)(grpc::ClientContext*,
                                                                    const Req&, Resp*),
                          const Req& req, Resp* resp) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
      return ((*stub).*method)(&ctx, req, resp).error_code();
    }
    grpc::StatusCode Attach(const std::string& id, const std::string& worker) {
      pb::AttachDataPlaneRequest req;
      req.set_client_id(id);
      req.set_worker_address(worker);
      pb::AttachDataPlaneResponse out;
      return Call(&pb::Strata::Stub::AttachDataPlane, req, &out);
    }
    grpc::StatusCode Get(const std::string& id, uint32_t ns, const ChunkKey& key) {
      pb::GetRequest req;
      req.set_client_id(id);
      req.set_namespace_id(ns);
      req.set_transfer_id(77);
      req.add_keys(std::string(key.AsStringView()));
      pb::GetResponse out;
      return Call(&pb::Strata::Stub::Get, req, &out);
    }
    grpc::StatusCode PutBegin(const std::string& id, uint32_t ns, const ChunkKey& key) {
      pb::PutBeginRequest req;
      req.set_client_id(id);
      req.set_namespace_id(ns);
      req.add_items()->set_key(std::string(key.AsStringView()));
      pb::PutBeginResponse out;
      return Call(&pb::Strata::Stub::PutBegin, req, &out);
    }
  };
  Raw NewRaw(const std::string& token) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return Raw{pb::Strata::NewStub(grpc::CreateCustomChannel(
                   server_->address(), grpc::InsecureChannelCredentials(), args)),
               token};
  }

  std::filesystem::path dir_;
  std::string token_a_, token_b_;
  store::Engine* engine_ = nullptr;  // owned by server_
  std::unique_ptr<store::StoreServer> server_;
  std::unique_ptr<client::Client> a_;
  client::Namespace ns_a_;
  ChunkKey key_;
  std::vector<std::byte> bytes_;
};

TEST_F(IsolatedTenantTest, AuthenticatedClientsMoveTheirOwnBytesOnly) {
  // Tenant a's own client: loads what it saved, over messages.
  std::vector<std::byte> out(ns_a_.chunk_bytes);
  auto load = a_->Load(ns_a_, std::span(&key_, 1), out);
  ASSERT_TRUE(load.ok()) << load.status();
  ASSERT_TRUE((*load)->Wait().ok());
  EXPECT_EQ(out, bytes_);
  EXPECT_EQ(a_->data_path(), "ucx");
  EXPECT_EQ(a_->LeaseMapped(ns_a_, std::span(&key_, 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Without a token nothing attaches.
  auto worker = MessageWorker::Create("tcp");
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(NewRaw("").Attach("anonymous", (*worker)->address()),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Connect("", "anonymous").status().code(), absl::StatusCode::kUnauthenticated);

  // Tenant b's client, attached as itself, names a's namespace: refused
  // before anything is pinned, nothing is sent.
  auto b = Connect(token_b_, "client-b");
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<std::byte> stolen(ns_a_.chunk_bytes);
  auto theft = (*b)->Load(ns_a_, std::span(&key_, 1), stolen);
  EXPECT_EQ(theft.status().code(), absl::StatusCode::kPermissionDenied) << theft.status();
  auto squat = (*b)->Save(ns_a_, std::span(&key_, 1), bytes_);
  EXPECT_EQ(squat.status().code(), absl::StatusCode::kPermissionDenied) << squat.status();
  EXPECT_EQ(std::count(stolen.begin(), stolen.end(), std::byte{0}),
            static_cast<ptrdiff_t>(stolen.size()));
}

// Attack: receive tenant a's chunks by attaching a's client id first, or by
// replaying a's attached client id from another connection.
TEST_F(IsolatedTenantTest, AClientIdsDataPlaneBelongsToTheConnectionAndTenantThatAttachedIt) {
  auto thief_worker = MessageWorker::Create("tcp");
  ASSERT_TRUE(thief_worker.ok()) << thief_worker.status();
  // Tenant b squats the client id a's next client will use.
  Raw thief_b = NewRaw(token_b_);
  ASSERT_EQ(thief_b.Attach("victim-next", (*thief_worker)->address()), grpc::StatusCode::OK);
  auto victim = Connect(token_a_, "victim-next");
  EXPECT_EQ(victim.status().code(), absl::StatusCode::kAlreadyExists) << victim.status();
  // A get or put of tenant a naming the squatted id is refused before
  // anything is pinned or sent: nothing goes to the squatter's worker.
  Raw victim_raw = NewRaw(token_a_);
  EXPECT_EQ(victim_raw.Get("victim-next", ns_a_.id, key_), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(victim_raw.PutBegin("victim-next", ns_a_.id, ns_a_.Keys(std::vector<uint32_t>(16, 9))[0]),
            grpc::StatusCode::PERMISSION_DENIED);

  // a's attached client id replayed from another connection, by tenant b
  // and by tenant a itself: refused; a second attachment of it too.
  for (const std::string& token : {token_b_, token_a_}) {
    Raw thief = NewRaw(token);
    EXPECT_EQ(thief.Attach("client-a", (*thief_worker)->address()),
              grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_EQ(thief.Get("client-a", ns_a_.id, key_), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(thief.PutBegin("client-a", ns_a_.id, ns_a_.Keys(std::vector<uint32_t>(16, 10))[0]),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(engine_->Stats().active_read_leases, 0u);
  EXPECT_EQ(engine_->Stats().active_write_leases, 0u);
  EXPECT_EQ((*thief_worker)->received(), 0);

  // The owner's own connection still loads.
  std::vector<std::byte> out(ns_a_.chunk_bytes);
  auto load = a_->Load(ns_a_, std::span(&key_, 1), out);
  ASSERT_TRUE(load.ok()) << load.status();
  ASSERT_TRUE((*load)->Wait().ok());
  EXPECT_EQ(out, bytes_);
}

// A client of an isolated node that restarted reconnects by itself: it
// attaches its data plane to the new node (with its token) and registers its
// namespace again, so saves and loads go on (the DRAM-only node lost the
// chunk saved before).
TEST_F(IsolatedTenantTest, AClientReattachesToARestartedNode) {
  const std::string address = server_->address();
  ASSERT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(StartNode(address));
  std::vector<std::byte> out(bytes_.size());
  const absl::Status s =
      testing::WhileUnavailable([&] { return testing::Finish(a_->Load(ns_a_, std::span(&key_, 1), out)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;  // DRAM only: gone
  EXPECT_EQ(a_->counters().reconnects, 1u);
  auto saved = a_->Save(ns_a_, std::span(&key_, 1), bytes_);
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE((*saved)->Wait().ok());
  auto loaded = a_->Load(ns_a_, std::span(&key_, 1), out);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE((*loaded)->Wait().ok());
  EXPECT_EQ(out, bytes_);
}

// A restarted node that no longer admits the client's token: reconnecting
// fails with the node's own answer (Unauthenticated), not with Unavailable,
// which would tell the caller to keep retrying.
TEST_F(IsolatedTenantTest, AReconnectRefusedByTheRestartedNodeKeepsItsCode) {
  const std::string address = server_->address();
  ASSERT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
  server_.reset();
  // Tenant a's token is replaced while the node is down.
  const std::string new_token_a = *auth::NewToken("a");
  std::ofstream(dir_ / "tenants", std::ios::trunc)
      << "a " << auth::HashToken(new_token_a) << "\n"
      << "b " << auth::HashToken(token_b_) << "\n";
  ASSERT_NO_FATAL_FAILURE(StartNode(address));
  std::vector<std::byte> out(bytes_.size());
  const absl::Status s =
      testing::WhileUnavailable([&] { return testing::Finish(a_->Load(ns_a_, std::span(&key_, 1), out)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_NE(s.message().find("restarted"), std::string::npos) << s;
  EXPECT_EQ(a_->counters().reconnects, 0u);
  // Later calls say the same, each trying once more.
  EXPECT_EQ(a_->Health().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace strata
