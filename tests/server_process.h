// A `strata serve` child process for multi-process tests: started on
// 127.0.0.1 with a free port, stopped with SIGTERM or killed with SIGKILL.
// Not thread-safe. Fork clients before touching gRPC or UCX in the test
// process.
#ifndef STRATA_TESTS_SERVER_PROCESS_H_
#define STRATA_TESTS_SERVER_PROCESS_H_

#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace strata::testing {

class ServerProcess {
 public:
  // `args` are `strata serve` flags besides --listen and --port_file.
  explicit ServerProcess(std::vector<std::string> args, std::string port_file)
      : args_(std::move(args)), port_file_(std::move(port_file)) {}
  ~ServerProcess() { Kill(); }

  // Starts the server and waits (up to 6 s) for its port.
  void Start() {
    const std::string bin = std::string(std::getenv("TEST_SRCDIR")) + "/strata/tools/strata";
    std::filesystem::remove(port_file_);
    // posix_spawn, not fork: no fork handler runs in this process, so a
    // test that already uses gRPC keeps working channels.
    std::vector<std::string> args = {bin, "serve", "--listen=127.0.0.1:0",
                                     "--port_file=" + port_file_};
    args.insert(args.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, bin.c_str(), nullptr, nullptr, argv.data(), environ), 0)
        << "cannot start " << bin;
    for (int i = 0; i < 300 && !std::filesystem::exists(port_file_); ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    std::ifstream in(port_file_);
    int port = 0;
    in >> port;
    ASSERT_GT(port, 0) << "the server did not start";
    address_ = absl::StrCat("127.0.0.1:", port);
  }

  // SIGTERM and wait: returns the exit code (128 + signal when killed).
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // SIGKILL and reap; nothing when not running.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }

 private:
  const std::vector<std::string> args_;
  const std::string port_file_;
  std::string address_;
  pid_t pid_ = -1;
};

}  // namespace strata::testing

#endif  // STRATA_TESTS_SERVER_PROCESS_H_
