// A real store node and real clients in the test's process, for the
// integration tests that reach into the node's pool or restart it in place:
// the node runs in-process (its DRAM region is visible to the test), clients
// connect over gRPC and UCX as they would from another process.
#ifndef STRATA_TESTS_NODE_FIXTURE_H_
#define STRATA_TESTS_NODE_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/strata/v1/strata.grpc.pb.h"
#include "store/engine.h"
#include "store/server.h"
#include "tests/test_data.h"

namespace strata::testing {

// A small namespace: 4 layers x 2 KV heads x 16 tokens x d64, fp16 (32 KiB
// chunks of 8 KiB layers).
inline NamespaceSpec SmallSpec(std::string model_id) {
  NamespaceSpec spec;
  spec.model_id = std::move(model_id);
  spec.num_layers = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 16;
  return spec;
}

// What a transfer ended with: the call's error, else Wait()'s.
inline absl::Status Finish(const absl::StatusOr<std::shared_ptr<client::Transfer>>& t) {
  return t.ok() ? (*t)->Wait() : t.status();
}

// Runs `op` until `again(its result)` is false, at most 50 times 100 ms apart
// (a restarted node's gRPC channel may need a moment), and returns the last
// result.
template <typename Op, typename Again>
auto RetryWhile(Op op, Again again) -> decltype(op()) {
  auto result = op();
  for (int i = 1; i < 50 && again(result); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    result = op();
  }
  return result;
}
inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}
// `op` until it is not Unavailable.
template <typename Op>
auto WhileUnavailable(Op op) -> decltype(op()) {
  return RetryWhile(op, [](const auto& r) { return absl::IsUnavailable(StatusOf(r)); });
}

class InProcessNodeTest : public ::testing::Test {
 protected:
  // Starts the node on `listen` (port 0 picks one) with `engine` options;
  // `server` may adjust the server's options.
  void StartNode(const store::EngineOptions& engine, const std::string& listen = "127.0.0.1:0",
                 const std::function<void(store::ServerOptions&)>& server = nullptr) {
    auto opened = store::Engine::Open(engine);
    ASSERT_TRUE(opened.ok()) << opened.status();
    region_ = (*opened)->dram_region();
    store::ServerOptions so;
    so.listen_address = listen;
    if (server) server(so);
    auto started = store::StoreServer::Start(*std::move(opened), so);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    stub_ = ::strata::v1::Strata::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  // Stops the node (its clients stay, as a restart leaves them).
  void StopNode() {
    ASSERT_NE(server_, nullptr);
    EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    server_.reset();
  }
  void TearDown() override {
    clients_.clear();
    if (server_) {
      EXPECT_TRUE(server_->Shutdown(absl::Seconds(1)).ok());
    }
  }

  // A client of the node, owned by the fixture; `adjust` may change its
  // options. Null (and a test failure) when it cannot connect.
  client::Client* NewClient(const std::function<void(client::ClientOptions&)>& adjust = nullptr) {
    client::ClientOptions o;
    o.server_address = server_->address();
    if (adjust) adjust(o);
    auto c = client::Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    clients_.push_back(*std::move(c));
    return clients_.back().get();
  }

  // Saves `n` chunks of one chain of `seed`'s tokens through `c` and returns
  // their keys; `bytes` receives the chunks' bytes (of `seed`).
  static std::vector<ChunkKey> SaveChain(client::Client* c, const client::Namespace& ns, size_t n,
                                         uint64_t seed, std::vector<std::byte>* bytes) {
    std::vector<ChunkKey> keys =
        ns.Keys(Tokens(n * ns.spec.tokens_per_chunk, static_cast<uint32_t>(seed)));
    *bytes = Bytes(n * ns.chunk_bytes, seed);
    EXPECT_TRUE(Finish(c->Save(ns, keys, *bytes)).ok());
    return keys;
  }
  // Loads `keys` into `out` (layer by layer with `layer_wise`).
  static absl::Status LoadInto(client::Client* c, const client::Namespace& ns,
                               std::span<const ChunkKey> keys, std::span<std::byte> out,
                               bool layer_wise = false) {
    return Finish(c->Load(ns, keys, out,
                          layer_wise ? [](uint32_t) {} : std::function<void(uint32_t)>()));
  }
  // The node's statistic `name`, as `c` reads it.
  static uint64_t NodeStat(client::Client* c, const char* name) {
    auto stats = c->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? (*stats)[name] : 0;
  }
  ::strata::v1::NodeInfo Info() {
    ::strata::v1::NodeInfo info;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->GetNodeInfo(&ctx, ::strata::v1::NodeInfoRequest(), &info).ok());
    return info;
  }

  std::span<std::byte> region_;  // the node's DRAM pool
  std::unique_ptr<store::StoreServer> server_;
  std::unique_ptr<::strata::v1::Strata::Stub> stub_;
  std::vector<std::unique_ptr<client::Client>> clients_;
};

}  // namespace strata::testing

#endif  // STRATA_TESTS_NODE_FIXTURE_H_
