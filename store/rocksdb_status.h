// The one converter from rocksdb::Status to absl::Status. The only header under
// store/ that may name a RocksDB type; include it from .cc files only.
#ifndef STRATA_STORE_ROCKSDB_STATUS_H_
#define STRATA_STORE_ROCKSDB_STATUS_H_

#include <string_view>

#include "absl/status/status.h"
#include "rocksdb/status.h"

namespace strata::store {

// Maps a RocksDB status to the most specific absl code; the message keeps
// RocksDB's own text (rocksdb::Status::ToString()).
//
//   OK                                  -> OK
//   NotFound                            -> NotFound
//   Corruption                          -> DataLoss
//   NotSupported                        -> Unimplemented
//   InvalidArgument                     -> InvalidArgument
//   IOError, subcode NoSpace/SpaceLimit -> ResourceExhausted (a full disk;
//     also an IOError without subcode whose message carries ENOSPC's text
//     "No space left on device")
//   IOError, subcode PathNotFound       -> NotFound
//   IOError, subcode IOFenced           -> FailedPrecondition
//   IOError, any other                  -> Unavailable (*)
//   Busy, TryAgain, TimedOut            -> Unavailable
//   Incomplete, ShutdownInProgress      -> Unavailable
//   Aborted, subcode MemoryLimit        -> ResourceExhausted
//   Aborted, Expired                    -> Aborted
//   CompactionTooLarge                  -> ResourceExhausted
//   MergeInProgress                     -> Internal (Strata uses no merge operator)
//   ColumnFamilyDropped                 -> FailedPrecondition
//   anything else                       -> Unknown
//
// (*) An I/O error means the medium did not serve the request; it is not a
// broken invariant of ours, so it is Unavailable rather than Internal: the
// caller treats the tier as failing (a cache miss), never as a logic error.
// Corrupt bytes that RocksDB detected come back as Corruption -> DataLoss.
absl::Status FromRocksDbStatus(const rocksdb::Status& status);

// As above, with `context` (e.g. "reading chunk 0a1b...") put in front of the
// message: "<context>: <RocksDB message>".
absl::Status FromRocksDbStatus(const rocksdb::Status& status, std::string_view context);

}  // namespace strata::store

#endif  // STRATA_STORE_ROCKSDB_STATUS_H_
