// Rates of the eviction policies with 1M resident entries, on the real clock.
// Workload: key chains of kChainLength chunks (entry i's parent is i - 1
// within its chain); "lru" ignores the parents.
//
//   Insert:       1M OnInsert into an empty policy; also reports the heap
//                 bytes per entry the filled policy holds (glibc mallinfo2).
//   Access:       OnAccess of uniformly random resident entries.
//   PickRemove:   PickVictim (nothing pinned) + OnRemove of the victim; the
//                 policy is refilled, untimed, when it runs dry.
//   PickPinned:   PickVictim when the 1000 first candidates are pinned.
#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "benchmark/benchmark.h"
#include "eviction/eviction_policy.h"
#include "store/common/clock.h"

namespace strata::eviction {
namespace {

constexpr EntryId kEntries = 1 << 20;
constexpr EntryId kChainLength = 16;

std::unique_ptr<EvictionPolicy> Make(const char* name) {
  auto policy = CreatePolicy(name, Clock::Real());
  if (!policy.ok()) std::abort();
  return *std::move(policy);
}

// Inserts ids [first, first + kEntries) as chains of kChainLength.
void Fill(EvictionPolicy& policy, EntryId first) {
  for (EntryId i = 0; i < kEntries; ++i) {
    policy.OnInsert(first + i, i % kChainLength == 0 ? kNoEntry : first + i - 1);
  }
}

// Bytes allocated by malloc, from the heap or mmap()ed.
size_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

void BM_Insert(benchmark::State& state, const char* name) {
  double bytes_per_entry = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const size_t before = HeapInUse();
    auto policy = Make(name);
    state.ResumeTiming();
    Fill(*policy, 0);
    state.PauseTiming();
    bytes_per_entry = static_cast<double>(HeapInUse() - before) / kEntries;
    policy.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kEntries);
  state.counters["bytes_per_entry"] = bytes_per_entry;
}

void BM_Access(benchmark::State& state, const char* name) {
  auto policy = Make(name);
  Fill(*policy, 0);
  std::mt19937_64 rng(1);
  std::vector<EntryId> ids(kEntries);
  for (EntryId& id : ids) id = rng() % kEntries;
  size_t i = 0;
  for (auto _ : state) {
    policy->OnAccess(ids[i]);
    i = (i + 1) % ids.size();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PickRemove(benchmark::State& state, const char* name) {
  auto policy = Make(name);
  EntryId next = 0;
  Fill(*policy, next);
  next += kEntries;
  for (auto _ : state) {
    EntryId victim = policy->PickVictim([](EntryId) { return true; });
    if (victim == kNoEntry) {
      state.PauseTiming();
      Fill(*policy, next);
      next += kEntries;
      state.ResumeTiming();
      victim = policy->PickVictim([](EntryId) { return true; });
    }
    policy->OnRemove(victim);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PickPinned(benchmark::State& state, const char* name) {
  auto policy = Make(name);
  Fill(*policy, 0);
  absl::flat_hash_set<EntryId> pinned;
  policy->PickVictim([&](EntryId id) {
    pinned.insert(id);
    return pinned.size() > 1000;
  });
  for (auto _ : state) {
    benchmark::DoNotOptimize(policy->PickVictim([&](EntryId id) { return !pinned.contains(id); }));
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_Insert, lru, "lru")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Insert, prefix_lru, "prefix-lru")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Access, lru, "lru");
BENCHMARK_CAPTURE(BM_Access, prefix_lru, "prefix-lru");
BENCHMARK_CAPTURE(BM_PickRemove, lru, "lru");
BENCHMARK_CAPTURE(BM_PickRemove, prefix_lru, "prefix-lru");
BENCHMARK_CAPTURE(BM_PickPinned, lru, "lru");
BENCHMARK_CAPTURE(BM_PickPinned, prefix_lru, "prefix-lru");

}  // namespace
}  // namespace strata::eviction
