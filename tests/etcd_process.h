// An etcd child process for cluster tests: a single-member etcd on 127.0.0.1
// with free client and peer ports and its data in a fresh directory, killed
// and reaped when the object goes. Not thread-safe.
//
// etcd comes from Debian's etcd-server (tools/setup.sh installs it); when it
// is missing, Start() fails the test saying so.
#ifndef STRATA_TESTS_ETCD_PROCESS_H_
#define STRATA_TESTS_ETCD_PROCESS_H_

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

extern char** environ;

namespace strata::testing {

// A port that was free a moment ago on 127.0.0.1 (bound to 0, then closed).
inline int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// The etcd binary on PATH (or /usr/bin/etcd); empty when there is none.
inline std::string FindEtcd() {
  const char* path = std::getenv("PATH");
  std::vector<std::string> dirs = absl::StrSplit(path != nullptr ? path : "", ':');
  dirs.push_back("/usr/bin");
  for (const std::string& dir : dirs) {
    if (dir.empty()) continue;
    const std::string bin = dir + "/etcd";
    if (access(bin.c_str(), X_OK) == 0) return bin;
  }
  return "";
}

class EtcdProcess {
 public:
  explicit EtcdProcess(std::string dir) : dir_(std::move(dir)) {}
  ~EtcdProcess() { Kill(); }

  // Starts etcd; endpoint() is then its client address. The caller waits for
  // it to answer (it takes about a second to elect itself). Started again
  // after Kill(), it comes back on the same ports with the same data.
  void Start() {
    const std::string bin = FindEtcd();
    ASSERT_FALSE(bin.empty())
        << "etcd is not installed (no etcd on PATH or in /usr/bin): run tools/setup.sh, which "
           "installs Debian's etcd-server";
    if (client_port_ == 0) {
      client_port_ = PickFreePort();
      peer_port_ = PickFreePort();
    }
    ASSERT_GT(client_port_, 0);
    ASSERT_GT(peer_port_, 0);
    endpoint_ = absl::StrCat("127.0.0.1:", client_port_);
    const std::string client_url = absl::StrCat("http://", endpoint_);
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
    std::filesystem::create_directories(dir_);
    std::vector<std::string> args = {
        bin,
        "--name=test",
        "--data-dir=" + dir_ + "/data",
        "--listen-client-urls=" + client_url,
        "--advertise-client-urls=" + client_url,
        "--listen-peer-urls=" + peer_url,
        "--initial-advertise-peer-urls=" + peer_url,
        "--initial-cluster=test=" + peer_url,
        "--logger=zap",
        "--log-outputs=" + dir_ + "/etcd.log",
    };
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, bin.c_str(), nullptr, nullptr, argv.data(), environ), 0)
        << "cannot start " << bin;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  const std::string& endpoint() const { return endpoint_; }
  std::string log_path() const { return dir_ + "/etcd.log"; }

 private:
  const std::string dir_;
  std::string endpoint_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace strata::testing

#endif  // STRATA_TESTS_ETCD_PROCESS_H_
