#include "store/rocksdb_status.h"

#include "gtest/gtest.h"
#include "rocksdb/io_status.h"

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

TEST(FromRocksDbStatusTest, FullDiskIsResourceExhausted) {
  // As the POSIX file system reports ENOSPC, and as DB::Write returns it.
  const rocksdb::Status no_space = rocksdb::IOStatus::NoSpace(
      "While appending to file: /x/000004.log", "No space left on device");
  EXPECT_EQ(FromRocksDbStatus(no_space).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromRocksDbStatus(rocksdb::Status(no_space, rocksdb::Status::Severity::kHardError))
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromRocksDbStatus(rocksdb::Status::SpaceLimit("x")).code(),
            absl::StatusCode::kResourceExhausted);
  // Re-wrapped without its subcode.
  EXPECT_EQ(FromRocksDbStatus(rocksdb::Status::IOError("flush failed",
                                                       "No space left on device"))
                .code(),
            absl::StatusCode::kResourceExhausted);
  // Other I/O errors stay Unavailable.
  EXPECT_EQ(FromRocksDbStatus(rocksdb::Status::IOError("read", "Input/output error")).code(),
            absl::StatusCode::kUnavailable);
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
