#include "tools/cli/flags.h"

#include "gtest/gtest.h"

namespace strata::cli {
namespace {

TEST(FlagsTest, ParsesEveryKind) {
  std::string dir = "data";
  int64_t n = 1;
  bool verbose = false, sync = true;
  Bytes dram{1024};
  absl::Duration ttl = absl::Seconds(1);
  double rate = 0.5;
  FlagSet flags("usage");
  flags.Add("dir", "directory", &dir);
  flags.Add("n", "count", &n);
  flags.Add("verbose", "talk", &verbose);
  flags.Add("sync", "sync", &sync);
  flags.Add("dram", "bytes", &dram);
  flags.Add("ttl", "lease", &ttl);
  flags.Add("rate", "rate", &rate);
  auto rest = flags.Parse({"--dir=/x", "pos", "--n", "42", "--verbose", "--nosync",
                           "--dram=1.5GiB", "--ttl=250ms", "--rate=2"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, std::vector<std::string>{"pos"});
  EXPECT_EQ(dir, "/x");
  EXPECT_EQ(n, 42);
  EXPECT_TRUE(verbose);
  EXPECT_FALSE(sync);
  EXPECT_EQ(dram.value, 1536ull << 20);
  EXPECT_EQ(ttl, absl::Milliseconds(250));
  EXPECT_EQ(rate, 2.0);
  EXPECT_NE(flags.Help().find("--dram  (default: 1KiB)"), std::string::npos);
}

TEST(FlagsTest, BadInputNamesTheFlag) {
  int64_t n = 1;
  Bytes b;
  FlagSet flags("usage");
  flags.Add("n", "count", &n);
  flags.Add("b", "bytes", &b);
  auto code = [&](std::vector<std::string> args) { return flags.Parse(args).status().code(); };
  EXPECT_EQ(code({"--n=x"}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({"--m=1"}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({"--n"}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({"--b=12XB"}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(n, 1);
  FlagSet help("usage");
  ASSERT_TRUE(help.Parse({"--help"}).ok());
  EXPECT_TRUE(help.help_requested());
}

TEST(FlagsTest, ByteSizes) {
  EXPECT_EQ(ParseBytes("4096").value(), 4096u);
  EXPECT_EQ(ParseBytes("64KiB").value(), 65536u);
  EXPECT_EQ(ParseBytes("2g").value(), 2ull << 30);
  EXPECT_EQ(ParseBytes("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseBytes("MiB").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FormatBytes(3ull << 30), "3GiB");
  EXPECT_EQ(FormatBytes(1536), "1.5KiB");
}

}  // namespace
}  // namespace strata::cli
