// FaultyNvmeTier: an NvmeTier that wraps the real one and injects faults,
// for crash and fault tests (`strata serve --nvme_faults SPEC`). Faults:
//   write_error=P   a Write fails (Unavailable, as an I/O error) and stores
//                   nothing, with probability P
//   disk_full=P     a Write fails with ResourceExhausted (no space), stores
//                   nothing
//   full_after=N    every Write fails with ResourceExhausted once N payload
//                   bytes were written through this wrapper (a disk that fills)
//   torn=P          a Write stores a damaged payload (one byte flipped) and
//                   reports success: a torn write the device acknowledged.
//                   A later Read of it is DataLoss (the chunk is lost, never
//                   served); its key is appended to the fault log.
//   read_error=P    a Read fails (Unavailable) without reading
//   slow_ms=T       every Read and Write first sleeps T milliseconds
//   seed=S          seed of the fault draws (default 1)
//   log=PATH        appends one "<fault> <key hex>" line per injected fault
//                   (write_error, disk_full, torn, read_error)
// SPEC is a comma-separated list, e.g. "write_error=0.01,torn=0.001,seed=7".
#ifndef STRATA_STORE_FAULTY_NVME_TIER_H_
#define STRATA_STORE_FAULTY_NVME_TIER_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/nvme_tier.h"

namespace strata::store {

struct NvmeFaults {
  double write_error = 0;
  double disk_full = 0;
  uint64_t full_after_bytes = 0;  // 0: never
  double torn = 0;
  double read_error = 0;
  absl::Duration slow = absl::ZeroDuration();
  uint64_t seed = 1;
  std::string log_path;

  // InvalidArgument naming the bad item.
  static absl::StatusOr<NvmeFaults> Parse(absl::string_view spec);
};

struct NvmeFaultCounts {
  uint64_t write_errors = 0;
  uint64_t disk_full = 0;
  uint64_t torn = 0;
  uint64_t read_errors = 0;
};

// Wraps `inner`; thread-safe like any NvmeTier.
class FaultyNvmeTier : public NvmeTier {
 public:
  // Replaces the faults (and restarts the byte count of full_after).
  virtual void SetFaults(const NvmeFaults& faults) = 0;
  virtual NvmeFaultCounts counts() const = 0;
};

std::unique_ptr<FaultyNvmeTier> NewFaultyNvmeTier(std::unique_ptr<NvmeTier> inner,
                                                  const NvmeFaults& faults);

}  // namespace strata::store

#endif  // STRATA_STORE_FAULTY_NVME_TIER_H_
