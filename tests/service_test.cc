// A real store node (gRPC on 127.0.0.1, UCX data plane) and clients in one
// process: loads and saves with every byte verified, and bad input over the
// wire, each with its status code and the node still serving intact data.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/common/checksum.h"
#include "store/engine.h"
#include "store/server.h"
#include "tests/test_data.h"
#include <grpcpp/grpcpp.h>

namespace strata {
namespace {

using testing::Bytes;

namespace pb = ::strata::v1;

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "service-test";
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kBFloat16;
  spec.tokens_per_chunk = 16;  // 4 layers x 2 x 2 heads x 16 x 64 x 2 B = 32 KiB
  return spec;
}

class ServiceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / "service_test_nvme";
    std::filesystem::remove_all(dir_);
    store::EngineOptions eo;
    eo.dram_bytes = 64 << 20;
    eo.nvme_path = dir_.string();
    eo.nvme_capacity_bytes = 256 << 20;
    auto engine = store::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    store::ServerOptions so;
    so.listen_address = "127.0.0.1:0";
    so.ucx_transports = GetParam();
    so.max_message_bytes = 1 << 20;
    so.max_namespaces_per_peer = 4;
    auto server = store::StoreServer::Start(*std::move(engine), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = NewClient("client-a");
    ASSERT_NE(client_, nullptr);
    auto ns = client_->RegisterNamespace(Spec(), "tenant-a");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    stub_ = pb::Strata::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    }
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<client::Client> NewClient(std::string id) {
    client::ClientOptions o;
    o.server_address = server_->address();
    o.ucx_transports = GetParam();
    o.client_id = std::move(id);
    auto c = client::Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Saves `n` chunks of one conversation and returns their keys and bytes.
  std::vector<ChunkKey> SaveChain(size_t n, uint64_t seed, std::vector<std::byte>* bytes) {
    std::vector<uint32_t> tokens(n * 16);
    std::mt19937 rng(seed);
    for (auto& t : tokens) t = rng() % 50000;
    std::vector<ChunkKey> keys = ns_.Keys(tokens);
    *bytes = Bytes(n * ns_.chunk_bytes, seed);
    auto t = client_->Save(ns_, keys, *bytes);
    EXPECT_TRUE(t.ok()) << t.status();
    if (t.ok()) {
      EXPECT_TRUE((*t)->Wait().ok());
    }
    return keys;
  }

  grpc::Status Call(auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return ((*stub_).*method)(&ctx, req, resp);
  }

  // The node is healthy and still serves `keys` with exactly `bytes`.
  void ExpectIntact(const std::vector<ChunkKey>& keys, const std::vector<std::byte>& bytes) {
    EXPECT_TRUE(client_->Health().ok());
    std::vector<std::byte> out(bytes.size());
    auto t = client_->Load(ns_, keys, out);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Wait().ok());
    EXPECT_EQ(out, bytes);
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::StoreServer> server_;
  std::unique_ptr<client::Client> client_;
  client::Namespace ns_;
  std::unique_ptr<pb::Strata::Stub> stub_;
};

TEST_P(ServiceTest, SaveThenLoadLayerByLayer) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(6, 1, &bytes);
  auto lookup = client_->Lookup(ns_, keys);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_chunks, 6u);
  EXPECT_EQ(lookup->tiers[0], client::Tier::kDram);

  std::vector<std::byte> out(bytes.size(), std::byte{0});
  absl::Mutex mu;
  std::vector<uint32_t> layers_seen;
  auto t = client_->Load(ns_, keys, out, [&](uint32_t l) {
    absl::MutexLock lock(&mu);
    layers_seen.push_back(l);
  });
  ASSERT_TRUE(t.ok()) << t.status();
  // Layer 0 of every chunk is usable before the whole load is done.
  ASSERT_TRUE((*t)->WaitLayer(0).ok());
  for (size_t c = 0; c < keys.size(); ++c) {
    const size_t off = c * ns_.chunk_bytes;
    EXPECT_TRUE(std::equal(out.begin() + off, out.begin() + off + ns_.layer_bytes,
                           bytes.begin() + off));
  }
  ASSERT_TRUE((*t)->Wait().ok());
  EXPECT_EQ(out, bytes);
  absl::MutexLock lock(&mu);
  std::sort(layers_seen.begin(), layers_seen.end());
  EXPECT_EQ(layers_seen, (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ((*t)->WaitLayer(9).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(ServiceTest, SavingPresentKeysIsIdempotentAndMissingKeysAreNotFound) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(3, 2, &bytes);
  auto again = client_->Save(ns_, keys, bytes);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->Wait().ok());
  std::vector<ChunkKey> missing = keys;
  missing[1].bytes[0] ^= 1;
  std::vector<std::byte> out(bytes.size());
  EXPECT_EQ(client_->Load(ns_, missing, out).status().code(), absl::StatusCode::kNotFound);
  std::vector<std::byte> wrong(bytes.size() + 1);
  EXPECT_EQ(client_->Load(ns_, keys, wrong).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Save(ns_, keys, std::span<const std::byte>(wrong)).status().code(),
            absl::StatusCode::kInvalidArgument);
  ExpectIntact(keys, bytes);
}

// Chunks given apart (as the cluster client sends each node its share):
// loaded into scattered buffers, saved from scattered buffers with their
// own parents; mismatched sizes are refused before anything moves.
TEST_P(ServiceTest, ChunksGivenApartLoadAndSave) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(4, 7, &bytes);
  const size_t cb = ns_.chunk_bytes;
  // Chunks 3 and 1, in that order, into two separate buffers.
  std::vector<std::byte> a(cb), b(cb);
  const std::vector<ChunkKey> picked = {keys[3], keys[1]};
  const std::vector<std::span<std::byte>> dests = {a, b};
  auto t = client_->LoadChunks(ns_, picked, dests);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Wait().ok());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), bytes.begin() + 3 * cb));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), bytes.begin() + 1 * cb));

  // Two chunks of another chain that are not one segment: each with its
  // own parent.
  std::vector<std::byte> more = Bytes(2 * cb, 8);
  std::vector<std::byte> other_bytes;
  std::vector<ChunkKey> other = SaveChain(1, 9, &other_bytes);
  std::vector<ChunkKey> apart = {other[0], other[0]};
  apart[0].bytes[1] ^= 1;
  apart[1].bytes[2] ^= 1;
  const std::vector<std::optional<ChunkKey>> parents = {other[0], std::nullopt};
  const std::vector<std::span<const std::byte>> srcs = {
      std::span<const std::byte>(more).subspan(cb, cb),
      std::span<const std::byte>(more).first(cb)};
  auto s = client_->SaveChunks(ns_, apart, parents, srcs);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Wait().ok());
  std::vector<std::byte> back(2 * cb);
  auto l = client_->Load(ns_, apart, back);
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_TRUE((*l)->Wait().ok());
  EXPECT_TRUE(std::equal(back.begin(), back.begin() + cb, more.begin() + cb));
  EXPECT_TRUE(std::equal(back.begin() + cb, back.end(), more.begin()));

  // Sizes that do not match.
  const std::vector<std::span<std::byte>> one = {a};
  EXPECT_EQ(client_->LoadChunks(ns_, picked, one).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<std::span<std::byte>> short_dest = {a, std::span<std::byte>(b).first(cb - 1)};
  EXPECT_EQ(client_->LoadChunks(ns_, picked, short_dest).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->SaveChunks(ns_, apart, std::span(parents).first(1), srcs).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<std::span<const std::byte>> short_src = {srcs[0], srcs[1].first(8)};
  EXPECT_EQ(client_->SaveChunks(ns_, apart, parents, short_src).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->LoadChunks(ns_, {}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectIntact(keys, bytes);
}

TEST_P(ServiceTest, BadInputOverTheWire) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(2, 3, &bytes);
  const std::string good(reinterpret_cast<const char*>(keys[0].bytes.data()), 32);

  // Malformed and short keys.
  pb::LookupRequest lookup;
  lookup.set_namespace_id(ns_.id);
  lookup.add_keys(good.substr(0, 31));
  pb::LookupResponse lookup_resp;
  EXPECT_EQ(Call(&pb::Strata::Stub::Lookup, lookup, &lookup_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Unknown namespace.
  lookup.Clear();
  lookup.set_namespace_id(999);
  lookup.add_keys(good);
  EXPECT_EQ(Call(&pb::Strata::Stub::Lookup, lookup, &lookup_resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Oversized batch: more keys than a call may carry.
  lookup.Clear();
  lookup.set_namespace_id(ns_.id);
  for (int i = 0; i < 5000; ++i) lookup.add_keys(good);
  EXPECT_EQ(Call(&pb::Strata::Stub::Lookup, lookup, &lookup_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A request larger than the node accepts (1 MiB here).
  pb::PutBeginRequest huge;
  huge.set_client_id("x");
  huge.set_namespace_id(ns_.id);
  for (int i = 0; i < 40000; ++i) huge.add_items()->set_key(good);
  pb::PutBeginResponse begin_resp;
  EXPECT_EQ(Call(&pb::Strata::Stub::PutBegin, huge, &begin_resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Bad dtype in a namespace registration.
  pb::RegisterNamespaceRequest reg;
  reg.mutable_spec()->set_model_id("m");
  reg.mutable_spec()->set_num_layers(1);
  reg.mutable_spec()->set_num_kv_heads(1);
  reg.mutable_spec()->set_head_dim(64);
  reg.mutable_spec()->set_tokens_per_chunk(16);
  pb::RegisterNamespaceResponse reg_resp;
  EXPECT_EQ(Call(&pb::Strata::Stub::RegisterNamespace, reg, &reg_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Commit with a wrong checksum: DataLoss, nothing becomes visible.
  std::vector<uint32_t> tokens(16, 7);
  ChunkKey fresh = ns_.Keys(tokens)[0];
  pb::PutBeginRequest begin;
  begin.set_client_id("raw");
  begin.set_namespace_id(ns_.id);
  begin.add_items()->set_key(std::string(reinterpret_cast<const char*>(fresh.bytes.data()), 32));
  ASSERT_TRUE(Call(&pb::Strata::Stub::PutBegin, begin, &begin_resp).ok());
  pb::PutCommitRequest commit;
  commit.set_client_id("raw");
  commit.set_lease_id(begin_resp.lease_id());
  pb::PutCommitResponse commit_resp;
  // Wrong number of checksums first: InvalidArgument, the lease stays open.
  EXPECT_EQ(Call(&pb::Strata::Stub::PutCommit, commit, &commit_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  commit.add_checksums(12345);
  // Another client may not commit it.
  commit.set_client_id("intruder");
  EXPECT_EQ(Call(&pb::Strata::Stub::PutCommit, commit, &commit_resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  commit.set_client_id("raw");
  EXPECT_EQ(Call(&pb::Strata::Stub::PutCommit, commit, &commit_resp).error_code(),
            grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(client_->Lookup(ns_, std::vector<ChunkKey>{fresh})->tiers[0], client::Tier::kMissing);

  // Release of a lease that is not the caller's.
  pb::GetRequest get;
  get.set_client_id("owner");
  get.set_namespace_id(ns_.id);
  get.add_keys(good);
  pb::GetResponse get_resp;
  ASSERT_TRUE(Call(&pb::Strata::Stub::Get, get, &get_resp).ok());
  pb::ReleaseRequest release;
  release.set_client_id("intruder");
  release.set_lease_id(get_resp.lease_id());
  pb::ReleaseResponse release_resp;
  EXPECT_EQ(Call(&pb::Strata::Stub::Release, release, &release_resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  release.set_client_id("owner");
  EXPECT_TRUE(Call(&pb::Strata::Stub::Release, release, &release_resp).ok());
  EXPECT_EQ(Call(&pb::Strata::Stub::Release, release, &release_resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Missing client id.
  get.clear_client_id();
  EXPECT_EQ(Call(&pb::Strata::Stub::Get, get, &get_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Hints: accepted when valid, each bad field rejected.
  std::vector<client::HintJob> jobs = {{keys[1], 0}, {keys[0], 1}};
  EXPECT_TRUE(client_->Hint(ns_, "sched-1", jobs, absl::Seconds(30)).ok());
  EXPECT_EQ(client_->Hint(ns_, "", jobs, absl::Seconds(30)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Hint(ns_, "sched-1", jobs, absl::Hours(2)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<client::HintJob> many(5000, jobs[0]);
  EXPECT_EQ(client_->Hint(ns_, "sched-1", many, absl::Seconds(30)).code(),
            absl::StatusCode::kInvalidArgument);
  client::Namespace unknown = ns_;
  unknown.id = 999;
  EXPECT_EQ(client_->Hint(unknown, "sched-1", jobs, absl::Seconds(30)).code(),
            absl::StatusCode::kNotFound);
  pb::HintRequest hint;
  hint.set_scheduler_id("s");
  hint.set_namespace_id(ns_.id);
  hint.add_jobs()->set_last_key("short");
  pb::HintResponse hint_resp;
  EXPECT_EQ(Call(&pb::Strata::Stub::Hint, hint, &hint_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->at("hint_jobs"), 2u);
  EXPECT_EQ(stats->at("checksum_failures"), 1u);

  ExpectIntact(keys, bytes);
}

TEST_P(ServiceTest, RandomBytesToTheGrpcPortLeaveTheNodeServing) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(2, 4, &bytes);
  std::mt19937 rng(5);
  for (int round = 0; round < 5; ++round) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::vector<char> junk(4096 << round);
    for (char& c : junk) c = static_cast<char>(rng());
    if (round == 0) std::memcpy(junk.data(), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
  }
  ExpectIntact(keys, bytes);
}

TEST_P(ServiceTest, ConcurrentClientsVerifyEveryByte) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < 3; ++c) {
    threads.emplace_back([&, c] {
      auto client = NewClient(absl::StrCat("worker-", c));
      if (client == nullptr) {
        ++failures;
        return;
      }
      auto ns = client->RegisterNamespace(Spec(), "tenant-a");
      if (!ns.ok() || ns->id != ns_.id) {
        ++failures;
        return;
      }
      for (int round = 0; round < 10; ++round) {
        std::vector<uint32_t> tokens(4 * 16);
        std::mt19937 rng(100 * c + round % 4);  // rounds repeat: some saves find the keys
        for (auto& t : tokens) t = rng() % 50000;
        std::vector<ChunkKey> keys = ns->Keys(tokens);
        std::vector<std::byte> bytes = Bytes(keys.size() * ns->chunk_bytes, 100 * c + round % 4);
        auto save = client->Save(*ns, keys, bytes);
        if (!save.ok() || !(*save)->Wait().ok()) {
          ++failures;
          continue;
        }
        std::vector<std::byte> out(bytes.size());
        auto load = client->Load(*ns, keys, out);
        if (!load.ok() || !(*load)->Wait().ok() || out != bytes) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Issue: PutAbort on one's read lease (or Release on one's write lease)
// answered NotFound and dropped the ownership record, orphaning the lease.
TEST_P(ServiceTest, WrongKindOfLeaseCallKeepsTheCallersLease) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(1, 11, &bytes);
  const std::string key(reinterpret_cast<const char*>(keys[0].bytes.data()), 32);
  pb::GetRequest get;
  get.set_client_id("me");
  get.set_namespace_id(ns_.id);
  get.add_keys(key);
  pb::GetResponse get_resp;
  ASSERT_TRUE(Call(&pb::Strata::Stub::Get, get, &get_resp).ok());
  pb::PutAbortRequest abort;
  abort.set_client_id("me");
  abort.set_lease_id(get_resp.lease_id());
  pb::PutAbortResponse abort_resp;
  EXPECT_EQ(Call(&pb::Strata::Stub::PutAbort, abort, &abort_resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  pb::ReleaseRequest release;
  release.set_client_id("me");
  release.set_lease_id(get_resp.lease_id());
  pb::ReleaseResponse release_resp;
  EXPECT_TRUE(Call(&pb::Strata::Stub::Release, release, &release_resp).ok());

  std::vector<uint32_t> tokens(16, 99);
  const ChunkKey fresh = ns_.Keys(tokens)[0];
  pb::PutBeginRequest begin;
  begin.set_client_id("me");
  begin.set_namespace_id(ns_.id);
  begin.add_items()->set_key(std::string(reinterpret_cast<const char*>(fresh.bytes.data()), 32));
  pb::PutBeginResponse begin_resp;
  ASSERT_TRUE(Call(&pb::Strata::Stub::PutBegin, begin, &begin_resp).ok());
  release.set_lease_id(begin_resp.lease_id());
  EXPECT_EQ(Call(&pb::Strata::Stub::Release, release, &release_resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  abort.set_lease_id(begin_resp.lease_id());
  EXPECT_TRUE(Call(&pb::Strata::Stub::PutAbort, abort, &abort_resp).ok());
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->at("active_read_leases") + stats->at("active_write_leases"), 0u);
  ExpectIntact(keys, bytes);
}

// A get carries the caller's earlier read leases to release (no Release
// round trip of their own); another client's lease ids are skipped.
TEST_P(ServiceTest, GetsCarryReleasesOfTheCallersLeases) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(2, 13, &bytes);
  const std::string key(reinterpret_cast<const char*>(keys[0].bytes.data()), 32);
  auto get = [&](const std::string& client, std::vector<uint64_t> release) {
    pb::GetRequest req;
    req.set_client_id(client);
    req.set_namespace_id(ns_.id);
    req.add_keys(key);
    for (uint64_t id : release) req.add_release_lease_ids(id);
    pb::GetResponse resp;
    EXPECT_TRUE(Call(&pb::Strata::Stub::Get, req, &resp).ok());
    return resp.lease_id();
  };
  auto leases = [&] { return client_->Stats()->at("active_read_leases"); };
  const uint64_t mine = get("me", {});
  const uint64_t theirs = get("other", {});
  EXPECT_EQ(leases(), 2u);
  const uint64_t next = get("me", {mine, theirs, 12345});  // 12345: unknown
  EXPECT_EQ(leases(), 2u);  // mine went, theirs stays, next is new
  pb::ReleaseRequest release;
  release.set_client_id("other");
  release.set_lease_id(theirs);
  release.add_more_lease_ids(next);  // not "other"'s: skipped
  pb::ReleaseResponse release_resp;
  EXPECT_TRUE(Call(&pb::Strata::Stub::Release, release, &release_resp).ok());
  EXPECT_EQ(leases(), 1u);
  release.set_client_id("me");
  release.set_lease_id(next);
  release.clear_more_lease_ids();
  EXPECT_TRUE(Call(&pb::Strata::Stub::Release, release, &release_resp).ok());
  EXPECT_EQ(leases(), 0u);

  // Through the client: loads leave their leases to be carried by the next
  // load or released shortly after by a background call.
  for (int i = 0; i < 5; ++i) ExpectIntact(keys, bytes);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (leases() != 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(leases(), 0u);
}

// Issue: namespaces could be registered until the node refused every new
// tenant, forever. Now one caller is bounded and namespaces can be removed.
TEST_P(ServiceTest, NamespacesAreBoundedPerCallerAndRemovable) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(2, 12, &bytes);
  auto reg = [&](const std::string& tenant) {
    return client_->RegisterNamespace(Spec(), tenant).status();
  };
  // The fixture registered one; the limit per caller is 4 here.
  ASSERT_TRUE(reg("t1").ok());
  ASSERT_TRUE(reg("t2").ok());
  ASSERT_TRUE(reg("t3").ok());
  absl::Status refused = reg("t4");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_TRUE(reg("t1").ok());  // registering an existing one is free

  pb::RemoveNamespaceRequest remove;
  auto* spec = remove.mutable_spec();
  spec->set_model_id("service-test");
  spec->set_num_layers(4);
  spec->set_num_kv_heads(2);
  spec->set_head_dim(64);
  spec->set_dtype(pb::DTYPE_BF16);
  spec->set_tokens_per_chunk(16);
  remove.set_tenant("t2");
  pb::RemoveNamespaceResponse remove_resp;
  ASSERT_TRUE(Call(&pb::Strata::Stub::RemoveNamespace, remove, &remove_resp).ok());
  EXPECT_EQ(remove_resp.chunks_removed(), 0u);
  EXPECT_EQ(Call(&pb::Strata::Stub::RemoveNamespace, remove, &remove_resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(reg("t4").ok());

  // Removing the fixture's namespace takes its chunks with it.
  remove.set_tenant("tenant-a");
  ASSERT_TRUE(Call(&pb::Strata::Stub::RemoveNamespace, remove, &remove_resp).ok());
  EXPECT_EQ(remove_resp.chunks_removed(), 2u);
  EXPECT_EQ(client_->Lookup(ns_, keys).status().code(), absl::StatusCode::kNotFound);
  pb::HealthRequest health;
  pb::HealthResponse health_resp;
  ASSERT_TRUE(Call(&pb::Strata::Stub::Health, health, &health_resp).ok());
  EXPECT_TRUE(health_resp.serving());
  EXPECT_TRUE(health_resp.persisting());
}

// The node says how large a tcp segment it receives (UCX does not negotiate
// it; clients send segments up to that size).
TEST_P(ServiceTest, NodeInfoNamesTheTcpReceiveSegment) {
  pb::NodeInfo info;
  ASSERT_TRUE(Call(&pb::Strata::Stub::GetNodeInfo, pb::NodeInfoRequest(), &info).ok());
  EXPECT_EQ(info.ucx_tcp_receive_segment(), uint64_t{1} << 20);
}

// The node stores keys scoped by their namespace; its errors name the key
// the caller gave, not the scoped one the caller has never seen.
TEST_P(ServiceTest, NotFoundNamesTheCallersKey) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveChain(3, 43, &bytes);
  const ChunkKey missing = ns_.Keys(std::vector<uint32_t>(16, 7))[0];  // never saved
  keys[1] = missing;
  std::vector<std::byte> out(keys.size() * ns_.chunk_bytes);
  auto t = client_->Load(ns_, keys, out);
  const absl::Status s = t.ok() ? (*t)->Wait() : t.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), missing.ShortHex())) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "key 1 of 3")) << s;
}

// A second node on a port in use fails to start (gRPC's SO_REUSEPORT
// used to let it listen beside the first and take some of its clients);
// the first keeps serving.
TEST_P(ServiceTest, ASecondNodeOnAPortInUseDoesNotStart) {
  std::vector<std::byte> bytes;
  const std::vector<ChunkKey> keys = SaveChain(2, 41, &bytes);
  store::EngineOptions eo;
  eo.dram_bytes = 8 << 20;
  auto engine = store::Engine::Open(eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  store::ServerOptions so;
  so.listen_address = server_->address();
  so.ucx_transports = GetParam();
  auto second = store::StoreServer::Start(*std::move(engine), so);
  ASSERT_FALSE(second.ok()) << "a second node listens on " << server_->address();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "address in use"))
      << second.status();
  for (int i = 0; i < 4; ++i) ExpectIntact(keys, bytes);  // new connections, same node
}

TEST_P(ServiceTest, AListenPortOutOfRangeIsInvalidArgument) {
  for (const char* address : {"127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1",
                              "127.0.0.1:7x"}) {
    store::EngineOptions eo;
    eo.dram_bytes = 8 << 20;
    auto engine = store::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    store::ServerOptions so;
    so.listen_address = address;
    so.ucx_transports = GetParam();
    auto server = store::StoreServer::Start(*std::move(engine), so);
    ASSERT_FALSE(server.ok()) << address << " listens on " << (*server)->address();
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << address << ": " << server.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, ServiceTest, ::testing::Values("tcp", ""),
                         [](const auto& info) {
                           return info.param.empty() ? std::string("default") : info.param;
                         });

}  // namespace
}  // namespace strata
