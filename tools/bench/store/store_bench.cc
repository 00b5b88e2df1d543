// Benchmarks of the store engine: index rates, bytes per index entry, DRAM
// put/get throughput next to memcpy, and restart (index rebuild) time.
//
//   bazel run //tools/bench/store:store_bench -- --benchmark_min_time=0.5
#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "store/chunk_index.h"
#include "store/common/checksum.h"
#include "store/common/checksum_internal.h"
#include "store/engine.h"
#include "store/engine_test_util.h"

namespace strata::store {
namespace {

using testing::FillPayload;
using testing::TestKey;

// A namespace whose chunks are exactly `bytes` long (bytes a multiple of 256).
NamespaceSpec SpecOfBytes(uint64_t bytes) {
  NamespaceSpec spec;
  spec.model_id = "bench";
  spec.num_layers = 1;
  spec.num_kv_heads = 1;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = static_cast<uint32_t>(bytes / 256);
  return spec;
}

std::unique_ptr<Engine> OpenEngine(EngineOptions o) {
  o.reap_interval = absl::ZeroDuration();
  auto engine = Engine::Open(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(engine.status().message()).c_str());
    std::abort();
  }
  return *std::move(engine);
}

void BM_IndexInsert(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<ChunkKey> keys;
  for (int64_t i = 0; i < n; ++i) keys.push_back(TestKey(i));
  for (auto _ : state) {
    ChunkIndex index;
    for (const ChunkKey& k : keys) benchmark::DoNotOptimize(index.Insert(k));
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_IndexInsert)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

void BM_IndexLookup(benchmark::State& state) {
  const int64_t n = state.range(0);
  ChunkIndex index;
  std::vector<ChunkKey> keys;
  for (int64_t i = 0; i < n; ++i) {
    keys.push_back(TestKey(i));
    index.Insert(keys.back());
  }
  std::mt19937_64 rng(1);
  std::vector<uint32_t> order(1 << 16);
  for (auto& o : order) o = static_cast<uint32_t>(rng() % n);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(index.Find(keys[order[i++ & 0xffff]]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IndexLookup)->Arg(1 << 20);

// Heap bytes per committed chunk: index entry, hash slot and the DRAM tier's
// policy state (payloads live in the mmap'd pool, outside the heap).
void BM_BytesPerIndexEntry(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::string policy = state.range(1) == 0 ? "lru" : "prefix-lru";
  for (auto _ : state) {
    EngineOptions o;
    o.dram_bytes = static_cast<uint64_t>(n) * 256;
    o.dram_policy = policy;
    auto engine = OpenEngine(o);
    const uint32_t ns = engine->RegisterNamespace(SpecOfBytes(256), "bench").value();
    std::vector<std::byte> payload(256);
    const size_t before = mallinfo2().uordblks;
    for (int64_t i = 0; i < n; ++i) {
      FillPayload(TestKey(i), payload);
      std::optional<ChunkKey> parent;
      if (i % 16 != 0) parent = TestKey(i - 1);  // chains of 16 chunks
      if (!engine->Put(ns, TestKey(i), parent, payload).ok()) std::abort();
    }
    const size_t after = mallinfo2().uordblks;
    state.counters["bytes_per_entry"] = static_cast<double>(after - before) / n;
    state.counters["index_only_bytes_per_entry"] =
        static_cast<double>(engine->Stats().index_memory_bytes) / n;
  }
}
BENCHMARK(BM_BytesPerIndexEntry)
    ->Args({1 << 20, 0})
    ->Args({1 << 20, 1})
    ->ArgNames({"entries", "prefix_lru"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// Put through the engine: BeginPut, copy into the slot, checksum, commit.
// Keys cycle so that the pool (64 chunks) keeps evicting.
void BM_DramPut(benchmark::State& state) {
  const uint64_t size = state.range(0);
  EngineOptions o;
  o.dram_bytes = 64 * size;
  auto engine = OpenEngine(o);
  const uint32_t ns = engine->RegisterNamespace(SpecOfBytes(size), "bench").value();
  std::vector<std::byte> payload(size);
  FillPayload(TestKey(7), payload);
  uint64_t i = 0;
  for (auto _ : state) {
    if (!engine->Put(ns, TestKey(i++), std::nullopt, payload).ok()) std::abort();
  }
  state.SetBytesProcessed(state.iterations() * size);
}
BENCHMARK(BM_DramPut)->Arg(256 << 10)->Arg(8 << 20)->UseRealTime();

// A put of a tenant at its DRAM quota (64 chunks of 4 KiB): each one
// evicts the tenant's own least recently used chunk, looked for in the
// policy's order past `others` chunks of another tenant that are older. The
// cost of restricting eviction to the tenant grows with them.
void BM_QuotaPut(benchmark::State& state) {
  const uint64_t size = 4096;
  const int64_t others = state.range(0);
  EngineOptions o;
  o.dram_bytes = (others + 128) * size;
  o.dram_policy = state.range(1) != 0 ? "prefix-lru" : "lru";
  auto engine = OpenEngine(o);
  const uint32_t other = engine->RegisterNamespace(SpecOfBytes(size), "other").value();
  const uint32_t ns = engine->RegisterNamespace(SpecOfBytes(size), "bench").value();
  engine->SetTenantQuotas({{"bench", TenantQuota{64 * size, 0, 0}}});
  std::vector<std::byte> payload(size);
  FillPayload(TestKey(7), payload);
  for (int64_t i = 0; i < others; ++i) {
    if (!engine->Put(other, TestKey(i, 1), std::nullopt, payload).ok()) std::abort();
  }
  uint64_t i = 0;
  for (auto _ : state) {
    if (!engine->Put(ns, TestKey(i++), std::nullopt, payload).ok()) std::abort();
  }
  if (engine->GetTenantStats("bench").dram_bytes > 64 * size) std::abort();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_QuotaPut)
    ->Args({0, 0})
    ->Args({10000, 0})
    ->Args({100000, 0})
    ->Args({100000, 1})
    ->ArgNames({"others", "prefix_lru"});

// Get through the engine: pin under a lease, copy out, verify the checksum.
void BM_DramGet(benchmark::State& state) {
  const uint64_t size = state.range(0);
  EngineOptions o;
  o.dram_bytes = 32 * size;
  auto engine = OpenEngine(o);
  const uint32_t ns = engine->RegisterNamespace(SpecOfBytes(size), "bench").value();
  std::vector<std::byte> buf(size);
  for (int i = 0; i < 16; ++i) {
    FillPayload(TestKey(i), buf);
    if (!engine->Put(ns, TestKey(i), std::nullopt, buf).ok()) std::abort();
  }
  uint64_t i = 0;
  for (auto _ : state) {
    if (!engine->Get(ns, TestKey(i++ % 16), buf).ok()) std::abort();
  }
  state.SetBytesProcessed(state.iterations() * size);
}
BENCHMARK(BM_DramGet)->Arg(256 << 10)->Arg(8 << 20)->UseRealTime();

// Zero-copy read: pin under a lease and release, no copy (what the
// transport does before a one-sided RMA read).
void BM_DramAcquireRelease(benchmark::State& state) {
  const uint64_t size = state.range(0);
  EngineOptions o;
  o.dram_bytes = 32 * size;
  auto engine = OpenEngine(o);
  const uint32_t ns = engine->RegisterNamespace(SpecOfBytes(size), "bench").value();
  std::vector<std::byte> buf(size);
  std::vector<ChunkKey> keys;
  for (int i = 0; i < 16; ++i) {
    keys.push_back(TestKey(i));
    FillPayload(keys.back(), buf);
    if (!engine->Put(ns, keys.back(), std::nullopt, buf).ok()) std::abort();
  }
  for (auto _ : state) {
    auto lease = engine->Acquire(ns, keys);
    if (!lease.ok() || !engine->Release(lease->id).ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * keys.size());
}
BENCHMARK(BM_DramAcquireRelease)->Arg(256 << 10);

// The same bytes moved by a plain memcpy, for reference.
void BM_Memcpy(benchmark::State& state) {
  const uint64_t size = state.range(0);
  std::vector<std::byte> src(size * 16), dst(size);
  FillPayload(TestKey(1), src);
  uint64_t i = 0;
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data() + (i++ % 16) * size, size);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * size);
}
BENCHMARK(BM_Memcpy)->Arg(256 << 10)->Arg(8 << 20)->UseRealTime();

// The source of a same-host lease-free get: 256 MiB of a memfd (as big as
// `strata bench`'s default working set of 8 MiB chunks, 8x the L3 of the
// development machine), mapped read-only and shared as a client maps a
// node's pool. Built once per process.
class SharedSource {
 public:
  static const SharedSource& Get() {
    static const SharedSource* const source = new SharedSource();
    return *source;
  }
  const std::byte* data() const { return base_; }
  static constexpr uint64_t kBytes = uint64_t{256} << 20;

 private:
  SharedSource() {
    const int fd = memfd_create("store-bench-pool", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, kBytes) != 0 || fallocate(fd, 0, 0, kBytes) != 0) std::abort();
    void* w = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (w == MAP_FAILED) std::abort();
    FillPayload(TestKey(5), std::span<std::byte>(static_cast<std::byte*>(w), kBytes));
    munmap(w, kBytes);
    void* r = mmap(nullptr, kBytes, PROT_READ, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) std::abort();
    close(fd);
    base_ = static_cast<const std::byte*>(r);
  }
  const std::byte* base_ = nullptr;
};

// Runs `op(dest, src)` over consecutive `size`-byte pieces of the shared
// source, into one reused destination, as a single get stream does. The
// destination starts `page_offset` bytes past a 4 KiB boundary when that is
// not negative (a caller's buffer may sit anywhere), else wherever the
// allocator puts it.
template <typename Op>
void FromSharedSource(benchmark::State& state, Op op, int64_t page_offset = -1) {
  const uint64_t size = state.range(0);
  const std::byte* src = SharedSource::Get().data();
  const uint64_t pieces = SharedSource::kBytes / size;
  std::vector<std::byte> buf(size + 8192);
  std::span<std::byte> dst(buf.data(), size);
  if (page_offset >= 0) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(buf.data());
    dst = std::span<std::byte>(buf.data() + (4096 - at % 4096) + page_offset, size);
  }
  uint64_t i = 0;
  for (auto _ : state) {
    op(dst, src + (i++ % pieces) * size);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * size);
}

// memcpy out of the shared source: the reference a same-host get is
// compared with.
void BM_MemcpyFromSharedPool(benchmark::State& state) {
  FromSharedSource(state, [](std::span<std::byte> d, const std::byte* s) {
    std::memcpy(d.data(), s, d.size());
  });
}
BENCHMARK(BM_MemcpyFromSharedPool)->Arg(8 << 20)->UseRealTime();

// What a lease-free get does with the bytes: copy and XXH3 in one pass.
void BM_CopyAndChecksum(benchmark::State& state) {
  FromSharedSource(state, [](std::span<std::byte> d, const std::byte* s) {
    benchmark::DoNotOptimize(CopyAndChecksum(d, s));
  });
}
BENCHMARK(BM_CopyAndChecksum)->Arg(8 << 20)->UseRealTime();

// The same without AVX2 (what a CPU without it runs).
void BM_CopyAndChecksumPortable(benchmark::State& state) {
  FromSharedSource(state, [](std::span<std::byte> d, const std::byte* s) {
    benchmark::DoNotOptimize(checksum_internal::CopyAndChecksumPortable(d.data(), s, d.size()));
  });
}
BENCHMARK(BM_CopyAndChecksumPortable)->Arg(8 << 20)->UseRealTime();

// For comparison: the C library's memcpy per 128 KiB block (a size at which
// it may use `rep movsb`) and the linked library's XXH3, the fused loop
// before CopyAndChecksum had its own copy.
void BM_LibcBlockCopyAndChecksum(benchmark::State& state) {
  FromSharedSource(state, [](std::span<std::byte> d, const std::byte* s) {
    XXH3_state_t* h = XXH3_createState();
    XXH3_64bits_reset(h);
    for (size_t off = 0; off < d.size(); off += checksum_internal::kCopyBlock) {
      const size_t len = std::min(checksum_internal::kCopyBlock, d.size() - off);
      std::memcpy(d.data() + off, s + off, len);
      XXH3_64bits_update(h, d.data() + off, len);
    }
    benchmark::DoNotOptimize(XXH3_64bits_digest(h));
    XXH3_freeState(h);
  });
}
BENCHMARK(BM_LibcBlockCopyAndChecksum)->Arg(8 << 20)->UseRealTime();

// A layer-by-layer get of an 8 MiB chunk in 32 slices of 256 KiB out of the
// shared source into a destination at offset 0, 16 or 64 from a page, as the
// client did it: the C library's memcpy per slice
// (`rep movsb` at this size on some CPUs), then ChunkChecksum over the chunk.
void BM_SliceMemcpyThenChecksum(benchmark::State& state) {
  FromSharedSource(state, [](std::span<std::byte> d, const std::byte* s) {
    constexpr size_t kSlice = size_t{256} << 10;
    for (size_t off = 0; off < d.size(); off += kSlice) {
      std::memcpy(d.data() + off, s + off, std::min(kSlice, d.size() - off));
    }
    benchmark::DoNotOptimize(ChunkChecksum(d));
  }, state.range(1));
}
BENCHMARK(BM_SliceMemcpyThenChecksum)
    ->Args({8 << 20, 0})
    ->Args({8 << 20, 16})
    ->Args({8 << 20, 64})
    ->UseRealTime();

// The same get as the client does it now: ChunkChecksumStream copies each
// slice with CopyAndChecksum's vector loop and hashes it while in the cache.
void BM_SliceCopyAndChecksumStream(benchmark::State& state) {
  FromSharedSource(state, [](std::span<std::byte> d, const std::byte* s) {
    constexpr size_t kSlice = size_t{256} << 10;
    ChunkChecksumStream sum;
    for (size_t off = 0; off < d.size(); off += kSlice) {
      sum.CopyAndAppend(d.subspan(off, std::min(kSlice, d.size() - off)), s + off);
    }
    benchmark::DoNotOptimize(sum.Checksum());
  }, state.range(1));
}
BENCHMARK(BM_SliceCopyAndChecksumStream)
    ->Args({8 << 20, 0})
    ->Args({8 << 20, 16})
    ->Args({8 << 20, 64})
    ->UseRealTime();

// XXH3 over a chunk: part of every put and verified get.
void BM_Checksum(benchmark::State& state) {
  std::vector<std::byte> buf(state.range(0));
  FillPayload(TestKey(3), buf);
  for (auto _ : state) benchmark::DoNotOptimize(ChunkChecksum(buf));
  state.SetBytesProcessed(state.iterations() * buf.size());
}
BENCHMARK(BM_Checksum)->Arg(256 << 10)->Arg(8 << 20);

// The same without AVX2 (the linked xxhash library's build).
void BM_ChecksumPortable(benchmark::State& state) {
  std::vector<std::byte> buf(state.range(0));
  FillPayload(TestKey(3), buf);
  for (auto _ : state) {
    benchmark::DoNotOptimize(checksum_internal::ChecksumPortable(buf.data(), buf.size()));
  }
  state.SetBytesProcessed(state.iterations() * buf.size());
}
BENCHMARK(BM_ChecksumPortable)->Arg(256 << 10)->Arg(8 << 20);

// Engine::Open over an NVMe directory holding `n` chunks of 4 KiB: the
// index and the NVMe policy are rebuilt from RocksDB's metadata.
void BM_RestartRebuild(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / absl::StrCat("strata_restart_bench_", getpid());
  std::filesystem::remove_all(dir);
  EngineOptions o;
  o.dram_bytes = 64 << 20;
  o.nvme_path = dir.string();
  o.nvme_capacity_bytes = uint64_t{1} << 40;
  {
    auto engine = OpenEngine(o);
    const uint32_t ns = engine->RegisterNamespace(SpecOfBytes(4096), "bench").value();
    std::vector<std::byte> payload(4096);
    for (int64_t i = 0; i < n; ++i) {
      FillPayload(TestKey(i), payload);
      std::optional<ChunkKey> parent;
      if (i % 16 != 0) parent = TestKey(i - 1);
      if (!engine->Put(ns, TestKey(i), parent, payload).ok()) std::abort();
    }
  }
  uint64_t restored = 0;
  for (auto _ : state) {
    auto engine = OpenEngine(o);
    restored = engine->Stats().chunks_restored;
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.counters["chunks_restored"] = static_cast<double>(restored);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RestartRebuild)->Arg(100000)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata::store
