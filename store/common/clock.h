// Clock: the source of time for leases and eviction policies, injected so that
// tests drive time by hand.
#ifndef STRATA_STORE_COMMON_CLOCK_H_
#define STRATA_STORE_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace strata {

// Thread-safe implementations only.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // The process-wide real clock. Never deleted.
  static Clock* Real();
};

// A clock that moves only when told to. Safe for concurrent use.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(1)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strata

#endif  // STRATA_STORE_COMMON_CLOCK_H_
