// Multi-process tests on 127.0.0.1: a `strata serve` process and client
// processes (forked from this test before it touches gRPC or UCX), over UCX's
// tcp transport and over shared memory.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "tests/server_process.h"

namespace strata {
namespace {

namespace pb = ::strata::v1;

constexpr char kSharedMemory[] = "posix,sysv,cma,self";

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "multiprocess";
  spec.num_layers = 8;
  spec.num_kv_heads = 2;
  spec.head_dim = 128;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 32;  // 8 x 2 x 2 x 32 x 128 x 2 B = 256 KiB
  return spec;
}

// Chunk bytes derived from the key: any process can verify them.
std::vector<std::byte> BytesFor(std::span<const ChunkKey> keys, size_t chunk) {
  std::vector<std::byte> v(keys.size() * chunk);
  for (size_t c = 0; c < keys.size(); ++c) {
    uint64_t x;
    std::memcpy(&x, keys[c].bytes.data(), 8);
    x |= 1;
    for (size_t i = 0; i + 8 <= chunk; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(v.data() + c * chunk + i, &x, 8);
    }
  }
  return v;
}

std::vector<ChunkKey> Conversation(const client::Namespace& ns, int id, size_t chunks) {
  std::vector<uint32_t> tokens(chunks * ns.spec.tokens_per_chunk);
  std::mt19937 rng(id);
  for (auto& t : tokens) t = rng() % 100000;
  return ns.Keys(tokens);
}

// A node with the settings every test here uses.
class ServerProcess : public testing::ServerProcess {
 public:
  ServerProcess(const std::string& data_dir, const std::string& transports)
      : testing::ServerProcess({"--data_dir=" + data_dir, "--dram=48MiB", "--nvme=256MiB",
                                "--lease_ttl=2s", "--shutdown_grace=3s",
                                "--ucx_transports=" + transports},
                               data_dir + ".port") {}
};

// Runs `body` in a forked child; returns its exit code.
template <typename Fn>
pid_t Spawn(Fn body) {
  pid_t pid = fork();
  if (pid == 0) _exit(body());
  return pid;
}

int ExitCode(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::unique_ptr<client::Client> Connect(const std::string& address, const std::string& tls,
                                        std::string id) {
  client::ClientOptions o;
  o.server_address = address;
  o.ucx_transports = tls;
  o.client_id = std::move(id);
  auto c = client::Client::Connect(o);
  if (!c.ok()) {
    std::fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(c);
}

// A client process: saves its conversations turn by turn and loads each
// back, verifying every byte; also reads other clients' conversations.
int ClientMain(const std::string& address, const std::string& tls, int id) {
  auto c = Connect(address, tls, absl::StrCat("proc-", id));
  if (c == nullptr) return 10;
  auto ns = c->RegisterNamespace(Spec(), "mp");
  if (!ns.ok()) return 11;
  int errors = 0;
  for (int turn = 1; turn <= 6; ++turn) {
    for (int conv = 0; conv < 3; ++conv) {
      std::vector<ChunkKey> keys = Conversation(*ns, 100 * id + conv, 2 * turn);
      std::vector<std::byte> bytes = BytesFor(keys, ns->chunk_bytes);
      auto save = c->Save(*ns, keys, bytes);
      if (!save.ok() || !(*save)->Wait().ok()) {
        std::fprintf(stderr, "client %d save failed\n", id);
        ++errors;
        continue;
      }
      std::vector<std::byte> out(bytes.size());
      auto load = c->Load(*ns, keys, out);
      absl::Status s = load.ok() ? (*load)->Wait() : load.status();
      // Another process may evict between save and load under DRAM
      // pressure; the NVMe tier still has it, so NotFound is an error.
      if (!s.ok() || out != bytes) {
        std::fprintf(stderr, "client %d load: %s\n", id, s.ToString().c_str());
        ++errors;
      }
    }
    // Read a neighbour's first conversation when it is there.
    std::vector<ChunkKey> theirs = Conversation(*ns, 100 * ((id + 1) % 3), 2);
    auto lookup = c->Lookup(*ns, theirs);
    if (lookup.ok() && lookup->prefix_chunks == theirs.size()) {
      std::vector<std::byte> out(theirs.size() * ns->chunk_bytes);
      auto load = c->Load(*ns, theirs, out);
      absl::Status s = load.ok() ? (*load)->Wait() : load.status();
      if (s.ok() && out != BytesFor(theirs, ns->chunk_bytes)) ++errors;
    }
  }
  return errors == 0 ? 0 : 1;
}

uint64_t Stat(const std::string& address, const std::string& tls, const std::string& name) {
  auto c = Connect(address, tls, "stats");
  if (c == nullptr) return ~0ull;
  auto stats = c->Stats();
  return stats.ok() ? stats->at(name) : ~0ull;
}

class MultiProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("mp_", GetParam().empty() ? "default" : GetParam().substr(0, 3));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string DataDir() const { return (dir_ / "nvme").string(); }

  std::filesystem::path dir_;
};

TEST_P(MultiProcessTest, ConcurrentClientProcessesThenRestartKeepsNvmeChunks) {
  const std::string tls = GetParam();
  ServerProcess server(DataDir(), tls);
  ASSERT_NO_FATAL_FAILURE(server.Start());
  std::vector<pid_t> clients;
  for (int id = 0; id < 3; ++id) {
    clients.push_back(Spawn([&, id] { return ClientMain(server.address(), tls, id); }));
  }
  for (pid_t pid : clients) EXPECT_EQ(ExitCode(pid), 0);
  EXPECT_EQ(server.Stop(), 0);

  // A restarted node serves what it persisted, byte for byte.
  ServerProcess again(DataDir(), tls);
  ASSERT_NO_FATAL_FAILURE(again.Start());
  pid_t reader = Spawn([&] {
    auto c = Connect(again.address(), tls, "reader");
    if (c == nullptr) return 10;
    auto ns = c->RegisterNamespace(Spec(), "mp");
    if (!ns.ok()) return 11;
    for (int id = 0; id < 3; ++id) {
      for (int conv = 0; conv < 3; ++conv) {
        std::vector<ChunkKey> keys = Conversation(*ns, 100 * id + conv, 12);
        auto lookup = c->Lookup(*ns, keys);
        if (!lookup.ok() || lookup->prefix_chunks != keys.size()) return 12;
        if (lookup->tiers[0] != client::Tier::kNvme) return 13;
        std::vector<std::byte> out(keys.size() * ns->chunk_bytes);
        auto load = c->Load(*ns, keys, out);
        if (!load.ok() || !(*load)->Wait().ok()) return 14;
        if (out != BytesFor(keys, ns->chunk_bytes)) return 15;
      }
    }
    return 0;
  });
  EXPECT_EQ(ExitCode(reader), 0);
  EXPECT_EQ(again.Stop(), 0);
}

TEST_P(MultiProcessTest, ClientsKilledMidPutAndMidGetLeakNothing) {
  const std::string tls = GetParam();
  ServerProcess server(DataDir(), tls);
  ASSERT_NO_FATAL_FAILURE(server.Start());
  // Seed a conversation.
  pid_t seeder = Spawn([&] {
    auto c = Connect(server.address(), tls, "seeder");
    if (c == nullptr) return 10;
    auto ns = c->RegisterNamespace(Spec(), "mp");
    if (!ns.ok()) return 11;
    std::vector<ChunkKey> keys = Conversation(*ns, 7, 4);
    std::vector<std::byte> bytes = BytesFor(keys, ns->chunk_bytes);
    auto save = c->Save(*ns, keys, bytes);
    return save.ok() && (*save)->Wait().ok() ? 0 : 12;
  });
  ASSERT_EQ(ExitCode(seeder), 0);

  // Each victim takes a lease over raw gRPC, tells us, and waits to die.
  auto victim = [&](bool put) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_t pid = Spawn([&, put] {
      auto stub = pb::Strata::NewStub(
          grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
      grpc::ClientContext ctx;
      grpc::Status s;
      if (put) {
        pb::PutBeginRequest req;
        req.set_client_id("victim");
        req.set_namespace_id(1);
        for (int i = 0; i < 8; ++i) {
          std::string key(32, static_cast<char>(i));
          req.add_items()->set_key(key);
        }
        pb::PutBeginResponse resp;
        s = stub->PutBegin(&ctx, req, &resp);
      } else {
        auto c = Connect(server.address(), tls, "victim-reader");
        if (c == nullptr) return 10;
        auto ns = c->RegisterNamespace(Spec(), "mp");
        if (!ns.ok()) return 11;
        pb::GetRequest req;
        req.set_client_id("victim");
        req.set_namespace_id(ns->id);
        for (const ChunkKey& k : Conversation(*ns, 7, 4)) {
          req.add_keys(std::string(reinterpret_cast<const char*>(k.bytes.data()), 32));
        }
        pb::GetResponse resp;
        s = stub->Get(&ctx, req, &resp);
      }
      char ok = s.ok() ? 'y' : 'n';
      (void)!write(fds[1], &ok, 1);
      pause();
      return 0;
    });
    char ok = 0;
    EXPECT_EQ(read(fds[0], &ok, 1), 1);
    EXPECT_EQ(ok, 'y');
    kill(pid, SIGKILL);
    ExitCode(pid);
    close(fds[0]);
    close(fds[1]);
  };
  victim(/*put=*/true);
  victim(/*put=*/false);
  // The node keeps serving at once, with the leases still held...
  pid_t reader = Spawn([&] { return ClientMain(server.address(), tls, 5); });
  EXPECT_EQ(ExitCode(reader), 0);
  // ...and once they expire (2 s), nothing they held is left behind.
  absl::SleepFor(absl::Milliseconds(2600));
  pid_t checker = Spawn([&] {
    auto c = Connect(server.address(), tls, "checker");
    if (c == nullptr) return 10;
    auto stats = c->Stats();
    if (!stats.ok()) return 11;
    const auto& s = *stats;
    if (s.at("active_write_leases") != 0 || s.at("active_read_leases") != 0) return 12;
    if (s.at("leases_expired") < 2) return 13;
    // Every DRAM byte in use belongs to a committed chunk.
    if (s.at("dram_used_bytes") != s.at("chunks_in_dram") * 256 * 1024) return 14;
    auto ns = c->RegisterNamespace(Spec(), "mp");
    if (!ns.ok()) return 15;
    std::vector<ChunkKey> keys = Conversation(*ns, 7, 4);
    std::vector<std::byte> out(keys.size() * ns->chunk_bytes);
    auto load = c->Load(*ns, keys, out);
    if (!load.ok() || !(*load)->Wait().ok() || out != BytesFor(keys, ns->chunk_bytes)) return 16;
    return 0;
  });
  EXPECT_EQ(ExitCode(checker), 0);
  EXPECT_EQ(server.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, MultiProcessTest,
                         ::testing::Values(std::string("tcp"), std::string(kSharedMemory)),
                         [](const auto& info) {
                           return info.param == "tcp" ? std::string("tcp")
                                                      : std::string("shared_memory");
                         });

}  // namespace
}  // namespace strata
