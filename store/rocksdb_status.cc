#include "store/rocksdb_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace strata::store {
namespace {

absl::StatusCode CodeOf(const rocksdb::Status& s) {
  using Code = rocksdb::Status::Code;
  using SubCode = rocksdb::Status::SubCode;
  switch (s.code()) {
    case Code::kOk:
      return absl::StatusCode::kOk;
    case Code::kNotFound:
      return absl::StatusCode::kNotFound;
    case Code::kCorruption:
      return absl::StatusCode::kDataLoss;
    case Code::kNotSupported:
      return absl::StatusCode::kUnimplemented;
    case Code::kInvalidArgument:
      return absl::StatusCode::kInvalidArgument;
    case Code::kIOError:
      switch (s.subcode()) {
        case SubCode::kNoSpace:
        case SubCode::kSpaceLimit:
          return absl::StatusCode::kResourceExhausted;
        case SubCode::kPathNotFound:
          return absl::StatusCode::kNotFound;
        case SubCode::kIOFenced:
          return absl::StatusCode::kFailedPrecondition;
        default:
          // Some RocksDB paths re-wrap an error and drop its subcode but
          // keep strerror(ENOSPC) in the message.
          return s.ToString().find("No space left on device") != std::string::npos
                     ? absl::StatusCode::kResourceExhausted
                     : absl::StatusCode::kUnavailable;
      }
    case Code::kBusy:
    case Code::kTryAgain:
    case Code::kTimedOut:
    case Code::kIncomplete:
    case Code::kShutdownInProgress:
      return absl::StatusCode::kUnavailable;
    case Code::kAborted:
      return s.subcode() == SubCode::kMemoryLimit ? absl::StatusCode::kResourceExhausted
                                                  : absl::StatusCode::kAborted;
    case Code::kExpired:
      return absl::StatusCode::kAborted;
    case Code::kCompactionTooLarge:
      return absl::StatusCode::kResourceExhausted;
    case Code::kMergeInProgress:
      return absl::StatusCode::kInternal;
    case Code::kColumnFamilyDropped:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kUnknown;
  }
}

}  // namespace

absl::Status FromRocksDbStatus(const rocksdb::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(CodeOf(status), status.ToString());
}

absl::Status FromRocksDbStatus(const rocksdb::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(CodeOf(status),
                      absl::StrCat(absl::string_view(context.data(), context.size()), ": ",
                                   status.ToString()));
}

}  // namespace strata::store
