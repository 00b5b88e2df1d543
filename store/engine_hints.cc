// Scheduler hints and prefetch (AttentionStore's scheduler-aware fetching):
// the job queue tells the node which chains run next; their chunks are
// promoted from NVMe ahead of time and, with the "scheduler" policy, evicted
// after everything no job needs.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/common/status_macros.h"
#include "store/engine_impl.h"

namespace strata::store::internal {
namespace {

constexpr size_t kMaxSchedulerIdBytes = 128;
// Longest chain walked back from a hinted key (a million tokens at 16 tokens
// per chunk).
constexpr size_t kMaxChainChunks = 65536;
// How often the prefetcher looks again without being woken (expiry).
constexpr absl::Duration kPrefetchPoll = absl::Milliseconds(50);

}  // namespace

absl::Status EngineImpl::SetHints(std::string_view scheduler, uint32_t ns,
                                  std::span<const JobHint> jobs, absl::Duration ttl) {
  if (scheduler.empty() || scheduler.size() > kMaxSchedulerIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("hint: scheduler id must be 1 to ", kMaxSchedulerIdBytes, " bytes"));
  }
  if (jobs.size() > options_.max_hint_jobs) {
    return absl::InvalidArgumentError(absl::StrCat("hint: ", jobs.size(),
                                                   " jobs exceed the limit of ",
                                                   options_.max_hint_jobs));
  }
  if (ttl == absl::ZeroDuration()) ttl = options_.default_hint_ttl;
  if (ttl < absl::ZeroDuration() || ttl > options_.max_hint_ttl) {
    return absl::InvalidArgumentError(absl::StrCat("hint: ttl ", absl::FormatDuration(ttl),
                                                   " is outside (0, ",
                                                   absl::FormatDuration(options_.max_hint_ttl),
                                                   "]"));
  }
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindNamespace(ns).status());
  ++counters_.hint_sets_received;
  const std::string id(scheduler);
  if (jobs.empty()) {
    hint_sets_.erase(id);
  } else {
    HintSet& set = hint_sets_[id];
    set.ns = ns;
    set.received = clock_->Now();
    set.expires = set.received + ttl;
    set.jobs.assign(jobs.begin(), jobs.end());
  }
  RebuildHints();
  return absl::OkStatus();
}

void EngineImpl::RebuildHints() {
  const absl::Time now = clock_->Now();
  absl::erase_if(hint_sets_, [&](const auto& kv) { return kv.second.expires <= now; });
  hinted_jobs_.clear();
  needed_at_.clear();
  hints_expire_ = absl::InfiniteFuture();
  uint64_t job_count = 0;
  for (const auto& [scheduler, set] : hint_sets_) {
    hints_expire_ = std::min(hints_expire_, set.expires);
    for (const JobHint& job : set.jobs) {
      ++job_count;
      // Jobs without a start time are ordered by queue position behind the
      // moment the set arrived.
      const absl::Time needed = job.expected_start != absl::InfinitePast()
                                    ? job.expected_start
                                    : set.received + absl::Milliseconds(job.queue_position);
      HintedJob hinted{needed, {}};
      EntryId id;
      const IndexEntry* e = FindCommitted(set.ns, job.last_key, &id);
      for (size_t n = 0; e != nullptr && n < kMaxChainChunks; ++n) {
        hinted.chain.push_back(id);
        id = e->parent;
        e = index_.Get(id);
        if (e != nullptr && e->state != IndexEntry::kCommitted) e = nullptr;
      }
      std::reverse(hinted.chain.begin(), hinted.chain.end());
      for (EntryId c : hinted.chain) {
        auto [it, inserted] = needed_at_.emplace(c, needed);
        if (!inserted) it->second = std::min(it->second, needed);
      }
      if (!hinted.chain.empty()) hinted_jobs_.push_back(std::move(hinted));
    }
  }
  std::stable_sort(hinted_jobs_.begin(), hinted_jobs_.end(),
                   [](const HintedJob& a, const HintedJob& b) { return a.needed_at < b.needed_at; });
  counters_.hint_schedulers = hint_sets_.size();
  counters_.hint_jobs = job_count;
  counters_.hinted_chunks = needed_at_.size();

  std::vector<eviction::HintedEntry> entries;
  entries.reserve(needed_at_.size());
  for (const auto& [id, needed] : needed_at_) entries.push_back({id, needed});
  dram_policy_->OnHints(entries);
  nvme_policy_->OnHints(entries);

  prefetch_wanted_ = true;
  cv_.SignalAll();
}

void EngineImpl::PrefetchRound() {
  if (clock_->Now() >= hints_expire_) RebuildHints();
  prefetch_wanted_ = false;
  const uint64_t window = options_.prefetch_bytes != 0 ? options_.prefetch_bytes
                                                        : pool_->capacity() / 4;
  // Reserve slots for the chunks of the next jobs, in queue order, that are
  // only on NVMe; stop at the window or when room would cost a chunk needed
  // sooner than the one brought in.
  // The window holds the unread prefetched chunks that are still hinted;
  // the others stay marked (used if read, wasted if evicted unread) but are
  // evictable like any unhinted chunk.
  uint64_t ahead = 0;
  for (EntryId id : prefetched_) {
    if (needed_at_.contains(id)) ahead += index_.Get(id)->size;
  }
  std::vector<EntryId> mine;
  absl::flat_hash_set<EntryId> seen;
  const size_t jobs = std::min(hinted_jobs_.size(), options_.prefetch_jobs);
  bool full = false;
  for (size_t j = 0; j < jobs && !full; ++j) {
    for (EntryId id : hinted_jobs_[j].chain) {
      if (!seen.insert(id).second) continue;
      IndexEntry* e = index_.Get(id);
      if (e == nullptr || e->state != IndexEntry::kCommitted || e->has(IndexEntry::kInDram) ||
          e->has(IndexEntry::kPromoting) || !e->has(IndexEntry::kOnNvme)) {
        continue;
      }
      if (ahead + e->size > window) {
        full = true;
        break;
      }
      AllocationRules rules;
      rules.wait_for_write_back = false;
      rules.protect_needed_until = NeededAt(id);
      rules.may_evict_prefetched = false;
      std::optional<uint64_t> offset = AllocateDram(e->size, rules);
      if (!offset) {
        full = true;
        break;
      }
      e->dram_offset = *offset;
      e->set(IndexEntry::kPromoting, true);
      ahead += e->size;
      mine.push_back(id);
    }
  }
  if (mine.empty()) return;
  std::vector<absl::Status> results = ReadReservedFromNvme(mine);
  for (size_t k = 0; k < mine.size(); ++k) {
    IndexEntry& e = *index_.Get(mine[k]);  // kPromoting kept it alive
    if (!CompletePromotion(mine[k], results[k]).ok()) continue;
    ++counters_.prefetches_issued;
    e.set(IndexEntry::kPrefetched, true);
    prefetched_.insert(mine[k]);
  }
  cv_.SignalAll();
  prefetch_wanted_ = true;  // look again: the window may allow more
}

void EngineImpl::PrefetchLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    // Woken by new hints or finished promotions; otherwise look again now
    // and then for hint sets that expired.
    if (!prefetch_wanted_) cv_.WaitWithTimeout(&mu_, kPrefetchPoll);
    if (stopping_) return;
    PrefetchRound();
  }
}

}  // namespace strata::store::internal
