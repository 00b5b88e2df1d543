// GPU destinations and sources (tag `gpu`): a store node and a client in one
// process; chunks loaded into device memory through the pinned staging
// buffer, layer by layer, and saved from device memory.
#include <cuda_runtime_api.h>

#include <filesystem>
#include <random>
#include <vector>

#include "client/client.h"
#include "client/gpu_transfer.h"
#include "gtest/gtest.h"
#include "store/engine.h"
#include "store/server.h"

namespace strata {
namespace {

TEST(GpuClientTest, LoadToDeviceAndSaveFromDevice) {
  store::EngineOptions eo;
  eo.dram_bytes = 256 << 20;
  auto engine = store::Engine::Open(eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  store::ServerOptions so;
  so.listen_address = "127.0.0.1:0";
  auto server = store::StoreServer::Start(*std::move(engine), so);
  ASSERT_TRUE(server.ok()) << server.status();
  client::ClientOptions co;
  co.server_address = (*server)->address();
  auto c = client::Client::Connect(co);
  ASSERT_TRUE(c.ok()) << c.status();
  NamespaceSpec spec;
  spec.model_id = "gpu-test";
  spec.num_layers = 8;
  spec.num_kv_heads = 8;
  spec.head_dim = 128;
  spec.dtype = DType::kBFloat16;
  spec.tokens_per_chunk = 64;  // 2 MiB chunks, 256 KiB layers
  auto ns = (*c)->RegisterNamespace(spec, "gpu");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<uint32_t> tokens(7 * 64);
  std::mt19937 rng(3);
  for (auto& t : tokens) t = rng() % 32000;
  std::vector<ChunkKey> keys = ns->Keys(tokens);
  const size_t total = keys.size() * ns->chunk_bytes;
  std::vector<std::byte> host(total);
  for (auto& b : host) b = static_cast<std::byte>(rng());
  auto save = (*c)->Save(*ns, keys, host);
  ASSERT_TRUE(save.ok() && (*save)->Wait().ok());

  auto stager = client::GpuStager::Create(0, total);
  ASSERT_TRUE(stager.ok()) << stager.status();
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, total), cudaSuccess);
  ASSERT_EQ(cudaMemset(dev, 0xff, total), cudaSuccess);  // poison
  std::vector<uint32_t> layers;
  ASSERT_TRUE((*stager)->LoadToDevice(**c, *ns, keys, dev, [&](uint32_t l) { layers.push_back(l); }).ok());
  EXPECT_EQ(layers, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  std::vector<std::byte> back(total);
  ASSERT_EQ(cudaMemcpy(back.data(), dev, total, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, host);

  // Save new chunks straight from device memory, then read them on the host.
  std::vector<uint32_t> more(3 * 64);
  for (auto& t : more) t = rng() % 32000;
  std::vector<ChunkKey> keys2 = ns->Keys(more);
  ASSERT_TRUE((*stager)->SaveFromDevice(**c, *ns, keys2, dev).ok());
  std::vector<std::byte> out(keys2.size() * ns->chunk_bytes);
  auto load = (*c)->Load(*ns, keys2, out);
  ASSERT_TRUE(load.ok() && (*load)->Wait().ok());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), host.begin()));
  // A load larger than the staging buffer is refused.
  std::vector<ChunkKey> too_many = keys;
  too_many.push_back(keys2[0]);
  EXPECT_EQ((*stager)->LoadToDevice(**c, *ns, too_many, dev).code(),
            absl::StatusCode::kInvalidArgument);
  // Host memory is not a device pointer: refused before anything moves.
  EXPECT_EQ((*stager)->LoadToDevice(**c, *ns, keys, host.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*stager)->SaveFromDevice(**c, *ns, keys2, host.data()).code(),
            absl::StatusCode::kInvalidArgument);
  cudaFree(dev);
  EXPECT_TRUE((*server)->Shutdown(absl::Seconds(1)).ok());
}

}  // namespace
}  // namespace strata
