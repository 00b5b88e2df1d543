// Trust on a real node (gRPC on 127.0.0.1, UCX data plane) in one process:
// TLS and mutual TLS with certificates made by the `openssl` command at test
// time, and tenant authentication, each attack a hostile client tried against
// a node without it.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/auth/tenants.h"
#include "store/common/checksum.h"
#include "store/common/key_chain.h"
#include "store/engine.h"
#include "store/server.h"
#include "tests/test_data.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
namespace pb = ::strata::v1;
using testing::Bytes;

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "trust-test";
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kBFloat16;
  spec.tokens_per_chunk = 16;  // 32 KiB chunks
  return spec;
}

constexpr uint64_t kChunkBytes = 32 << 10;

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<uint32_t> Tokens(size_t chunks, uint64_t seed) {
  std::vector<uint32_t> tokens(chunks * 16);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (auto& t : tokens) t = rng() % 50000;
  return tokens;
}

// A node with its own engine; options as given.
std::unique_ptr<store::StoreServer> StartNode(store::ServerOptions so, uint64_t dram = 64 << 20) {
  store::EngineOptions eo;
  eo.dram_bytes = dram;
  auto engine = store::Engine::Open(eo);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  so.listen_address = "127.0.0.1:0";
  so.ucx_transports = "tcp";
  auto server = store::StoreServer::Start(*std::move(engine), so);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Saves `keys` from `bytes` and waits.
absl::Status SaveAll(client::Client& c, const client::Namespace& ns,
                     const std::vector<ChunkKey>& keys, const std::vector<std::byte>& bytes) {
  auto t = c.Save(ns, keys, bytes);
  if (!t.ok()) return t.status();
  return (*t)->Wait();
}

absl::StatusOr<std::vector<std::byte>> LoadAll(client::Client& c, const client::Namespace& ns,
                                               const std::vector<ChunkKey>& keys) {
  std::vector<std::byte> out(keys.size() * ns.chunk_bytes);
  auto t = c.Load(ns, keys, out);
  if (!t.ok()) return t.status();
  if (absl::Status s = (*t)->Wait(); !s.ok()) return s;
  return out;
}

// ------------------------------------------------------------------ TLS

// A CA, a server certificate for 127.0.0.1 and strata.test, a client
// certificate from the same CA, and another CA with a client certificate.
class Pki {
 public:
  static Pki& Get() {
    static Pki* pki = new Pki();
    return *pki;
  }
  fs::path dir;
  std::string error;

  std::string Path(const std::string& name) const { return (dir / name).string(); }

 private:
  Pki() {
    dir = fs::path(::testing::TempDir()) / "trust_test_pki";
    fs::remove_all(dir);
    fs::create_directories(dir);
    WriteFile(dir / "server.ext",
              "subjectAltName=DNS:strata.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
              "extendedKeyUsage=serverAuth\n");
    WriteFile(dir / "client.ext", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string script = "set -e; cd '" + dir.string() + "'\n";
    for (const char* ca : {"ca", "other_ca"}) {
      script += "openssl req -x509 " + ec + " -keyout " + ca + ".key -out " + ca +
                ".pem -days 2 -subj /CN=" + ca + " 2>/dev/null\n";
    }
    auto leaf = [&](const std::string& name, const std::string& ca, const std::string& cn,
                    const std::string& ext) {
      script += "openssl req " + ec + " -keyout " + name + ".key -out " + name +
                ".csr -subj /CN=" + cn + " 2>/dev/null\n";
      script += "openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
                ".key -set_serial 0x$(openssl rand -hex 8) -days 2 -extfile " + ext +
                " -out " + name + ".pem 2>/dev/null\n";
    };
    leaf("server", "ca", "strata.test", "server.ext");
    leaf("client", "ca", "client-a", "client.ext");
    leaf("rogue_client", "other_ca", "client-b", "client.ext");
    WriteFile(dir / "make.sh", script);
    if (std::system(("bash '" + (dir / "make.sh").string() + "'").c_str()) != 0) {
      error = "openssl failed to make the test certificates (is the openssl command installed?)";
    }
  }
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(Pki::Get().error, ""); }

  absl::StatusOr<std::unique_ptr<client::Client>> Connect(const store::StoreServer& server,
                                                          client::ClientOptions o) {
    o.server_address = server.address();
    o.ucx_transports = "tcp";
    o.rpc_timeout = absl::Seconds(5);
    return client::Client::Connect(o);
  }

  // The round trip a working connection must allow.
  void ExpectSaveAndLoad(client::Client& c) {
    auto ns = c.RegisterNamespace(Spec(), "t");
    ASSERT_TRUE(ns.ok()) << ns.status();
    std::vector<ChunkKey> keys = ns->Keys(Tokens(3, 1));
    std::vector<std::byte> bytes = Bytes(keys.size() * ns->chunk_bytes, 1);
    ASSERT_TRUE(SaveAll(c, *ns, keys, bytes).ok());
    auto back = LoadAll(c, *ns, keys);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, bytes);
  }

  static void ExpectRefused(const absl::Status& s, const std::string& needle) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  }
};

TEST_F(TlsTest, ServerTlsServesTheRightClientAndRefusesTheOthers) {
  const Pki& pki = Pki::Get();
  store::ServerOptions so;
  so.tls_cert_file = pki.Path("server.pem");
  so.tls_key_file = pki.Path("server.key");
  auto server = StartNode(so);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->tls());

  client::ClientOptions good;
  good.tls_ca_file = pki.Path("ca.pem");
  auto c = Connect(*server, good);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectSaveAndLoad(**c);
  // By name as well as by address.
  client::ClientOptions by_name = good;
  by_name.tls_server_name = "strata.test";
  EXPECT_TRUE(Connect(*server, by_name).ok());

  // Plaintext to a TLS port.
  ExpectRefused(Connect(*server, {}).status(), "a node with TLS needs tls_ca_file");
  // A CA that did not sign the node's certificate.
  client::ClientOptions wrong_ca;
  wrong_ca.tls_ca_file = pki.Path("other_ca.pem");
  ExpectRefused(Connect(*server, wrong_ca).status(), "signed by the CA in tls_ca_file");
  // Expecting another server name.
  client::ClientOptions other_name = good;
  other_name.tls_server_name = "other.test";
  ExpectRefused(Connect(*server, other_name).status(), "tls_server_name");
}

TEST_F(TlsTest, MutualTlsAdmitsOnlyClientsSignedByTheClientCa) {
  const Pki& pki = Pki::Get();
  store::ServerOptions so;
  so.tls_cert_file = pki.Path("server.pem");
  so.tls_key_file = pki.Path("server.key");
  so.tls_client_ca_file = pki.Path("ca.pem");
  auto server = StartNode(so);
  ASSERT_NE(server, nullptr);

  client::ClientOptions good;
  good.tls_ca_file = pki.Path("ca.pem");
  good.tls_cert_file = pki.Path("client.pem");
  good.tls_key_file = pki.Path("client.key");
  auto c = Connect(*server, good);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectSaveAndLoad(**c);

  client::ClientOptions no_cert;
  no_cert.tls_ca_file = pki.Path("ca.pem");
  ExpectRefused(Connect(*server, no_cert).status(), "accepts only one signed by its client CA");
  client::ClientOptions rogue = good;
  rogue.tls_cert_file = pki.Path("rogue_client.pem");
  rogue.tls_key_file = pki.Path("rogue_client.key");
  ExpectRefused(Connect(*server, rogue).status(), "accepts only one signed by its client CA");
  // A raw gRPC channel without a certificate gets no answer either.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(pki.Path("ca.pem"));
  auto stub = pb::Strata::NewStub(grpc::CreateChannel(server->address(), grpc::SslCredentials(ssl)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::NodeInfo info;
  EXPECT_EQ(stub->GetNodeInfo(&ctx, pb::NodeInfoRequest(), &info).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(info.dram_rkey().empty());
}

TEST_F(TlsTest, BadTlsFilesAreNamedAtStart) {
  const Pki& pki = Pki::Get();
  store::EngineOptions eo;
  eo.dram_bytes = 16 << 20;
  auto start = [&](const std::string& cert, const std::string& key, const std::string& ca) {
    store::ServerOptions so;
    so.listen_address = "127.0.0.1:0";
    so.ucx_transports = "tcp";
    so.tls_cert_file = cert;
    so.tls_key_file = key;
    so.tls_client_ca_file = ca;
    auto engine = store::Engine::Open(eo);
    EXPECT_TRUE(engine.ok());
    return store::StoreServer::Start(*std::move(engine), so).status();
  };
  absl::Status missing = start(pki.Path("nope.pem"), pki.Path("server.key"), "");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_NE(missing.message().find("nope.pem"), std::string::npos);
  absl::Status mismatch = start(pki.Path("server.pem"), pki.Path("client.key"), "");
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument) << mismatch;
  EXPECT_NE(mismatch.message().find("does not belong"), std::string::npos) << mismatch;
  absl::Status not_pem = start(pki.Path("server.ext"), pki.Path("server.key"), "");
  EXPECT_EQ(not_pem.code(), absl::StatusCode::kInvalidArgument) << not_pem;
  absl::Status key_only = start("", pki.Path("server.key"), "");
  EXPECT_EQ(key_only.code(), absl::StatusCode::kInvalidArgument) << key_only;
  absl::Status ca_not_pem = start(pki.Path("server.pem"), pki.Path("server.key"),
                                  pki.Path("client.ext"));
  EXPECT_EQ(ca_not_pem.code(), absl::StatusCode::kInvalidArgument) << ca_not_pem;
  // Client side: TLS options without a CA, a certificate without its key.
  store::ServerOptions so;
  auto server = StartNode(so, 16 << 20);
  ASSERT_NE(server, nullptr);
  client::ClientOptions no_ca;
  no_ca.tls_cert_file = pki.Path("client.pem");
  no_ca.tls_key_file = pki.Path("client.key");
  EXPECT_EQ(Connect(*server, no_ca).status().code(), absl::StatusCode::kInvalidArgument);
  client::ClientOptions half;
  half.tls_ca_file = pki.Path("ca.pem");
  half.tls_cert_file = pki.Path("client.pem");
  EXPECT_EQ(Connect(*server, half).status().code(), absl::StatusCode::kInvalidArgument);
  client::ClientOptions missing_ca;
  missing_ca.tls_ca_file = pki.Path("missing-ca.pem");
  EXPECT_EQ(Connect(*server, missing_ca).status().code(), absl::StatusCode::kNotFound);
  // Files that hold no certificate or key, a key of another certificate:
  // refused before any handshake, naming the option.
  auto refused = [&](const std::string& ca, const std::string& cert, const std::string& key,
                     const std::string& words) {
    client::ClientOptions o;
    o.tls_ca_file = pki.Path(ca);
    if (!cert.empty()) o.tls_cert_file = pki.Path(cert);
    if (!key.empty()) o.tls_key_file = pki.Path(key);
    absl::Status s = Connect(*server, o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(words), std::string::npos) << s;
  };
  refused("server.ext", "", "", "tls_ca_file");
  refused("ca.pem", "client.ext", "client.key", "tls_cert_file");
  refused("ca.pem", "client.pem", "client.ext", "tls_key_file");
  refused("ca.pem", "client.pem", "server.key", "does not belong");
}

// -------------------------------------------------------------- tenants

// A node that authenticates tenants "a" and "b" (plus a DRAM pool of 64 MiB,
// so half of it, 32 MiB, is what one caller may hold under write leases).
class TenantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / "trust_test_tenants";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    token_a_ = *auth::NewToken("a");
    token_b_ = *auth::NewToken("b");
    WriteTenants({token_a_, token_b_});
    store::ServerOptions so;
    so.tenants_file = (dir_ / "tenants").string();
    server_ = StartNode(so);
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(server_->authentication());
    a_ = NewClient(token_a_, "client-a");
    b_ = NewClient(token_b_, "client-b");
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
    auto ns_a = a_->RegisterNamespace(Spec(), "a");
    ASSERT_TRUE(ns_a.ok()) << ns_a.status();
    ns_a_ = *ns_a;
    auto ns_b = b_->RegisterNamespace(Spec(), "b");
    ASSERT_TRUE(ns_b.ok()) << ns_b.status();
    ns_b_ = *ns_b;
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    if (server_) {
      EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    }
    fs::remove_all(dir_);
  }

  void WriteTenants(const std::vector<std::string>& tokens) {
    std::string text = "# test tenants\n";
    for (const std::string& t : tokens) {
      text += t.substr(0, t.find(':')) + " " + auth::HashToken(t) + "\n";
    }
    WriteFile(dir_ / "tenants", text);
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
  std::unique_ptr<client::Client> NewClient(const std::string& token, const std::string& id) {
    auto c = Connect(token, id);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // A raw stub on a connection of its own (not shared with other channels
  // of this process), sending `token` if not empty.
  struct Raw {
    std::unique_ptr<pb::Strata::Stub> stub;
    std::string token;
    template <typename Req, typename Resp>
    grpc::Status Call(grpc::Status (pb::Strata::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                Resp*),
                      const Req& req, Resp* resp) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
      return ((*stub).*method)(&ctx, req, resp);
    }
  };
  Raw NewRaw(const std::string& token) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return Raw{pb::Strata::NewStub(grpc::CreateCustomChannel(
                   server_->address(), grpc::InsecureChannelCredentials(), args)),
               token};
  }

  std::vector<ChunkKey> SaveA(size_t n, uint64_t seed, std::vector<std::byte>* bytes) {
    std::vector<ChunkKey> keys = ns_a_.Keys(Tokens(n, seed));
    *bytes = Bytes(n * kChunkBytes, seed);
    EXPECT_TRUE(SaveAll(*a_, ns_a_, keys, *bytes).ok());
    return keys;
  }

  uint64_t Stat(client::Client& c, const std::string& name) {
    auto stats = c.Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() && stats->count(name) ? stats->at(name) : ~0ull;
  }

  fs::path dir_;
  std::string token_a_, token_b_;
  std::unique_ptr<store::StoreServer> server_;
  std::unique_ptr<client::Client> a_, b_;
  client::Namespace ns_a_, ns_b_;
};

TEST_F(TenantTest, CallsWithoutAValidTokenAreUnauthenticated) {
  auto none = Connect("", "x");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated) << none.status();
  EXPECT_NE(none.status().message().find("send a tenant token"), std::string::npos);
  std::string wrong = token_a_;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ(Connect(wrong, "x").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Connect("c:" + token_a_.substr(2), "x").status().code(),
            absl::StatusCode::kUnauthenticated);
  // Every call is refused, node info (which carries the pool's remote key)
  // included.
  Raw raw = NewRaw("");
  pb::NodeInfo info;
  EXPECT_EQ(raw.Call(&pb::Strata::Stub::GetNodeInfo, pb::NodeInfoRequest(), &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(info.dram_rkey().empty());
  pb::StatsResponse stats;
  EXPECT_EQ(raw.Call(&pb::Strata::Stub::Stats, pb::StatsRequest(), &stats).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  pb::LookupRequest lookup;
  lookup.set_namespace_id(ns_a_.id);
  pb::LookupResponse lr;
  EXPECT_EQ(raw.Call(&pb::Strata::Stub::Lookup, lookup, &lr).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  raw.token = "Bearer-less";
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", token_a_);  // no "Bearer "
  EXPECT_EQ(raw.stub->Stats(&ctx, pb::StatsRequest(), &stats).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// Attack: read tenant a's chunks with namespace a's id (or by registering
// as tenant a) while authenticated as tenant b.
TEST_F(TenantTest, CrossTenantReadIsDeniedWithoutRevealingWhatIsStored) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveA(3, 7, &bytes);
  // b registers a's namespace: refused.
  auto squat = b_->RegisterNamespace(Spec(), "a");
  EXPECT_EQ(squat.status().code(), absl::StatusCode::kPermissionDenied) << squat.status();
  // b uses a's namespace id, with a stored key and with a key never stored:
  // the same answer.
  client::Namespace stolen = ns_a_;
  std::vector<ChunkKey> absent = ns_a_.Keys(Tokens(3, 99));
  auto load_stored = LoadAll(*b_, stolen, keys);
  auto load_absent = LoadAll(*b_, stolen, absent);
  EXPECT_EQ(load_stored.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(load_stored.status().message(), load_absent.status().message());
  auto lookup_stored = b_->Lookup(stolen, keys);
  auto lookup_absent = b_->Lookup(stolen, absent);
  EXPECT_EQ(lookup_stored.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(lookup_stored.status().message(), lookup_absent.status().message());
  // b's own namespace with a's keys: nothing there.
  auto mine = b_->Lookup(ns_b_, keys);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->prefix_chunks, 0u);
  // b cannot remove a's namespace either.
  auto removed = b_->RemoveNamespace(Spec(), "a");
  EXPECT_EQ(removed.status().code(), absl::StatusCode::kPermissionDenied);
  // a still reads its bytes.
  auto back = LoadAll(*a_, ns_a_, keys);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, bytes);
}

// Attack: store zeros under keys tenant a will use next, so that a's put
// reports "already present" and a's get returns the zeros; or learn from
// PutBegin whether a has stored a key.
TEST_F(TenantTest, CrossTenantKeySquattingAndExistenceProbingFail) {
  // b computes a's next keys (the salt is the tenant name) and stores zeros
  // under them in its own namespace.
  std::vector<ChunkKey> victim_keys = ns_a_.Keys(Tokens(2, 11));
  std::vector<std::byte> zeros(2 * kChunkBytes, std::byte{0});
  ASSERT_TRUE(SaveAll(*b_, ns_b_, victim_keys, zeros).ok());
  // a saves its bytes under them: stored, not "already present".
  std::vector<std::byte> bytes = Bytes(2 * kChunkBytes, 11);
  ASSERT_TRUE(SaveAll(*a_, ns_a_, victim_keys, bytes).ok());
  auto back = LoadAll(*a_, ns_a_, victim_keys);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, bytes);

  // b probes with PutBegin whether a stored a key: a stored key of a and a
  // key nobody stored get the same answer (a fresh slot in b's namespace).
  std::vector<std::byte> a_bytes;
  std::vector<ChunkKey> stored = SaveA(1, 12, &a_bytes);
  std::vector<ChunkKey> never = ns_a_.Keys(Tokens(1, 13));
  Raw raw = NewRaw(token_b_);
  for (const ChunkKey& key : {stored[0], never[0]}) {
    pb::PutBeginRequest req;
    req.set_client_id("prober");
    req.set_namespace_id(ns_b_.id);
    req.add_items()->set_key(std::string(key.AsStringView()));
    pb::PutBeginResponse resp;
    grpc::Status s = raw.Call(&pb::Strata::Stub::PutBegin, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.slots_size(), 1);
    EXPECT_FALSE(resp.slots(0).already_present());
    pb::PutAbortRequest abort;
    abort.set_client_id("prober");
    abort.set_lease_id(resp.lease_id());
    pb::PutAbortResponse ar;
    EXPECT_TRUE(raw.Call(&pb::Strata::Stub::PutAbort, abort, &ar).ok());
  }
  // And with a's namespace id: PermissionDenied, whatever the key.
  for (const ChunkKey& key : {stored[0], never[0]}) {
    pb::PutBeginRequest req;
    req.set_client_id("prober");
    req.set_namespace_id(ns_a_.id);
    req.add_items()->set_key(std::string(key.AsStringView()));
    pb::PutBeginResponse resp;
    EXPECT_EQ(raw.Call(&pb::Strata::Stub::PutBegin, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
}

// Attack: wipe another scheduler's hints by sending an empty set under its
// scheduler id.
TEST_F(TenantTest, AnotherTenantCannotReplaceHintsUnderTheSameSchedulerId) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveA(3, 21, &bytes);
  std::vector<client::HintJob> jobs;
  for (uint32_t i = 0; i < 3; ++i) jobs.push_back({keys[i], i});
  ASSERT_TRUE(a_->Hint(ns_a_, "sched", jobs, absl::Seconds(60)).ok());
  EXPECT_EQ(Stat(*a_, "hint_jobs"), 3u);
  // b: an empty set under the same id, in its own namespace and in a's.
  EXPECT_TRUE(b_->Hint(ns_b_, "sched", {}, absl::Seconds(60)).ok());
  EXPECT_EQ(b_->Hint(ns_a_, "sched", {}, absl::Seconds(60)).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Stat(*a_, "hint_jobs"), 3u);
  // a itself still replaces its own set.
  ASSERT_TRUE(a_->Hint(ns_a_, "sched", {}, absl::Seconds(60)).ok());
  EXPECT_EQ(Stat(*a_, "hint_jobs"), 0u);
}

// Attack: release another client's lease by sending its client_id from
// another connection.
TEST_F(TenantTest, ALeaseIsReleasedOnlyByTheConnectionThatTookIt) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveA(2, 31, &bytes);
  Raw victim = NewRaw(token_a_);
  pb::GetRequest get;
  get.set_client_id("victim");
  get.set_namespace_id(ns_a_.id);
  for (const ChunkKey& k : keys) get.add_keys(std::string(k.AsStringView()));
  get.set_lease_ms(60000);
  pb::GetResponse lease;
  ASSERT_TRUE(victim.Call(&pb::Strata::Stub::Get, get, &lease).ok());
  EXPECT_EQ(Stat(*a_, "active_read_leases"), 1u);

  pb::ReleaseRequest steal;
  steal.set_client_id("victim");
  steal.set_lease_id(lease.lease_id());
  pb::ReleaseResponse rr;
  // Another tenant, and the same tenant on another connection, with the
  // victim's client id.
  for (const std::string& token : {token_b_, token_a_}) {
    Raw thief = NewRaw(token);
    grpc::Status s = thief.Call(&pb::Strata::Stub::Release, steal, &rr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    // Releases piggybacked on a get are skipped the same way.
    pb::GetRequest carrier = get;
    carrier.set_client_id("victim");
    carrier.add_release_lease_ids(lease.lease_id());
    pb::GetResponse ignored;
    grpc::Status g = thief.Call(&pb::Strata::Stub::Get, carrier, &ignored);
    if (g.ok()) {
      pb::ReleaseRequest own;
      own.set_client_id("victim");
      own.set_lease_id(ignored.lease_id());
      EXPECT_TRUE(thief.Call(&pb::Strata::Stub::Release, own, &rr).ok());
    }
  }
  EXPECT_EQ(Stat(*a_, "active_read_leases"), 1u);
  // The owner releases it.
  EXPECT_TRUE(victim.Call(&pb::Strata::Stub::Release, steal, &rr).ok());
  EXPECT_EQ(Stat(*a_, "active_read_leases"), 0u);
}

// Attack: reserve all of DRAM with one PutBegin under a 10-minute lease so
// that every other client's puts and gets fail.
TEST_F(TenantTest, OneTenantCannotReserveAllOfDram) {
  std::vector<std::byte> bytes;
  std::vector<ChunkKey> keys = SaveA(2, 41, &bytes);
  Raw hog = NewRaw(token_b_);
  auto put_begin = [&](size_t chunks, uint64_t seed, pb::PutBeginResponse* resp) {
    pb::PutBeginRequest req;
    req.set_client_id("hog");
    req.set_namespace_id(ns_b_.id);
    req.set_lease_ms(600000);
    for (const ChunkKey& k : ns_b_.Keys(Tokens(chunks, seed))) {
      req.add_items()->set_key(std::string(k.AsStringView()));
    }
    return hog.Call(&pb::Strata::Stub::PutBegin, req, resp);
  };
  // All of the pool at once (64 MiB / 32 KiB), then all of the caller's half.
  pb::PutBeginResponse resp;
  grpc::Status all = put_begin(2048, 1, &resp);
  EXPECT_EQ(all.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(all.error_message().find("--max_put_reservation"), std::string::npos);
  ASSERT_TRUE(put_begin(1024, 2, &resp).ok());  // exactly 32 MiB
  EXPECT_EQ(Stat(*b_, "tenant_put_reserved_bytes"), 32u << 20);
  EXPECT_EQ(put_begin(1, 3, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Tenant a is unaffected: it saves 16 MiB and reads back.
  std::vector<ChunkKey> more = ns_a_.Keys(Tokens(512, 42));
  std::vector<std::byte> more_bytes = Bytes(512 * kChunkBytes, 42);
  ASSERT_TRUE(SaveAll(*a_, ns_a_, more, more_bytes).ok());
  auto back = LoadAll(*a_, ns_a_, keys);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, bytes);
  EXPECT_EQ(Stat(*a_, "tenant_put_reserved_bytes"), 0u);
}

TEST_F(TenantTest, ReloadRotatesTokensAndKeepsTheTableOnABadFile) {
  const std::string new_a = *auth::NewToken("a");
  // Rotation step 1: both of a's tokens.
  std::string text = "a " + auth::HashToken(token_a_) + "," + auth::HashToken(new_a) + "\n" +
                     "b " + auth::HashToken(token_b_) + "\n";
  WriteFile(dir_ / "tenants", text);
  ASSERT_TRUE(server_->ReloadTenants().ok());
  EXPECT_TRUE(Connect(token_a_, "old").ok());
  auto moved = Connect(new_a, "new");
  ASSERT_TRUE(moved.ok()) << moved.status();
  // The namespace is the tenant's, not the token's.
  auto again = (*moved)->RegisterNamespace(Spec(), "a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, ns_a_.id);
  // Step 2: the old token goes.
  WriteTenants({new_a, token_b_});
  ASSERT_TRUE(server_->ReloadTenants().ok());
  EXPECT_EQ(Connect(token_a_, "old").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(a_->Stats().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(Connect(new_a, "new").ok());
  // A broken file is refused and the table in use stays.
  WriteFile(dir_ / "tenants", "a not-a-hash\n");
  absl::Status bad = server_->ReloadTenants();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_NE(bad.message().find("tenants:1"), std::string::npos) << bad;
  EXPECT_TRUE(Connect(new_a, "new").ok());
  fs::remove(dir_ / "tenants");
  EXPECT_EQ(server_->ReloadTenants().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Connect(token_b_, "b2").ok());
}

TEST_F(TenantTest, ReloadChangesQuotasAndRefusesABadQuotaLine) {
  EXPECT_EQ(Stat(*a_, "tenant_dram_quota_bytes"), 0u);
  const std::string a_line = "a " + auth::HashToken(token_a_);
  const std::string b_line = "b " + auth::HashToken(token_b_);
  WriteFile(dir_ / "tenants", a_line + " dram=1MiB nvme=2GiB hint_jobs=3\n" + b_line + "\n");
  ASSERT_TRUE(server_->ReloadTenants().ok());
  EXPECT_EQ(Stat(*a_, "tenant_dram_quota_bytes"), 1u << 20);
  EXPECT_EQ(Stat(*a_, "tenant_nvme_quota_bytes"), 2ull << 30);
  EXPECT_EQ(Stat(*a_, "tenant_hint_jobs_quota"), 3u);
  EXPECT_EQ(Stat(*b_, "tenant_dram_quota_bytes"), 0u);
  // A line that does not parse: refused with the file and the line; the
  // quotas in use stay.
  for (const std::string& bad : {std::string(" dram=1MiB nvme=12XB"), std::string(" dram=1MiB disk=1GiB"),
                                 std::string(" hint_jobs=many"), std::string(" dram=1MiB dram=2MiB")}) {
    WriteFile(dir_ / "tenants", b_line + "\n" + a_line + bad + "\n");
    absl::Status s = server_->ReloadTenants();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find((dir_ / "tenants").string() + ":2: "), std::string::npos) << s;
    EXPECT_EQ(Stat(*a_, "tenant_dram_quota_bytes"), 1u << 20);
  }
}

TEST(TenantFileTest, ANodeWithABadTenantsFileDoesNotStart) {
  const fs::path path = fs::path(::testing::TempDir()) / "trust_test_bad_tenants";
  WriteFile(path, "a sha256:00:11\n");
  store::EngineOptions eo;
  eo.dram_bytes = 16 << 20;
  auto engine = store::Engine::Open(eo);
  ASSERT_TRUE(engine.ok());
  store::ServerOptions so;
  so.listen_address = "127.0.0.1:0";
  so.ucx_transports = "tcp";
  so.tenants_file = path.string();
  auto server = store::StoreServer::Start(*std::move(engine), so);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
  // A quota that does not parse: refused, naming the file and the line.
  WriteFile(path, "# tenants\na " + auth::HashToken("a:1") + " dram=1GB\n");
  engine = store::Engine::Open(eo);
  ASSERT_TRUE(engine.ok());
  server = store::StoreServer::Start(*std::move(engine), so);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
  EXPECT_NE(server.status().message().find(path.string() + ":2: dram=1GB: unknown unit"),
            std::string::npos)
      << server.status();
  // Quotas that parse are enforced (tests/quota_test.cc).
  WriteFile(path, "a " + auth::HashToken("a:1") + " dram=1GiB nvme=2GiB hint_jobs=16\n");
  engine = store::Engine::Open(eo);
  ASSERT_TRUE(engine.ok());
  server = store::StoreServer::Start(*std::move(engine), so);
  EXPECT_TRUE(server.ok()) << server.status();
  fs::remove(path);
  // Without authentication a reload has nothing to read.
  auto plain = StartNode(store::ServerOptions(), 16 << 20);
  ASSERT_NE(plain, nullptr);
  EXPECT_FALSE(plain->authentication());
  EXPECT_EQ(plain->ReloadTenants().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace strata
