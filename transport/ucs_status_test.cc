#include "transport/ucs_status.h"

#include "gtest/gtest.h"

namespace strata::transport {
namespace {

TEST(FromUcsStatusTest, MapsEachCodeToTheMostSpecificAbslCode) {
  EXPECT_TRUE(FromUcsStatus(UCS_OK).ok());
  EXPECT_EQ(FromUcsStatus(UCS_ERR_NO_MEMORY).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_UNREACHABLE).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_ENDPOINT_TIMEOUT).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_CONNECTION_RESET).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_NOT_CONNECTED).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_REJECTED).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromUcsStatus(static_cast<ucs_status_t>(UCS_ERR_FIRST_LINK_FAILURE - 1)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_TIMED_OUT).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_INVALID_PARAM).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_INVALID_ADDR).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_CANCELED).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_UNSUPPORTED).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_NOT_IMPLEMENTED).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_IO_ERROR).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(FromUcsStatus(UCS_ERR_NO_RESOURCE).code(), absl::StatusCode::kInternal);
}

TEST(FromUcsStatusTest, MessageCarriesUcxTextAndContext) {
  absl::Status status = FromUcsStatus(UCS_ERR_IO_ERROR, "reading chunk");
  EXPECT_NE(status.message().find("reading chunk"), absl::string_view::npos);
  EXPECT_NE(status.message().find(ucs_status_string(UCS_ERR_IO_ERROR)),
            absl::string_view::npos);
}

}  // namespace
}  // namespace strata::transport
