#include "store/rocksdb_status.h"

#include "gtest/gtest.h"

namespace strata::store {
namespace {

TEST(FromRocksDbStatusTest, MapsCodes) {
  using rocksdb::Status;
  EXPECT_TRUE(FromRocksDbStatus(Status::OK()).ok());
  EXPECT_EQ(FromRocksDbStatus(Status::NotFound()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FromRocksDbStatus(Status::Corruption("x")).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(FromRocksDbStatus(Status::InvalidArgument("x")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromRocksDbStatus(Status::NotSupported("x")).code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(FromRocksDbStatus(Status::IOError("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksDbStatus(Status::NoSpace("x")).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromRocksDbStatus(Status::PathNotFound("x")).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FromRocksDbStatus(Status::Busy("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksDbStatus(Status::TryAgain("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksDbStatus(Status::TimedOut("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksDbStatus(Status::ShutdownInProgress("x")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksDbStatus(Status::Aborted("x")).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(FromRocksDbStatus(Status::MemoryLimit("x")).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromRocksDbStatus(Status::MergeInProgress("x")).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(FromRocksDbStatus(Status::ColumnFamilyDropped("x")).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(FromRocksDbStatusTest, KeepsMessageAndContext) {
  const absl::Status s = FromRocksDbStatus(rocksdb::Status::Corruption("bad block"), "reading x");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("reading x: "), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("bad block"), absl::string_view::npos) << s;
  EXPECT_TRUE(FromRocksDbStatus(rocksdb::Status::OK(), "ctx").ok());
}

}  // namespace
}  // namespace strata::store
