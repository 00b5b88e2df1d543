// strata_worker: the GPU worker runtime's tools (reached as `strata worker
// ...`; built only with a CUDA toolkit, run on a GPU machine).
//
//   strata_worker run [flags]    one conversation turn of a Llama model
//                                (safetensors + config.json, or seeded) over a
//                                node: load the cached prefix, prefill the
//                                rest, greedy-decode; logits and tokens to
//                                files (the check against transformers)
//   strata_worker bench [flags]  time to first token of returning
//                                conversations: recompute vs load from DRAM
//                                vs load from NVMe, the load hidden by the
//                                layer overlap, store-to-HBM bandwidth beside
//                                pinned host-to-device copy, decode tokens/s
//   strata_worker decode-bench   decode tokens/s of a batch sharing a system
//                                prompt: prefill, paged, prefix-aware and
//                                relay attention kernels
#include <cuda_runtime_api.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "client/runtime/cuda_slot_memory.h"
#include "client/runtime/device_fetch.h"
#include "client/runtime/llama_config.h"
#include "client/runtime/llama_cuda.h"
#include "client/runtime/llama_weights.h"
#include "client/runtime/safetensors.h"
#include "client/runtime/worker.h"
#include "client/runtime/worker_cuda.h"
#include "eviction/sim/trace.h"
#include "tools/cli/flags.h"

namespace strata {
namespace {

using runtime::ChunkPool;
using runtime::LlamaConfig;
using runtime::Worker;
using runtime::WorkerOptions;

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
  return 1;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The model: config.json + model.safetensors from a directory, or a named
// shape with seeded weights drawn on the device.
struct LoadedModel {
  LlamaConfig config;
  std::unique_ptr<runtime::SafetensorsFile> file;
  std::unique_ptr<runtime::CudaLlama> model;
};

absl::StatusOr<LoadedModel> LoadModel(const std::string& model_dir, const std::string& shape,
                                      int64_t seed, int tpc, int64_t warmup_rows) {
  LoadedModel m;
  if (!model_dir.empty()) {
    absl::StatusOr<std::string> json = ReadFile(model_dir + "/config.json");
    if (!json.ok()) return json.status();
    absl::StatusOr<LlamaConfig> config = LlamaConfig::FromHfJson(*json);
    if (!config.ok()) return config.status();
    m.config = *config;
    auto file = runtime::SafetensorsFile::Open(model_dir + "/model.safetensors");
    if (!file.ok()) return file.status();
    m.file = *std::move(file);
    auto views = runtime::ViewLlamaWeights(*m.file, m.config);
    if (!views.ok()) return views.status();
    auto model = runtime::CreateCudaLlama(m.config, tpc, *views);
    if (!model.ok()) return model.status();
    m.model = *std::move(model);
  } else {
    absl::StatusOr<LlamaConfig> config = LlamaConfig::Named(shape);
    if (!config.ok()) return config.status();
    m.config = *config;
    auto model = runtime::CreateSeededCudaLlama(m.config, tpc, static_cast<uint64_t>(seed));
    if (!model.ok()) return model.status();
    m.model = *std::move(model);
  }
  const absl::Time t0 = absl::Now();
  if (absl::Status st = m.model->Warmup(static_cast<int>(warmup_rows)); !st.ok()) return st;
  if (warmup_rows > 0) {
    std::fprintf(stderr, "model warmed up for steps of up to %lld tokens in %.0f ms\n",
                 static_cast<long long>(warmup_rows),
                 absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  return m;
}

// A view of device memory owned elsewhere (the bench's pools reuse one
// allocation, as a worker's one pool does for its whole life).
class BorrowedSlotMemory final : public runtime::SlotMemory {
 public:
  explicit BorrowedSlotMemory(const runtime::SlotMemory* owner) : owner_(owner) {}
  std::byte* base() const override { return owner_->base(); }
  size_t bytes() const override { return owner_->bytes(); }
  bool host_accessible() const override { return owner_->host_accessible(); }

 private:
  const runtime::SlotMemory* const owner_;
};

// A pool over `reuse` when given (its bytes are the pool's), else over a new
// device allocation of `bytes`.
absl::StatusOr<std::unique_ptr<ChunkPool>> MakePool(const client::Namespace& ns, uint64_t bytes,
                                                    const runtime::SlotMemory* reuse = nullptr) {
  absl::StatusOr<std::unique_ptr<runtime::SlotMemory>> mem =
      reuse != nullptr ? absl::StatusOr<std::unique_ptr<runtime::SlotMemory>>(
                             std::make_unique<BorrowedSlotMemory>(reuse))
                       : runtime::CreateCudaSlotMemory(bytes);
  if (!mem.ok()) return mem.status();
  ChunkPool::Options o;
  o.chunk_bytes = ns.chunk_bytes;
  o.layer_bytes = ns.layer_bytes;
  return ChunkPool::Create(o, *std::move(mem));
}

absl::StatusOr<std::unique_ptr<client::Client>> Connect(const std::string& server, bool same_host) {
  client::ClientOptions o;
  o.server_address = server;
  o.same_host = same_host ? client::SameHost::kAuto : client::SameHost::kOff;
  o.transfer_timeout = absl::Seconds(120);
  o.rpc_timeout = absl::Seconds(30);
  return client::Client::Connect(o);
}

absl::StatusOr<WorkerOptions::Source> ParseSource(const std::string& s) {
  if (s == "store") return WorkerOptions::Source::kStore;
  if (s == "pool") return WorkerOptions::Source::kPoolOnly;
  if (s == "none") return WorkerOptions::Source::kNone;
  return absl::InvalidArgumentError(absl::StrCat("--source '", s, "' (store, pool or none)"));
}

constexpr char kPoolHelp[] = "bytes of the HBM chunk pool";
constexpr char kWarmupHelp[] =
    "prepare the model's matrix products for steps of up to this many new tokens at start "
    "(the first step of a new size otherwise pays cuBLAS's setup, tens of ms; 0: none)";

// --- run --------------------------------------------------------------------

int Run(const std::vector<std::string>& args) {
  std::string server = "127.0.0.1:7400", model_dir, shape = "small", tokens_path, source = "store";
  std::string out_logits, out_tokens, tenant = "default", model_id;
  int64_t tpc = 16, decode = 0, seed = 1, max_context = 0, keep_chunks = 1,
          truncate_step_chunks = 0, warmup_rows = 2048;
  bool all_logits = false, save = true, same_host = true;
  cli::Bytes pool_bytes{1ull << 30};
  cli::FlagSet flags(
      "strata_worker run --tokens FILE [flags]\n\n"
      "Runs one turn of a conversation on the GPU: the cached prefix of the tokens in\n"
      "FILE (whitespace-separated ids: the whole conversation so far) is loaded from\n"
      "the node layer by layer into an HBM chunk pool while the model prefills the\n"
      "rest; then --decode tokens are decoded greedily. Chunks the turn computed are\n"
      "saved to the node. Writes the logits (float32, row-major [rows][vocab]) and\n"
      "the decoded tokens; prints what was loaded and computed.");
  flags.Add("server", "node address host:port", &server);
  flags.Add("model_dir", "directory with config.json and model.safetensors (HF Llama naming)",
            &model_dir);
  flags.Add("shape", "without --model_dir: seeded weights of this shape (small, llama3-8b)", &shape);
  flags.Add("seed", "seed of the seeded weights", &seed);
  flags.Add("model_id", "namespace model id (default: the model directory's name or the shape)",
            &model_id);
  flags.Add("tenant", "tenant of the namespace", &tenant);
  flags.Add("tokens_per_chunk", "tokens per chunk of the namespace (16..256)", &tpc);
  flags.Add("tokens", "file of token ids (the conversation so far)", &tokens_path);
  flags.Add("source", "where the cached prefix may come from: store, pool or none", &source);
  flags.Add("decode", "tokens to decode greedily after the prefill", &decode);
  flags.Add("all_logits", "write the logits of every prefilled token, not only the last", &all_logits);
  flags.Add("save", "save the chunks this turn computes to the node", &save);
  flags.Add("same_host", "read a node on this host through shared memory", &same_host);
  flags.Add("pool", kPoolHelp, &pool_bytes);
  flags.Add("max_context",
            "context window in tokens (0: none); a longer conversation drops its oldest "
            "chunks after --keep_chunks and reuses the rest at new positions",
            &max_context);
  flags.Add("keep_chunks", "chunks at the start (the system prompt) that truncation keeps",
            &keep_chunks);
  flags.Add("truncate_step_chunks",
            "chunks dropped at a time when the window is full (0: a quarter of the window)",
            &truncate_step_chunks);
  flags.Add("warmup_rows", kWarmupHelp, &warmup_rows);
  flags.Add("out_logits", "file for the logits (float32)", &out_logits);
  flags.Add("out_tokens", "file for the decoded tokens", &out_tokens);
  auto rest = flags.Parse(args);
  if (!rest.ok()) return Fail(rest.status());
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (tokens_path.empty()) return Fail(absl::InvalidArgumentError("--tokens is required"));
  // Before the model loads (seconds to minutes for real weights).
  if (absl::Status s = client::CheckServerAddress(server); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--server ", s.message())));
  }
  if (all_logits && max_context > 0) {
    return Fail(absl::InvalidArgumentError(
        "--all_logits recomputes the whole conversation: it does not go with --max_context"));
  }
  auto src = ParseSource(source);
  if (!src.ok()) return Fail(src.status());
  auto text = ReadFile(tokens_path);
  if (!text.ok()) return Fail(text.status());
  std::vector<int32_t> tokens;
  for (absl::string_view t : absl::StrSplit(*text, absl::ByAnyChar(" \n\t,"), absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(t, &v)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(tokens_path, ": '", t, "' is not a token id")));
    }
    tokens.push_back(v);
  }
  auto m = LoadModel(model_dir, shape, seed, static_cast<int>(tpc), warmup_rows);
  if (!m.ok()) return Fail(m.status());
  if (model_id.empty()) {
    model_id = model_dir.empty() ? shape : std::filesystem::path(model_dir).filename().string();
  }
  auto client = Connect(server, same_host);
  if (!client.ok()) return Fail(client.status());
  auto ns = (*client)->RegisterNamespace(m->config.Namespace(model_id, static_cast<int>(tpc)), tenant);
  if (!ns.ok()) return Fail(ns.status());
  auto pool = MakePool(*ns, pool_bytes.value);
  if (!pool.ok()) return Fail(pool.status());
  runtime::DeviceFetcher::Options fo;
  fo.staging_bytes = std::min<uint64_t>(pool_bytes.value, 1ull << 30);
  auto fetcher = runtime::DeviceFetcher::Create(fo);
  if (!fetcher.ok()) return Fail(fetcher.status());
  if (absl::Status st = (*fetcher)->Prepare(**client); !st.ok()) {
    std::fprintf(stderr, "warning: loads go through pinned staging: %s\n", st.ToString().c_str());
  }
  auto device = runtime::CreateCudaKvDevice(fetcher->get(), m->model->stream());
  WorkerOptions wo;
  wo.source = *src;
  wo.save = save;
  wo.max_context = static_cast<int>(max_context);
  wo.keep_chunks = static_cast<int>(keep_chunks);
  wo.truncate_step_chunks = static_cast<int>(truncate_step_chunks);
  auto worker = Worker::Create(client->get(), *ns, m->model.get(), pool->get(), device.get(), wo);
  if (!worker.ok()) return Fail(worker.status());

  std::vector<float> logits;
  absl::StatusOr<runtime::TurnStats> stats = (*worker)->Prefill(tokens, &logits);
  if (!stats.ok()) return Fail(stats.status());
  std::vector<float> first_logits = logits;
  if (all_logits) {
    // Recompute every row through the model directly (the worker's turn
    // gives the last row only).
    std::vector<std::byte*> bases;
    auto extra = MakePool(*ns, (tokens.size() / tpc + 2) * ns->chunk_bytes);
    if (!extra.ok()) return Fail(extra.status());
    for (size_t c = 0; c < (tokens.size() + tpc - 1) / tpc; ++c) {
      auto s = (*extra)->AllocatePrivate();
      if (!s.ok()) return Fail(s.status());
      bases.push_back(*(*extra)->SlotBase(*s));
    }
    auto step = runtime::SequenceStep::Make(bases, 0, static_cast<int>(tokens.size()), static_cast<int>(tpc));
    if (!step.ok()) return Fail(step.status());
    runtime::ForwardBatch b = step->Batch(tokens);
    b.all_logits = true;
    if (absl::Status st = m->model->Forward(b, &first_logits); !st.ok()) return Fail(st);
  }
  std::vector<int32_t> generated;
  for (int64_t i = 0; i < decode; ++i) {
    generated.push_back(runtime::ArgmaxRows(logits, m->config.vocab)[0]);
    if (absl::Status st = (*worker)->Decode(generated.back(), &logits); !st.ok()) return Fail(st);
  }
  absl::Status saves = (*worker)->WaitSaves();
  std::printf("tokens=%d dropped_tokens=%d hit_tokens=%d loaded_tokens=%d computed_tokens=%d "
              "recomputed=%d "
              "ttft_ms=%.3f load_wait_ms=%.3f chunks_saved=%llu data_path=%s load_stop=%s\n",
              stats->tokens, stats->dropped_tokens, stats->hit_tokens, stats->loaded_tokens,
              stats->computed_tokens,
              stats->recomputed ? 1 : 0, absl::ToDoubleMilliseconds(stats->time_to_logits),
              absl::ToDoubleMilliseconds(stats->load_wait),
              static_cast<unsigned long long>((*worker)->counters().chunks_saved),
              std::string((*client)->data_path()).c_str(), stats->load_stop_reason.ToString().c_str());
  if (!saves.ok()) std::fprintf(stderr, "warning: saves failed: %s\n", saves.ToString().c_str());
  if (!out_logits.empty()) {
    std::ofstream out(out_logits, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(first_logits.data()),
              static_cast<std::streamsize>(first_logits.size() * sizeof(float)));
  }
  if (!out_tokens.empty()) {
    std::ofstream out(out_tokens, std::ios::trunc);
    for (int32_t t : generated) out << t << "\n";
  }
  worker->reset();
  fetcher->reset();  // before the client (it registered the client's mapping)
  return 0;
}

// --- what bench and decode-bench share --------------------------------------

// A `strata serve` child (started and restarted by the bench).
class Node {
 public:
  Node(std::string bin, std::vector<std::string> args, std::string port_file)
      : bin_(std::move(bin)), args_(std::move(args)), port_file_(std::move(port_file)) {}
  ~Node() { Stop(); }
  absl::Status Start() {
    std::filesystem::remove(port_file_);
    pid_ = fork();
    if (pid_ < 0) return absl::InternalError("fork failed");
    if (pid_ == 0) {
      std::vector<std::string> a = {bin_, "serve", "--listen=127.0.0.1:0", "--port_file=" + port_file_};
      a.insert(a.end(), args_.begin(), args_.end());
      std::vector<char*> argv;
      for (auto& s : a) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(bin_.c_str(), argv.data());
      _exit(127);
    }
    for (int i = 0; i < 3000 && !std::filesystem::exists(port_file_); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    std::ifstream in(port_file_);
    int port = 0;
    in >> port;
    if (port <= 0) return absl::UnavailableError(absl::StrCat(bin_, " serve did not start"));
    address_ = absl::StrCat("127.0.0.1:", port);
    return absl::OkStatus();
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  const std::string& address() const { return address_; }

 private:
  std::string bin_;
  std::vector<std::string> args_;
  std::string port_file_;
  std::string address_;
  pid_t pid_ = -1;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The strata binary beside this one (or one directory up, as Bazel lays
// them out).
std::string SiblingStrata() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (const auto& p : {self.parent_path() / "strata", self.parent_path().parent_path() / "strata"}) {
    if (std::filesystem::exists(p) && !std::filesystem::is_directory(p)) return p.string();
  }
  return "strata";
}

// The flags of the setup both benchmarks share (StartBenchRig): the seeded
// model, the node they start and the HBM chunk pool. Each tool sets its own
// defaults (designated initializers), registers --shape and --seed first and
// --data_dir and --strata last, and places --tokens_per_chunk, --warmup_rows
// and --pool among its own flags (their help texts or places differ).
struct BenchFlags {
  std::string shape = "llama3-8b";
  int64_t seed = 1;
  int64_t tokens_per_chunk = 0;
  int64_t warmup_rows = 0;
  cli::Bytes pool;
  std::string data_dir;
  std::string strata_bin = SiblingStrata();

  void AddModelFlags(cli::FlagSet& flags, const char* seed_help) {
    flags.Add("shape", "model shape: llama3-8b or small", &shape);
    flags.Add("seed", seed_help, &seed);
  }
  void AddNodeFlags(cli::FlagSet& flags) {
    flags.Add("data_dir", "the node's data directory (emptied first)", &data_dir);
    flags.Add("strata", "the strata binary that serves", &strata_bin);
  }
};

// The parts a benchmark runs on, declared in the order StartBenchRig builds
// them so that they go in reverse: the KV device and the fetcher before the
// client (the fetcher registered the client's mapping), the client before the
// node. Not thread-safe.
struct BenchRig {
  // Constant after StartBenchRig.
  bool same_host = false;
  runtime::DeviceFetcher::Options fetch;

  std::unique_ptr<Node> node;
  LoadedModel model;
  std::unique_ptr<client::Client> client;
  client::Namespace ns;
  std::unique_ptr<runtime::DeviceFetcher> fetcher;
  std::unique_ptr<runtime::KvDevice> device;
};

// Connects to rig->node (through shared memory when rig->same_host),
// registers the model's namespace as tenant "bench", and creates the fetcher
// and the KV device on the model's stream. REQUIRES: no client, fetcher or
// device yet.
absl::Status ConnectBenchRig(const BenchFlags& flags, BenchRig* rig) {
  auto c = Connect(rig->node->address(), rig->same_host);
  if (!c.ok()) return c.status();
  rig->client = *std::move(c);
  auto n = rig->client->RegisterNamespace(
      rig->model.config.Namespace(flags.shape, static_cast<int>(flags.tokens_per_chunk)), "bench");
  if (!n.ok()) return n.status();
  rig->ns = *n;
  auto fetcher = runtime::DeviceFetcher::Create(rig->fetch);
  if (!fetcher.ok()) return fetcher.status();
  rig->fetcher = *std::move(fetcher);
  rig->device = runtime::CreateCudaKvDevice(rig->fetcher.get(), rig->model.model->stream());
  return absl::OkStatus();
}

// Empties flags.data_dir, starts `flags.strata_bin serve` on its data/
// (`node_args` added), loads the seeded model of flags.shape (warmed up for
// flags.warmup_rows), then ConnectBenchRig. On failure `rig` keeps what was
// started (the node stops when the rig goes). REQUIRES: `rig` is new.
absl::Status StartBenchRig(const BenchFlags& flags, std::vector<std::string> node_args,
                           bool same_host, const runtime::DeviceFetcher::Options& fetch,
                           BenchRig* rig) {
  rig->same_host = same_host;
  rig->fetch = fetch;
  std::filesystem::remove_all(flags.data_dir);
  std::filesystem::create_directories(flags.data_dir);
  node_args.insert(node_args.begin(), "--data_dir=" + flags.data_dir + "/data");
  rig->node =
      std::make_unique<Node>(flags.strata_bin, std::move(node_args), flags.data_dir + "/port");
  if (absl::Status st = rig->node->Start(); !st.ok()) return st;
  auto m = LoadModel("", flags.shape, flags.seed, static_cast<int>(flags.tokens_per_chunk),
                     flags.warmup_rows);
  if (!m.ok()) return m.status();
  rig->model = *std::move(m);
  return ConnectBenchRig(flags, rig);
}

// Restarts the node on the same data directory (its DRAM cold, its NVMe
// tier kept) and connects to it anew (ConnectBenchRig).
absl::Status RestartBenchNode(const BenchFlags& flags, BenchRig* rig) {
  rig->device.reset();
  rig->fetcher.reset();
  rig->client.reset();
  rig->node->Stop();
  if (absl::Status st = rig->node->Start(); !st.ok()) return st;
  return ConnectBenchRig(flags, rig);
}

// --- bench ------------------------------------------------------------------

int Bench(const std::vector<std::string>& args) {
  BenchFlags common{.tokens_per_chunk = 256,
                    .warmup_rows = -1,
                    .pool = {8ull << 30},
                    .data_dir = "/tmp/strata-worker-bench"};
  std::string histories = "1024,4096,16384";
  int64_t reps = 3, decode = 32, trace_seed = 1, verify_threads = 0;
  bool same_host = true, nvme = true, interference = false, overlap = true, reuse_pool = true,
       warm_shapes = false;
  cli::Bytes dram{8ull << 30}, nvme_bytes{24ull << 30}, min_copy{0};
  cli::FlagSet flags(
      "strata_worker bench [flags]\n\n"
      "Time to first token of a returning conversation on this GPU, against a\n"
      "`strata serve` it starts on this host: for each history length, the new\n"
      "turn's prompt lengths come from the conversation trace generator (seeded);\n"
      "TTFT recomputing the whole conversation, loading the history from DRAM, from\n"
      "NVMe (the node restarted, so its DRAM is cold), and with the history already\n"
      "in HBM (compute only); the load alone, its bandwidth beside a pinned\n"
      "host-to-device copy of the same bytes, the share of the load the layer overlap\n"
      "hid; greedy decode tokens/s. Seeded weights (no model files needed).");
  common.AddModelFlags(flags, "seed of the weights");
  flags.Add("histories", "history lengths in tokens, comma-separated", &histories);
  flags.Add("tokens_per_chunk", "tokens per chunk", &common.tokens_per_chunk);
  flags.Add("reps", "measurements per figure (median)", &reps);
  flags.Add("decode", "tokens decoded after the DRAM turn", &decode);
  flags.Add("trace_seed", "seed of the trace generator (prompt lengths)", &trace_seed);
  flags.Add("same_host", "read the node through shared memory (else UCX)", &same_host);
  flags.Add("verify_threads", "threads checking a same-host load's checksums (0: half the cores)",
            &verify_threads);
  flags.Add("nvme", "also measure loads from NVMe (restarts the node)", &nvme);
  flags.Add("overlap", "run the model step while the history loads (else after it)", &overlap);
  flags.Add("min_copy", "same host: least bytes of a chunk per copy (groups of layers)", &min_copy);
  flags.Add("interference",
            "also time the compute-only turn beside a host-to-device copy of the history's "
            "size (from pinned memory; from the registered pool mapping)",
            &interference);
  flags.Add("pool", kPoolHelp, &common.pool);
  flags.Add("warmup_rows",
            "prepare the model's matrix products for steps of up to this many tokens first "
            "(-1: the longest history plus 1024; 0: none)",
            &common.warmup_rows);
  flags.Add("reuse_pool_memory",
            "every turn's fresh pool reuses one device allocation (as a worker's pool does); "
            "--noreuse_pool_memory allocates each pool anew",
            &reuse_pool);
  flags.Add("warm_shapes",
            "before each DRAM turn, run a turn of the new prompt alone (so that the DRAM turn is "
            "not the model's first step of that many tokens)",
            &warm_shapes);
  flags.Add("dram", "the node's DRAM pool", &dram);
  flags.Add("nvme_bytes", "the node's NVMe tier", &nvme_bytes);
  common.AddNodeFlags(flags);
  auto rest = flags.Parse(args);
  if (!rest.ok()) return Fail(rest.status());
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  const int64_t tpc = common.tokens_per_chunk;
  std::vector<int> hist;
  for (absl::string_view h : absl::StrSplit(histories, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(h, &v) || v <= 0 || v % tpc != 0) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--histories: '", h, "' is not a positive multiple of ", tpc)));
    }
    hist.push_back(v);
  }
  // Prompt lengths of new turns from the trace generator.
  eviction::sim::GeneratorOptions go;
  go.seed = static_cast<uint64_t>(trace_seed);
  go.sessions = 64;
  auto trace = eviction::sim::GenerateTrace(go);
  if (!trace.ok()) return Fail(trace.status());
  std::vector<int> prompts;
  for (const auto& s : trace->sessions) {
    for (size_t t = 1; t < s.turns.size(); ++t) prompts.push_back(static_cast<int>(s.turns[t].prompt_tokens));
  }

  if (hist.empty()) return Fail(absl::InvalidArgumentError("--histories names no length"));
  if (common.warmup_rows < 0) {
    common.warmup_rows = *std::max_element(hist.begin(), hist.end()) + 1024;
  }
  runtime::DeviceFetcher::Options fo;
  fo.staging_bytes = std::min<uint64_t>(common.pool.value / 2, 4ull << 30);
  fo.verify_threads = static_cast<size_t>(verify_threads);
  fo.min_copy_bytes = min_copy.value;
  auto rig_owner = std::make_unique<BenchRig>();
  BenchRig& rig = *rig_owner;
  if (absl::Status st = StartBenchRig(common,
                                      {absl::StrCat("--dram=", dram.value),
                                       absl::StrCat("--nvme=", nvme_bytes.value),
                                       "--lease_ttl=120s"},
                                      same_host, fo, &rig);
      !st.ok()) {
    return Fail(st);
  }
  // The rig's parts under short names (the node's restart replaces the
  // client, namespace, fetcher and device in place).
  const uint64_t pool_bytes = common.pool.value;
  const LlamaConfig& config = rig.model.config;
  runtime::CudaLlama* const model = rig.model.model.get();
  std::unique_ptr<client::Client>& client = rig.client;
  const client::Namespace& ns = rig.ns;
  std::unique_ptr<runtime::DeviceFetcher>& fetcher = rig.fetcher;
  std::unique_ptr<runtime::KvDevice>& device = rig.device;
  // Registering the client's mapping of the node's pool with CUDA (same
  // host) pins all of it: once per client, outside every timed turn.
  std::vector<double> register_ms;
  auto prepare = [&]() -> absl::Status {
    const absl::Time t0 = absl::Now();
    absl::Status st = fetcher->Prepare(*client);
    register_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    return st;
  };
  if (absl::Status st = prepare(); !st.ok()) {
    std::fprintf(stderr, "warning: loads go through pinned staging: %s\n", st.ToString().c_str());
  }
  std::unique_ptr<runtime::SlotMemory> pool_memory;
  if (reuse_pool) {
    auto mem = runtime::CreateCudaSlotMemory(pool_bytes);
    if (!mem.ok()) return Fail(mem.status());
    pool_memory = *std::move(mem);
  }
  // The GPU time of the last turn's work on the model's stream (its waits
  // for loaded layers included).
  double last_gpu_ms = 0;
  cudaEvent_t span[2];
  cudaEventCreate(&span[0]);
  cudaEventCreate(&span[1]);

  // One turn on a fresh pool (so that nothing is a pool hit unless asked).
  auto turn = [&](std::span<const int32_t> tokens, WorkerOptions::Source source,
                  std::unique_ptr<ChunkPool>* keep, int decode_tokens, double* decode_tps)
      -> absl::StatusOr<runtime::TurnStats> {
    std::unique_ptr<ChunkPool> fresh;
    ChunkPool* pool = keep != nullptr && *keep != nullptr ? keep->get() : nullptr;
    if (pool == nullptr) {
      auto p = MakePool(ns, pool_bytes, pool_memory.get());
      if (!p.ok()) return p.status();
      fresh = *std::move(p);
      pool = fresh.get();
    }
    WorkerOptions wo;
    wo.source = source;
    wo.save = false;
    wo.overlap = overlap;
    auto w = Worker::Create(client.get(), ns, model, pool, device.get(), wo);
    if (!w.ok()) return w.status();
    std::vector<float> logits;
    cudaEventRecord(span[0], model->stream());
    auto stats = (*w)->Prefill(tokens, &logits);
    cudaEventRecord(span[1], model->stream());
    cudaEventSynchronize(span[1]);
    float gpu_ms = 0;
    cudaEventElapsedTime(&gpu_ms, span[0], span[1]);
    last_gpu_ms = gpu_ms;
    if (stats.ok() && decode_tokens > 0) {
      const absl::Time t0 = absl::Now();
      for (int i = 0; i < decode_tokens; ++i) {
        if (absl::Status st = (*w)->Decode(runtime::ArgmaxRows(logits, config.vocab)[0], &logits); !st.ok()) {
          return st;
        }
      }
      *decode_tps = decode_tokens / absl::ToDoubleSeconds(absl::Now() - t0);
    }
    w->reset();
    if (keep != nullptr && fresh != nullptr) *keep = std::move(fresh);
    return stats;
  };

  std::printf("# %s, %s; chunks of %lld tokens (%.1f MiB); node DRAM %s, data path %s\n",
              common.shape.c_str(), config.DebugString().c_str(), static_cast<long long>(tpc),
              ns.chunk_bytes / 1048576.0, cli::FormatBytes(dram.value).c_str(),
              std::string(client->data_path()).c_str());
  std::printf("| history | prompt (median) | recompute ms | DRAM load ms | NVMe load ms | "
              "compute only ms | load only ms | overlap | store->HBM GB/s | pinned H2D GB/s | "
              "speedup DRAM | decode tok/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> breakdowns;
  std::mt19937 rng(static_cast<uint32_t>(common.seed));
  size_t next_prompt = 0;
  for (int h : hist) {
    // The conversation's history, saved by a first worker (computed).
    std::vector<int32_t> history(static_cast<size_t>(h));
    for (auto& t : history) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(config.vocab));
    {
      auto pool = MakePool(ns, pool_bytes, pool_memory.get());
      if (!pool.ok()) return Fail(pool.status());
      WorkerOptions wo;
      wo.source = WorkerOptions::Source::kNone;
      auto w = Worker::Create(client.get(), ns, model, pool->get(), device.get(), wo);
      if (!w.ok()) return Fail(w.status());
      std::vector<float> logits;
      std::vector<int32_t> with_one = history;
      with_one.push_back(1);  // so that every history chunk is full and saved
      auto st = (*w)->Prefill(with_one, &logits);
      if (!st.ok()) return Fail(st.status());
      if (absl::Status s = (*w)->WaitSaves(); !s.ok()) return Fail(s);
    }
    std::vector<double> recompute, dram_ms, nvme_ms, compute_ms, load_ms, bw, pinned_bw, hidden;
    std::vector<int> used_prompts;
    double decode_tps = 0;
    for (int64_t r = 0; r < reps; ++r) {
      const int p = prompts[next_prompt++ % prompts.size()];
      used_prompts.push_back(p);
      std::vector<int32_t> conv = history;
      for (int i = 0; i < p; ++i) conv.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(config.vocab)));
      auto rc = turn(conv, WorkerOptions::Source::kNone, nullptr, 0, nullptr);
      if (!rc.ok()) return Fail(rc.status());
      recompute.push_back(absl::ToDoubleMilliseconds(rc->time_to_logits));
      std::unique_ptr<ChunkPool> kept;
      if (warm_shapes) {
        // The prompt's length run once before (a throwaway recompute of it).
        auto warm = turn(std::span(conv).last(static_cast<size_t>(p)),
                         WorkerOptions::Source::kNone, nullptr, 0, nullptr);
        if (!warm.ok()) return Fail(warm.status());
      }
      auto dr = turn(conv, WorkerOptions::Source::kStore, &kept, r == 0 ? static_cast<int>(decode) : 0, &decode_tps);
      if (!dr.ok()) return Fail(dr.status());
      if (dr->loaded_tokens != h) {
        std::fprintf(stderr, "warning: loaded %d of %d history tokens (%s)\n", dr->loaded_tokens, h,
                     dr->load_stop_reason.ToString().c_str());
      }
      const double dram_gpu_ms = last_gpu_ms;
      dram_ms.push_back(absl::ToDoubleMilliseconds(dr->time_to_logits));
      breakdowns.push_back(absl::StrFormat(
          "history %d, prompt %d, DRAM turn: start %.1f ms (lookup, lease, copies enqueued), "
          "model step %.1f ms (of it %.1f waiting for layers; %.1f ms on the model's stream), "
          "verdict %.1f ms; the load's copies took %.1f ms on the GPU, its bytes were verified "
          "%.1f ms after it started",
          h, p, absl::ToDoubleMilliseconds(dr->load_start), absl::ToDoubleMilliseconds(dr->forward),
          absl::ToDoubleMilliseconds(dr->load_wait), dram_gpu_ms, absl::ToDoubleMilliseconds(dr->verdict_wait),
          absl::ToDoubleMilliseconds(dr->copied_after),
          absl::ToDoubleMilliseconds(dr->verified_after)));
      kept.reset();  // one pool of --pool bytes at a time
      // The load alone, into a fresh pool; then the same turn with exactly
      // the history in that pool (compute only).
      std::unique_ptr<ChunkPool> hist;
      {
        auto pool = MakePool(ns, pool_bytes, pool_memory.get());
        if (!pool.ok()) return Fail(pool.status());
        std::vector<uint32_t> kt(history.begin(), history.end());
        std::vector<ChunkKey> keys = ns.Keys(kt);
        const absl::Time t0 = absl::Now();
        auto load = fetcher->Start(*client, ns, **pool, keys);
        if (!load.ok()) return Fail(load.status());
        runtime::FetchResult res = (*load)->Wait();
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
        for (auto s : res.slots) (void)(*pool)->Release(s);
        load_ms.push_back(ms);
        bw.push_back(res.loaded * ns.chunk_bytes / (ms * 1e6));
        // Pinned host-to-device copy of the same bytes.
        const size_t bytes = res.loaded * ns.chunk_bytes;
        void* host = nullptr;
        void* dev = nullptr;
        if (bytes > 0 && cudaHostAlloc(&host, bytes, cudaHostAllocDefault) == cudaSuccess &&
            cudaMalloc(&dev, bytes) == cudaSuccess) {
          std::memset(host, 1, bytes);
          cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);  // warm
          const absl::Time c0 = absl::Now();
          cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);
          pinned_bw.push_back(bytes / (absl::ToDoubleSeconds(absl::Now() - c0) * 1e9));
        }
        if (dev != nullptr) cudaFree(dev);
        if (host != nullptr) cudaFreeHost(host);
        hist = *std::move(pool);
      }
      auto co = turn(conv, WorkerOptions::Source::kPoolOnly, &hist, 0, nullptr);
      if (!co.ok()) return Fail(co.status());
      compute_ms.push_back(absl::ToDoubleMilliseconds(co->time_to_logits));
      breakdowns.push_back(absl::StrFormat(
          "history %d, prompt %d, compute-only turn: model step %.1f ms (%.1f ms on the "
          "model's stream)",
          h, p, absl::ToDoubleMilliseconds(co->forward), last_gpu_ms));
      if (interference && r == 0) {
        // The same compute-only turn while a copy of the history's size runs
        // on another stream: from pinned memory, then (same host) from the
        // registered mapping of the node's pool.
        const size_t bytes = static_cast<size_t>(h / tpc) * ns.chunk_bytes;
        void* dev = nullptr;
        void* pinned = nullptr;
        cudaStream_t side = nullptr;
        const std::span<const std::byte> mapping = client->shared_pool();
        // Alone again first: the turn above may have added its own new
        // chunks to the pool.
        auto alone = turn(conv, WorkerOptions::Source::kPoolOnly, &hist, 0, nullptr);
        if (!alone.ok()) return Fail(alone.status());
        if (cudaMalloc(&dev, bytes) == cudaSuccess &&
            cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault) == cudaSuccess &&
            cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking) == cudaSuccess) {
          std::memset(pinned, 1, bytes);
          for (int src = 0; src < 2; ++src) {
            if (src == 1 && mapping.size() < bytes) break;
            const void* from = src == 0 ? pinned : static_cast<const void*>(mapping.data());
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0);
            cudaEventCreate(&e1);
            cudaEventRecord(e0, side);
            cudaMemcpyAsync(dev, from, bytes, cudaMemcpyHostToDevice, side);
            cudaEventRecord(e1, side);
            auto with = turn(conv, WorkerOptions::Source::kPoolOnly, &hist, 0, nullptr);
            cudaStreamSynchronize(side);
            float copy_ms = 0;
            cudaEventElapsedTime(&copy_ms, e0, e1);
            cudaEventDestroy(e0);
            cudaEventDestroy(e1);
            if (!with.ok()) return Fail(with.status());
            breakdowns.push_back(absl::StrFormat(
                "history %d: the compute-only turn took %.1f ms alone and %.1f ms while a %zu MiB "
                "copy from %s ran beside it (the copy: %.1f ms, %.1f GB/s)",
                h, absl::ToDoubleMilliseconds(alone->time_to_logits),
                absl::ToDoubleMilliseconds(with->time_to_logits), bytes >> 20,
                src == 0 ? "pinned host memory" : "the registered mapping of the node's pool",
                copy_ms, bytes / (copy_ms * 1e6)));
          }
        }
        if (side != nullptr) cudaStreamDestroy(side);
        if (pinned != nullptr) cudaFreeHost(pinned);
        if (dev != nullptr) cudaFree(dev);
      }
      // Overlap: the share of the shorter of load and compute that ran
      // under the other (1: TTFT = max(load, compute); 0: their sum).
      hidden.push_back((load_ms.back() + compute_ms.back() - dram_ms.back()) /
                       std::min(load_ms.back(), compute_ms.back()));
      hist.reset();  // one pool at a time (they may share one allocation)
      if (nvme) {
        if (absl::Status st = RestartBenchNode(common, &rig); !st.ok()) return Fail(st);
        (void)prepare();
        auto nv = turn(conv, WorkerOptions::Source::kStore, nullptr, 0, nullptr);
        if (!nv.ok()) return Fail(nv.status());
        if (nv->loaded_tokens != h) {
          std::fprintf(stderr, "warning: NVMe turn loaded %d of %d history tokens (%s)\n",
                       nv->loaded_tokens, h, nv->load_stop_reason.ToString().c_str());
        }
        nvme_ms.push_back(absl::ToDoubleMilliseconds(nv->time_to_logits));
      }
    }
    std::vector<double> pd(used_prompts.begin(), used_prompts.end());
    std::printf("| %d | %.0f | %.1f | %.1f | %s | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.1fx | %.1f |\n", h,
                Median(pd), Median(recompute), Median(dram_ms),
                nvme ? absl::StrFormat("%.1f", Median(nvme_ms)).c_str() : "-", Median(compute_ms),
                Median(load_ms), 100 * Median(hidden), Median(bw), Median(pinned_bw),
                Median(recompute) / Median(dram_ms), decode_tps);
    std::fflush(stdout);
  }
  for (const std::string& b : breakdowns) std::printf("- %s\n", b.c_str());
  std::printf("- registering the client's mapping of the node's %s pool with CUDA: %.0f ms (median "
              "of %zu, once per client connection, outside the timed turns)\n",
              cli::FormatBytes(dram.value).c_str(), Median(register_ms), register_ms.size());
  rig_owner.reset();  // the device, fetcher, client and node, in that order
  std::filesystem::remove_all(common.data_dir);
  return 0;
}


// --- decode-bench -----------------------------------------------------------

absl::StatusOr<runtime::AttentionKernel> ParseKernel(absl::string_view k) {
  if (k == "prefill") return runtime::AttentionKernel::kPrefill;
  if (k == "paged") return runtime::AttentionKernel::kPagedDecode;
  if (k == "prefix") return runtime::AttentionKernel::kPrefixAwareDecode;
  if (k == "relay") return runtime::AttentionKernel::kRelayDecode;
  return absl::InvalidArgumentError(
      absl::StrCat("--kernels: '", k, "' (prefill, paged, prefix or relay)"));
}

int DecodeBench(const std::vector<std::string>& args) {
  BenchFlags common{.tokens_per_chunk = 64,
                    .warmup_rows = 1024,
                    .pool = {24ull << 30},
                    .data_dir = "/tmp/strata-decode-bench"};
  std::string batches = "8,32,64", kernels = "prefill,paged,prefix,relay";
  int64_t system = 2048, private_tokens = 512, steps = 32, warmup = 2;
  cli::FlagSet flags(
      "strata_worker decode-bench [flags]\n\n"
      "Decode tokens/s of a batch of conversations that share a system prompt: each\n"
      "sequence is the prompt (held once in the HBM chunk pool, one slot per chunk\n"
      "for all sequences) followed by its own history; one model step decodes one\n"
      "token of every sequence (Worker::DecodeBatch), with attention through the\n"
      "prefill kernel, the paged decode kernel (every sequence reads its own page\n"
      "table, shared chunks included), the prefix-aware decode kernel (shared chunks\n"
      "read once per batch) or relay attention (the common prefix read once).\n"
      "Prints the step time, tokens/s and, for the first step, each kernel's\n"
      "largest logit difference from each sequence decoded alone through the\n"
      "prefill kernel (the path checked against transformers). Seeded weights; a\n"
      "`strata serve` is started for the namespace (no saves).");
  common.AddModelFlags(flags, "seed of the weights and tokens");
  flags.Add("batches", "batch sizes, comma-separated", &batches);
  flags.Add("kernels", "attention kernels: prefill, paged, prefix, relay", &kernels);
  flags.Add("system", "tokens of the shared system prompt", &system);
  flags.Add("private", "tokens of each sequence's own history (plus 0..tokens_per_chunk-1)",
            &private_tokens);
  flags.Add("steps", "timed decode steps per kernel", &steps);
  flags.Add("warmup", "untimed decode steps first", &warmup);
  flags.Add("tokens_per_chunk", "tokens per chunk (16..256, a multiple of 16)",
            &common.tokens_per_chunk);
  flags.Add("warmup_rows", kWarmupHelp, &common.warmup_rows);
  flags.Add("pool", kPoolHelp, &common.pool);
  common.AddNodeFlags(flags);
  auto rest = flags.Parse(args);
  if (!rest.ok()) return Fail(rest.status());
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  std::vector<int> sizes;
  for (absl::string_view b : absl::StrSplit(batches, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(b, &v) || v <= 0) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--batches: '", b, "' is not positive")));
    }
    sizes.push_back(v);
  }
  std::vector<std::pair<std::string, runtime::AttentionKernel>> ks;
  for (absl::string_view k : absl::StrSplit(kernels, ',', absl::SkipEmpty())) {
    auto kernel = ParseKernel(k);
    if (!kernel.ok()) return Fail(kernel.status());
    ks.emplace_back(std::string(k), *kernel);
  }
  if (sizes.empty() || ks.empty() || system < 0 || private_tokens < 0 || steps <= 0 ||
      warmup < 0) {
    return Fail(absl::InvalidArgumentError(
        "--batches and --kernels must name something; --system, --private, --warmup >= 0; "
        "--steps > 0"));
  }
  runtime::DeviceFetcher::Options fo;
  fo.staging_bytes = 64ull << 20;
  BenchRig rig;
  if (absl::Status st = StartBenchRig(common, {"--no_nvme", "--dram=256MiB"},
                                      /*same_host=*/false, fo, &rig);
      !st.ok()) {
    return Fail(st);
  }
  const int64_t tpc = common.tokens_per_chunk;
  const LlamaConfig& config = rig.model.config;
  runtime::CudaLlama* const model = rig.model.model.get();
  client::Client* const client = rig.client.get();
  const client::Namespace& ns = rig.ns;
  runtime::KvDevice* const device = rig.device.get();
  auto pool = MakePool(ns, common.pool.value);
  if (!pool.ok()) return Fail(pool.status());

  std::mt19937 rng(static_cast<uint32_t>(common.seed));
  auto tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(config.vocab));
    return t;
  };
  const std::vector<int32_t> prompt = tokens(static_cast<int>(system));
  std::printf("| batch | system | private | kernel | step ms | of it on the model's stream ms | "
              "tokens/s | first step: max |logit - alone's| / max |logit| | argmax = alone's |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  cudaEvent_t span[2];
  cudaEventCreate(&span[0]);
  cudaEventCreate(&span[1]);
  for (int batch : sizes) {
    std::vector<std::vector<int32_t>> convs;
    for (int b = 0; b < batch; ++b) {
      std::vector<int32_t> c = prompt;
      const std::vector<int32_t> own =
          tokens(static_cast<int>(private_tokens) + (b * 37) % static_cast<int>(tpc));
      c.insert(c.end(), own.begin(), own.end());
      convs.push_back(std::move(c));
    }
    // The reference of each sequence's first step: decoded alone (a batch
    // of one) through the prefill kernel, the path checked against
    // transformers.
    std::vector<float> reference;
    for (int b = 0; b < batch; ++b) {
      WorkerOptions wo;
      wo.source = WorkerOptions::Source::kPoolOnly;
      wo.save = false;
      auto w = Worker::Create(client, ns, model, pool->get(), device, wo);
      if (!w.ok()) return Fail(w.status());
      std::vector<float> logits;
      // Twice: the first computes the sequence's own chunks into the pool,
      // the second finds them there as every kernel's run below does (a
      // prefill of other length rounds differently in the last bf16 bit,
      // which can flip a near-tie of the next token).
      auto st = (*w)->Prefill(convs[b], &logits);
      if (st.ok()) st = (*w)->Prefill(convs[b], &logits);
      if (!st.ok()) return Fail(st.status());
      Worker* one[] = {w->get()};
      const int32_t token[] = {runtime::ArgmaxRows(logits, config.vocab)[0]};
      if (absl::Status s = Worker::DecodeBatch(one, token, runtime::AttentionKernel::kPrefill,
                                               &logits);
          !s.ok()) {
        return Fail(s);
      }
      reference.insert(reference.end(), logits.begin(), logits.end());
    }
    for (const auto& [name, kernel] : ks) {
      WorkerOptions wo;
      wo.source = WorkerOptions::Source::kPoolOnly;  // the prompt's chunks: pool hits
      wo.save = false;
      std::vector<std::unique_ptr<Worker>> workers;
      std::vector<Worker*> ptrs;
      std::vector<int32_t> next;
      for (int b = 0; b < batch; ++b) {
        auto w = Worker::Create(client, ns, model, pool->get(), device, wo);
        if (!w.ok()) return Fail(w.status());
        std::vector<float> logits;
        auto st = (*w)->Prefill(convs[b], &logits);
        if (!st.ok()) return Fail(st.status());
        next.push_back(runtime::ArgmaxRows(logits, config.vocab)[0]);
        ptrs.push_back(w->get());
        workers.push_back(*std::move(w));
      }
      std::vector<float> logits;
      double max_diff = 0, max_ref = 0, stream_ms = 0;
      int agree = 0;
      absl::Time timed_start = absl::Now();
      // Every step ends with its logits on the host (the model's stream
      // drained), so wall time between steps is the step's; of it, the span
      // of the step's work on the model's stream.
      for (int64_t i = 0; i < warmup + steps; ++i) {
        const absl::Time t0 = absl::Now();
        cudaEventRecord(span[0], model->stream());
        if (absl::Status st = Worker::DecodeBatch(ptrs, next, kernel, &logits); !st.ok()) {
          return Fail(st);
        }
        cudaEventRecord(span[1], model->stream());
        cudaEventSynchronize(span[1]);
        float ms = 0;
        cudaEventElapsedTime(&ms, span[0], span[1]);
        if (i >= warmup) stream_ms += ms;
        next = runtime::ArgmaxRows(logits, config.vocab);
        if (i == 0) {
          for (size_t j = 0; j < logits.size() && j < reference.size(); ++j) {
            max_diff = std::max<double>(max_diff, std::abs(logits[j] - reference[j]));
            max_ref = std::max<double>(max_ref, std::abs(reference[j]));
          }
          const std::vector<int32_t> ref_next = runtime::ArgmaxRows(reference, config.vocab);
          for (size_t b = 0; b < next.size() && b < ref_next.size(); ++b) {
            agree += next[b] == ref_next[b] ? 1 : 0;
          }
        }
        if (i == warmup) timed_start = t0;
      }
      const double secs = absl::ToDoubleSeconds(absl::Now() - timed_start);
      std::printf("| %d | %lld | %lld | %s | %.2f | %.2f | %.1f | %.4f | %d of %d |\n", batch,
                  static_cast<long long>(system), static_cast<long long>(private_tokens),
                  name.c_str(), 1e3 * secs / static_cast<double>(steps),
                  stream_ms / static_cast<double>(steps),
                  static_cast<double>(batch) * static_cast<double>(steps) / secs,
                  max_ref > 0 ? max_diff / max_ref : 0.0, agree, batch);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  const std::string usage =
      "usage: strata_worker run|bench|decode-bench [flags]   (--help on each)\n";
  if (argc < 2) {
    std::fprintf(stderr, "%s", usage.c_str());
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  if (std::strcmp(argv[1], "run") == 0) return strata::Run(args);
  if (std::strcmp(argv[1], "bench") == 0) return strata::Bench(args);
  if (std::strcmp(argv[1], "decode-bench") == 0) return strata::DecodeBench(args);
  if (std::strcmp(argv[1], "help") == 0 || std::strcmp(argv[1], "--help") == 0) {
    std::printf("%s", usage.c_str());
    return 0;
  }
  std::fprintf(stderr, "unknown command '%s'\n%s", argv[1], usage.c_str());
  return 2;
}
