#include "eviction/sim/simulator.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <queue>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "eviction/belady_policy.h"
#include "store/common/clock.h"
#include "store/common/status_macros.h"

namespace strata::eviction::sim {

absl::StatusOr<Workload> Workload::Build(const Trace& trace, const WorkloadOptions& options) {
  RETURN_IF_ERROR(ValidateTrace(trace));
  if (options.chunk_tokens == 0 || !(options.prefill_tokens_per_s > 0) ||
      !(options.decode_tokens_per_s > 0)) {
    return absl::InvalidArgumentError("chunk_tokens and engine rates must be > 0");
  }
  if (trace.sessions.size() >= (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError("at most 2^30 - 1 sessions");
  }
  Workload w;
  w.options_ = options;
  for (const SystemPrompt& system : trace.systems) w.system_tokens_.push_back(system.tokens);
  for (const Session& session : trace.sessions) w.system_of_session_.push_back(session.system_id);

  // The engine: a FIFO queue by arrival, one executor. Turn t + 1 of a
  // session arrives think_s after turn t finishes.
  using Arrival = std::tuple<double, uint64_t, uint32_t, uint32_t>;  // time, seq, session, turn
  std::priority_queue<Arrival, std::vector<Arrival>, std::greater<>> arrivals;
  uint64_t seq = 0;
  for (uint32_t s = 0; s < trace.sessions.size(); ++s) {
    arrivals.emplace(trace.sessions[s].arrival_s, seq++, s, 0);
  }
  std::vector<uint64_t> context(trace.sessions.size());  // tokens before the next turn
  for (uint32_t s = 0; s < trace.sessions.size(); ++s) {
    context[s] = trace.systems[trace.sessions[s].system_id].tokens;
  }
  double now = 0;
  const uint64_t c = options.chunk_tokens;
  while (!arrivals.empty()) {
    const auto [arrival, unused_seq, s, t] = arrivals.top();
    arrivals.pop();
    const Turn& turn = trace.sessions[s].turns[t];
    Job job;
    job.session = s;
    job.turn = t;
    job.arrival_s = arrival;
    job.start_s = std::max(now, arrival);
    job.finish_s = job.start_s + turn.prompt_tokens / options.prefill_tokens_per_s +
                   turn.response_tokens / options.decode_tokens_per_s;
    now = job.finish_s;
    job.read_chunks = static_cast<uint32_t>(context[s] / c);
    context[s] += turn.prompt_tokens + turn.response_tokens;
    job.total_chunks = static_cast<uint32_t>(context[s] / c);
    w.jobs_.push_back(job);
    if (t + 1 < trace.sessions[s].turns.size()) {
      arrivals.emplace(job.finish_s + trace.sessions[s].turns[t + 1].think_s, seq++, s, t + 1);
    }
  }
  // Jobs start in arrival order, so the jobs waiting at a start are a range.
  size_t end = 0;
  for (size_t k = 0; k < w.jobs_.size(); ++k) {
    end = std::max(end, k + 1);
    while (end < w.jobs_.size() && w.jobs_[end].arrival_s <= w.jobs_[k].start_s) ++end;
    w.jobs_[k].queue_end = end;
  }
  absl::flat_hash_set<EntryId> distinct;
  for (const Job& job : w.jobs_) {
    for (uint32_t i = 0; i < job.total_chunks; ++i) {
      const EntryId id = w.ChunkAt(job, i);
      w.references_.push_back(id);
      distinct.insert(id);
    }
  }
  w.working_set_ = distinct.size();
  return w;
}

EntryId Workload::ChunkAt(const Job& job, uint32_t index) const {
  const uint32_t system = system_of_session_[job.session];
  if ((uint64_t{index} + 1) * options_.chunk_tokens <= system_tokens_[system]) {
    return (uint64_t{1} << 62) | (uint64_t{system} << 32) | index;
  }
  return (uint64_t{job.session + 1} << 32) | index;
}

double Workload::mean_queue_length() const {
  if (jobs_.empty()) return 0;
  double waiting = 0;
  for (size_t k = 0; k < jobs_.size(); ++k) waiting += jobs_[k].queue_end - k - 1;
  return waiting / jobs_.size();
}

namespace {

// One replay of a workload against one policy.
class Replay {
 public:
  Replay(const Workload& workload, const SimOptions& options) : w_(workload), o_(options) {
    prefetch_budget_ = options.prefetch_chunks ? options.prefetch_chunks
                                               : std::max<uint64_t>(1, options.dram_chunks / 2);
  }

  // Builds the policy named as in Simulate().
  absl::Status Init(std::string_view name) {
    std::string factory_name(name);
    if (name == "scheduler") {
      hints_ = prefetch_ = true;
    } else if (name == "scheduler-noprefetch") {
      hints_ = true;
      factory_name = "scheduler";
    } else if (name == "belady") {
      auto belady = std::make_unique<BeladyPolicy>(w_.references());
      belady_ = belady.get();
      policy_ = std::move(belady);
    } else if (name != "lru" && name != "prefix-lru") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown simulated policy \"", absl::string_view(name.data(), name.size()),
                       "\"; valid: lru, prefix-lru, scheduler-noprefetch, scheduler, belady"));
    }
    if (policy_ == nullptr) {
      ASSIGN_OR_RETURN(policy_, CreatePolicy(factory_name, &clock_));
    }
    result_.policy = std::string(name);
    result_.dram_chunks = o_.dram_chunks;
    return absl::OkStatus();
  }

  SimResult Run() {
    size_t reference = 0;
    const std::vector<Job>& jobs = w_.jobs();
    for (size_t k = 0; k < jobs.size(); ++k) {
      const Job& job = jobs[k];
      const absl::Time start = absl::UnixEpoch() + absl::Seconds(job.start_s);
      if (start > clock_.Now()) clock_.Advance(start - clock_.Now());
      pinned_.clear();
      for (uint32_t i = 0; i < job.total_chunks; ++i) {
        if (belady_ != nullptr) belady_->SetPosition(reference);
        ++reference;
        const EntryId id = w_.ChunkAt(job, i);
        const EntryId parent = i == 0 ? kNoEntry : w_.ChunkAt(job, i - 1);
        pinned_.insert(id);  // under the job's lease until it ends
        if (i < job.read_chunks) {
          Read(id, parent);
        } else {
          Save(id, parent);
        }
      }
      pinned_.clear();
      if (hints_) SendHints(k);
      if (prefetch_) Prefetch(k);
    }
    result_.prefetch_pending = prefetched_unread_.size();
    return result_;
  }

 private:
  void Read(EntryId id, EntryId parent) {
    ++result_.reads;
    if (dram_.contains(id)) {
      ++result_.dram_hits;
      policy_->OnAccess(id);
      if (prefetched_unread_.erase(id)) ++result_.prefetch_used;
      return;
    }
    if (nvme_.contains(id)) {
      ++result_.nvme_hits;
    } else {
      ++result_.misses;  // computed by the job, then saved
      nvme_.insert(id);
    }
    if (MakeRoom()) Insert(id, parent);
  }

  void Save(EntryId id, EntryId parent) {
    ++result_.saves;
    nvme_.insert(id);
    if (dram_.contains(id)) {
      policy_->OnAccess(id);
    } else if (MakeRoom()) {
      Insert(id, parent);
    }
  }

  // Evicts until a slot is free; false when every resident chunk is pinned.
  bool MakeRoom() {
    while (dram_.size() >= o_.dram_chunks) {
      const EntryId victim =
          policy_->PickVictim([this](EntryId id) { return !pinned_.contains(id); });
      if (victim == kNoEntry) return false;
      Evict(victim);
    }
    return true;
  }

  void Evict(EntryId id) {
    policy_->OnRemove(id);
    dram_.erase(id);
    ++result_.evictions;
    if (prefetched_unread_.erase(id)) ++result_.prefetch_wasted;
  }

  void Insert(EntryId id, EntryId parent) {
    policy_->OnInsert(id, parent);
    dram_.insert(id);
  }

  // The waiting jobs the scheduler looks at after job k started.
  size_t LookaheadEnd(size_t k, size_t window) const {
    return std::min(w_.jobs()[k].queue_end, k + 1 + window);
  }

  void SendHints(size_t k) {
    hint_set_.clear();
    needed_.clear();
    for (size_t j = k + 1; j < LookaheadEnd(k, o_.lookahead_jobs); ++j) {
      const Job& job = w_.jobs()[j];
      const absl::Time at = absl::UnixEpoch() + absl::Seconds(job.start_s);
      for (uint32_t i = 0; i < job.read_chunks; ++i) {
        const EntryId id = w_.ChunkAt(job, i);
        hint_set_.push_back({id, at});
        needed_.try_emplace(id, job.start_s);  // jobs in start order: first is soonest
      }
    }
    policy_->OnHints(hint_set_);
  }

  void Prefetch(size_t k) {
    uint64_t budget = prefetch_budget_;
    for (size_t j = k + 1; j < LookaheadEnd(k, o_.prefetch_jobs); ++j) {
      const Job& job = w_.jobs()[j];
      for (uint32_t i = 0; i < job.read_chunks; ++i) {
        const EntryId id = w_.ChunkAt(job, i);
        if (dram_.contains(id) || !nvme_.contains(id)) continue;
        if (budget == 0) return;
        if (dram_.size() >= o_.dram_chunks) {
          const EntryId victim = policy_->PickVictim([](EntryId) { return true; });
          if (victim == kNoEntry) return;
          auto need = needed_.find(victim);
          const double victim_needed =
              need == needed_.end() ? std::numeric_limits<double>::infinity() : need->second;
          // Never evict a chunk needed as soon as (or sooner than) this one;
          // the policy offers the latest-needed first, so stop here.
          if (!(victim_needed > job.start_s)) return;
          Evict(victim);
        }
        Insert(id, i == 0 ? kNoEntry : w_.ChunkAt(job, i - 1));
        prefetched_unread_.insert(id);
        ++result_.prefetched;
        --budget;
      }
    }
  }

  const Workload& w_;
  const SimOptions o_;
  FakeClock clock_{absl::UnixEpoch()};  // declared before the policy using it
  std::unique_ptr<EvictionPolicy> policy_;
  BeladyPolicy* belady_ = nullptr;  // == policy_.get() for "belady", else null
  bool hints_ = false;
  bool prefetch_ = false;
  uint64_t prefetch_budget_ = 0;

  absl::flat_hash_set<EntryId> dram_;
  absl::flat_hash_set<EntryId> nvme_;
  absl::flat_hash_set<EntryId> pinned_;
  absl::flat_hash_set<EntryId> prefetched_unread_;
  std::vector<HintedEntry> hint_set_;
  absl::flat_hash_map<EntryId, double> needed_;  // current hints: soonest start
  SimResult result_;
};

}  // namespace

absl::StatusOr<SimResult> Simulate(const Workload& workload, std::string_view policy,
                                   const SimOptions& options) {
  if (options.dram_chunks == 0) return absl::InvalidArgumentError("dram_chunks must be > 0");
  Replay replay(workload, options);
  RETURN_IF_ERROR(replay.Init(policy));
  return replay.Run();
}

}  // namespace strata::eviction::sim
