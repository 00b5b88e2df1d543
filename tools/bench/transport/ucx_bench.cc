// UCX data-plane benchmarks: one client stream reading from a server that
// runs in a child process (transport/testing/rma_server.h), over shared
// memory and over tcp, next to single-core memcpy of the same size.
//
//   bazel build //tools/bench/transport:ucx_bench
//   bazel-bin/tools/bench/transport/ucx_bench
//
// BM_Get: one 8 MiB get at a time (post + WaitAll), bytes/s.
// BM_Put: one put of 64 KiB, 1 MiB or 8 MiB at a time (post + WaitAll), bytes/s.
// BM_SliceGetLatency: one 256 KiB get at a time, with its completion
// callback; the p50_us / p99_us counters come from per-operation timing.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "transport/testing/rma_server.h"
#include "transport/ucx_transport.h"

namespace strata::transport {
namespace {

constexpr size_t kRegionBytes = size_t{64} << 20;
constexpr size_t kChunkBytes = size_t{8} << 20;
constexpr size_t kSliceBytes = size_t{256} << 10;
constexpr char kSharedMemory[] = "posix,sysv,cma,self";

std::byte* MapPrefaulted(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) std::abort();
  std::memset(p, 1, bytes);
  return static_cast<std::byte*>(p);
}

// One server child, client context and endpoint per transport list, kept for
// the whole run.
struct Setup {
  std::unique_ptr<testing::RmaServerProcess> server;
  std::unique_ptr<UcxContext> context;
  std::unique_ptr<Endpoint> endpoint;
  std::unique_ptr<RemoteMemory> remote;
  std::byte* local = nullptr;
};

Setup* GetSetup(benchmark::State& state, const std::string& transports) {
  static auto* setups = new std::map<std::string, Setup>();
  auto it = setups->find(transports);
  if (it != setups->end()) return &it->second;
  Setup setup;
  auto server = testing::RmaServerProcess::Spawn(transports, kRegionBytes, /*seed=*/1);
  if (!server.ok()) {
    state.SkipWithError(std::string(server.status().message()).c_str());
    return nullptr;
  }
  setup.server = std::move(*server);
  UcxOptions options;
  options.transports = transports;
  // As a Strata client does with a node: send segments as large as the
  // server receives (the server child uses the default receive segment).
  options.tcp_send_segment = UcxOptions().tcp_receive_segment;
  auto context = UcxContext::Create(options);
  if (!context.ok()) {
    state.SkipWithError(std::string(context.status().message()).c_str());
    return nullptr;
  }
  setup.context = std::move(*context);
  auto endpoint = setup.context->Connect(setup.server->worker_address());
  if (!endpoint.ok()) {
    state.SkipWithError(std::string(endpoint.status().message()).c_str());
    return nullptr;
  }
  setup.endpoint = std::move(*endpoint);
  auto remote = setup.endpoint->ImportRemote(setup.server->base(), setup.server->size(),
                                             setup.server->packed_rkey());
  if (!remote.ok()) {
    state.SkipWithError(std::string(remote.status().message()).c_str());
    return nullptr;
  }
  setup.remote = std::move(*remote);
  setup.local = MapPrefaulted(kChunkBytes);
  return &setups->emplace(transports, std::move(setup)).first->second;
}

void BM_Memcpy8MiB(benchmark::State& state) {
  std::byte* src = MapPrefaulted(kChunkBytes);
  std::byte* dst = MapPrefaulted(kChunkBytes);
  for (auto _ : state) {
    std::memcpy(dst, src, kChunkBytes);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kChunkBytes);
  munmap(src, kChunkBytes);
  munmap(dst, kChunkBytes);
}
BENCHMARK(BM_Memcpy8MiB)->UseRealTime();

// The same copy from a rotating 64 MiB source (as the gets read the server's
// 64 MiB region): the source is not cache-resident (L3 here is 32 MiB).
void BM_Memcpy8MiBFrom64MiB(benchmark::State& state) {
  std::byte* src = MapPrefaulted(kRegionBytes);
  std::byte* dst = MapPrefaulted(kChunkBytes);
  size_t chunk = 0;
  for (auto _ : state) {
    std::memcpy(dst, src + (chunk++ % (kRegionBytes / kChunkBytes)) * kChunkBytes, kChunkBytes);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kChunkBytes);
  munmap(src, kRegionBytes);
  munmap(dst, kChunkBytes);
}
BENCHMARK(BM_Memcpy8MiBFrom64MiB)->UseRealTime();

void BM_Get8MiB(benchmark::State& state, const std::string& transports) {
  Setup* setup = GetSetup(state, transports);
  if (setup == nullptr) return;
  size_t chunk = 0;
  for (auto _ : state) {
    const uint64_t addr = setup->remote->base() + (chunk++ % (kRegionBytes / kChunkBytes)) * kChunkBytes;
    absl::Status status = setup->endpoint->PostGet({setup->local, kChunkBytes}, *setup->remote, addr);
    if (status.ok()) status = setup->endpoint->WaitAll(absl::Seconds(30));
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
  }
  state.SetBytesProcessed(state.iterations() * kChunkBytes);
  state.SetLabel(setup->context->transports_in_use());
}
BENCHMARK_CAPTURE(BM_Get8MiB, shm, std::string(kSharedMemory))->UseRealTime();
BENCHMARK_CAPTURE(BM_Get8MiB, tcp, std::string("tcp"))->UseRealTime();

// One put of state.range(0) bytes at a time (post + WaitAll: the put and the
// flush that confirms the bytes are in the server's memory), bytes/s.
void BM_Put(benchmark::State& state, const std::string& transports) {
  Setup* setup = GetSetup(state, transports);
  if (setup == nullptr) return;
  const size_t bytes = static_cast<size_t>(state.range(0));
  size_t chunk = 0;
  for (auto _ : state) {
    const uint64_t addr = setup->remote->base() + (chunk++ % (kRegionBytes / bytes)) * bytes;
    absl::Status status = setup->endpoint->PostPut({setup->local, bytes}, *setup->remote, addr);
    if (status.ok()) status = setup->endpoint->WaitAll(absl::Seconds(30));
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetLabel(setup->context->transports_in_use());
}
BENCHMARK_CAPTURE(BM_Put, shm, std::string(kSharedMemory))
    ->Arg(64 << 10)->Arg(1 << 20)->Arg(8 << 20)->UseRealTime();
BENCHMARK_CAPTURE(BM_Put, tcp, std::string("tcp"))
    ->Arg(64 << 10)->Arg(1 << 20)->Arg(8 << 20)->UseRealTime();

void BM_SliceGetLatency(benchmark::State& state, const std::string& transports) {
  Setup* setup = GetSetup(state, transports);
  if (setup == nullptr) return;
  std::vector<double> micros;
  micros.reserve(1 << 16);
  size_t slice = 0;
  for (auto _ : state) {
    const uint64_t addr =
        setup->remote->base() + (slice++ * 37 % (kRegionBytes / kSliceBytes)) * kSliceBytes;
    absl::Notification done;
    absl::Status result;
    const absl::Time start = absl::Now();
    absl::Status status = setup->endpoint->PostGet(
        {setup->local, kSliceBytes}, *setup->remote, addr, [&](absl::Status s) {
          result = s;
          done.Notify();
        });
    if (status.ok()) {
      done.WaitForNotification();
      status = result;
    }
    const double elapsed = absl::ToDoubleMicroseconds(absl::Now() - start);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
    micros.push_back(elapsed);
    state.SetIterationTime(elapsed / 1e6);
  }
  (void)setup->endpoint->WaitAll(absl::Seconds(30));
  std::sort(micros.begin(), micros.end());
  auto percentile = [&](double p) {
    return micros.empty() ? 0.0 : micros[std::min(micros.size() - 1,
                                                  static_cast<size_t>(p * micros.size()))];
  };
  state.counters["p50_us"] = percentile(0.50);
  state.counters["p99_us"] = percentile(0.99);
  state.SetBytesProcessed(state.iterations() * kSliceBytes);
}
BENCHMARK_CAPTURE(BM_SliceGetLatency, shm, std::string(kSharedMemory))->UseManualTime();
BENCHMARK_CAPTURE(BM_SliceGetLatency, tcp, std::string("tcp"))->UseManualTime();

}  // namespace
}  // namespace strata::transport
