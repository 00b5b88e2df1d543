// Throughput of the NVMe tier (store/nvme_tier.h) on a real RocksDB directory.
//
//   bazel run //tools/bench/nvme:nvme_bench   (.bazelrc already builds with -O2)
//
// The directory is $STRATA_BENCH_DIR if set, else a fresh one under the
// system temp directory; each benchmark removes what it wrote.
//
//   BM_Write/<bytes>   Write() of fresh chunks, ending with a Flush() so the
//                      figure includes getting the data out of the memtables
//                      into blob files (sync_writes = false).
//   BM_Read/<bytes>    Read() (checksum verified) of 256 MiB of chunks written
//                      and flushed beforehand; the files were just written, so
//                      this is page-cache-warm, not cold-media, throughput.
//   BM_OpenRebuild     Open() + ForEach() over 100k persisted chunks (the
//                      restart path: counters rebuilt, then the engine's index
//                      rebuild). The chunks are 4 KiB (at blob_min_size, so in
//                      blob files) to keep the set at ~400 MiB on disk; only
//                      metadata is read, so chunk size hardly matters here.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "store/common/checksum.h"
#include "store/common/chunk_key.h"
#include "store/nvme_tier.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;

std::string BenchDir(const std::string& leaf) {
  const char* env = std::getenv("STRATA_BENCH_DIR");
  const fs::path root = env != nullptr ? fs::path(env)
                                       : fs::temp_directory_path() /
                                             absl::StrCat("strata_nvme_bench_", getpid());
  const fs::path dir = root / leaf;
  fs::remove_all(dir);
  fs::create_directories(root);
  return dir.string();
}

std::unique_ptr<NvmeTier> OpenOrDie(const std::string& path, benchmark::State& state) {
  NvmeTierOptions o;
  o.path = path;
  o.capacity_bytes = uint64_t{1} << 40;
  auto tier = NvmeTier::Open(o);
  if (!tier.ok()) {
    state.SkipWithError(std::string(tier.status().ToString()).c_str());
    return nullptr;
  }
  return std::move(*tier);
}

ChunkKey KeyOf(uint64_t i) {
  ChunkKey k;
  std::mt19937_64 rng(i * 0x9e3779b97f4a7c15ULL + 1);
  for (size_t j = 0; j < ChunkKey::kSize; j += 8) {
    const uint64_t r = rng();
    std::memcpy(k.bytes.data() + j, &r, 8);
  }
  return k;
}

std::vector<std::byte> RandomBytes(size_t n, uint64_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, 8);
  }
  return v;
}

NvmeRecord RecordOf(uint64_t i, std::span<const std::byte> payload) {
  NvmeRecord rec;
  rec.key = KeyOf(i);
  if (i > 0) rec.parent = KeyOf(i - 1);
  rec.namespace_id = 1;
  rec.size = static_cast<uint32_t>(payload.size());
  rec.checksum = ChunkChecksum(payload);
  return rec;
}

void BM_Write(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const std::string path = BenchDir("write");
  {
    auto tier = OpenOrDie(path, state);
    if (tier == nullptr) return;
    // A few distinct payloads; the key (and so the record) differs per write.
    std::vector<std::vector<std::byte>> payloads;
    for (int i = 0; i < 4; ++i) payloads.push_back(RandomBytes(size, i));
    uint64_t i = 0;
    for (auto _ : state) {
      const auto& p = payloads[i % payloads.size()];
      NvmeRecord rec;
      rec.key = KeyOf(i);
      rec.size = static_cast<uint32_t>(size);
      rec.checksum = ChunkChecksum(p);  // the caller's checksum, as the engine has it
      if (!tier->Write(rec, p).ok()) state.SkipWithError("Write failed");
      ++i;
      if (i == state.max_iterations && !tier->Flush().ok()) state.SkipWithError("Flush failed");
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
  }
  fs::remove_all(path);
}
BENCHMARK(BM_Write)->Arg(256 << 10)->Iterations(2048)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Write)->Arg(8 << 20)->Iterations(64)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Read(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const size_t n = (size_t{256} << 20) / size;
  const std::string path = BenchDir("read");
  {
    auto tier = OpenOrDie(path, state);
    if (tier == nullptr) return;
    for (size_t i = 0; i < n; ++i) {
      const std::vector<std::byte> p = RandomBytes(size, i);
      if (!tier->Write(RecordOf(i, p), p).ok()) {
        state.SkipWithError("Write failed");
        return;
      }
    }
    if (!tier->Flush().ok()) state.SkipWithError("Flush failed");
    std::vector<std::byte> out(size);
    uint64_t i = 0;
    for (auto _ : state) {
      if (!tier->Read(KeyOf(i % n), out).ok()) state.SkipWithError("Read failed");
      ++i;
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
  }
  fs::remove_all(path);
}
BENCHMARK(BM_Read)->Arg(256 << 10)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Read)->Arg(8 << 20)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_OpenRebuild(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  constexpr size_t kChunk = 4096;
  const std::string path = BenchDir("open");
  {
    auto tier = OpenOrDie(path, state);
    if (tier == nullptr) return;
    std::vector<std::byte> p = RandomBytes(kChunk, 42);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(p.data(), &i, sizeof(i));  // distinct payloads
      if (!tier->Write(RecordOf(i, p), p).ok()) {
        state.SkipWithError("Write failed");
        return;
      }
    }
    if (!tier->Flush().ok()) state.SkipWithError("Flush failed");
  }
  size_t seen = 0;
  for (auto _ : state) {
    auto tier = OpenOrDie(path, state);
    if (tier == nullptr) return;
    seen = 0;
    uint64_t bytes = 0;
    if (!tier->ForEach([&](const NvmeRecord& r) {
               ++seen;
               bytes += r.size;
             }).ok()) {
      state.SkipWithError("ForEach failed");
    }
    benchmark::DoNotOptimize(bytes);
    if (seen != n || tier->chunk_count() != n) state.SkipWithError("wrong chunk count");
  }
  state.counters["chunks"] = static_cast<double>(seen);
  state.counters["chunks_per_s"] =
      benchmark::Counter(static_cast<double>(seen), benchmark::Counter::kIsIterationInvariantRate);
  fs::remove_all(path);
}
BENCHMARK(BM_OpenRebuild)->Arg(100000)->Iterations(5)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata::store
