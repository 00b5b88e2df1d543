#include "store/dram_pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace strata::store {
namespace {

// "N bytes (X.Y GiB)": exact for logs, readable for people.
std::string SizeText(uint64_t bytes) {
  return absl::StrFormat("%d bytes (%.1f GiB)", bytes, static_cast<double>(bytes) / (1ull << 30));
}

// The first line of `path` as a number; nullopt when unreadable or not a
// number (e.g. cgroup v2's "max").
std::optional<uint64_t> ReadNumberFile(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  uint64_t value = 0;
  if (!std::getline(in, line) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(line)), &value)) {
    return std::nullopt;
  }
  return value;
}

// The memory limit of this process's cgroup (v2 memory.max, or v1
// memory.limit_in_bytes); nullopt when none is set or readable. The limit
// alone, not what the group uses: its usage counts page cache the kernel
// would reclaim, which would refuse pools that fit.
std::optional<uint64_t> CgroupLimit() {
  std::ifstream cgroup("/proc/self/cgroup");
  std::string line;
  std::optional<uint64_t> limit;
  while (std::getline(cgroup, line)) {
    // "ID:CONTROLLERS:PATH": "0::PATH" is cgroup v2; v1 names "memory".
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    std::optional<uint64_t> value;
    if (controllers.empty()) {
      value = ReadNumberFile(absl::StrCat("/sys/fs/cgroup", path, "/memory.max"));
    } else if (absl::StrContains(absl::StrCat(",", controllers, ","), ",memory,")) {
      value = ReadNumberFile(absl::StrCat("/sys/fs/cgroup/memory", path, "/memory.limit_in_bytes"));
    }
    if (value.has_value() && (!limit.has_value() || *value < *limit)) limit = value;
  }
  return limit;
}

}  // namespace

absl::StatusOr<uint64_t> AvailableHostMemory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  std::optional<uint64_t> available;
  while (std::getline(meminfo, line)) {
    absl::string_view rest(line);
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    uint64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) available = kib << 10;
    break;
  }
  if (!available.has_value()) {
    return absl::NotFoundError("no MemAvailable line in /proc/meminfo");
  }
  if (const std::optional<uint64_t> limit = CgroupLimit(); limit.has_value() && *limit < *available) {
    return *limit;
  }
  return *available;
}

absl::Status CheckPoolFits(uint64_t bytes, uint64_t available) {
  if (bytes <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "a DRAM pool of ", SizeText(bytes), " is more than this host can provide now: ",
      SizeText(available), " available (/proc/meminfo's MemAvailable, or the cgroup's memory limit); "
      "give a smaller --dram"));
}

namespace {

// Checks `bytes` against the host's memory; a host whose figure cannot be
// read is not checked.
absl::Status CheckHostHolds(uint64_t bytes) {
  const absl::StatusOr<uint64_t> available = AvailableHostMemory();
  if (!available.ok()) return absl::OkStatus();
  return CheckPoolFits(bytes, *available);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DramPool>> DramPool::Create(uint64_t bytes, bool shared) {
  if (bytes == 0) return absl::InvalidArgumentError("DRAM pool size must be positive");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t size = (bytes + page - 1) / page * page;
  int fd = -1;
  if (shared) {
    // fallocate below would take every page however few the host has left,
    // and a memfd has no size limit of its own: past the host's memory the
    // OOM killer, not an error, would end it.
    if (absl::Status fits = CheckHostHolds(size); !fits.ok()) return fits;
    fd = memfd_create("strata-dram-pool", MFD_CLOEXEC);
    if (fd < 0 || fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) {
      const int err = errno;
      if (fd >= 0) close(fd);
      return absl::ResourceExhaustedError(absl::StrCat("cannot create a shared DRAM pool of ",
                                                       size, " bytes: ", std::strerror(err)));
    }
    // Every page allocated now, in one go: a pool the host's shared memory
    // cannot hold fails here with a clear error instead of a SIGBUS at the
    // first chunk written past the limit, and pages allocated together are
    // more often physically contiguous (faster DMA for a GPU reading them).
    if (fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0) {
      const int err = errno;
      close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot reserve a shared DRAM pool of ", size, " bytes: ", std::strerror(err),
          " (--noshm_pool keeps the pool private)"));
    }
  }
  void* p = shared ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                   : mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map a DRAM pool of ", size, " bytes: ", std::strerror(err)));
  }
  if (shared) (void)madvise(p, size, MADV_HUGEPAGE);  // where shmem huge pages are enabled
  std::string share_path;
  if (fd >= 0) share_path = absl::StrCat("/proc/", getpid(), "/fd/", fd);
  return std::unique_ptr<DramPool>(
      new DramPool(static_cast<std::byte*>(p), size, fd, std::move(share_path)));
}

namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older C library headers lack the name
#endif

void TouchPages(std::span<std::byte> region, uint64_t page) {
  for (uint64_t off = 0; off < region.size(); off += page) {
    // A volatile read and write back of the same byte: the page is faulted in
    // for writing and the contents are unchanged.
    volatile std::byte* b = region.data() + off;
    *b = *b;
  }
}

}  // namespace

absl::Status PrefaultRegion(std::span<std::byte> region, PrefaultMethod method) {
  if (region.empty()) return absl::OkStatus();
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (method == PrefaultMethod::kAuto) {
    while (true) {
      if (madvise(region.data(), region.size(), MADV_POPULATE_WRITE) == 0) return absl::OkStatus();
      const int err = errno;
      if (err == EINTR) continue;  // a signal arrived; pages done so far stay populated
      if (err == EINVAL) break;    // a kernel before 5.14: touch the pages instead
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot commit the memory of a DRAM pool of ", region.size(), " bytes: ",
          std::strerror(err), err == EFAULT ? " (an access would raise SIGBUS)" : ""));
    }
  }
  TouchPages(region, page);
  return absl::OkStatus();
}

absl::Status DramPool::Prefault() {
  if (fd_ < 0) {
    if (absl::Status fits = CheckHostHolds(capacity()); !fits.ok()) return fits;
  }
  return PrefaultRegion(region());
}

DramPool::~DramPool() {
  munmap(base_, capacity());
  if (fd_ >= 0) close(fd_);
}

}  // namespace strata::store
