#include "eviction/eviction_policy.h"

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "eviction/lru_policy.h"
#include "eviction/prefix_lru_policy.h"
#include "eviction/scheduler_aware_policy.h"

namespace strata::eviction {

absl::StatusOr<std::unique_ptr<EvictionPolicy>> CreatePolicy(std::string_view name,
                                                             Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("eviction policy needs a clock");
  if (name == "lru") return std::make_unique<LruPolicy>(clock);
  if (name == "prefix-lru") return std::make_unique<PrefixLruPolicy>(clock);
  if (name == "scheduler") return std::make_unique<SchedulerAwarePolicy>(clock);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown eviction policy \"", absl::string_view(name.data(), name.size()),
                   "\"; valid: lru, prefix-lru, scheduler"));
}

}  // namespace strata::eviction
