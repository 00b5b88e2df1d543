#include "store/dram_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace strata::store {
namespace {

constexpr uint64_t kPoolBytes = 8 << 20;

// Bytes of the mapping that starts at `base` that are mapped into this
// process's page tables (the "Rss:" of its /proc/self/smaps entry).
uint64_t ResidentBytes(const void* base) {
  std::ifstream smaps("/proc/self/smaps");
  const std::string start = absl::StrCat(absl::Hex(reinterpret_cast<uintptr_t>(base)), "-");
  std::string line;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    if (line.find('-') != std::string::npos && line.find(':') > line.find(' ')) {
      in_mapping = absl::StartsWith(line, start);  // a mapping's header line
      continue;
    }
    if (in_mapping && absl::StartsWith(line, "Rss:")) {
      std::istringstream fields(line.substr(4));
      uint64_t kib = 0;
      fields >> kib;
      return kib << 10;
    }
  }
  ADD_FAILURE() << "no mapping at " << base << " in /proc/self/smaps";
  return 0;
}

class DramPoolPrefaultTest : public ::testing::TestWithParam<bool> {};

TEST_P(DramPoolPrefaultTest, PrefaultMapsEveryPageAndKeepsContents) {
  auto pool = DramPool::Create(kPoolBytes, /*shared=*/GetParam());
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::byte* base = (*pool)->region().data();
  EXPECT_LT(ResidentBytes(base), kPoolBytes / 2);  // a fresh mapping is not populated
  ASSERT_TRUE((*pool)->Prefault().ok());
  EXPECT_EQ(ResidentBytes(base), kPoolBytes);
  for (uint64_t off = 0; off < kPoolBytes; off += 4096) ASSERT_EQ(base[off], std::byte{0});
}

TEST_P(DramPoolPrefaultTest, TouchFallbackMapsEveryPageAndKeepsContents) {
  auto pool = DramPool::Create(kPoolBytes, /*shared=*/GetParam());
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::span<std::byte> region = (*pool)->region();
  region[0] = std::byte{0x5a};  // written before: the touch must not change it
  region[region.size() - 1] = std::byte{0xa5};
  EXPECT_LT(ResidentBytes(region.data()), kPoolBytes / 2);
  ASSERT_TRUE(PrefaultRegion(region, PrefaultMethod::kTouch).ok());
  EXPECT_EQ(ResidentBytes(region.data()), kPoolBytes);
  EXPECT_EQ(region[0], std::byte{0x5a});
  EXPECT_EQ(region[region.size() - 1], std::byte{0xa5});
  EXPECT_EQ(region[4096], std::byte{0});
}

INSTANTIATE_TEST_SUITE_P(PrivateAndShared, DramPoolPrefaultTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("Shared") : std::string("Private");
                         });

// A shared mapping whose backing memfd holds only its first page: the kernel
// cannot provide the rest (an access would raise SIGBUS), as when shared
// memory is exhausted. Pre-faulting reports it instead.
TEST(DramPoolTest, PrefaultOfMemoryTheKernelCannotProvideIsResourceExhausted) {
  const long page = sysconf(_SC_PAGESIZE);
  const int fd = memfd_create("strata-prefault-test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, page), 0);
  void* p = mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  const absl::Status s =
      PrefaultRegion({static_cast<std::byte*>(p), static_cast<size_t>(4 * page)});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat(4 * page, " bytes"))) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), std::strerror(EFAULT))) << s;
  munmap(p, 4 * page);
  close(fd);
}

TEST(DramPoolTest, PoolFitsOnlyInTheMemoryAvailable) {
  EXPECT_TRUE(CheckPoolFits(8 << 20, 8 << 20).ok());
  const absl::Status s = CheckPoolFits((8 << 20) + 1, 8 << 20);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "8388609 bytes")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "8388608 bytes (0.0 GiB) available")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "--dram")) << s;
}

TEST(DramPoolTest, AvailableHostMemoryIsReadFromTheKernel) {
  const absl::StatusOr<uint64_t> available = AvailableHostMemory();
  ASSERT_TRUE(available.ok()) << available.status();
  EXPECT_GT(*available, 0u);
}

// A shared pool allocates all its pages at Create, and a memfd has no limit
// of its own: a pool larger than the host's memory used to run into the OOM
// killer (SIGKILL, no message). It is refused before any page is taken.
TEST(DramPoolTest, SharedPoolLargerThanTheHostIsResourceExhausted) {
  const absl::StatusOr<uint64_t> available = AvailableHostMemory();
  ASSERT_TRUE(available.ok()) << available.status();
  auto pool = DramPool::Create(2 * *available + (1ull << 30), /*shared=*/true);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kResourceExhausted) << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "more than this host can provide"))
      << pool.status();
}

// A private pool is mapped lazily; pre-faulting one larger than the host's
// memory is refused before a page is touched. (The kernel may refuse the
// mapping itself first, also ResourceExhausted.)
TEST(DramPoolTest, PrefaultOfAPrivatePoolLargerThanTheHostIsResourceExhausted) {
  const absl::StatusOr<uint64_t> available = AvailableHostMemory();
  ASSERT_TRUE(available.ok()) << available.status();
  auto pool = DramPool::Create(*available + (1ull << 30), /*shared=*/false);
  if (!pool.ok()) {
    EXPECT_EQ(pool.status().code(), absl::StatusCode::kResourceExhausted) << pool.status();
    return;
  }
  const absl::Status s = (*pool)->Prefault();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "more than this host can provide")) << s;
  EXPECT_LT(ResidentBytes((*pool)->region().data()), uint64_t{1} << 30);
}

TEST(DramPoolTest, EmptyRegionIsAlreadyPrefaulted) {
  EXPECT_TRUE(PrefaultRegion({}).ok());
}

}  // namespace
}  // namespace strata::store
