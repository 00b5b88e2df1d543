// The worker runtime end to end on the CPU model, against a real `strata
// serve`: a conversation's chunks saved by one worker and loaded by another
// give the same logits and the same greedy tokens as recomputing the whole
// conversation (from DRAM, and from NVMe after the node restarted); a load
// that fails after the model read it is discarded and recomputed; the store
// gone means recompute; a model that does not fit the namespace and a pool
// too small for a conversation are clear errors.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/llama_model.h"
#include "client/runtime/llama_weights.h"
#include "client/runtime/slot_memory.h"
#include "client/runtime/worker.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace strata {
namespace {

using runtime::ChunkPool;
using runtime::LlamaConfig;
using runtime::Worker;
using runtime::WorkerOptions;

constexpr int kTpc = 16;

std::vector<int32_t> Conversation(int n, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 29 + salt * 7 + 3) % 97);
  return t;
}

// A KvDevice (a seam of ours) over the host one whose loads fail as a real
// load can: the last loaded chunk fails its checksum after the model read it
// (kLateChecksum), the bytes stop coming at layer 1 (kUnderStep: the node
// died mid-load), or the load cannot start (kAtStart). A failed chunk is
// dropped from the pool, as a device load frees it.
class FaultyLoads final : public runtime::KvDevice {
 public:
  enum class Fault { kLateChecksum, kUnderStep, kAtStart };
  FaultyLoads(runtime::KvDevice* inner, Fault fault) : inner_(inner), fault_(fault) {}
  absl::StatusOr<std::unique_ptr<runtime::PrefixLoad>> StartLoad(
      client::Client& client, const client::Namespace& ns, ChunkPool& pool,
      std::span<const ChunkKey> keys) override {
    if (fault_ == Fault::kAtStart) return absl::UnavailableError("the node cannot be reached");
    auto load = inner_->StartLoad(client, ns, pool, keys);
    if (!load.ok()) return load.status();
    return std::unique_ptr<runtime::PrefixLoad>(new Load(*std::move(load), pool, fault_));
  }
  absl::StatusOr<std::unique_ptr<runtime::HostCopy>> StartCopyToHost(
      ChunkPool& pool, std::span<const runtime::SlotId> slots) override {
    return inner_->StartCopyToHost(pool, slots);
  }

 private:
  class Load final : public runtime::PrefixLoad {
   public:
    Load(std::unique_ptr<runtime::PrefixLoad> inner, ChunkPool& pool, Fault fault)
        : inner_(std::move(inner)), pool_(pool), fault_(fault) {}
    std::span<const runtime::SlotId> slots() const override { return inner_->slots(); }
    absl::Status BeforeAttention(int layer) override {
      if (fault_ == Fault::kUnderStep && layer == 1) {
        return absl::UnavailableError("the node died mid-load");
      }
      return inner_->BeforeAttention(layer);
    }
    runtime::FetchResult Wait() override {
      runtime::FetchResult r = inner_->Wait();
      // The last loaded chunk fails; under the step, all of them do.
      const size_t failing = fault_ == Fault::kUnderStep ? r.loaded : std::min<size_t>(r.loaded, 1);
      for (size_t i = 0; i < failing; ++i) {
        (void)pool_.Release(r.slots.back());
        (void)pool_.Discard(r.slots.back());
        r.slots.pop_back();
        --r.loaded;
      }
      if (failing > 0) {
        r.recompute = true;
        r.stop_reason = fault_ == Fault::kUnderStep
                            ? absl::UnavailableError("the node died mid-load")
                            : absl::DataLossError("load: chunk does not match its checksum");
      }
      return r;
    }

   private:
    std::unique_ptr<runtime::PrefixLoad> inner_;
    ChunkPool& pool_;
    const Fault fault_;
  };
  runtime::KvDevice* inner_;
  const Fault fault_;
};

class RuntimeWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = LlamaConfig::Tiny();
    weights_ = runtime::SeededLlamaWeights(config_, 11);
    auto model = runtime::CreateCpuLlama(config_, kTpc, weights_->views);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    device_ = runtime::CreateHostKvDevice();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
  }

  void StartNode(bool nvme) {
    std::vector<std::string> args = {"--dram=64MiB", "--ucx_transports=tcp"};
    if (nvme) {
      args.push_back("--data_dir=" + dir_ + ".data");
      args.push_back("--nvme=256MiB");
    } else {
      args.push_back("--no_nvme");
    }
    server_ = std::make_unique<testing::ServerProcess>(args, dir_ + ".port");
    ASSERT_NO_FATAL_FAILURE(server_->Start());
    ASSERT_NO_FATAL_FAILURE(Connect());
  }
  void Connect() {
    client::ClientOptions o;
    o.server_address = server_->address();
    o.ucx_transports = "tcp";
    o.rpc_timeout = absl::Seconds(2);
    o.transfer_timeout = absl::Seconds(4);
    auto c = client::Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);
    auto ns = client_->RegisterNamespace(config_.Namespace("tiny-llama", kTpc), "tenant");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
  }
  std::unique_ptr<ChunkPool> Pool(size_t slots) {
    auto mem = runtime::CreateHostSlotMemory(slots * ns_.chunk_bytes);
    EXPECT_TRUE(mem.ok());
    ChunkPool::Options po;
    po.chunk_bytes = ns_.chunk_bytes;
    po.layer_bytes = ns_.layer_bytes;
    auto pool = ChunkPool::Create(po, *std::move(mem));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return *std::move(pool);
  }
  std::unique_ptr<Worker> MakeWorker(ChunkPool* pool, WorkerOptions o = {},
                                     runtime::KvDevice* device = nullptr) {
    auto w = Worker::Create(client_.get(), ns_, model_.get(), pool,
                            device != nullptr ? device : device_.get(), o);
    EXPECT_TRUE(w.ok()) << w.status();
    return *std::move(w);
  }
  // Greedy decoding of `steps` tokens after a prefill.
  std::vector<int32_t> Greedy(Worker& w, std::vector<float> logits, int steps) {
    std::vector<int32_t> out;
    for (int i = 0; i < steps; ++i) {
      out.push_back(runtime::ArgmaxRows(logits, config_.vocab)[0]);
      EXPECT_TRUE(w.Decode(out.back(), &logits).ok());
    }
    return out;
  }
  // The reference: the whole conversation recomputed on a fresh pool.
  void Recompute(std::span<const int32_t> tokens, std::vector<float>* logits,
                 std::vector<int32_t>* greedy, int steps) {
    auto pool = Pool(16);
    WorkerOptions o;
    o.source = WorkerOptions::Source::kNone;
    o.save = false;
    auto w = MakeWorker(pool.get(), o);
    auto stats = w->Prefill(tokens, logits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->computed_tokens, static_cast<int>(tokens.size()));
    *greedy = Greedy(*w, *logits, steps);
  }

  LlamaConfig config_;
  std::unique_ptr<runtime::OwnedLlamaWeights> weights_;
  std::unique_ptr<runtime::LlamaModel> model_;
  std::unique_ptr<runtime::KvDevice> device_;
  std::string dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<client::Client> client_;
  client::Namespace ns_;
};

TEST_F(RuntimeWorkerTest, ALoadedConversationContinuesExactlyAsRecomputed) {
  ASSERT_NO_FATAL_FAILURE(StartNode(/*nvme=*/true));
  // Turn 1 on worker A: 40 tokens, then 12 decoded (the trailing chunk fills
  // at 48 and is saved).
  std::vector<int32_t> conv = Conversation(40, 1);
  {
    auto pool = Pool(16);
    auto a = MakeWorker(pool.get());
    std::vector<float> logits;
    auto stats = a->Prefill(conv, &logits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->computed_tokens, 40);
    const std::vector<int32_t> reply = Greedy(*a, logits, 12);
    conv.insert(conv.end(), reply.begin(), reply.end());
    ASSERT_TRUE(a->WaitSaves().ok());
    EXPECT_EQ(a->counters().chunks_saved, 3u);  // tokens 0..47
  }
  // Turn 2 on worker B (a fresh pool): the history plus a new prompt.
  const std::vector<int32_t> prompt = Conversation(9, 2);
  conv.insert(conv.end(), prompt.begin(), prompt.end());  // 61 tokens
  std::vector<float> want;
  std::vector<int32_t> want_tokens;
  ASSERT_NO_FATAL_FAILURE(Recompute(conv, &want, &want_tokens, 20));

  auto check_loaded = [&](const char* from) {
    auto pool = Pool(16);
    auto b = MakeWorker(pool.get());
    std::vector<float> logits;
    auto stats = b->Prefill(conv, &logits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->loaded_tokens, 48) << from;
    EXPECT_EQ(stats->computed_tokens, 13) << from;
    EXPECT_EQ(logits, want) << from;
    EXPECT_EQ(Greedy(*b, logits, 20), want_tokens) << from;
    // The step run only after the verified load: the same.
    auto pool2 = Pool(16);
    WorkerOptions after;
    after.overlap = false;
    after.save = false;
    auto c = MakeWorker(pool2.get(), after);
    std::vector<float> logits2;
    auto stats2 = c->Prefill(conv, &logits2);
    ASSERT_TRUE(stats2.ok()) << stats2.status();
    EXPECT_EQ(stats2->loaded_tokens, 48) << from;
    EXPECT_EQ(logits2, want) << from;
  };
  check_loaded("DRAM");
  // After a restart the chunks come from NVMe.
  client_.reset();
  ASSERT_EQ(server_->Stop(), 0);
  ASSERT_NO_FATAL_FAILURE(server_->Start());
  ASSERT_NO_FATAL_FAILURE(Connect());
  check_loaded("NVMe");
}

TEST_F(RuntimeWorkerTest, PoolHitsAndSharedPrefixes) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  auto pool = Pool(16);
  auto w = MakeWorker(pool.get());
  std::vector<float> logits;
  const std::vector<int32_t> conv = Conversation(70, 3);
  ASSERT_TRUE(w->Prefill(conv, &logits).ok());
  // The same conversation again: everything but the last chunk's tokens is
  // a pool hit.
  auto again = w->Prefill(conv, &logits);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->hit_tokens, 64);
  EXPECT_EQ(again->loaded_tokens, 0);
  EXPECT_EQ(again->computed_tokens, 6);
}

TEST_F(RuntimeWorkerTest, ALoadThatFailsLateIsDiscardedAndRecomputed) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  std::vector<int32_t> conv = Conversation(50, 4);
  {
    auto pool = Pool(16);
    auto a = MakeWorker(pool.get());
    std::vector<float> logits;
    ASSERT_TRUE(a->Prefill(conv, &logits).ok());
    ASSERT_TRUE(a->WaitSaves().ok());
  }
  std::vector<float> want;
  std::vector<int32_t> want_tokens;
  ASSERT_NO_FATAL_FAILURE(Recompute(conv, &want, &want_tokens, 4));
  FaultyLoads failing(device_.get(), FaultyLoads::Fault::kLateChecksum);
  auto pool = Pool(16);
  auto b = MakeWorker(pool.get(), {}, &failing);
  std::vector<float> logits;
  auto stats = b->Prefill(conv, &logits);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->recomputed);
  EXPECT_EQ(stats->load_stop_reason.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(b->counters().recomputes_after_failed_load, 1u);
  // The two verified chunks were kept (pool hits on the second attempt).
  EXPECT_EQ(stats->hit_tokens, 32);
  EXPECT_EQ(logits, want);
  EXPECT_EQ(Greedy(*b, logits, 4), want_tokens);
}

TEST_F(RuntimeWorkerTest, ALoadThatFailsUnderTheStepOrCannotStartMeansRecompute) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  const std::vector<int32_t> conv = Conversation(50, 8);
  {
    auto pool = Pool(16);
    auto a = MakeWorker(pool.get());
    std::vector<float> logits;
    ASSERT_TRUE(a->Prefill(conv, &logits).ok());
    ASSERT_TRUE(a->WaitSaves().ok());
  }
  std::vector<float> want;
  std::vector<int32_t> want_tokens;
  ASSERT_NO_FATAL_FAILURE(Recompute(conv, &want, &want_tokens, 3));
  for (bool at_start : {false, true}) {
    FaultyLoads broken(device_.get(), at_start ? FaultyLoads::Fault::kAtStart
                                               : FaultyLoads::Fault::kUnderStep);
    auto pool = Pool(16);
    WorkerOptions o;
    o.save = false;
    auto w = MakeWorker(pool.get(), o, &broken);
    std::vector<float> logits;
    auto stats = w->Prefill(conv, &logits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->load_stop_reason.code(), absl::StatusCode::kUnavailable) << at_start;
    EXPECT_EQ(stats->computed_tokens, 50) << at_start;
    EXPECT_EQ(stats->recomputed, !at_start);
    EXPECT_EQ(logits, want) << at_start;
    EXPECT_EQ(Greedy(*w, logits, 3), want_tokens) << at_start;
    EXPECT_EQ(pool->Stats().loading, 0u);
  }
}

TEST_F(RuntimeWorkerTest, TheStoreGoneMeansRecompute) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  const std::vector<int32_t> conv = Conversation(40, 5);
  std::vector<float> want;
  std::vector<int32_t> want_tokens;
  ASSERT_NO_FATAL_FAILURE(Recompute(conv, &want, &want_tokens, 2));
  server_->Kill();
  auto pool = Pool(16);
  WorkerOptions o;
  o.save = false;
  auto w = MakeWorker(pool.get(), o);
  std::vector<float> logits;
  auto stats = w->Prefill(conv, &logits);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->computed_tokens, 40);
  EXPECT_FALSE(stats->load_stop_reason.ok());
  EXPECT_EQ(logits, want);
}

TEST_F(RuntimeWorkerTest, MismatchesAndAFullPoolAreClearErrors) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  // A namespace of another shape: refused before anything moves.
  LlamaConfig other = config_;
  other.num_layers = 3;
  auto ns = client_->RegisterNamespace(other.Namespace("other", kTpc), "tenant");
  ASSERT_TRUE(ns.ok());
  auto pool = Pool(2);
  auto w = Worker::Create(client_.get(), *ns, model_.get(), pool.get(), device_.get());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("num_layers"), std::string::npos) << w.status();
  auto ns32 = client_->RegisterNamespace(config_.Namespace("tpc32", 32), "tenant");
  ASSERT_TRUE(ns32.ok());
  w = Worker::Create(client_.get(), *ns32, model_.get(), pool.get(), device_.get());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);

  // Two slots cannot hold 40 tokens (three chunks): that request fails, the
  // pool is left as it was, and a shorter conversation runs.
  auto worker = MakeWorker(pool.get());
  std::vector<float> logits;
  auto stats = worker->Prefill(Conversation(40, 6), &logits);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kResourceExhausted) << stats.status();
  EXPECT_EQ(pool->Stats().free, 2u);
  EXPECT_TRUE(worker->Prefill(Conversation(20, 6), &logits).ok());
  EXPECT_EQ(worker->Decode(97, &logits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(worker->Prefill(std::vector<int32_t>{}, &logits).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
// A conversation longer than the window: the system prompt's chunk stays,
// the oldest chunks after it are dropped, the rest are loaded from the store
// (under their exact keys, computed before the truncation) and attend at new
// positions, without being recomputed. The logits equal the model's step over
// exactly those bytes at the new positions; chunks computed in the truncated
// view are saved under view keys only, which the next truncated turn loads
// and an untruncated worker never sees.
TEST_F(RuntimeWorkerTest, TruncationReusesChunksAtNewPositions) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  WorkerOptions trunc;
  trunc.max_context = 64;  // 4 chunks
  trunc.keep_chunks = 1;
  trunc.truncate_step_chunks = 1;
  // Turn 1: 60 tokens and 4 decoded: chunks 0..3 saved under exact keys.
  std::vector<int32_t> conv = Conversation(60, 5);
  {
    auto pool = Pool(16);
    auto a = MakeWorker(pool.get(), trunc);
    std::vector<float> logits;
    auto stats = a->Prefill(conv, &logits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->dropped_tokens, 0);
    const std::vector<int32_t> reply = Greedy(*a, logits, 4);
    conv.insert(conv.end(), reply.begin(), reply.end());
    ASSERT_TRUE(a->WaitSaves().ok());
    EXPECT_EQ(a->counters().chunks_saved, 4u);
    EXPECT_EQ(a->dropped_chunks(), 0);
  }
  // Turn 2: 90 tokens: 2 chunks over the window, so chunks 1 and 2 go; the
  // view is chunk 0, chunk 3 (loaded, now at position 16) and 26 new tokens.
  const std::vector<int32_t> prompt = Conversation(26, 6);
  conv.insert(conv.end(), prompt.begin(), prompt.end());
  std::vector<int32_t> view(conv.begin(), conv.begin() + kTpc);
  view.insert(view.end(), conv.begin() + 3 * kTpc, conv.end());
  ASSERT_EQ(view.size(), 58u);
  auto pool_b = Pool(16);
  auto b = MakeWorker(pool_b.get(), trunc);
  std::vector<float> got;
  auto stats = b->Prefill(conv, &got);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->tokens, 90);
  EXPECT_EQ(stats->dropped_tokens, 32);
  EXPECT_EQ(stats->loaded_tokens, 32);
  EXPECT_EQ(stats->computed_tokens, 26);
  EXPECT_EQ(b->dropped_chunks(), 2);
  EXPECT_EQ(b->counters().truncated_turns, 1u);
  ASSERT_TRUE(b->WaitSaves().ok());
  EXPECT_EQ(b->counters().chunks_saved, 1u);  // view chunk 2 (tokens 64..79)

  // The reference: the model's step over chunks 0 and 3 as stored, at
  // positions 0 and 16, and the 26 new tokens.
  {
    const std::vector<uint32_t> key_tokens(conv.begin(), conv.end());
    const std::vector<ChunkKey> exact = ns_.Keys(key_tokens);
    std::vector<std::byte> buf(4 * ns_.chunk_bytes);
    const ChunkKey loaded[] = {exact[0], exact[3]};
    auto t = client_->Load(ns_, loaded, std::span(buf).first(2 * ns_.chunk_bytes));
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Wait().ok());
    std::vector<std::byte*> bases;
    for (int i = 0; i < 4; ++i) bases.push_back(buf.data() + i * ns_.chunk_bytes);
    auto step = runtime::SequenceStep::Make(bases, 32, 58, kTpc);
    ASSERT_TRUE(step.ok()) << step.status();
    std::vector<float> want;
    ASSERT_TRUE(model_->Forward(step->Batch(std::span(view).subspan(32)), &want).ok());
    EXPECT_EQ(got, want);
  }
  // Turn 3 on a fresh worker: 93 tokens, still 2 chunks dropped; the view
  // chunk computed by turn 2 is loaded under its view key.
  const std::vector<int32_t> more = Conversation(3, 7);
  conv.insert(conv.end(), more.begin(), more.end());
  std::vector<float> from_b;
  auto again = b->Prefill(conv, &from_b);  // b's own pool: hits
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->hit_tokens, 48);
  {
    auto pool_c = Pool(16);
    auto c = MakeWorker(pool_c.get(), trunc);
    std::vector<float> from_c;
    auto sc = c->Prefill(conv, &from_c);
    ASSERT_TRUE(sc.ok()) << sc.status();
    EXPECT_EQ(sc->loaded_tokens, 48);
    EXPECT_EQ(sc->computed_tokens, 13);
    EXPECT_EQ(from_c, from_b);
  }
  // Without truncation the view chunk is invisible: the exact chain's
  // chunks 0..3 load, the rest is computed, and the result is the full
  // recompute's, bit for bit.
  {
    std::vector<float> want;
    std::vector<int32_t> want_tokens;
    ASSERT_NO_FATAL_FAILURE(Recompute(conv, &want, &want_tokens, 0));
    auto pool_d = Pool(16);
    auto d = MakeWorker(pool_d.get());
    std::vector<float> from_d;
    auto sd = d->Prefill(conv, &from_d);
    ASSERT_TRUE(sd.ok()) << sd.status();
    EXPECT_EQ(sd->loaded_tokens, 64);
    EXPECT_EQ(sd->dropped_tokens, 0);
    EXPECT_EQ(from_d, want);
  }
}

// Decoding past the window drops a step of chunks in place; a worker that
// loads the same conversation later (same truncation) continues with the
// same logits.
TEST_F(RuntimeWorkerTest, DecodingPastTheWindowTruncatesInPlace) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  WorkerOptions trunc;
  trunc.max_context = 64;
  trunc.keep_chunks = 1;
  trunc.truncate_step_chunks = 1;
  std::vector<int32_t> conv = Conversation(60, 8);
  auto pool = Pool(16);
  auto a = MakeWorker(pool.get(), trunc);
  std::vector<float> logits;
  ASSERT_TRUE(a->Prefill(conv, &logits).ok());
  // Tokens 61..66 decoded greedily: the 65th does not fit, chunk 1 leaves
  // the view.
  for (int i = 0; i < 6; ++i) {
    conv.push_back(runtime::ArgmaxRows(logits, config_.vocab)[0]);
    ASSERT_TRUE(a->Decode(conv.back(), &logits).ok());
  }
  EXPECT_EQ(a->dropped_chunks(), 1);
  EXPECT_EQ(a->counters().truncated_turns, 1u);
  EXPECT_EQ(a->tokens().size(), 66u);
  ASSERT_TRUE(a->WaitSaves().ok());
  // Worker B loads chunk 0 and chunks 2..3 (exact keys, saved before the
  // drop) and computes tokens 64 and 65 in the view, as A did one at a time:
  // the logits of A's last step.
  auto pool_b = Pool(16);
  WorkerOptions no_save = trunc;
  no_save.save = false;
  auto b = MakeWorker(pool_b.get(), no_save);
  std::vector<float> got;
  auto stats = b->Prefill(conv, &got);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->dropped_tokens, 16);
  EXPECT_EQ(stats->loaded_tokens + stats->hit_tokens, 48);
  EXPECT_EQ(stats->computed_tokens, 2);
  EXPECT_EQ(got, logits);
}

TEST_F(RuntimeWorkerTest, TruncationOptions) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  auto pool = Pool(16);
  for (auto [max_context, keep] : {std::pair{50, 1}, {16, 1}, {-16, 0}, {64, -1}}) {
    WorkerOptions o;
    o.max_context = max_context;
    o.keep_chunks = keep;
    auto w = Worker::Create(client_.get(), ns_, model_.get(), pool.get(), device_.get(), o);
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument)
        << max_context << " " << keep;
  }
  // A window of 2 chunks keeping 1 (the smallest): any conversation fits,
  // here with 2 of its chunks dropped.
  WorkerOptions o;
  o.max_context = 32;
  o.keep_chunks = 1;
  auto w = MakeWorker(pool.get(), o);
  std::vector<float> logits;
  const std::vector<int32_t> fits = Conversation(32 + 16 + 15, 9);
  auto ok = w->Prefill(fits, &logits);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->dropped_tokens, 32);
  EXPECT_EQ(w->dropped_chunks(), 2);
  // An empty conversation is still refused, and the worker still serves.
  EXPECT_EQ(w->Prefill({}, &logits).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(w->tokens().empty());
  EXPECT_TRUE(w->Prefill(fits, &logits).ok());
}

// Several workers' conversations that share a system prompt decode in one
// model step: the prompt's chunks sit once in the shared pool, and each
// sequence's logits equal those of decoding it alone.
TEST_F(RuntimeWorkerTest, ABatchOfWorkersDecodesInOneStep) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  const std::vector<int32_t> system = Conversation(32, 20);
  std::vector<std::vector<int32_t>> convs;
  for (int b = 0; b < 3; ++b) {
    std::vector<int32_t> c = system;
    const std::vector<int32_t> own = Conversation(5 + 9 * b, 21 + b);
    c.insert(c.end(), own.begin(), own.end());
    convs.push_back(c);
  }
  constexpr int kSteps = 12;  // workers 0 and 1 (37, 46 tokens) fill a chunk on the way
  // Alone: each conversation decoded by itself (no store, no saves).
  WorkerOptions alone_options;
  alone_options.source = WorkerOptions::Source::kNone;
  alone_options.save = false;
  std::vector<std::vector<float>> alone_logits(3);
  std::vector<std::vector<int32_t>> alone_tokens(3);
  for (int b = 0; b < 3; ++b) {
    auto pool = Pool(16);
    auto w = MakeWorker(pool.get(), alone_options);
    std::vector<float> logits;
    ASSERT_TRUE(w->Prefill(convs[b], &logits).ok());
    for (int i = 0; i < kSteps; ++i) {
      alone_tokens[b].push_back(runtime::ArgmaxRows(logits, config_.vocab)[0]);
      ASSERT_TRUE(w->Decode(alone_tokens[b].back(), &logits).ok());
    }
    alone_logits[b] = logits;
  }
  // Batched, one pool: the system prompt's two chunks are shared slots.
  auto pool = Pool(16);
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Worker*> batch;
  std::vector<int32_t> next;
  for (int b = 0; b < 3; ++b) {
    workers.push_back(MakeWorker(pool.get()));
    batch.push_back(workers.back().get());
    std::vector<float> logits;
    auto stats = workers.back()->Prefill(convs[b], &logits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (b > 0) {
      EXPECT_EQ(stats->hit_tokens, 32);
    }
    next.push_back(runtime::ArgmaxRows(logits, config_.vocab)[0]);
  }
  // The two shared chunks, worker 2's own full chunk, three partial ones.
  EXPECT_EQ(pool->Stats().held, 6u);
  std::vector<float> logits;
  for (int step = 0; step < kSteps; ++step) {
    for (int b = 0; b < 3; ++b) EXPECT_EQ(next[b], alone_tokens[b][step]) << b << " " << step;
    ASSERT_TRUE(Worker::DecodeBatch(batch, next, runtime::AttentionKernel::kPrefill, &logits).ok());
    next = runtime::ArgmaxRows(logits, config_.vocab);
  }
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(std::vector<float>(logits.begin() + b * config_.vocab,
                                 logits.begin() + (b + 1) * config_.vocab),
              alone_logits[b])
        << b;
    EXPECT_EQ(workers[b]->tokens().size(), convs[b].size() + kSteps);
  }
  // Bad batches change nothing.
  const int32_t two[] = {1, 2};
  Worker* twice[] = {batch[0], batch[0]};
  EXPECT_EQ(Worker::DecodeBatch(twice, two, runtime::AttentionKernel::kPrefill, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Worker::DecodeBatch(batch, two, runtime::AttentionKernel::kPrefill, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  const int32_t bad[] = {1, config_.vocab, 2};
  EXPECT_EQ(Worker::DecodeBatch(batch, bad, runtime::AttentionKernel::kPrefill, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(workers[b]->tokens().size(), convs[b].size() + kSteps);
  }
}

// The decode bench's flow on the CPU model: sequences sharing a system prompt
// in one pool (pool hits only), each first decoded alone, then the whole
// batch decoded through every attention kernel: every row equals its alone
// decode.
TEST_F(RuntimeWorkerTest, BatchedDecodeThroughEveryKernelEqualsDecodingAlone) {
  ASSERT_NO_FATAL_FAILURE(StartNode(false));
  auto pool = Pool(256);
  const std::vector<int32_t> system = Conversation(8 * kTpc, 30);
  constexpr int kBatch = 8;
  std::vector<std::vector<int32_t>> convs;
  for (int b = 0; b < kBatch; ++b) {
    std::vector<int32_t> c = system;
    const std::vector<int32_t> own = Conversation(2 * kTpc + (b * 37) % kTpc, 31 + b);
    c.insert(c.end(), own.begin(), own.end());
    convs.push_back(c);
  }
  WorkerOptions wo;
  wo.source = WorkerOptions::Source::kPoolOnly;
  wo.save = false;
  std::vector<std::vector<float>> alone(kBatch);
  std::vector<int32_t> first(kBatch);
  for (int b = 0; b < kBatch; ++b) {
    auto w = MakeWorker(pool.get(), wo);
    std::vector<float> logits;
    ASSERT_TRUE(w->Prefill(convs[b], &logits).ok());
    first[b] = runtime::ArgmaxRows(logits, config_.vocab)[0];
    ASSERT_TRUE(w->Decode(first[b], &alone[b]).ok());
  }
  for (runtime::AttentionKernel kernel :
       {runtime::AttentionKernel::kPrefill, runtime::AttentionKernel::kPagedDecode,
        runtime::AttentionKernel::kPrefixAwareDecode, runtime::AttentionKernel::kRelayDecode}) {
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<Worker*> batch;
    for (int b = 0; b < kBatch; ++b) {
      workers.push_back(MakeWorker(pool.get(), wo));
      batch.push_back(workers.back().get());
      std::vector<float> logits;
      auto st = workers.back()->Prefill(convs[b], &logits);
      ASSERT_TRUE(st.ok()) << st.status();
      EXPECT_EQ(st->hit_tokens, static_cast<int>(convs[b].size()) / kTpc * kTpc -
                                    (convs[b].size() % kTpc == 0 ? kTpc : 0));
      EXPECT_EQ(runtime::ArgmaxRows(logits, config_.vocab)[0], first[b]);
    }
    std::vector<float> logits;
    ASSERT_TRUE(Worker::DecodeBatch(batch, first, kernel, &logits).ok());
    for (int b = 0; b < kBatch; ++b) {
      const std::vector<float> row(logits.begin() + b * config_.vocab,
                                   logits.begin() + (b + 1) * config_.vocab);
      float worst = 0;
      for (int v = 0; v < config_.vocab; ++v) worst = std::max(worst, std::abs(row[v] - alone[b][v]));
      EXPECT_LE(worst, 1e-4f) << runtime::AttentionKernelName(kernel) << " row " << b;
    }
  }
}

}  // namespace strata
