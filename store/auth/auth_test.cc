#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "store/auth/key_scope.h"
#include "store/auth/tenants.h"

namespace strata::auth {
namespace {

TEST(TenantTableTest, AuthenticatesTheRightTokenOnly) {
  const std::string a = *NewToken("team-a");
  const std::string b = *NewToken("team-b");
  ASSERT_EQ(a.rfind("team-a:", 0), 0u);
  ASSERT_EQ(a.size(), 7u + 64u);
  const std::string text = "# tenants\n\nteam-a " + HashToken(a) + " dram=1GiB nvme=2GiB\n" +
                           "team-b\t" + HashToken(b) + "\n";
  auto table = TenantTable::Parse(text, "t");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 2u);
  EXPECT_EQ(*table->Authenticate(a), "team-a");
  EXPECT_EQ(*table->Authenticate(b), "team-b");
  EXPECT_EQ(table->Find("team-a")->quota.dram_bytes, 1ull << 30);
  EXPECT_EQ(table->Find("team-a")->quota.nvme_bytes, 2ull << 30);
  EXPECT_EQ(table->Find("team-b")->quota.dram_bytes, 0u);
  EXPECT_EQ(table->Find("team-a")->quota.hint_jobs, 0u);

  // b's secret under a's name, a flipped digit, an unknown tenant, garbage.
  std::string swapped = "team-a:" + b.substr(7);
  std::string flipped = a;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  for (const std::string& bad : {swapped, flipped, std::string("team-c:00"), std::string(""),
                                 std::string("no-colon")}) {
    auto got = table->Authenticate(bad);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated) << bad;
  }
  // The message does not say whether the tenant exists.
  EXPECT_EQ(table->Authenticate(flipped).status().message(),
            table->Authenticate("team-c:00").status().message());
}

TEST(TenantTableTest, HashIsSaltedSha256OfTheToken) {
  // python3: hashlib.sha256(b'salt' + b'team-a:secret').hexdigest()
  EXPECT_EQ(HashTokenWithSalt("team-a:secret", "salt"),
            "sha256:73616c74:19890d06957ac5888af553606779a8c202cbf154cae3f2c85c62c7330f41f0fb");
  // Fresh salts: two hashes of one token differ, both accepted.
  const std::string h1 = HashToken("team-a:secret"), h2 = HashToken("team-a:secret");
  EXPECT_NE(h1, h2);
  auto table = TenantTable::Parse("team-a " + h1 + "," + h2, "t");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_TRUE(table->Authenticate("team-a:secret").ok());
}

TEST(TenantTableTest, RotationAcceptsEveryListedHash) {
  const std::string old_token = *NewToken("t"), new_token = *NewToken("t");
  auto both = TenantTable::Parse("t " + HashToken(old_token) + "," + HashToken(new_token), "f");
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->Authenticate(old_token).ok());
  EXPECT_TRUE(both->Authenticate(new_token).ok());
  auto only_new = TenantTable::Parse("t " + HashToken(new_token), "f");
  ASSERT_TRUE(only_new.ok());
  EXPECT_EQ(only_new->Authenticate(old_token).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(only_new->Authenticate(new_token).ok());
}

TEST(TenantTableTest, MalformedLinesNameFileAndLine) {
  const std::string h = HashToken("a:x");
  struct Case {
    std::string text;
    std::string needle;
  };
  for (const Case& c : std::vector<Case>{
           {"a", "f:1: expected"},
           {"\n\nbad/name " + h, "f:3: tenant name"},
           {"a sha256:zz:00", "f:1: token hash"},
           {"a md5:00:" + std::string(64, '0'), "f:1: token hash"},
           {"a " + h + " dram=4XB", "f:1: dram=4XB: unknown unit"},
           {"a " + h + " cpu=4", "f:1: unknown field 'cpu=4'"},
           {"a " + h + " dram=", "f:1: dram=: not a byte size"},
           {"a " + h + " nvme=1.5GiB", "f:1: nvme=1.5GiB: unknown unit"},
           {"a " + h + " dram=99999999999TiB", "f:1: dram=99999999999TiB: too large"},
           {"a " + h + " dram=1GiB dram=2GiB", "f:1: dram= is given twice"},
           {"a " + h + " hint_jobs=-1", "f:1: hint_jobs=-1: not a count of jobs"},
           {"a " + h + " hint_jobs=8k", "f:1: hint_jobs=8k: not a count of jobs"},
           {"a " + h + " hint_jobs", "f:1: hint_jobs: not a count of jobs"},
           // Found by tools/fuzz/tenants_fuzzer (corpus: crash-quota-two-equals):
           // everything after a second '=' was ignored.
           {"a " + h + " hint_jobs=5=6", "f:1: hint_jobs=5=6: more than one '='"},
           {"a " + h + " dram=1GiB=", "f:1: dram=1GiB=: more than one '='"},
           {"a " + h + "\na " + h, "f:2: tenant 'a' is listed twice"},
           {std::string(65, 'x') + " " + h, "f:1: tenant name must be 1 to 64"},
       }) {
    auto table = TenantTable::Parse(c.text, "f");
    ASSERT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(table.status().message().find(c.needle), std::string::npos)
        << table.status().message();
  }
  EXPECT_EQ(NewToken("a:b").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TenantTableTest, QuotaFieldsParse) {
  const std::string h = HashToken("a:x");
  auto table = TenantTable::Parse("a " + h + " hint_jobs=64 nvme=1048576 dram=512MiB\n" +
                                      "b " + h + " dram=0 nvme=3TiB\n",
                                  "f");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->Find("a")->quota.dram_bytes, 512ull << 20);
  EXPECT_EQ(table->Find("a")->quota.nvme_bytes, 1048576u);
  EXPECT_EQ(table->Find("a")->quota.hint_jobs, 64u);
  EXPECT_EQ(table->Find("b")->quota.dram_bytes, 0u);
  EXPECT_EQ(table->Find("b")->quota.nvme_bytes, 3ull << 40);
  EXPECT_EQ(table->Find("b")->quota.hint_jobs, 0u);
}

TEST(TenantTableTest, LoadNamesAMissingFile) {
  auto missing = TenantTable::Load("/nonexistent/tenants");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/tenants"), std::string::npos);
  const std::string path = ::testing::TempDir() + "/tenants_load_test";
  std::ofstream(path) << "a " << HashToken("a:1") << "\n";
  auto loaded = TenantTable::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->Authenticate("a:1").ok());
  std::filesystem::remove(path);
}

TEST(KeyScopeTest, DisjointPerRootAndPinned) {
  ChunkKey root, key;
  for (int i = 0; i < 32; ++i) {
    root.bytes[i] = static_cast<uint8_t>(i);
    key.bytes[i] = 0xff;
  }
  // python3: hashlib.sha256(b'strata-scope-v1' + bytes(range(32)) + b'\xff' * 32).hexdigest()
  EXPECT_EQ(ScopeKey(root, key).ToHex(),
            "d6ea96cdd2a2278e5a3f77a1415114a0f57ef4884ca051fbf04309b12b3d2fa5");
  ChunkKey other_root = root;
  other_root.bytes[0] ^= 1;
  EXPECT_NE(ScopeKey(root, key), ScopeKey(other_root, key));
  EXPECT_EQ(ScopeKey(root, key), ScopeKey(root, key));
}

}  // namespace
}  // namespace strata::auth
