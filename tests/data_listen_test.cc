// The data plane listens where it is told: by default only on the host of
// the control plane's --listen address (a node on 127.0.0.1 must not be
// reachable over UCX on the machine's other interfaces), or on
// --data_listen host[:port]. Checked on the real listening sockets of a
// `strata serve` process (from /proc), over UCX's tcp transport.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace strata {
namespace {

// "address:port" of every TCP socket process `pid` listens on (IPv4 and
// IPv6; IPv4-mapped IPv6 addresses shown as IPv4).
std::set<std::string> ListeningSockets(pid_t pid) {
  std::set<std::string> inodes;
  for (const auto& fd : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"))) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  std::set<std::string> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retr, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
          inode;
      if (state != "0A" || inodes.count(inode) == 0) continue;  // 0A: LISTEN
      const std::string hex = local.substr(0, local.find(':'));
      const int port = std::stoi(local.substr(local.find(':') + 1), nullptr, 16);
      char text[INET6_ADDRSTRLEN] = {};
      if (hex.size() == 8) {
        in_addr a;
        a.s_addr = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
        inet_ntop(AF_INET, &a, text, sizeof(text));
      } else {
        in6_addr a;
        for (int w = 0; w < 4; ++w) {
          uint32_t word = static_cast<uint32_t>(std::stoul(hex.substr(8 * w, 8), nullptr, 16));
          std::memcpy(reinterpret_cast<char*>(&a) + 4 * w, &word, 4);
        }
        if (IN6_IS_ADDR_V4MAPPED(&a)) {
          inet_ntop(AF_INET, reinterpret_cast<char*>(&a) + 12, text, sizeof(text));
        } else {
          inet_ntop(AF_INET6, &a, text, sizeof(text));
        }
      }
      out.insert(absl::StrCat(text, ":", port));
    }
  }
  return out;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A client (forked, before this process touches gRPC or UCX) saves and
// loads a chunk: the restricted data plane still works.
int RoundTrip(const std::string& address) {
  client::ClientOptions options;
  options.server_address = address;
  options.ucx_transports = "tcp";
  auto c = client::Client::Connect(options);
  if (!c.ok()) return 10;
  NamespaceSpec spec;
  spec.model_id = "data-listen";
  spec.num_layers = 2;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.tokens_per_chunk = 16;
  auto ns = (*c)->RegisterNamespace(spec, "t");
  if (!ns.ok()) return 11;
  std::vector<uint32_t> tokens(spec.tokens_per_chunk, 7);
  std::vector<ChunkKey> keys = ns->Keys(tokens);
  std::vector<std::byte> bytes(ns->chunk_bytes, std::byte{0x5a}), out(ns->chunk_bytes);
  auto save = (*c)->Save(*ns, keys, bytes);
  if (!save.ok() || !(*save)->Wait().ok()) return 12;
  auto load = (*c)->Load(*ns, keys, out);
  if (!load.ok() || !(*load)->Wait().ok() || out != bytes) return 13;
  return 0;
}

int RoundTripInChild(const std::string& address) {
  pid_t pid = fork();
  if (pid == 0) _exit(RoundTrip(address));
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string PortFile(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

TEST(DataListenTest, DefaultsToTheHostOfTheControlPlaneAddress) {
  testing::ServerProcess server({"--no_nvme", "--dram=64MiB", "--ucx_transports=tcp"},
                                PortFile("default.port"));
  ASSERT_NO_FATAL_FAILURE(server.Start());
  const std::set<std::string> sockets = ListeningSockets(server.pid());
  // gRPC's port and UCX tcp's, all on loopback.
  EXPECT_GE(sockets.size(), 2u);
  for (const std::string& s : sockets) EXPECT_EQ(s.rfind("127.0.0.1:", 0), 0u) << s;
  EXPECT_EQ(RoundTripInChild(server.address()), 0);
}

TEST(DataListenTest, ListensOnTheGivenHostAndPort) {
  const int port = FreePort();
  testing::ServerProcess server({"--no_nvme", "--dram=64MiB", "--ucx_transports=tcp",
                                 absl::StrCat("--data_listen=127.0.0.1:", port)},
                                PortFile("given.port"));
  ASSERT_NO_FATAL_FAILURE(server.Start());
  const std::set<std::string> sockets = ListeningSockets(server.pid());
  EXPECT_EQ(sockets.count(absl::StrCat("127.0.0.1:", port)), 1u) << ::testing::PrintToString(sockets);
  for (const std::string& s : sockets) EXPECT_EQ(s.rfind("127.0.0.1:", 0), 0u) << s;
  EXPECT_EQ(RoundTripInChild(server.address()), 0);
}

}  // namespace
}  // namespace strata
