// An in-process model of one store node's DRAM tier over an NVMe tier that
// holds every chunk ever saved, replaying a multi-turn conversation trace
// through the eviction/ policy objects themselves (CreatePolicy's "lru",
// "prefix-lru", "scheduler"; BeladyPolicy), with a scheduler model that sends
// hints and prefetches. For sweeps: no store, no I/O, no threads.
#ifndef STRATA_EVICTION_SIM_SIMULATOR_H_
#define STRATA_EVICTION_SIM_SIMULATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "eviction/eviction_policy.h"
#include "eviction/sim/trace.h"

namespace strata::eviction::sim {

struct WorkloadOptions {
  uint32_t chunk_tokens = 64;  // tokens per chunk; only full chunks are kept
  // The serving engine: one FIFO queue drained by one executor at these
  // aggregate rates. A job's service time is prompt_tokens / prefill rate +
  // response_tokens / decode rate, independent of the cache, so every policy
  // sees the same job order and times.
  double prefill_tokens_per_s = 4000;
  double decode_tokens_per_s = 1500;
};

// One turn as the engine runs it.
struct Job {
  uint32_t session = 0;
  uint32_t turn = 0;
  double arrival_s = 0;
  double start_s = 0;
  double finish_s = 0;
  // The job reads chunks [0, read_chunks) of its session's chain (the cached
  // context) and saves chunks [read_chunks, total_chunks) (its new tokens).
  uint32_t read_chunks = 0;
  uint32_t total_chunks = 0;
  // Jobs [index + 1, queue_end) were waiting in the queue when it started.
  size_t queue_end = 0;
};

// A trace turned into jobs, chunk chains and the reference sequence.
// Immutable after Build; safe for concurrent use.
class Workload {
 public:
  // InvalidArgument for a trace that fails ValidateTrace or bad options.
  static absl::StatusOr<Workload> Build(const Trace& trace, const WorkloadOptions& options);

  const std::vector<Job>& jobs() const { return jobs_; }
  // Id of chunk `index` of the chain of `job`'s session: chunks that lie
  // wholly inside the system prompt are shared by every session using it.
  EntryId ChunkAt(const Job& job, uint32_t index) const;
  // Every chunk reference (reads, then saves, of each job in order): the
  // future that BeladyPolicy is built with.
  const std::vector<EntryId>& references() const { return references_; }
  // Distinct chunks referenced.
  uint64_t working_set_chunks() const { return working_set_; }
  const WorkloadOptions& options() const { return options_; }
  // Mean number of jobs waiting when a job starts.
  double mean_queue_length() const;

 private:
  WorkloadOptions options_;
  std::vector<uint32_t> system_of_session_;
  std::vector<uint32_t> system_tokens_;
  std::vector<Job> jobs_;
  std::vector<EntryId> references_;
  uint64_t working_set_ = 0;
};

// The scheduler model, for the policies that take hints. When job k starts,
// the first `lookahead_jobs` of the jobs then waiting become the hint set
// (every chunk each reads, needed_at = the job's start, which FIFO order and
// cache-independent service times make exact). With prefetch on, chunks of
// the first `prefetch_jobs` of them that are on NVMe only are promoted to
// DRAM in queue order while job k runs, at most `prefetch_chunks` per round,
// and only while the policy's victim is needed strictly later than the chunk
// brought in (free space needs no victim).
struct SimOptions {
  uint64_t dram_chunks = 0;  // DRAM capacity; REQUIRES > 0
  size_t lookahead_jobs = 16;
  size_t prefetch_jobs = 8;
  uint64_t prefetch_chunks = 0;  // 0: half of dram_chunks
};

// Counters of one run. Reads are the chunk reads of jobs' cached context.
struct SimResult {
  std::string policy;
  uint64_t dram_chunks = 0;
  uint64_t reads = 0;
  uint64_t dram_hits = 0;
  uint64_t nvme_hits = 0;  // promoted to DRAM unless every slot was pinned
  uint64_t misses = 0;     // in no tier: computed, then saved
  uint64_t saves = 0;      // new chunks written to DRAM (and NVMe)
  uint64_t evictions = 0;
  uint64_t prefetched = 0;
  uint64_t prefetch_used = 0;     // read before being evicted
  uint64_t prefetch_wasted = 0;   // evicted before any read
  uint64_t prefetch_pending = 0;  // still unread in DRAM at the end
  double dram_hit_rate() const { return reads ? double(dram_hits) / reads : 0; }
  // used / (used + wasted); pending ones are not counted. 0 with none.
  double prefetch_precision() const {
    const uint64_t done = prefetch_used + prefetch_wasted;
    return done ? double(prefetch_used) / done : 0;
  }
};

// Policies: "lru", "prefix-lru" (no hints), "scheduler-noprefetch" (the
// "scheduler" policy with hints, no prefetch), "scheduler" (hints and
// prefetch), "belady" (BeladyPolicy over references(), demand only).
// InvalidArgument for an unknown policy or dram_chunks == 0.
absl::StatusOr<SimResult> Simulate(const Workload& workload, std::string_view policy,
                                   const SimOptions& options);

}  // namespace strata::eviction::sim

#endif  // STRATA_EVICTION_SIM_SIMULATOR_H_
