// Helpers shared by the NVMe tier's tests.
#ifndef STRATA_STORE_NVME_TIER_TESTING_H_
#define STRATA_STORE_NVME_TIER_TESTING_H_

#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "store/nvme_tier.h"

namespace strata::store::testing {

inline constexpr uint64_t kNvmeTestCapacity = uint64_t{1} << 30;

// A fresh, empty-or-missing directory for the running test, under
// TempDir()/<suite_dir>/<test suite>.<test name>/<leaf>.
inline std::string NvmeTestPath(const std::string& suite_dir, const std::string& leaf) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / suite_dir /
                              (std::string(info->test_suite_name()) + "." + info->name()) / leaf;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir.parent_path());
  return dir.string();
}

inline NvmeTierOptions NvmeTestOptions(const std::string& path) {
  NvmeTierOptions o;
  o.path = path;
  o.capacity_bytes = kNvmeTestCapacity;
  return o;
}

// Opens the tier at `path` with NvmeTestOptions; a test failure and null if
// it does not open.
inline std::unique_ptr<NvmeTier> MustOpenNvme(const std::string& path) {
  auto tier = NvmeTier::Open(NvmeTestOptions(path));
  EXPECT_TRUE(tier.ok()) << tier.status();
  return tier.ok() ? std::move(*tier) : nullptr;
}

}  // namespace strata::store::testing

#endif  // STRATA_STORE_NVME_TIER_TESTING_H_
