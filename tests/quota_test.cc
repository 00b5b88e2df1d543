// Tenant quotas on a real node: `strata serve --tenants FILE` in a child
// process, tenants "a" (with quotas) and "b" (none) as clients over gRPC and
// UCX. A tenant over its quota evicts only its own chunks; refused when none
// of them can go while the other tenant goes on; SIGHUP changes the quota.
// (A quota line that does not parse: tests/trust_test.cc and
// tests/trust_cli_test.sh.)
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/tenants.h"
#include "tests/server_process.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
namespace pb = ::strata::v1;

constexpr uint64_t kChunk = 32 << 10;
constexpr size_t kBatch = 16;  // chunks per save (one PutBegin)

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "quota-test";
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kBFloat16;
  spec.tokens_per_chunk = 16;  // 32 KiB chunks
  return spec;
}

std::vector<uint32_t> Tokens(size_t chunks, uint64_t seed) {
  std::vector<uint32_t> tokens(chunks * 16);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (auto& t : tokens) t = rng() % 50000;
  return tokens;
}

std::vector<std::byte> Bytes(size_t n, uint64_t seed) {
  std::vector<std::byte> out(n);
  std::mt19937_64 rng(seed);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           (std::string("quota_test_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    token_a_ = *auth::NewToken("a");
    token_b_ = *auth::NewToken("b");
    line_a_ = "a " + auth::HashToken(token_a_);
    line_b_ = "b " + auth::HashToken(token_b_);
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Stop(), 0);
    }
    fs::remove_all(dir_);
  }

  // Writes the tenants file with `a_quotas` on a's line.
  void WriteTenants(const std::string& a_quotas) {
    std::ofstream(dir_ / "tenants") << "# quota test\n"
                                    << line_a_ << " " << a_quotas << "\n"
                                    << line_b_ << "\n";
  }

  // Starts the node (DRAM only unless `nvme`) and connects a and b.
  void Start(const std::string& a_quotas, bool nvme = false) {
    WriteTenants(a_quotas);
    std::vector<std::string> args = {"--tenants=" + (dir_ / "tenants").string(),
                                     "--dram=16MiB", "--ucx_transports=tcp"};
    if (nvme) {
      args.push_back("--data_dir=" + (dir_ / "data").string());
      args.push_back("--nvme=64MiB");
    } else {
      args.push_back("--no_nvme");
    }
    server_ = std::make_unique<testing::ServerProcess>(args, (dir_ / "port").string());
    server_->Start();
    if (::testing::Test::HasFatalFailure()) return;
    a_ = Connect(token_a_, "client-a");
    b_ = Connect(token_b_, "client-b");
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
    auto ns_a = a_->RegisterNamespace(Spec(), "a");
    auto ns_b = b_->RegisterNamespace(Spec(), "b");
    ASSERT_TRUE(ns_a.ok()) << ns_a.status();
    ASSERT_TRUE(ns_b.ok()) << ns_b.status();
    ns_a_ = *ns_a;
    ns_b_ = *ns_b;
  }

  std::unique_ptr<client::Client> Connect(const std::string& token, const std::string& id) {
    client::ClientOptions o;
    o.server_address = server_->address();
    o.ucx_transports = "tcp";
    o.client_id = id;
    o.token = token;
    auto c = client::Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // One key chain of kBatch chunks (`seed` picks it), saved in one put.
  std::vector<ChunkKey> Chain(const client::Namespace& ns, uint64_t seed) {
    return ns.Keys(Tokens(kBatch, seed));
  }
  absl::Status Save(client::Client& c, const client::Namespace& ns, uint64_t seed,
                    size_t chunks = kBatch) {
    std::vector<ChunkKey> keys = Chain(ns, seed);
    keys.resize(chunks);
    std::vector<std::byte> bytes = Bytes(chunks * kChunk, seed);
    auto t = c.Save(ns, keys, bytes);
    if (!t.ok()) return t.status();
    return (*t)->Wait();
  }
  // OK when the chain of `seed` loads back with its bytes.
  absl::Status Load(client::Client& c, const client::Namespace& ns, uint64_t seed) {
    std::vector<ChunkKey> keys = Chain(ns, seed);
    std::vector<std::byte> out(keys.size() * kChunk);
    auto t = c.Load(ns, keys, out);
    if (!t.ok()) return t.status();
    if (absl::Status s = (*t)->Wait(); !s.ok()) return s;
    if (out != Bytes(out.size(), seed)) return absl::DataLossError("other bytes came back");
    return absl::OkStatus();
  }
  // Chunks of the chain of `seed` stored (in any tier).
  size_t Stored(client::Client& c, const client::Namespace& ns, uint64_t seed) {
    std::vector<ChunkKey> keys = Chain(ns, seed);
    auto r = c.Lookup(ns, keys);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return ~size_t{0};
    size_t n = 0;
    for (client::Tier t : r->tiers) n += t != client::Tier::kMissing ? 1 : 0;
    return n;
  }
  uint64_t Stat(client::Client& c, const std::string& name) {
    auto stats = c.Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    if (!stats.ok()) return ~0ull;
    auto it = stats->find(name);
    EXPECT_NE(it, stats->end()) << name;
    return it == stats->end() ? ~0ull : it->second;
  }
  // SIGHUP, then waits until a's stats show `dram_quota` (the reload is
  // asynchronous; bounded so that a reload that never lands fails).
  void ReloadUntil(uint64_t dram_quota) {
    ASSERT_EQ(kill(server_->pid(), SIGHUP), 0);
    for (int i = 0; i < 500 && Stat(*a_, "tenant_dram_quota_bytes") != dram_quota; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(Stat(*a_, "tenant_dram_quota_bytes"), dram_quota);
  }

  // A read lease held on a's chain `seed` through a raw stub on a
  // connection of its own.
  uint64_t HoldChain(uint64_t seed, std::unique_ptr<pb::Strata::Stub>* stub) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    *stub = pb::Strata::NewStub(
        grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
    pb::GetRequest get;
    get.set_client_id("holder");
    get.set_namespace_id(ns_a_.id);
    get.set_lease_ms(60000);
    for (const ChunkKey& k : Chain(ns_a_, seed)) get.add_keys(std::string(k.AsStringView()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token_a_);
    pb::GetResponse lease;
    grpc::Status s = (*stub)->Get(&ctx, get, &lease);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return lease.lease_id();
  }
  void Release(pb::Strata::Stub& stub, uint64_t lease) {
    pb::ReleaseRequest req;
    req.set_client_id("holder");
    req.set_lease_id(lease);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token_a_);
    pb::ReleaseResponse resp;
    grpc::Status s = stub.Release(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  fs::path dir_;
  std::string token_a_, token_b_, line_a_, line_b_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<client::Client> a_, b_;
  client::Namespace ns_a_, ns_b_;
};

TEST_F(QuotaTest, OverItsQuotaATenantEvictsOnlyItsOwnChunksWhileTheOthersStay) {
  Start("dram=1MiB");  // 32 chunks
  // b's chunks are the least recently used on the node.
  for (uint64_t seed = 100; seed < 104; ++seed) ASSERT_TRUE(Save(*b_, ns_b_, seed).ok());
  ASSERT_TRUE(Save(*a_, ns_a_, 1).ok());
  ASSERT_TRUE(Save(*a_, ns_a_, 2).ok());
  EXPECT_EQ(Stat(*a_, "tenant_dram_bytes"), 1u << 20);
  // A third chain: a's oldest one makes room, nothing of b's.
  ASSERT_TRUE(Save(*a_, ns_a_, 3).ok());
  EXPECT_EQ(Stored(*a_, ns_a_, 1), 0u);
  EXPECT_TRUE(Load(*a_, ns_a_, 2).ok());
  EXPECT_TRUE(Load(*a_, ns_a_, 3).ok());
  for (uint64_t seed = 100; seed < 104; ++seed) EXPECT_TRUE(Load(*b_, ns_b_, seed).ok()) << seed;
  EXPECT_EQ(Stat(*a_, "tenant_dram_bytes"), 1u << 20);
  EXPECT_EQ(Stat(*a_, "tenant_dram_quota_bytes"), 1u << 20);
  EXPECT_EQ(Stat(*a_, "tenant_dram_quota_evictions"), kBatch);
  EXPECT_EQ(Stat(*a_, "dram_evictions"), kBatch);  // node-wide: a's only
  EXPECT_EQ(Stat(*b_, "tenant_dram_bytes"), 4 * kBatch * kChunk);
  EXPECT_EQ(Stat(*b_, "tenant_dram_quota_bytes"), 0u);  // none
  EXPECT_EQ(Stat(*b_, "tenant_dram_quota_evictions"), 0u);
}

TEST_F(QuotaTest, RefusedWhenAllItsChunksAreLeasedWhileTheOtherTenantsPutsSucceed) {
  Start("dram=1MiB");
  ASSERT_TRUE(Save(*a_, ns_a_, 1).ok());
  ASSERT_TRUE(Save(*a_, ns_a_, 2).ok());
  std::unique_ptr<pb::Strata::Stub> s1, s2;
  const uint64_t lease1 = HoldChain(1, &s1);
  const uint64_t lease2 = HoldChain(2, &s2);
  absl::Status refused = Save(*a_, ns_a_, 3, 1);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("tenant 'a' is at its DRAM quota (1048576 bytes"),
            std::string::npos)
      << refused;
  EXPECT_EQ(Stat(*a_, "tenant_quota_refusals"), 1u);
  // b is not held back, and nothing of a's went.
  for (uint64_t seed = 100; seed < 106; ++seed) ASSERT_TRUE(Save(*b_, ns_b_, seed).ok()) << seed;
  for (uint64_t seed = 100; seed < 106; ++seed) EXPECT_TRUE(Load(*b_, ns_b_, seed).ok()) << seed;
  EXPECT_EQ(Stored(*a_, ns_a_, 1), kBatch);
  EXPECT_EQ(Stored(*a_, ns_a_, 2), kBatch);
  EXPECT_EQ(Stat(*b_, "tenant_quota_refusals"), 0u);
  // Leases released: a's put makes room from its own chunks again.
  Release(*s1, lease1);
  Release(*s2, lease2);
  EXPECT_TRUE(Save(*a_, ns_a_, 3).ok());
  EXPECT_TRUE(Load(*a_, ns_a_, 3).ok());
  EXPECT_EQ(Stat(*a_, "tenant_dram_bytes"), 1u << 20);
}

TEST_F(QuotaTest, SighupChangesTheQuotas) {
  Start("dram=1MiB hint_jobs=2");
  ASSERT_TRUE(Save(*a_, ns_a_, 1).ok());
  ASSERT_TRUE(Save(*a_, ns_a_, 2).ok());
  ASSERT_TRUE(Save(*b_, ns_b_, 100).ok());
  EXPECT_EQ(Stat(*a_, "tenant_hint_jobs_quota"), 2u);
  std::vector<client::HintJob> jobs;
  for (uint32_t i = 0; i < 3; ++i) jobs.push_back({Chain(ns_a_, 1 + i % 2)[i], i});
  EXPECT_EQ(a_->Hint(ns_a_, "sched", jobs, absl::Seconds(10)).code(),
            absl::StatusCode::kResourceExhausted);
  // Lowered to half: a's least recently used chain goes at the reload.
  WriteTenants("dram=512KiB");
  ReloadUntil(512 << 10);
  EXPECT_EQ(Stat(*a_, "tenant_dram_bytes"), 512u << 10);
  EXPECT_EQ(Stored(*a_, ns_a_, 1), 0u);
  EXPECT_EQ(Stored(*a_, ns_a_, 2), kBatch);
  EXPECT_EQ(Stored(*b_, ns_b_, 100), kBatch);
  EXPECT_EQ(Stat(*a_, "tenant_hint_jobs_quota"), 0u);
  EXPECT_TRUE(a_->Hint(ns_a_, "sched", jobs, absl::Seconds(10)).ok());
  // Raised: three more chains fit.
  WriteTenants("dram=2MiB");
  ReloadUntil(2 << 20);
  ASSERT_TRUE(Save(*a_, ns_a_, 3).ok());
  ASSERT_TRUE(Save(*a_, ns_a_, 4).ok());
  ASSERT_TRUE(Save(*a_, ns_a_, 5).ok());
  EXPECT_EQ(Stat(*a_, "tenant_dram_bytes"), 4 * kBatch * kChunk);
  for (uint64_t seed = 2; seed <= 5; ++seed) EXPECT_TRUE(Load(*a_, ns_a_, seed).ok()) << seed;
}

TEST_F(QuotaTest, OverItsNvmeQuotaATenantDeletesOnlyItsOwnNvmeChunks) {
  Start("nvme=1MiB", /*nvme=*/true);
  for (uint64_t seed = 100; seed < 103; ++seed) ASSERT_TRUE(Save(*b_, ns_b_, seed).ok());
  for (uint64_t seed = 1; seed <= 4; ++seed) ASSERT_TRUE(Save(*a_, ns_a_, seed).ok());
  // Write-back is asynchronous: wait (bounded) until the queue is empty.
  for (int i = 0; i < 500 && Stat(*a_, "write_back_queue") != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(Stat(*a_, "write_back_queue"), 0u);
  EXPECT_EQ(Stat(*a_, "tenant_nvme_bytes"), 1u << 20);
  EXPECT_EQ(Stat(*a_, "tenant_nvme_quota_evictions"), 2 * kBatch);
  EXPECT_EQ(Stat(*b_, "tenant_nvme_bytes"), 3 * kBatch * kChunk);
  EXPECT_EQ(Stat(*b_, "nvme_used_bytes"), (1u << 20) + 3 * kBatch * kChunk);
  // Every persisted flag of b's chunks is still set; a's first two chains
  // are only in DRAM now.
  for (uint64_t seed = 100; seed < 103; ++seed) {
    auto r = b_->Lookup(ns_b_, Chain(ns_b_, seed));
    ASSERT_TRUE(r.ok());
    for (bool p : r->persisted) EXPECT_TRUE(p) << seed;
  }
  auto first = a_->Lookup(ns_a_, Chain(ns_a_, 1));
  ASSERT_TRUE(first.ok());
  for (bool p : first->persisted) EXPECT_FALSE(p);
}

}  // namespace
}  // namespace strata
