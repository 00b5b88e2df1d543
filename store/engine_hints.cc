// Scheduler hints and prefetch (AttentionStore's scheduler-aware fetching):
// the job queue tells the node which chains run next; their chunks are
// promoted from NVMe ahead of time and, with the "scheduler" policy, evicted
// after everything no job needs.
#include <algorithm>
#include <thread>
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
// Work between two releases of the engine's lock while hints are resolved:
// chain steps (a hash insertion each), and entries given to the policies
// (a few ordered-set updates each). About 100-300 us per piece on the
// 2-core VM.
constexpr size_t kHintStepsPerLock = 1024;
constexpr size_t kPolicyHintsPerLock = 256;
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
  TenantAccount& account = AccountOf(ns);
  const uint64_t job_quota = account.stats.quota.hint_jobs;
  if (job_quota != 0 && jobs.size() > job_quota) {
    ++account.stats.quota_refusals;
    return absl::ResourceExhaustedError(absl::StrCat(
        "hint: ", jobs.size(), " jobs exceed tenant '", account.stats.tenant, "''s quota of ",
        job_quota, " jobs per scheduler (hint_jobs= in the tenants file)"));
  }
  const std::string id(scheduler);
  if (!jobs.empty() && !hint_sets_.contains(id)) {
    const absl::Time now = clock_->Now();
    absl::erase_if(hint_sets_, [&](const auto& kv) { return kv.second.expires <= now; });
    if (hint_sets_.size() >= options_.max_hint_schedulers) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "hint: ", hint_sets_.size(), " schedulers already have live hint sets (the limit); ",
          "withdraw one (an empty set) or let it expire"));
    }
  }
  ++counters_.hint_sets_received;
  if (jobs.empty()) {
    hint_sets_.erase(id);
  } else {
    HintSet& set = hint_sets_[id];
    set.ns = ns;
    set.received = clock_->Now();
    set.expires = set.received + ttl;
    set.jobs.assign(jobs.begin(), jobs.end());
  }
  RefreshHints();
  return absl::OkStatus();
}

void EngineImpl::RefreshHints() {
  hints_dirty_ = true;
  if (hints_rebuilding_) return;  // the running rebuild will pick it up
  hints_rebuilding_ = true;
  // Two passes at most for one caller: sets that keep arriving meanwhile
  // are left to the background thread, so no SetHints call waits on others.
  for (int pass = 0; pass < 2 && hints_dirty_; ++pass) {
    hints_dirty_ = false;
    RebuildHints();
  }
  hints_rebuilding_ = false;
  if (hints_dirty_) {
    prefetch_wanted_ = true;
    cv_.SignalAll();
  }
}

void EngineImpl::YieldLock() {
  mu_.Unlock();
  // A bare unlock/lock would win the lock straight back from a waiter that
  // was woken but has not run yet; a short sleep hands it over.
  absl::SleepFor(absl::Microseconds(1));
  mu_.Lock();
}

void EngineImpl::RebuildHints() {
  const absl::Time now = clock_->Now();
  absl::erase_if(hint_sets_, [&](const auto& kv) { return kv.second.expires <= now; });
  // Every job of every set, soonest first. Jobs without a start time are
  // ordered by queue position behind the moment their set arrived.
  struct Pending {
    absl::Time needed;
    uint32_t ns;
    ChunkKey last_key;
  };
  std::vector<Pending> pending;
  absl::Time expire = absl::InfiniteFuture();
  for (const auto& [scheduler, set] : hint_sets_) {
    expire = std::min(expire, set.expires);
    for (const JobHint& job : set.jobs) {
      const absl::Time needed = job.expected_start != absl::InfinitePast()
                                    ? job.expected_start
                                    : set.received + absl::Milliseconds(job.queue_position);
      pending.push_back({needed, set.ns, job.last_key});
    }
  }
  const size_t schedulers = hint_sets_.size();
  mu_.Unlock();  // the list is ours: sort it without the lock
  std::stable_sort(pending.begin(), pending.end(),
                   [](const Pending& a, const Pending& b) { return a.needed < b.needed; });
  mu_.Lock();
  // Walk each job's chain back from its last key. Jobs go soonest first, so
  // a chunk already claimed was claimed by a job needing it no later, and so
  // were all its ancestors: the walk stops there. Each chunk is walked once
  // whatever the number of jobs naming it, and a parent cycle ends the walk.
  // A job's chain holds only the chunks it claimed (in chain order); the
  // rest belong to sooner jobs, which prefetch takes first.
  absl::flat_hash_map<EntryId, absl::Time> needed_at;
  std::vector<HintedJob> jobs;
  size_t steps = 0;
  for (const Pending& p : pending) {
    if (++steps % kHintStepsPerLock == 0) YieldLock();
    HintedJob hinted{p.needed, {}};
    EntryId id;
    const IndexEntry* e = FindCommitted(p.ns, p.last_key, &id);
    while (e != nullptr && hinted.chain.size() < kMaxChainChunks) {
      if (!needed_at.emplace(id, p.needed).second) break;
      hinted.chain.push_back(id);
      id = e->parent;
      ++counters_.hint_resolve_steps;
      // Let gets and puts in now and then. Entries may change meanwhile: ids
      // are generation-tagged, so an erased one just ends the walk.
      if (++steps % kHintStepsPerLock == 0) YieldLock();
      e = index_.Get(id);
      if (e != nullptr && (e->state != IndexEntry::kCommitted || e->ns != p.ns)) e = nullptr;
    }
    std::reverse(hinted.chain.begin(), hinted.chain.end());
    if (!hinted.chain.empty()) jobs.push_back(std::move(hinted));
  }
  hinted_jobs_ = std::move(jobs);
  needed_at_ = std::move(needed_at);
  hints_expire_ = expire;
  counters_.hint_schedulers = schedulers;
  counters_.hint_jobs = pending.size();
  counters_.hinted_chunks = needed_at_.size();

  // The policies take the new set in pieces too.
  std::vector<eviction::HintedEntry> entries;
  entries.reserve(needed_at_.size());
  for (const auto& [id, needed] : needed_at_) entries.push_back({id, needed});
  dram_policy_->BeginHints();
  nvme_policy_->BeginHints();
  for (size_t i = 0; i < entries.size(); i += kPolicyHintsPerLock) {
    const std::span<const eviction::HintedEntry> piece(
        entries.data() + i, std::min(kPolicyHintsPerLock, entries.size() - i));
    dram_policy_->AddHints(piece);
    nvme_policy_->AddHints(piece);
    YieldLock();
  }
  bool dram_done = false, nvme_done = false;
  while (true) {
    if (!dram_done) dram_done = dram_policy_->EndHints(kPolicyHintsPerLock);
    if (!nvme_done) nvme_done = nvme_policy_->EndHints(kPolicyHintsPerLock);
    if (dram_done && nvme_done) break;
    YieldLock();
  }
  HintTenantOrders();

  prefetch_wanted_ = true;
  cv_.SignalAll();
}

void EngineImpl::PrefetchRound() {
  if (clock_->Now() >= hints_expire_) RefreshHints();
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
      // Within the tenant's DRAM quota, from its own chunks needed later;
      // a tenant at its quota gets no prefetch (not a refusal: nobody asked).
      if (!TrimTenantDram(AccountOf(e->ns), e->size, rules)) continue;
      ChargeDram(e->ns, e->size);
      std::optional<uint64_t> offset = AllocateDram(e->size, rules);
      if (!offset) {
        CreditDram(e->ns, e->size);
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
  bool all_read = true;
  for (size_t k = 0; k < mine.size(); ++k) {
    IndexEntry& e = *index_.Get(mine[k]);  // kPromoting kept it alive
    if (!CompletePromotion(mine[k], results[k]).ok()) {
      all_read = false;
      continue;
    }
    ++counters_.prefetches_issued;
    e.set(IndexEntry::kPrefetched, true);
    prefetched_.insert(mine[k]);
  }
  cv_.SignalAll();
  // Look again at once (the window may allow more), unless reads fail: then
  // at the next poll, not in a loop of failing reads.
  prefetch_wanted_ = all_read;
}

void EngineImpl::PrefetchLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    // Woken by new hints or finished promotions; otherwise look again now
    // and then for hint sets that expired.
    if (!prefetch_wanted_) cv_.WaitWithTimeout(&mu_, kPrefetchPoll);
    if (stopping_) return;
    if (hints_dirty_ && !hints_rebuilding_) RefreshHints();
    if (nvme_ != nullptr) {
      PrefetchRound();
    } else {
      prefetch_wanted_ = false;
      if (clock_->Now() >= hints_expire_) RefreshHints();
    }
  }
}

}  // namespace strata::store::internal
