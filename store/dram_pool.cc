#include "store/dram_pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace strata::store {

absl::StatusOr<std::unique_ptr<DramPool>> DramPool::Create(uint64_t bytes, bool shared) {
  if (bytes == 0) return absl::InvalidArgumentError("DRAM pool size must be positive");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t size = (bytes + page - 1) / page * page;
  int fd = -1;
  if (shared) {
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

DramPool::~DramPool() {
  munmap(base_, capacity());
  if (fd_ >= 0) close(fd_);
}

}  // namespace strata::store
