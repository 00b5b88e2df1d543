#include "eviction/sim/simulator.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "eviction/sim/trace.h"
#include "gtest/gtest.h"

namespace strata::eviction::sim {
namespace {

const std::vector<std::string> kPolicies = {"lru", "prefix-lru", "scheduler-noprefetch",
                                            "scheduler", "belady"};

// One session, system prompt of 2 chunks, two turns of one chunk of prompt
// and one of response each (chunks of 64 tokens).
Trace TinyTrace() {
  Trace trace;
  trace.systems.push_back({128});
  Session session;
  session.turns.push_back({0, 64, 64});
  session.turns.push_back({5, 64, 64});
  trace.sessions.push_back(session);
  return trace;
}

Workload Generated(uint32_t sessions, double rate) {
  GeneratorOptions g;
  g.seed = 42;
  g.sessions = sessions;
  g.arrival_rate = rate;
  auto trace = GenerateTrace(g);
  EXPECT_TRUE(trace.ok());
  auto workload = Workload::Build(*trace, WorkloadOptions{});
  EXPECT_TRUE(workload.ok()) << workload.status();
  return *std::move(workload);
}

TEST(WorkloadTest, TinyTraceJobsAndChunks) {
  auto w = Workload::Build(TinyTrace(), WorkloadOptions{});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->jobs().size(), 2u);
  const Job& first = w->jobs()[0];
  const Job& second = w->jobs()[1];
  EXPECT_EQ(first.read_chunks, 2u);   // the system prompt
  EXPECT_EQ(first.total_chunks, 4u);  // + prompt + response
  EXPECT_EQ(second.read_chunks, 4u);
  EXPECT_EQ(second.total_chunks, 6u);
  // Service: 64 / 4000 + 64 / 1500 s; the second turn arrives 5 s later.
  EXPECT_DOUBLE_EQ(first.finish_s, 64.0 / 4000 + 64.0 / 1500);
  EXPECT_DOUBLE_EQ(second.arrival_s, first.finish_s + 5);
  EXPECT_EQ(first.queue_end, 1u);  // nobody waiting
  EXPECT_EQ(w->references().size(), 10u);
  EXPECT_EQ(w->working_set_chunks(), 6u);
  // System chunks are shared ids; the session's own differ.
  EXPECT_EQ(w->ChunkAt(first, 1), w->ChunkAt(second, 1));
  EXPECT_NE(w->ChunkAt(first, 2), w->ChunkAt(first, 1));
}

TEST(WorkloadTest, FifoScheduleInvariants) {
  const Workload w = Generated(300, 2.0);
  const std::vector<Job>& jobs = w.jobs();
  ASSERT_GT(jobs.size(), 300u);
  for (size_t k = 0; k < jobs.size(); ++k) {
    EXPECT_GE(jobs[k].start_s, jobs[k].arrival_s);
    EXPECT_GT(jobs[k].queue_end, k);
    if (k > 0) {
      EXPECT_GE(jobs[k].arrival_s, jobs[k - 1].arrival_s);
      EXPECT_GE(jobs[k].start_s, jobs[k - 1].finish_s);
    }
    for (size_t j = k + 1; j < jobs[k].queue_end; ++j) {
      EXPECT_LE(jobs[j].arrival_s, jobs[k].start_s);
    }
    if (jobs[k].queue_end < jobs.size()) {
      EXPECT_GT(jobs[jobs[k].queue_end].arrival_s, jobs[k].start_s);
    }
  }
  EXPECT_GT(w.mean_queue_length(), 0.5);  // 2 sessions/s loads the engine
}

TEST(SimulateTest, TinyTraceCounts) {
  auto w = Workload::Build(TinyTrace(), WorkloadOptions{});
  ASSERT_TRUE(w.ok());
  for (const std::string& policy : kPolicies) {
    auto r = Simulate(*w, policy, {.dram_chunks = 100});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->policy, policy);
    EXPECT_EQ(r->reads, 6u) << policy;
    EXPECT_EQ(r->misses, 2u) << policy;  // the system prompt, first time
    EXPECT_EQ(r->dram_hits, 4u) << policy;
    EXPECT_EQ(r->saves, 4u) << policy;
    EXPECT_EQ(r->evictions, 0u) << policy;
  }
  // DRAM of 3 chunks: the second turn's 4 reads cannot all stay resident.
  auto lru = Simulate(*w, "lru", {.dram_chunks = 3});
  ASSERT_TRUE(lru.ok());
  EXPECT_EQ(lru->reads, lru->dram_hits + lru->nvme_hits + lru->misses);
  EXPECT_GT(lru->nvme_hits, 0u);
}

TEST(SimulateTest, BadArgumentsAreInvalidArgument) {
  auto w = Workload::Build(TinyTrace(), WorkloadOptions{});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(Simulate(*w, "fifo", {.dram_chunks = 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Simulate(*w, "lru", {.dram_chunks = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Trace empty_turns = TinyTrace();
  empty_turns.sessions[0].turns.clear();
  EXPECT_EQ(Workload::Build(empty_turns, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SimulateTest, PoliciesOnAGeneratedTrace) {
  const Workload w = Generated(300, 2.0);
  const uint64_t dram = w.working_set_chunks() / 10;
  std::vector<SimResult> results;
  for (const std::string& policy : kPolicies) {
    auto r = Simulate(w, policy, {.dram_chunks = dram});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->reads, r->dram_hits + r->nvme_hits + r->misses) << policy;
    EXPECT_EQ(r->prefetched, r->prefetch_used + r->prefetch_wasted + r->prefetch_pending) << policy;
    results.push_back(*r);
  }
  const SimResult& lru = results[0];
  const SimResult& prefix = results[1];
  const SimResult& hinted = results[2];
  const SimResult& scheduler = results[3];
  const SimResult& belady = results[4];
  for (const SimResult& r : results) {
    EXPECT_EQ(r.reads, lru.reads) << r.policy;
    EXPECT_EQ(r.misses, lru.misses) << r.policy;  // cold misses only
  }
  // Belady is optimal among demand policies.
  EXPECT_GE(belady.dram_hits, lru.dram_hits);
  EXPECT_GE(belady.dram_hits, prefix.dram_hits);
  EXPECT_GE(belady.dram_hits, hinted.dram_hits);
  // Only "scheduler" prefetches, and its prefetches mostly get used.
  EXPECT_EQ(lru.prefetched + prefix.prefetched + hinted.prefetched + belady.prefetched, 0u);
  EXPECT_GT(scheduler.prefetched, 0u);
  EXPECT_GT(scheduler.prefetch_precision(), 0.5);
  EXPECT_GT(scheduler.dram_hits, lru.dram_hits);
}

}  // namespace
}  // namespace strata::eviction::sim
