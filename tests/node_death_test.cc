// A store node SIGKILLed in the middle of large transfers: every load and
// save in flight must fail (Unavailable, or DeadlineExceeded when the death
// is only noticed at the deadline) within the client's transfer_timeout plus
// a small abort allowance, and the client process must then exit: no wait
// in the client or the transport may outlive a dead node.
//
// The client runs in a forked child (forked before this process touches gRPC
// or UCX) so that a hang shows up as a child that does not exit, which the
// parent kills and reports.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace strata {
namespace {

constexpr absl::Duration kTransferTimeout = absl::Seconds(4);
// What an abort may add to transfer_timeout: closing the endpoint.
constexpr absl::Duration kAbortAllowance = absl::Seconds(2);
constexpr int kThreads = 4;
constexpr size_t kChunksPerTransfer = 64;  // 64 x 1 MiB per load or save

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "node-death";
  spec.num_layers = 4;
  spec.num_kv_heads = 8;
  spec.head_dim = 128;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 128;  // 4 x 2 x 8 x 128 x 128 x 2 B = 1 MiB
  return spec;
}

// Exit codes of the client child.
enum ChildExit : int {
  kOk = 0,
  kConnectFailed = 10,
  kNoError = 11,         // a thread never saw the node's death
  kWrongCode = 12,       // an error other than Unavailable / DeadlineExceeded
  kTooSlow = 13,         // a failed call took longer than the bound
};

// One Client per thread (as `strata bench` runs them), each saving and
// loading transfers of 1 and 64 chunks of 1 MiB in turn until one fails.
// Writes 'r' to `ready` once every thread got a save and a load through.
int ClientMain(const std::string& address, const std::string& tls, int ready) {
  client::ClientOptions options;
  options.server_address = address;
  options.ucx_transports = tls;
  options.transfer_timeout = kTransferTimeout;
  options.rpc_timeout = absl::Seconds(2);

  std::atomic<int> started{0};
  std::vector<int> results(kThreads, kNoError);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto c = client::Client::Connect(options);
      if (!c.ok()) {
        std::fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
        results[t] = kConnectFailed;
        return;
      }
      auto ns = (*c)->RegisterNamespace(Spec(), "death");
      if (!ns.ok()) {
        results[t] = kConnectFailed;
        return;
      }
      std::vector<std::byte> bytes(kChunksPerTransfer * ns->chunk_bytes, std::byte(t + 1));
      std::vector<std::byte> out(bytes.size());
      std::mt19937 rng(t);
      for (int round = 0;; ++round) {
        const size_t chunks = round % 2 == 0 ? kChunksPerTransfer : 1;
        std::vector<uint32_t> tokens(chunks * ns->spec.tokens_per_chunk);
        for (auto& token : tokens) token = rng();
        std::vector<ChunkKey> keys = ns->Keys(tokens);
        const size_t size = chunks * ns->chunk_bytes;
        const absl::Time begin = absl::Now();
        auto save = (*c)->Save(*ns, keys, std::span(bytes).first(size));
        absl::Status s = save.ok() ? (*save)->Wait() : save.status();
        if (s.ok()) {
          auto load = (*c)->Load(*ns, keys, std::span(out).first(size));
          s = load.ok() ? (*load)->Wait() : load.status();
        }
        if (round == 0 && started.fetch_add(1) + 1 == kThreads) {
          (void)!write(ready, "r", 1);
        }
        if (s.ok()) continue;
        const absl::Duration took = absl::Now() - begin;
        std::fprintf(stderr, "thread %d round %d: %s after %s\n", t, round,
                     s.ToString().c_str(), absl::FormatDuration(took).c_str());
        if (s.code() != absl::StatusCode::kUnavailable &&
            s.code() != absl::StatusCode::kDeadlineExceeded) {
          results[t] = kWrongCode;
        } else if (took > 2 * (kTransferTimeout + kAbortAllowance)) {
          // A save then a load: each is bounded on its own.
          results[t] = kTooSlow;
        } else {
          results[t] = kOk;
        }
        return;  // and the Client's destructor must return too
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int r : results) {
    if (r != kOk) return r;
  }
  return kOk;
}

class NodeDeathTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NodeDeathTest, ClientFailsWithinTheTransferTimeoutWhenTheNodeIsKilled) {
  const std::string tls = GetParam();
  const std::string dir = std::filesystem::path(::testing::TempDir()) /
                          absl::StrCat("death_", tls.empty() ? "default" : tls.substr(0, 3));
  std::vector<std::string> args = {"--no_nvme", "--dram=1GiB", "--lease_ttl=30s"};
  if (!tls.empty()) args.push_back("--ucx_transports=" + tls);
  testing::ServerProcess server(args, dir + ".port");
  ASSERT_NO_FATAL_FAILURE(server.Start());

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    _exit(ClientMain(server.address(), tls, fds[1]));
  }
  close(fds[1]);
  char ready = 0;
  ASSERT_EQ(read(fds[0], &ready, 1), 1) << "the client never got a transfer through";
  close(fds[0]);
  // Mid-transfer: every thread has a load or a save in flight.
  absl::SleepFor(absl::Milliseconds(100));
  server.Kill();
  const absl::Time killed = absl::Now();

  // The client must fail its calls and exit; give it twice the bound of one
  // save plus one load before calling it a hang.
  const absl::Time give_up = killed + 2 * (kTransferTimeout + kAbortAllowance) + absl::Seconds(4);
  int status = 0;
  pid_t reaped = 0;
  while ((reaped = waitpid(child, &status, WNOHANG)) == 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (reaped == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the client hung for " << absl::FormatDuration(absl::Now() - killed)
           << " after the node was killed";
  }
  ASSERT_TRUE(WIFEXITED(status)) << "client died with signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), kOk);
  std::fprintf(stderr, "client exited %s after the kill\n",
               absl::FormatDuration(absl::Now() - killed).c_str());
}

INSTANTIATE_TEST_SUITE_P(Transports, NodeDeathTest,
                         ::testing::Values(std::string(""), std::string("tcp"),
                                           std::string("posix,sysv,cma,self")),
                         [](const auto& info) {
                           if (info.param.empty()) return std::string("default");
                           return info.param == "tcp" ? std::string("tcp")
                                                      : std::string("shared_memory");
                         });

}  // namespace
}  // namespace strata
