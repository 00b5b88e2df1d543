// Get latency of a store engine while schedulers flood it with hint sets.
//
// One chain of --chain chunks (4 KiB each, DRAM only). Phase "quiet": one
// thread gets random chunks of the chain for --seconds. Phase "storm": the
// same, while --schedulers threads each replace their hint set again and
// again with --jobs jobs naming random chunks of the chain (so every set
// names the whole chain). Prints get latency percentiles of both phases,
// the hint calls made and their duration, and the process's peak RSS.
//
//   bazel run -c opt //tools/bench/store:hint_storm -- --chain 20000 --jobs 4096
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "store/engine.h"
#include "store/engine_test_util.h"

namespace strata::store {
namespace {

using testing::Payload;
using testing::SmallSpec;
using testing::TestKey;

long Flag(int argc, char** argv, const char* name, long def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string("--") + name == argv[i]) return std::atol(argv[i + 1]);
  }
  return def;
}

long PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

struct Latencies {
  std::vector<double> us;
  double Pct(double p) {
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  }
};

Latencies GetLoop(Engine& engine, uint32_t ns, long chain, absl::Duration d) {
  Latencies l;
  std::mt19937_64 rng(7);
  std::vector<std::byte> out(4096);
  const absl::Time end = absl::Now() + d;
  while (absl::Now() < end) {
    const absl::Time t0 = absl::Now();
    absl::Status s = engine.Get(ns, TestKey(rng() % chain), out);
    l.us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (!s.ok()) {
      std::fprintf(stderr, "get failed: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  return l;
}

int Main(int argc, char** argv) {
  const long chain = Flag(argc, argv, "chain", 20000);
  const long jobs = Flag(argc, argv, "jobs", 4096);
  const long schedulers = Flag(argc, argv, "schedulers", 8);
  const long seconds = Flag(argc, argv, "seconds", 5);
  EngineOptions o;
  o.dram_bytes = (chain + 16) * 4096;
  o.dram_policy = "scheduler";
  auto engine_or = Engine::Open(o);
  if (!engine_or.ok()) {
    std::fprintf(stderr, "%s\n", engine_or.status().ToString().c_str());
    return 1;
  }
  Engine& engine = **engine_or;
  const uint32_t ns = engine.RegisterNamespace(SmallSpec(4), "bench").value();
  for (long i = 0; i < chain; ++i) {
    std::optional<ChunkKey> parent;
    if (i > 0) parent = TestKey(i - 1);
    if (!engine.Put(ns, TestKey(i), parent, Payload(TestKey(i), 4096)).ok()) return 1;
  }
  std::printf("chain of %ld chunks; %ld schedulers x %ld jobs; %ld s per phase; rss %ld MiB\n",
              chain, schedulers, jobs, seconds, PeakRssMiB());

  Latencies quiet = GetLoop(engine, ns, chain, absl::Seconds(seconds));

  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::atomic<long> max_call_us{0};
  std::atomic<long> total_call_us{0};
  std::vector<std::thread> threads;
  for (long s = 0; s < schedulers; ++s) {
    threads.emplace_back([&, s] {
      std::mt19937_64 rng(s + 1);
      std::vector<JobHint> set(jobs);
      while (!stop.load()) {
        for (long j = 0; j < jobs; ++j) {
          set[j].last_key = TestKey(rng() % chain);
          set[j].queue_position = static_cast<uint32_t>(j);
        }
        const absl::Time t0 = absl::Now();
        absl::Status st = engine.SetHints("sched-" + std::to_string(s), ns, set, absl::Seconds(60));
        const long us = static_cast<long>(absl::ToInt64Microseconds(absl::Now() - t0));
        if (!st.ok()) {
          std::fprintf(stderr, "hint failed: %s\n", st.ToString().c_str());
          std::exit(1);
        }
        ++calls;
        total_call_us += us;
        long m = max_call_us.load();
        while (us > m && !max_call_us.compare_exchange_weak(m, us)) {
        }
      }
    });
  }
  Latencies storm = GetLoop(engine, ns, chain, absl::Seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();

  std::printf("%-6s %10s %10s %10s %10s %10s\n", "phase", "gets", "p50 us", "p99 us",
              "p999 us", "max us");
  for (auto [name, l] : {std::pair{"quiet", &quiet}, std::pair{"storm", &storm}}) {
    const size_t n = l->us.size();
    std::printf("%-6s %10zu %10.1f %10.1f %10.1f %10.1f\n", name, n, l->Pct(0.5), l->Pct(0.99),
                l->Pct(0.999), l->Pct(1.0));
  }
  std::printf("hint calls %ld, mean %.1f ms, max %.1f ms; peak rss %ld MiB\n", calls.load(),
              calls.load() ? total_call_us.load() / 1000.0 / calls.load() : 0.0,
              max_call_us.load() / 1000.0, PeakRssMiB());
  return 0;
}

}  // namespace
}  // namespace strata::store

int main(int argc, char** argv) { return strata::store::Main(argc, argv); }
