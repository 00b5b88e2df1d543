#include "store/shared_read_index.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace strata::store {

uint64_t SharedReadIndex::EntriesFor(uint64_t pool_bytes) {
  return std::clamp<uint64_t>(std::bit_ceil(2 * (pool_bytes >> 16)), 4096, uint64_t{1} << 20);
}

absl::StatusOr<std::unique_ptr<SharedReadIndex>> SharedReadIndex::Create(uint64_t entries) {
  entries = std::bit_ceil(std::max<uint64_t>(entries, ReadIndexLayout::kProbe));
  if (entries > (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat("read index: ", entries, " entries is too many"));
  }
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t bytes = (ReadIndexLayout::Bytes(entries) + page - 1) / page * page;
  const int fd = memfd_create("strata-read-index", MFD_CLOEXEC);
  if (fd < 0 || fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::ResourceExhaustedError(absl::StrCat("cannot create a read index of ", bytes,
                                                     " bytes: ", std::strerror(err)));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map a read index of ", bytes, " bytes: ", std::strerror(err)));
  }
  // A new memfd reads as zeros: every entry empty, every seq 0.
  return std::unique_ptr<SharedReadIndex>(
      new SharedReadIndex(static_cast<std::byte*>(p), bytes, static_cast<uint32_t>(entries), fd,
                          absl::StrCat("/proc/", getpid(), "/fd/", fd)));
}

SharedReadIndex::~SharedReadIndex() {
  munmap(base_, bytes_);
  close(fd_);
}

}  // namespace strata::store
