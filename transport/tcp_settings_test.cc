#include "transport/tcp_settings.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace strata::transport::internal {
namespace {

// Unsets the variables it names on construction and restores them on
// destruction (tests run single-threaded).
class CleanEnvironment {
 public:
  CleanEnvironment() {
    for (const char* name : kNames) {
      if (const char* v = std::getenv(name)) saved_.emplace_back(name, v);
      unsetenv(name);
    }
  }
  ~CleanEnvironment() {
    for (const char* name : kNames) unsetenv(name);
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
  }

 private:
  static constexpr const char* kNames[] = {"UCX_TCP_TX_SEG_SIZE", "UCX_TCP_RX_SEG_SIZE",
                                           "UCX_TCP_PORT_RANGE"};
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST(ParseUcxSize, NumbersAndUnits) {
  EXPECT_EQ(*ParseUcxSize("65536"), 65536u);
  EXPECT_EQ(*ParseUcxSize("512b"), 512u);
  EXPECT_EQ(*ParseUcxSize("64K"), 64u << 10);
  EXPECT_EQ(*ParseUcxSize("8kb"), 8u << 10);
  EXPECT_EQ(*ParseUcxSize("1M"), 1u << 20);
  EXPECT_EQ(*ParseUcxSize("4mb"), 4u << 20);
  EXPECT_EQ(*ParseUcxSize("2GB"), size_t{2} << 30);
}

TEST(ParseUcxSize, RejectsWhatIsNotASize) {
  for (const char* bad : {"", "auto", "inf", "K", "1.5M", "-1", "1T", "12 K", "1MiB",
                          "9999999999999K"}) {
    absl::StatusOr<size_t> parsed = ParseUcxSize(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
}

TEST(EffectiveTcpSegments, RequestedSizesOrUcxDefaults) {
  CleanEnvironment clean;
  absl::StatusOr<TcpSegments> s = EffectiveTcpSegments(64 << 10, 1 << 20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->send, 64u << 10);
  EXPECT_EQ(s->receive, 1u << 20);
  s = EffectiveTcpSegments(0, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->send, kUcxDefaultTcpSendSegment);
  EXPECT_EQ(s->receive, kUcxDefaultTcpReceiveSegment);
}

TEST(EffectiveTcpSegments, EnvironmentWins) {
  CleanEnvironment clean;
  setenv("UCX_TCP_RX_SEG_SIZE", "256k", 1);
  absl::StatusOr<TcpSegments> s = EffectiveTcpSegments(64 << 10, 1 << 20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->send, 64u << 10);
  EXPECT_EQ(s->receive, 256u << 10);
}

TEST(EffectiveTcpSegments, RequestedSendSegmentIsLoweredToTheReceiveSegment) {
  CleanEnvironment clean;
  absl::StatusOr<TcpSegments> s = EffectiveTcpSegments(2 << 20, 1 << 20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->send, 1u << 20);
  setenv("UCX_TCP_RX_SEG_SIZE", "64k", 1);
  s = EffectiveTcpSegments(1 << 20, 1 << 20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->send, 64u << 10);
  EXPECT_EQ(s->receive, 64u << 10);
}

TEST(EffectiveTcpSegments, SendVariableLargerThanReceiveIsInvalid) {
  CleanEnvironment clean;
  // Only the send segment raised in the environment: UCX would not open tcp.
  setenv("UCX_TCP_TX_SEG_SIZE", "2m", 1);
  absl::StatusOr<TcpSegments> s = EffectiveTcpSegments(64 << 10, 1 << 20);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("UCX_TCP_TX_SEG_SIZE"), std::string::npos)
      << s.status();
}

TEST(EffectiveTcpSegments, VariableThatIsNotASizeIsInvalid) {
  CleanEnvironment clean;
  setenv("UCX_TCP_RX_SEG_SIZE", "auto", 1);
  absl::StatusOr<TcpSegments> s = EffectiveTcpSegments(64 << 10, 1 << 20);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("UCX_TCP_RX_SEG_SIZE"), std::string::npos)
      << s.status();
}

TEST(ScopedTcpEnvironment, SetsWhatIsUnsetAndRemovesIt) {
  CleanEnvironment clean;
  setenv("UCX_TCP_RX_SEG_SIZE", "128k", 1);
  {
    ScopedTcpEnvironment scope({{"TCP_TX_SEG_SIZE", "65536"}, {"TCP_RX_SEG_SIZE", "1048576"}});
    ASSERT_NE(std::getenv("UCX_TCP_TX_SEG_SIZE"), nullptr);
    EXPECT_STREQ(std::getenv("UCX_TCP_TX_SEG_SIZE"), "65536");
    EXPECT_STREQ(std::getenv("UCX_TCP_RX_SEG_SIZE"), "128k");  // the caller's setting
  }
  EXPECT_EQ(std::getenv("UCX_TCP_TX_SEG_SIZE"), nullptr);
  EXPECT_STREQ(std::getenv("UCX_TCP_RX_SEG_SIZE"), "128k");
}

}  // namespace
}  // namespace strata::transport::internal
