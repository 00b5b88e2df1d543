// kv_sim: replays a multi-turn conversation trace (generated from a seed or
// read from a file) against a DRAM tier of several sizes over an NVMe tier
// holding everything, once per eviction policy, and prints DRAM hit rates,
// NVMe hits, misses and prefetch precision as Markdown tables.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eviction/sim/simulator.h"
#include "eviction/sim/trace.h"
#include "tools/cli/flags.h"

namespace strata::eviction::sim {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

double Pct(uint64_t part, uint64_t whole) { return whole ? 100.0 * part / whole : 0; }

int Main(int argc, char** argv) {
  GeneratorOptions gen;
  WorkloadOptions work;
  SimOptions sim;
  std::string trace_path;
  std::string write_trace;
  std::string dram_percents = "5,10,15,20,25,30,40,50";
  std::string policies_text = "lru,prefix-lru,scheduler-noprefetch,scheduler,belady";
  int64_t seed = 1;
  int64_t sessions = gen.sessions;
  int64_t chunk_tokens = work.chunk_tokens;
  int64_t lookahead = static_cast<int64_t>(sim.lookahead_jobs);
  int64_t prefetch_jobs = static_cast<int64_t>(sim.prefetch_jobs);
  double prefetch_fraction = 0.5;
  bool detail = false;
  cli::Bytes chunk_bytes{8 << 20};

  cli::FlagSet flags(
      "kv_sim [flags]\n\n"
      "Replays a multi-turn conversation trace against DRAM sizes of --dram_percent of the\n"
      "working set (NVMe holds everything) with each policy of --policies, driving the\n"
      "eviction/ policy objects themselves. Trace format: eviction/README.md.\n");
  flags.Add("trace", "read this trace file instead of generating one", &trace_path);
  flags.Add("write_trace", "write the trace used to this file", &write_trace);
  flags.Add("seed", "generator seed", &seed);
  flags.Add("sessions", "generator: conversations", &sessions);
  flags.Add("arrival_rate", "generator: conversations per second (Poisson)", &gen.arrival_rate);
  flags.Add("mean_turns", "generator: mean turns per conversation", &gen.mean_turns);
  flags.Add("mean_think_s", "generator: mean think time between turns, seconds", &gen.mean_think_s);
  flags.Add("prompt_median", "generator: median user prompt tokens", &gen.prompt_median);
  flags.Add("response_median", "generator: median response tokens", &gen.response_median);
  flags.Add("chunk_tokens", "tokens per chunk", &chunk_tokens);
  flags.Add("prefill_tps", "engine model: prefill tokens/s", &work.prefill_tokens_per_s);
  flags.Add("decode_tps", "engine model: aggregate decode tokens/s", &work.decode_tokens_per_s);
  flags.Add("dram_percent", "DRAM sizes, % of the working set, comma-separated", &dram_percents);
  flags.Add("policies", "policies to replay, comma-separated", &policies_text);
  flags.Add("lookahead_jobs", "scheduler: waiting jobs sent as hints", &lookahead);
  flags.Add("prefetch_jobs", "scheduler: waiting jobs whose chunks are prefetched", &prefetch_jobs);
  flags.Add("prefetch_fraction", "scheduler: chunks prefetched per job start, x DRAM size",
            &prefetch_fraction);
  flags.Add("chunk_bytes", "bytes per chunk, for the NVMe bytes read column", &chunk_bytes);
  flags.Add("detail", "also print every counter per run", &detail);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto positional = flags.Parse(args);
  if (!positional.ok()) {
    std::fprintf(stderr, "kv_sim: %s\n%s", std::string(positional.status().message()).c_str(),
                 flags.Help().c_str());
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (!positional->empty() || sessions <= 0 || chunk_tokens <= 0 || lookahead < 0 ||
      prefetch_jobs < 0 || !(prefetch_fraction >= 0)) {
    std::fprintf(stderr, "kv_sim: bad arguments (see --help)\n");
    return kExitUsage;
  }
  std::vector<double> percents;
  for (absl::string_view p : absl::StrSplit(dram_percents, ',', absl::SkipEmpty())) {
    double v;
    if (!absl::SimpleAtod(p, &v) || !(v > 0)) {
      std::fprintf(stderr, "kv_sim: bad --dram_percent \"%s\"\n", std::string(p).c_str());
      return kExitUsage;
    }
    percents.push_back(v);
  }
  std::vector<std::string> policies = absl::StrSplit(policies_text, ',', absl::SkipEmpty());

  gen.seed = static_cast<uint64_t>(seed);
  gen.sessions = static_cast<uint32_t>(sessions);
  work.chunk_tokens = static_cast<uint32_t>(chunk_tokens);
  sim.lookahead_jobs = static_cast<size_t>(lookahead);
  sim.prefetch_jobs = static_cast<size_t>(prefetch_jobs);

  absl::StatusOr<Trace> trace = trace_path.empty() ? GenerateTrace(gen) : ReadTraceFile(trace_path);
  if (!trace.ok()) {
    std::fprintf(stderr, "kv_sim: %s\n", trace.status().ToString().c_str());
    return kExitFailure;
  }
  if (!write_trace.empty()) {
    if (absl::Status s = WriteTraceFile(*trace, write_trace); !s.ok()) {
      std::fprintf(stderr, "kv_sim: %s\n", s.ToString().c_str());
      return kExitFailure;
    }
  }
  auto workload = Workload::Build(*trace, work);
  if (!workload.ok()) {
    std::fprintf(stderr, "kv_sim: %s\n", workload.status().ToString().c_str());
    return kExitFailure;
  }
  const uint64_t working_set = workload->working_set_chunks();
  uint64_t reads = 0;
  for (const Job& job : workload->jobs()) reads += job.read_chunks;
  std::printf(
      "trace: %zu sessions, %zu turns (jobs), %llu chunks of %u tokens in the working set, "
      "%llu chunk reads, %zu references; mean queue at a job start %.2f jobs\n\n",
      trace->sessions.size(), workload->jobs().size(), static_cast<unsigned long long>(working_set),
      work.chunk_tokens, static_cast<unsigned long long>(reads), workload->references().size(),
      workload->mean_queue_length());

  std::vector<std::vector<SimResult>> results;  // [percent][policy]
  const absl::Time began = absl::Now();
  for (double percent : percents) {
    SimOptions options = sim;
    options.dram_chunks = std::max<uint64_t>(1, std::llround(working_set * percent / 100));
    options.prefetch_chunks =
        std::max<uint64_t>(1, std::llround(options.dram_chunks * prefetch_fraction));
    std::vector<SimResult> row;
    for (const std::string& policy : policies) {
      auto result = Simulate(*workload, policy, options);
      if (!result.ok()) {
        std::fprintf(stderr, "kv_sim: %s\n", result.status().ToString().c_str());
        return kExitFailure;
      }
      row.push_back(*result);
    }
    results.push_back(std::move(row));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - began);

  // DRAM hit rate (% of chunk reads) per policy and DRAM size.
  std::string header = "| DRAM % of working set | DRAM chunks |";
  std::string rule = "|---|---|";
  for (const std::string& policy : policies) {
    absl::StrAppend(&header, " ", policy, " |");
    absl::StrAppend(&rule, "---|");
  }
  int scheduler = -1;
  for (size_t i = 0; i < policies.size(); ++i) {
    if (policies[i] == "scheduler") scheduler = static_cast<int>(i);
  }
  if (scheduler >= 0) {
    absl::StrAppend(&header, " scheduler prefetch precision |");
    absl::StrAppend(&rule, "---|");
  }
  std::printf("DRAM hit rate, %% of chunk reads:\n\n%s\n%s\n", header.c_str(), rule.c_str());
  for (size_t p = 0; p < percents.size(); ++p) {
    std::string line = absl::StrFormat("| %g | %d |", percents[p], results[p][0].dram_chunks);
    for (const SimResult& r : results[p]) {
      absl::StrAppend(&line, absl::StrFormat(" %.1f |", 100 * r.dram_hit_rate()));
    }
    if (scheduler >= 0) {
      const SimResult& r = results[p][scheduler];
      absl::StrAppend(&line, absl::StrFormat(" %.1f (%d of %d) |", 100 * r.prefetch_precision(),
                                             r.prefetch_used, r.prefetch_used + r.prefetch_wasted));
    }
    std::printf("%s\n", line.c_str());
  }
  if (detail) {
    std::printf(
        "\n| DRAM %% | policy | reads | DRAM hit %% | NVMe hit %% | miss %% | NVMe GiB read | "
        "evictions | prefetched | used | wasted | pending |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t p = 0; p < percents.size(); ++p) {
      for (const SimResult& r : results[p]) {
        const double nvme_gib =
            double(r.nvme_hits + r.prefetched) * chunk_bytes.value / double(1ull << 30);
        std::printf(
            "| %g | %s | %llu | %.1f | %.1f | %.2f | %.1f | %llu | %llu | %llu | %llu | "
            "%llu |\n",
            percents[p], r.policy.c_str(), static_cast<unsigned long long>(r.reads),
            Pct(r.dram_hits, r.reads), Pct(r.nvme_hits, r.reads), Pct(r.misses, r.reads), nvme_gib,
            static_cast<unsigned long long>(r.evictions),
            static_cast<unsigned long long>(r.prefetched),
            static_cast<unsigned long long>(r.prefetch_used),
            static_cast<unsigned long long>(r.prefetch_wasted),
            static_cast<unsigned long long>(r.prefetch_pending));
      }
    }
  }
  std::printf("\n%zu runs in %.1f s\n", percents.size() * policies.size(), seconds);
  return 0;
}

}  // namespace
}  // namespace strata::eviction::sim

int main(int argc, char** argv) { return strata::eviction::sim::Main(argc, argv); }
