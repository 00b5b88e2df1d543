#include "transport/testing/rma_server.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "transport/ucx_transport.h"

extern char** environ;

namespace strata::transport::testing {
namespace {

constexpr char kChildEnv[] = "STRATA_RMA_SERVER_CHILD";

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteString(int fd, const std::string& s) {
  uint64_t size = s.size();
  return WriteAll(fd, &size, sizeof(size)) && WriteAll(fd, s.data(), s.size());
}

bool ReadString(int fd, std::string& s) {
  uint64_t size;
  if (!ReadAll(fd, &size, sizeof(size)) || size > (1u << 20)) return false;
  s.resize(size);
  return ReadAll(fd, s.data(), size);
}

struct CheckCommand {
  uint64_t offset, length, seed;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "rma server child: %s\n", what);
  _exit(2);
}

// The child: serves one registered region until its parent closes the pipe.
[[noreturn]] void RunChild(const char* spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, ';');
  uint64_t bytes, seed;
  int in_fd, out_fd;
  if (parts.size() != 5 || !absl::SimpleAtoi(parts[1], &bytes) ||
      !absl::SimpleAtoi(parts[2], &seed) || !absl::SimpleAtoi(parts[3], &in_fd) ||
      !absl::SimpleAtoi(parts[4], &out_fd)) {
    Die("bad spec");
  }
  UcxOptions options;
  options.transports = parts[0];
  auto context = UcxContext::Create(options);
  if (!context.ok()) Die(std::string(context.status().ToString()).c_str());
  void* mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) Die("mmap");
  std::span<std::byte> region(static_cast<std::byte*>(mapped), bytes);
  FillPattern(region, 0, seed);
  auto registered = (*context)->Register(region);
  if (!registered.ok()) Die(std::string(registered.status().ToString()).c_str());
  uint64_t base = (*registered)->base();
  if (!WriteString(out_fd, (*context)->worker_address()) ||
      !WriteString(out_fd, (*registered)->packed_rkey()) ||
      !WriteAll(out_fd, &base, sizeof(base)) || !WriteAll(out_fd, &bytes, sizeof(bytes))) {
    Die("publishing");
  }
  CheckCommand command;
  while (ReadAll(in_fd, &command, sizeof(command))) {
    char ok = 0;
    if (command.offset <= bytes && command.length <= bytes - command.offset) {
      ok = FirstMismatch(region.subspan(command.offset, command.length),
                         command.offset, command.seed) < 0;
    }
    if (!WriteAll(out_fd, &ok, 1)) break;
  }
  registered->reset();
  context->reset();
  _exit(0);
}

// Runs before main in the re-executed child.
[[maybe_unused]] const bool kChildRan = [] {
  if (const char* spec = std::getenv(kChildEnv)) RunChild(spec);
  return false;
}();

}  // namespace

void FillPattern(std::span<std::byte> bytes, uint64_t offset, uint64_t seed) {
  const size_t words = bytes.size() / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t value = Mix(seed ^ (offset / 8 + i));
    std::memcpy(bytes.data() + i * 8, &value, 8);
  }
}

int64_t FirstMismatch(std::span<const std::byte> bytes, uint64_t offset, uint64_t seed) {
  const size_t words = bytes.size() / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t value = Mix(seed ^ (offset / 8 + i));
    if (std::memcmp(bytes.data() + i * 8, &value, 8) != 0) {
      for (size_t b = 0; b < 8; ++b) {
        if (bytes[i * 8 + b] != reinterpret_cast<const std::byte*>(&value)[b]) {
          return static_cast<int64_t>(i * 8 + b);
        }
      }
    }
  }
  return -1;
}

absl::StatusOr<std::unique_ptr<RmaServerProcess>> RmaServerProcess::Spawn(
    const std::string& transports, size_t region_bytes, uint64_t seed) {
  signal(SIGPIPE, SIG_IGN);  // a dead child must fail CheckPattern, not the test
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0) return absl::InternalError("pipe");
  if (pipe(from_child) != 0) {
    close(to_child[0]);
    close(to_child[1]);
    return absl::InternalError("pipe");
  }
  // The parent's ends must not leak into the child (EOF on exit).
  fcntl(to_child[1], F_SETFD, FD_CLOEXEC);
  fcntl(from_child[0], F_SETFD, FD_CLOEXEC);
  std::string spec = absl::StrCat(kChildEnv, "=", transports, ";", region_bytes, ";",
                                  seed, ";", to_child[0], ";", from_child[1]);
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(spec.data());
  env.push_back(nullptr);
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, exe, nullptr, nullptr, argv, env.data());
  close(to_child[0]);
  close(from_child[1]);
  auto server = std::unique_ptr<RmaServerProcess>(new RmaServerProcess());
  server->to_child_ = to_child[1];
  server->from_child_ = from_child[0];
  if (rc != 0) return absl::UnavailableError(absl::StrCat("posix_spawn: ", strerror(rc)));
  server->pid_ = pid;
  uint64_t size;
  if (!ReadString(server->from_child_, server->address_) ||
      !ReadString(server->from_child_, server->rkey_) ||
      !ReadAll(server->from_child_, &server->base_, sizeof(server->base_)) ||
      !ReadAll(server->from_child_, &size, sizeof(size))) {
    return absl::UnavailableError("server child did not publish its region");
  }
  server->size_ = size;
  return server;
}

RmaServerProcess::~RmaServerProcess() {
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  if (pid_ > 0) {
    int status;
    waitpid(pid_, &status, 0);
  }
}

absl::StatusOr<bool> RmaServerProcess::CheckPattern(uint64_t offset, uint64_t length,
                                                    uint64_t seed) {
  CheckCommand command{offset, length, seed};
  char ok;
  if (pid_ <= 0 || !WriteAll(to_child_, &command, sizeof(command)) ||
      !ReadAll(from_child_, &ok, 1)) {
    return absl::UnavailableError("server child is gone");
  }
  return ok != 0;
}

void RmaServerProcess::Stop() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RmaServerProcess::Continue() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

void RmaServerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace strata::transport::testing
