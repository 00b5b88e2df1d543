// The worker runtime's device fetch (tag `gpu`): a store node and a client in
// one process, a chunk pool in HBM, chunks fetched through pinned staging
// layer by layer. Checks every layer's bytes in HBM once WaitLayer said so
// (layer 0 before any later layer is waited for), the pool's states, a
// missing chunk ending the prefix, bad input, and prints the fetch's
// bandwidth beside a plain pinned host-to-device copy of the same size.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "client/runtime/cuda_slot_memory.h"
#include "client/runtime/device_fetch.h"
#include "client/runtime/fetch.h"
#include "client/runtime/slot_memory.h"
#include "gtest/gtest.h"
#include "store/engine.h"
#include "store/server.h"
#include "tests/test_data.h"

namespace strata {
namespace {

using testing::Bytes;
using testing::Tokens;

using runtime::ChunkPool;
using runtime::DeviceFetcher;
using runtime::FetchResult;
using runtime::LayerwiseDeviceLoad;
using runtime::SlotId;

constexpr uint32_t kLayers = 8;

class RuntimeDeviceFetchTest : public ::testing::Test {
 protected:
  // A node of `dram` bytes, a namespace of 8 layers with 2 MiB chunks, a
  // device pool of `slots` chunks (poisoned) and a fetcher staging
  // `staging_chunks` chunks.
  // `shared`: the node's pool in shared memory, so the client loads from
  // it directly (same host) instead of over UCX.
  void SetUpNode(uint64_t dram, size_t slots, size_t staging_chunks, bool shared = false) {
    store::EngineOptions eo;
    eo.dram_bytes = dram;
    eo.shared_dram = shared;
    auto engine = store::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    region_ = (*engine)->dram_region();
    store::ServerOptions so;
    so.listen_address = "127.0.0.1:0";
    auto server = store::StoreServer::Start(*std::move(engine), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client::ClientOptions co;
    co.server_address = server_->address();
    auto c = client::Client::Connect(co);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);
    NamespaceSpec spec;
    spec.model_id = "runtime-device-fetch";
    spec.num_layers = kLayers;
    spec.num_kv_heads = 8;
    spec.head_dim = 128;
    spec.dtype = DType::kBFloat16;
    spec.tokens_per_chunk = 64;  // 2 MiB chunks, 256 KiB layers
    auto ns = client_->RegisterNamespace(spec, "tenant");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    ASSERT_EQ(ns_.layer_bytes * kLayers, ns_.chunk_bytes);

    auto mem = runtime::CreateCudaSlotMemory(slots * ns_.chunk_bytes);
    ASSERT_TRUE(mem.ok()) << mem.status();
    ASSERT_EQ(cudaMemset((*mem)->base(), 0xff, (*mem)->bytes()), cudaSuccess);
    ChunkPool::Options po;
    po.chunk_bytes = ns_.chunk_bytes;
    po.layer_bytes = ns_.layer_bytes;
    auto pool = ChunkPool::Create(po, *std::move(mem));
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    auto fetcher = DeviceFetcher::Create({.device = 0, .staging_bytes = staging_chunks * ns_.chunk_bytes});
    ASSERT_TRUE(fetcher.ok()) << fetcher.status();
    fetcher_ = *std::move(fetcher);
    ASSERT_EQ(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), cudaSuccess);
  }
  void MeasureBandwidth(bool shared);

  void TearDown() override {
    if (compute_ != nullptr) cudaStreamDestroy(compute_);
    fetcher_.reset();
    pool_.reset();
    client_.reset();
    if (server_ != nullptr) {
      EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    }
  }

  // Saves keys[first, first + n) with `bytes` (n chunks).
  void Save(std::span<const ChunkKey> keys, size_t first, size_t n, std::span<const std::byte> bytes) {
    std::optional<ChunkKey> parent;
    if (first > 0) parent = keys[first - 1];
    auto t = client_->Save(ns_, keys.subspan(first, n), bytes.first(n * ns_.chunk_bytes), parent);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Wait().ok());
  }

  // Layer `layer` of chunk i in slots[i] equals layer `layer` of chunk i of
  // `bytes`, read back on `stream` (null: the legacy stream).
  void ExpectLayer(std::span<const SlotId> slots, uint32_t layer, const std::vector<std::byte>& bytes,
                   cudaStream_t stream) {
    std::vector<std::byte> got(ns_.layer_bytes);
    for (size_t i = 0; i < slots.size(); ++i) {
      auto src = pool_->LayerSlice(slots[i], layer);
      ASSERT_TRUE(src.ok());
      ASSERT_EQ(cudaMemcpyAsync(got.data(), *src, got.size(), cudaMemcpyDeviceToHost, stream), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      ASSERT_EQ(std::memcmp(got.data(), bytes.data() + i * ns_.chunk_bytes + layer * ns_.layer_bytes,
                            ns_.layer_bytes),
                0)
          << "layer " << layer << " of chunk " << i;
    }
  }
  void ReleaseAll(const FetchResult& r) {
    for (SlotId s : r.slots) ASSERT_TRUE(pool_->Release(s).ok());
  }

  std::unique_ptr<store::StoreServer> server_;
  std::span<std::byte> region_;  // the node's DRAM pool (in this process)
  std::unique_ptr<client::Client> client_;
  client::Namespace ns_;
  std::unique_ptr<ChunkPool> pool_;
  std::unique_ptr<DeviceFetcher> fetcher_;
  cudaStream_t compute_ = nullptr;
};

TEST_F(RuntimeDeviceFetchTest, EachLayerIsInHbmOnceWaitLayerReturns) {
  ASSERT_NO_FATAL_FAILURE(SetUpNode(256 << 20, 16, 8));
  constexpr size_t kChunks = 5;
  const std::vector<ChunkKey> keys = ns_.Keys(Tokens(kChunks * 64, 1));
  ASSERT_EQ(keys.size(), kChunks);
  const std::vector<std::byte> bytes = Bytes(kChunks * ns_.chunk_bytes, 11);
  ASSERT_NO_FATAL_FAILURE(Save(keys, 0, kChunks, bytes));

  // Slots 0..2 taken and slot 1 given back: the fetch gets slots 1, 3, 4, ...
  // (two runs of consecutive slots, so two copies per layer).
  std::vector<SlotId> priv;
  for (int i = 0; i < 3; ++i) priv.push_back(*pool_->AllocatePrivate());
  ASSERT_TRUE(pool_->Release(priv[1]).ok());

  auto load = fetcher_->Start(*client_, ns_, *pool_, keys);
  ASSERT_TRUE(load.ok()) << load.status();
  const std::vector<SlotId> slots((*load)->slots().begin(), (*load)->slots().end());
  ASSERT_EQ(slots.size(), kChunks);
  EXPECT_FALSE(std::adjacent_find(slots.begin(), slots.end(), [](SlotId a, SlotId b) {
                 return b != a + 1;
               }) == slots.end()) << "the slots should not be one run";
  // Loading until verified: never served in between.
  for (SlotId s : slots) EXPECT_EQ(*pool_->State(s), runtime::SlotState::kLoading);
  EXPECT_EQ(pool_->Acquire(keys[0]).status().code(), absl::StatusCode::kFailedPrecondition);
  // Another load on the same fetcher waits for this one's Wait().
  EXPECT_EQ(fetcher_->Start(*client_, ns_, *pool_, keys).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Layer 0 first, read on the compute stream behind its event; then the
  // rest, alternating the stream and the host waits.
  ASSERT_TRUE((*load)->WaitLayer(0, compute_).ok());
  ASSERT_NO_FATAL_FAILURE(ExpectLayer(slots, 0, bytes, compute_));
  for (uint32_t l = 1; l < kLayers; ++l) {
    if (l % 2 == 0) {
      ASSERT_TRUE((*load)->WaitLayer(l, compute_).ok()) << l;
      ASSERT_NO_FATAL_FAILURE(ExpectLayer(slots, l, bytes, compute_));
    } else {
      ASSERT_TRUE((*load)->WaitLayer(l).ok()) << l;
      ASSERT_NO_FATAL_FAILURE(ExpectLayer(slots, l, bytes, nullptr));
    }
  }
  EXPECT_EQ((*load)->WaitLayer(kLayers).code(), absl::StatusCode::kInvalidArgument);

  FetchResult r = (*load)->Wait();
  EXPECT_EQ(r.pool_hits, 0u);
  EXPECT_EQ(r.loaded, kChunks);
  EXPECT_FALSE(r.recompute);
  EXPECT_TRUE(r.stop_reason.ok()) << r.stop_reason;
  EXPECT_EQ(r.slots, slots);
  for (SlotId s : r.slots) {
    EXPECT_EQ(*pool_->State(s), runtime::SlotState::kReady);
    EXPECT_EQ(*pool_->HoldCount(s), 1);
  }
  for (uint32_t l = 0; l < kLayers; ++l) ASSERT_NO_FATAL_FAILURE(ExpectLayer(r.slots, l, bytes, nullptr));
  // WaitLayer after Wait still answers.
  EXPECT_TRUE((*load)->WaitLayer(kLayers - 1, compute_).ok());
  load->reset();
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));

  // Again: every chunk is in the pool, nothing is loaded, every layer is
  // there at once.
  load = fetcher_->Start(*client_, ns_, *pool_, keys);
  ASSERT_TRUE(load.ok()) << load.status();
  for (uint32_t l = 0; l < kLayers; ++l) EXPECT_TRUE((*load)->WaitLayer(l, compute_).ok());
  r = (*load)->Wait();
  EXPECT_EQ(r.pool_hits, kChunks);
  EXPECT_EQ(r.loaded, 0u);
  EXPECT_EQ(r.slots, slots);
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));

  // A load dropped without Wait() waits for itself and releases its slots.
  std::vector<ChunkKey> more = ns_.Keys(Tokens(3 * 64, 2));
  ASSERT_NO_FATAL_FAILURE(Save(more, 0, 3, Bytes(3 * ns_.chunk_bytes, 12)));
  load = fetcher_->Start(*client_, ns_, *pool_, more);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ((*load)->slots().size(), 3u);
  load->reset();
  runtime::ChunkPoolStats st = pool_->Stats();
  EXPECT_EQ(st.loading, 0u);
  EXPECT_EQ(st.held, 2u);  // the two private slots
  EXPECT_TRUE(fetcher_->Start(*client_, ns_, *pool_, more).ok());  // the fetcher is free again
}

TEST_F(RuntimeDeviceFetchTest, AMissingChunkEndsThePrefix) {
  ASSERT_NO_FATAL_FAILURE(SetUpNode(256 << 20, 16, 8));
  const std::vector<ChunkKey> c = ns_.Keys(Tokens(6 * 64, 4));
  const std::vector<std::byte> bytes = Bytes(6 * ns_.chunk_bytes, 13);
  // Chunks 0..2 and 4..5 saved; chunk 3 never was.
  ASSERT_NO_FATAL_FAILURE(Save(c, 0, 3, bytes));
  ASSERT_NO_FATAL_FAILURE(Save(c, 4, 2, std::span(bytes).subspan(4 * ns_.chunk_bytes)));
  auto load = fetcher_->Start(*client_, ns_, *pool_, c);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ((*load)->slots().size(), 3u);
  for (uint32_t l = 0; l < kLayers; ++l) {
    ASSERT_TRUE((*load)->WaitLayer(l, compute_).ok()) << l;
    ASSERT_NO_FATAL_FAILURE(ExpectLayer((*load)->slots(), l, bytes, compute_));
  }
  FetchResult r = (*load)->Wait();
  EXPECT_EQ(r.slots.size(), 3u);
  EXPECT_EQ(r.loaded, 3u);
  EXPECT_TRUE(r.recompute);
  EXPECT_TRUE(r.stop_reason.ok()) << r.stop_reason;  // the store has no more: not an error
  for (size_t i = 3; i < 6; ++i) {
    EXPECT_EQ(pool_->Find(c[i]).status().code(), absl::StatusCode::kNotFound) << i;
  }
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));
}

TEST_F(RuntimeDeviceFetchTest, RejectsBadInputAndStopsAtTheStagingSize) {
  ASSERT_NO_FATAL_FAILURE(SetUpNode(64 << 20, 8, 2));
  const std::vector<ChunkKey> keys = ns_.Keys(Tokens(5 * 64, 6));
  const std::vector<std::byte> bytes = Bytes(5 * ns_.chunk_bytes, 14);
  ASSERT_NO_FATAL_FAILURE(Save(keys, 0, 5, bytes));

  EXPECT_EQ(DeviceFetcher::Create({.device = 0, .staging_bytes = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A pool of another chunk size.
  ChunkPool::Options po;
  po.chunk_bytes = ns_.chunk_bytes * 2;
  po.layer_bytes = ns_.layer_bytes * 2;
  auto other = ChunkPool::Create(po, *runtime::CreateCudaSlotMemory(2 * po.chunk_bytes));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(fetcher_->Start(*client_, ns_, **other, keys).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A host pool goes through Fetch; a device pool does not.
  po.chunk_bytes = ns_.chunk_bytes;
  po.layer_bytes = ns_.layer_bytes;
  auto host = ChunkPool::Create(po, *runtime::CreateHostSlotMemory(2 * po.chunk_bytes));
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(fetcher_->Start(*client_, ns_, **host, keys).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(runtime::Fetch(*client_, ns_, *pool_, keys).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Staging smaller than a chunk.
  auto tiny = DeviceFetcher::Create({.device = 0, .staging_bytes = ns_.chunk_bytes - 1});
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ((*tiny)->Start(*client_, ns_, *pool_, keys).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool_->Stats().free, pool_->capacity());  // nothing was reserved

  // Staging of 2 chunks: the first 2 are loaded, the rest left to recompute.
  auto load = fetcher_->Start(*client_, ns_, *pool_, keys);
  ASSERT_TRUE(load.ok()) << load.status();
  FetchResult r = (*load)->Wait();
  EXPECT_EQ(r.loaded, 2u);
  EXPECT_TRUE(r.recompute);
  EXPECT_EQ(r.stop_reason.code(), absl::StatusCode::kResourceExhausted) << r.stop_reason;
  for (uint32_t l = 0; l < kLayers; ++l) ASSERT_NO_FATAL_FAILURE(ExpectLayer(r.slots, l, bytes, nullptr));
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));
}

// Same host: the GPU copies the leased chunks straight out of the node's
// pool (no staging limit) while host threads verify them; a chunk damaged in
// the pool ends the verified prefix there, and its slot and those after it
// are freed, never served.
TEST_F(RuntimeDeviceFetchTest, SameHostLoadsReadThePoolDirectlyAndStopAtADamagedChunk) {
  ASSERT_NO_FATAL_FAILURE(SetUpNode(256 << 20, 16, 1, /*shared=*/true));
  ASSERT_EQ(client_->data_path(), "shm");
  constexpr size_t kChunks = 6;
  const std::vector<ChunkKey> keys = ns_.Keys(Tokens(kChunks * 64, 31));
  const std::vector<std::byte> bytes = Bytes(kChunks * ns_.chunk_bytes, 41);
  ASSERT_NO_FATAL_FAILURE(Save(keys, 0, kChunks, bytes));

  // Staging holds one chunk, yet all six load: they do not pass through it.
  auto load = fetcher_->Start(*client_, ns_, *pool_, keys);
  ASSERT_TRUE(load.ok()) << load.status();
  for (uint32_t l = 0; l < kLayers; ++l) ASSERT_TRUE((*load)->WaitLayer(l, compute_).ok());
  FetchResult r = (*load)->Wait();
  ASSERT_EQ(r.loaded, kChunks) << r.stop_reason;
  for (uint32_t l = 0; l < kLayers; ++l) ASSERT_NO_FATAL_FAILURE(ExpectLayer(r.slots, l, bytes, compute_));
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));

  // Another chain, chunk 3 damaged in the node's pool.
  const std::vector<ChunkKey> keys2 = ns_.Keys(Tokens(kChunks * 64, 32));
  const std::vector<std::byte> bytes2 = Bytes(kChunks * ns_.chunk_bytes, 42);
  ASSERT_NO_FATAL_FAILURE(Save(keys2, 0, kChunks, bytes2));
  const std::span<const std::byte> chunk3(bytes2.data() + 3 * ns_.chunk_bytes, ns_.chunk_bytes);
  auto at = std::search(region_.begin(), region_.end(), chunk3.begin(), chunk3.end());
  ASSERT_NE(at, region_.end());
  at[ns_.chunk_bytes - 7] ^= std::byte{0x40};
  const size_t free_before = pool_->Stats().free;
  load = fetcher_->Start(*client_, ns_, *pool_, keys2);
  ASSERT_TRUE(load.ok()) << load.status();
  r = (*load)->Wait();
  EXPECT_EQ(r.loaded, 3u);
  EXPECT_TRUE(r.recompute);
  EXPECT_EQ(r.stop_reason.code(), absl::StatusCode::kDataLoss) << r.stop_reason;
  for (uint32_t l = 0; l < kLayers; ++l) ASSERT_NO_FATAL_FAILURE(ExpectLayer(r.slots, l, bytes2, nullptr));
  EXPECT_EQ(pool_->Find(keys2[3]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool_->Stats().free, free_before - 3);
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));
}

// Reports (does not assert) the bandwidth of a whole fetch, store -> pinned
// staging -> HBM, beside a plain pinned host-to-device cudaMemcpy of the same
// size; the bytes are checked.
// The fetch's bandwidth (store -> pinned -> HBM) against a pinned copy, with
// the client loading over UCX or, same host, out of the shared pool.
void RuntimeDeviceFetchTest::MeasureBandwidth(bool shared) {
  constexpr size_t kChunks = 64;  // 128 MiB
  constexpr int kRounds = 3;
  ASSERT_NO_FATAL_FAILURE(SetUpNode(uint64_t{1} << 30, kChunks, kChunks, shared));
  std::printf("loads over %s\n", std::string(client_->data_path()).c_str());
  if (shared) {
    ASSERT_EQ(client_->data_path(), "shm");
  }
  const size_t total = kChunks * ns_.chunk_bytes;
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };

  double best_fetch = 0, best_first_layer = 1e9;
  for (int round = 0; round < kRounds; ++round) {
    const std::vector<ChunkKey> keys = ns_.Keys(Tokens(kChunks * 64, 100 + round));
    const std::vector<std::byte> bytes = Bytes(total, 200 + round);
    ASSERT_NO_FATAL_FAILURE(Save(keys, 0, kChunks, bytes));
    const Clock::time_point t0 = Clock::now();
    auto load = fetcher_->Start(*client_, ns_, *pool_, keys);
    ASSERT_TRUE(load.ok()) << load.status();
    ASSERT_TRUE((*load)->WaitLayer(0).ok());
    const Clock::time_point t1 = Clock::now();
    FetchResult r = (*load)->Wait();
    const Clock::time_point t2 = Clock::now();
    ASSERT_EQ(r.loaded, kChunks) << r.stop_reason;
    const double bw = total / seconds(t2 - t0);
    std::printf("fetch round %d: %zu MiB in %.2f ms = %.2f GB/s (layer 0 after %.2f ms)\n", round,
                total >> 20, seconds(t2 - t0) * 1e3, bw / 1e9, seconds(t1 - t0) * 1e3);
    best_fetch = std::max(best_fetch, bw);
    best_first_layer = std::min(best_first_layer, seconds(t1 - t0));
    for (uint32_t l : {0u, kLayers - 1}) ASSERT_NO_FATAL_FAILURE(ExpectLayer(r.slots, l, bytes, nullptr));
    ASSERT_NO_FATAL_FAILURE(ReleaseAll(r));
  }

  void* pinned = nullptr;
  void* dev = nullptr;
  ASSERT_EQ(cudaHostAlloc(&pinned, total, cudaHostAllocDefault), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dev, total), cudaSuccess);
  std::memset(pinned, 1, total);
  ASSERT_EQ(cudaMemcpy(dev, pinned, total, cudaMemcpyHostToDevice), cudaSuccess);  // warm
  double best_h2d = 0;
  for (int round = 0; round < kRounds; ++round) {
    const Clock::time_point t0 = Clock::now();
    ASSERT_EQ(cudaMemcpy(dev, pinned, total, cudaMemcpyHostToDevice), cudaSuccess);
    best_h2d = std::max(best_h2d, total / seconds(Clock::now() - t0));
  }
  cudaFree(dev);
  cudaFreeHost(pinned);
  std::printf("pinned H2D cudaMemcpy: %.2f GB/s\n", best_h2d / 1e9);
  std::printf("device fetch (best of %d): %.2f GB/s = %.0f%% of pinned H2D; layer 0 after %.2f ms\n",
              kRounds, best_fetch / 1e9, 100 * best_fetch / best_h2d, best_first_layer * 1e3);
  RecordProperty("fetch_gbps", std::to_string(best_fetch / 1e9));
  RecordProperty("pinned_h2d_gbps", std::to_string(best_h2d / 1e9));
}

TEST_F(RuntimeDeviceFetchTest, ReportsFetchBandwidthAgainstPinnedCopy) { MeasureBandwidth(false); }

TEST_F(RuntimeDeviceFetchTest, ReportsSameHostFetchBandwidthAgainstPinnedCopy) {
  MeasureBandwidth(true);
}

}  // namespace
}  // namespace strata
