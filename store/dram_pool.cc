#include "store/dram_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace strata::store {

absl::StatusOr<std::unique_ptr<DramPool>> DramPool::Create(uint64_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("DRAM pool size must be positive");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t size = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map a DRAM pool of ", size, " bytes: ", std::strerror(errno)));
  }
  return std::unique_ptr<DramPool>(new DramPool(static_cast<std::byte*>(p), size));
}

DramPool::~DramPool() { munmap(base_, capacity()); }

}  // namespace strata::store
