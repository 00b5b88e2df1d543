// The worker runtime's fetch against a real `strata serve` process: a saved
// conversation fetched into a host chunk pool byte for byte, pool hits for a
// shared prefix, a missing chunk ending the prefix, and a node killed in the
// middle of a load, which must leave the caller recomputing with every slot
// freed.
#include <signal.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "client/runtime/fetch.h"
#include "client/runtime/slot_memory.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"
#include "tests/test_data.h"

namespace strata {
namespace {

using testing::Bytes;
using testing::Tokens;

using runtime::ChunkPool;
using runtime::FetchResult;
using runtime::SlotId;

NamespaceSpec Spec(uint32_t heads, uint32_t tokens) {
  NamespaceSpec spec;
  spec.model_id = "runtime-fetch";
  spec.num_layers = 4;
  spec.num_kv_heads = heads;
  spec.head_dim = 128;
  spec.dtype = DType::kBFloat16;
  spec.tokens_per_chunk = tokens;
  return spec;
}

class RuntimeFetchTest : public ::testing::Test {
 protected:
  void StartNode(std::vector<std::string> args, uint32_t heads, uint32_t tokens, size_t slots,
                 client::SameHost same_host = client::SameHost::kAuto) {
    const std::string dir = std::filesystem::path(::testing::TempDir()) /
                            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    server_ = std::make_unique<testing::ServerProcess>(std::move(args), dir + ".port");
    ASSERT_NO_FATAL_FAILURE(server_->Start());
    client::ClientOptions o;
    o.server_address = server_->address();
    o.ucx_transports = "tcp";
    o.transfer_timeout = absl::Seconds(4);
    o.rpc_timeout = absl::Seconds(2);
    o.same_host = same_host;
    auto c = client::Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);
    auto ns = client_->RegisterNamespace(Spec(heads, tokens), "tenant");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    auto mem = runtime::CreateHostSlotMemory(slots * ns_.chunk_bytes);
    ASSERT_TRUE(mem.ok());
    ChunkPool::Options po;
    po.chunk_bytes = ns_.chunk_bytes;
    po.layer_bytes = ns_.layer_bytes;
    auto pool = ChunkPool::Create(po, *std::move(mem));
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
  }
  void TearDown() override {
    pool_.reset();
    client_.reset();
    server_.reset();
  }

  // Saves keys[first, first + n) with `bytes` (n chunks).
  void Save(std::span<const ChunkKey> keys, size_t first, size_t n, std::span<const std::byte> bytes) {
    std::optional<ChunkKey> parent;
    if (first > 0) parent = keys[first - 1];
    auto t = client_->Save(ns_, keys.subspan(first, n), bytes, parent);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Wait().ok());
  }

  // Every slot of `r` holds its chunk's bytes from `bytes` (chunk i at i).
  void ExpectBytes(const FetchResult& r, const std::vector<std::byte>& bytes) {
    for (size_t i = 0; i < r.slots.size(); ++i) {
      auto got = pool_->HostBytes(r.slots[i]);
      ASSERT_TRUE(got.ok());
      ASSERT_EQ(std::memcmp(got->data(), bytes.data() + i * ns_.chunk_bytes, ns_.chunk_bytes), 0)
          << "chunk " << i;
    }
  }
  void ReleaseAll(const FetchResult& r) {
    for (SlotId s : r.slots) ASSERT_TRUE(pool_->Release(s).ok());
  }

  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<client::Client> client_;
  client::Namespace ns_;
  std::unique_ptr<ChunkPool> pool_;
};

TEST_F(RuntimeFetchTest, FetchesSavedConversationsAndHitsSharedPrefixesInThePool) {
  ASSERT_NO_FATAL_FAILURE(StartNode({"--no_nvme", "--dram=256MiB", "--ucx_transports=tcp"}, 2, 16, 32));
  // Conversation A: a system prompt of 2 chunks, then 4 chunks of its own.
  const std::vector<uint32_t> system = Tokens(2 * 16, 1);
  std::vector<uint32_t> a_tokens = system;
  for (uint32_t t : Tokens(4 * 16, 2)) a_tokens.push_back(t);
  const std::vector<ChunkKey> a = ns_.Keys(a_tokens);
  ASSERT_EQ(a.size(), 6u);
  const std::vector<std::byte> a_bytes = Bytes(6 * ns_.chunk_bytes, 11);
  ASSERT_NO_FATAL_FAILURE(Save(a, 0, 6, a_bytes));

  std::vector<std::atomic<int>> layers(4);
  runtime::FetchOptions fo;
  fo.on_layer = [&](uint32_t l) { layers[l].fetch_add(1); };
  auto r = runtime::Fetch(*client_, ns_, *pool_, a, fo);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pool_hits, 0u);
  EXPECT_EQ(r->loaded, 6u);
  EXPECT_FALSE(r->recompute);
  EXPECT_TRUE(r->stop_reason.ok()) << r->stop_reason;
  ASSERT_EQ(r->slots.size(), 6u);
  for (auto& l : layers) EXPECT_EQ(l.load(), 1);
  ASSERT_NO_FATAL_FAILURE(ExpectBytes(*r, a_bytes));
  for (SlotId s : r->slots) EXPECT_EQ(*pool_->State(s), runtime::SlotState::kReady);
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(*r));

  // Conversation B shares the system prompt: those chunks hit in the pool,
  // only B's own chunks are loaded.
  std::vector<uint32_t> b_tokens = system;
  for (uint32_t t : Tokens(3 * 16, 3)) b_tokens.push_back(t);
  const std::vector<ChunkKey> b = ns_.Keys(b_tokens);
  std::vector<std::byte> b_bytes(a_bytes.begin(), a_bytes.begin() + 2 * ns_.chunk_bytes);
  const std::vector<std::byte> b_own = Bytes(3 * ns_.chunk_bytes, 12);
  b_bytes.insert(b_bytes.end(), b_own.begin(), b_own.end());
  ASSERT_NO_FATAL_FAILURE(Save(b, 2, 3, b_own));
  r = runtime::Fetch(*client_, ns_, *pool_, b);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pool_hits, 2u);
  EXPECT_EQ(r->loaded, 3u);
  EXPECT_FALSE(r->recompute);
  ASSERT_NO_FATAL_FAILURE(ExpectBytes(*r, b_bytes));
  EXPECT_EQ(r->slots[0], *pool_->Find(a[0]));  // one slot for the shared chunk
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(*r));

  // A again: entirely in the pool, no load (the loaded count and the layer
  // callback both stay at zero).
  for (auto& l : layers) l.store(0);
  r = runtime::Fetch(*client_, ns_, *pool_, a, fo);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pool_hits, 6u);
  EXPECT_EQ(r->loaded, 0u);
  EXPECT_FALSE(r->recompute);
  for (auto& l : layers) EXPECT_EQ(l.load(), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectBytes(*r, a_bytes));
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(*r));
  EXPECT_EQ(pool_->Stats().ready, 9u);
}

TEST_F(RuntimeFetchTest, AMissingChunkEndsThePrefix) {
  ASSERT_NO_FATAL_FAILURE(StartNode({"--no_nvme", "--dram=256MiB", "--ucx_transports=tcp"}, 2, 16, 32));
  const std::vector<ChunkKey> c = ns_.Keys(Tokens(6 * 16, 4));
  const std::vector<std::byte> bytes = Bytes(6 * ns_.chunk_bytes, 13);
  // Chunks 0..2 and 4..5 saved; chunk 3 never was.
  ASSERT_NO_FATAL_FAILURE(Save(c, 0, 3, std::span(bytes).first(3 * ns_.chunk_bytes)));
  ASSERT_NO_FATAL_FAILURE(Save(c, 4, 2, std::span(bytes).subspan(4 * ns_.chunk_bytes)));
  auto r = runtime::Fetch(*client_, ns_, *pool_, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->slots.size(), 3u);
  EXPECT_EQ(r->loaded, 3u);
  EXPECT_TRUE(r->recompute);
  EXPECT_TRUE(r->stop_reason.ok()) << r->stop_reason;  // the store has no more: not an error
  ASSERT_NO_FATAL_FAILURE(ExpectBytes(*r, bytes));
  for (size_t i = 3; i < 6; ++i) {
    EXPECT_EQ(pool_->Find(c[i]).status().code(), absl::StatusCode::kNotFound) << i;
  }
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(*r));
}

TEST_F(RuntimeFetchTest, ANodeKilledMidLoadMeansRecomputeAndFreesTheSlots) {
  // 1 MiB chunks (4 layers x 2 x 4 heads x 128 tokens x 128 x 2 B), 48 of them.
  constexpr size_t kChunks = 48;
  // Over UCX: the transfer is cut off mid-way (over shared memory a load whose
  // lease was granted completes from the pool the client maps; see below).
  ASSERT_NO_FATAL_FAILURE(StartNode({"--no_nvme", "--dram=512MiB", "--ucx_transports=tcp",
                                     "--lease_ttl=30s"},
                                    4, 128, kChunks, client::SameHost::kOff));
  ASSERT_EQ(client_->data_path(), "ucx");
  ASSERT_EQ(ns_.chunk_bytes, uint64_t{1} << 20);
  const std::vector<ChunkKey> keys = ns_.Keys(Tokens(kChunks * 128, 5));
  const std::vector<std::byte> bytes = Bytes(kChunks * ns_.chunk_bytes, 14);
  ASSERT_NO_FATAL_FAILURE(Save(keys, 0, kChunks, bytes));

  const pid_t pid = server_->pid();
  std::atomic<bool> killed{false};
  runtime::FetchOptions fo;
  fo.on_layer = [&](uint32_t layer) {
    if (layer == 0 && !killed.exchange(true)) kill(pid, SIGKILL);
  };
  auto r = runtime::Fetch(*client_, ns_, *pool_, keys, fo);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(killed.load());
  EXPECT_TRUE(r->recompute);
  EXPECT_TRUE(r->slots.empty());
  EXPECT_EQ(r->loaded, 0u);
  EXPECT_TRUE(r->stop_reason.code() == absl::StatusCode::kUnavailable ||
              r->stop_reason.code() == absl::StatusCode::kDeadlineExceeded)
      << r->stop_reason;
  const runtime::ChunkPoolStats st = pool_->Stats();
  EXPECT_EQ(st.free, st.slots);
  EXPECT_EQ(st.loading, 0u);
  EXPECT_EQ(pool_->Find(keys[0]).status().code(), absl::StatusCode::kNotFound);

  // With the node gone the next fetch finds nothing to load and says so.
  r = runtime::Fetch(*client_, ns_, *pool_, keys);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->recompute);
  EXPECT_TRUE(r->slots.empty());
  EXPECT_FALSE(r->stop_reason.ok());
}

TEST_F(RuntimeFetchTest, ANodeKilledMidLoadOverSharedMemoryStillYieldsVerifiedChunks) {
  constexpr size_t kChunks = 8;
  ASSERT_NO_FATAL_FAILURE(StartNode({"--no_nvme", "--dram=64MiB", "--lease_ttl=30s"}, 2, 16,
                                    kChunks, client::SameHost::kAuto));
  ASSERT_EQ(client_->data_path(), "shm");
  const std::vector<ChunkKey> keys = ns_.Keys(Tokens(kChunks * 16, 7));
  const std::vector<std::byte> bytes = Bytes(kChunks * ns_.chunk_bytes, 15);
  ASSERT_NO_FATAL_FAILURE(Save(keys, 0, kChunks, bytes));

  const pid_t pid = server_->pid();
  std::atomic<bool> killed{false};
  runtime::FetchOptions fo;
  fo.on_layer = [&](uint32_t layer) {
    if (layer == 0 && !killed.exchange(true)) kill(pid, SIGKILL);
  };
  // The lease was granted before the node died: the mapped pool still holds
  // the chunks, and every one is checksum-verified.
  auto r = runtime::Fetch(*client_, ns_, *pool_, keys, fo);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(killed.load());
  EXPECT_EQ(r->loaded, kChunks);
  EXPECT_TRUE(r->stop_reason.ok()) << r->stop_reason;
  ASSERT_NO_FATAL_FAILURE(ReleaseAll(*r));

  // With the node gone no new lease is granted: nothing more is read.
  runtime::ChunkPool::Options po;
  po.chunk_bytes = ns_.chunk_bytes;
  po.layer_bytes = ns_.layer_bytes;
  auto fresh = ChunkPool::Create(po, *runtime::CreateHostSlotMemory(kChunks * po.chunk_bytes));
  ASSERT_TRUE(fresh.ok());
  r = runtime::Fetch(*client_, ns_, **fresh, keys);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->recompute);
  EXPECT_FALSE(r->stop_reason.ok());
}

TEST_F(RuntimeFetchTest, RejectsAPoolOfAnotherChunkSize) {
  ASSERT_NO_FATAL_FAILURE(StartNode({"--no_nvme", "--dram=64MiB", "--ucx_transports=tcp"}, 2, 16, 4));
  ChunkPool::Options po;
  po.chunk_bytes = ns_.chunk_bytes * 2;
  auto other = ChunkPool::Create(po, *runtime::CreateHostSlotMemory(4 * po.chunk_bytes));
  ASSERT_TRUE(other.ok());
  const std::vector<ChunkKey> keys = ns_.Keys(Tokens(16, 6));
  EXPECT_EQ(runtime::Fetch(*client_, ns_, **other, keys).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata
