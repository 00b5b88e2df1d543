// strata bench: a load generator against a store node or a cluster.
//
// N client threads, each with its own Client (its own gRPC channel and UCX
// endpoint) or ClusterClient, run a get/put mix for a fixed time after a
// warm-up. Gets load --chunks_per_get consecutive chunks of a prefilled
// working set and verify every byte; puts save one chunk. Latencies are exact
// per-operation samples.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "store/common/key_chain.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"

namespace strata::cli {
namespace {

std::atomic<bool> g_interrupted{false};
void OnInterrupt(int) { g_interrupted.store(true); }

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The first 40 bytes of every chunk: its index and its key; the rest is a
// shared random pattern. A get checks both, so a chunk served under the wrong
// key or with any byte changed is caught (the client checks the checksum too).
constexpr size_t kHeaderBytes = 8 + ChunkKey::kSize;

void WriteHeader(uint64_t index, const ChunkKey& key, std::byte* chunk) {
  std::memcpy(chunk, &index, 8);
  std::memcpy(chunk + 8, key.bytes.data(), ChunkKey::kSize);
}

// True when `chunk` holds what was stored for working-set chunk `index`.
bool Matches(std::span<const std::byte> chunk, uint64_t index, const ChunkKey& key,
             const std::vector<std::byte>& pattern) {
  std::byte header[kHeaderBytes];
  WriteHeader(index, key, header);
  return std::memcmp(chunk.data(), header, kHeaderBytes) == 0 &&
         std::memcmp(chunk.data() + kHeaderBytes, pattern.data() + kHeaderBytes,
                     chunk.size() - kHeaderBytes) == 0;
}

struct Config {
  int64_t clients = 4;
  int64_t chunks_per_get = 1;
  Bytes chunk_bytes{1 << 20};
  int64_t slices = 1;
  double get_ratio = 0.5;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::Seconds(1);
  int64_t keys = 0;
  std::string put_keys = "distinct";
  int64_t seed = 1;
  bool progress = true;
  bool verify = true;
  bool memcpy_reference = false;
};

// Shared by every worker; constant once the workers start, except the atomics.
struct Shared {
  Config config;
  std::vector<ChunkKey> working_set;
  std::vector<std::byte> pattern;
  ChunkKey root;
  uint64_t nonce = 0;  // makes distinct put keys unique per run
  std::atomic<int64_t> measure_start{0};
  std::atomic<int64_t> measure_end{0};
};

struct Worker {
  int id = 0;
  // One node (client) or a cluster (cluster).
  std::unique_ptr<client::Client> client;
  client::Namespace ns;
  std::unique_ptr<client::ClusterClient> cluster;
  client::ClusterNamespace cns;
  std::thread thread;
  // Measured samples, nanoseconds.
  std::vector<int64_t> get_ns, put_ns, first_slice_ns, memcpy_ns;
  // --memcpy_reference: as many bytes as the working set, in a shared memfd
  // mapped read-only (as a client maps a node's pool); unmapped at exit.
  const std::byte* reference = nullptr;
  uint64_t get_misses = 0, get_errors = 0, corrupt = 0, put_errors = 0;
  std::string first_error;
  // Every phase, for progress lines: operations that succeeded, gets that
  // missed, and operations that failed otherwise.
  std::atomic<uint64_t> gets{0}, puts{0}, misses{0}, errors{0};
  // The last operation found the node unreachable (Unavailable or
  // DeadlineExceeded): the worker backs off until the node answers again.
  std::atomic<bool> unreachable{false};
  absl::Status prefill_status;

  void Error(const std::string& what, const absl::Status& s) {
    if (first_error.empty()) first_error = absl::StrCat(what, ": ", StatusText(s));
  }
};

absl::Status SaveOne(Worker& w, const ChunkKey& key, std::span<const std::byte> src) {
  const std::span<const ChunkKey> keys(&key, 1);
  if (w.cluster != nullptr) {
    auto t = w.cluster->Save(w.cns, keys, src);
    return t.ok() ? (*t)->Wait() : t.status();
  }
  auto t = w.client->Save(w.ns, keys, src);
  return t.ok() ? (*t)->Wait() : t.status();
}

// With --slices > 1 the load reports its layers (an empty on_layer), so it
// takes the client's layer-by-layer path, as a worker that computes on layer
// l while later layers arrive does; without, the whole-chunk path.
absl::StatusOr<std::shared_ptr<client::Transfer>> Load(Worker& w, std::span<const ChunkKey> keys,
                                                        std::span<std::byte> dest,
                                                        bool by_layer) {
  std::function<void(uint32_t)> on_layer;
  if (by_layer) on_layer = [](uint32_t) {};
  if (w.cluster != nullptr) {
    auto t = w.cluster->Load(w.cns, keys, dest, std::move(on_layer));
    if (!t.ok()) return t.status();
    return std::shared_ptr<client::Transfer>(*std::move(t));
  }
  return w.client->Load(w.ns, keys, dest, std::move(on_layer));
}

void Prefill(Worker& w, Shared& sh, std::vector<std::byte>& buf) {
  const size_t n = sh.working_set.size();
  for (size_t i = w.id; i < n && !g_interrupted.load(); i += sh.config.clients) {
    WriteHeader(i, sh.working_set[i], buf.data());
    absl::Status s = SaveOne(w, sh.working_set[i], buf);
    if (!s.ok()) {
      w.prefill_status = absl::Status(s.code(), absl::StrCat("prefill of chunk ", i, ": ",
                                                             std::string(s.message())));
      return;
    }
  }
}

// Backoff of a worker whose node does not answer: doubling from the first
// to the last, back to the first once the node answers.
constexpr int64_t kBackoffFirstNs = 10'000'000;     // 10 ms
constexpr int64_t kBackoffLastNs = 1'000'000'000;   // 1 s

bool NodeUnreachable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

// Sleeps `ns`, or less when interrupted or when the run ends first.
void SleepWithin(int64_t ns, const Shared& sh) {
  const int64_t until = std::min(NowNs() + ns, sh.measure_end.load());
  for (int64_t now = NowNs(); now < until && !g_interrupted.load(); now = NowNs()) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(until - now, 20'000'000)));
  }
}

void Run(Worker& w, Shared& sh) {
  const Config& c = sh.config;
  const uint64_t chunk = c.chunk_bytes.value;
  const size_t per_get = static_cast<size_t>(c.chunks_per_get);
  std::vector<std::byte> src(sh.pattern), dest(chunk * per_get);
  std::mt19937_64 rng(static_cast<uint64_t>(c.seed) * 1000003 + w.id);
  std::uniform_real_distribution<double> coin(0, 1);
  uint32_t counter = 0;
  int64_t backoff_ns = kBackoffFirstNs;
  while (!g_interrupted.load()) {
    const int64_t t0 = NowNs();
    if (t0 >= sh.measure_end.load()) break;
    const bool is_get = coin(rng) < c.get_ratio;
    int64_t first_slice = 0, done_ns = 0;
    absl::Status status;
    if (is_get) {
      const size_t i = rng() % (sh.working_set.size() - per_get + 1);
      auto t = Load(w, std::span<const ChunkKey>(sh.working_set).subspan(i, per_get), dest,
                    c.slices > 1);
      if (t.ok() && c.slices > 1 && (*t)->WaitLayer(0).ok()) first_slice = NowNs() - t0;
      status = t.ok() ? (*t)->Wait() : t.status();
      done_ns = NowNs();  // the pattern check below is bench's, not the load's
      if (status.ok()) {
        for (size_t j = 0; c.verify && j < per_get; ++j) {
          if (!Matches(std::span<const std::byte>(dest).subspan(j * chunk, chunk), i + j,
                       sh.working_set[i + j], sh.pattern)) {
            ++w.corrupt;
            w.Error(absl::StrCat("get of chunk ", i + j),
                    absl::DataLossError("bytes differ from the expected pattern"));
          }
        }
        if (w.reference != nullptr) {
          // The same bytes as this get, from the same place of a source as
          // large, into the same destination: memcpy's time under the same
          // load and cache conditions, outside the get's latency.
          const int64_t m0 = NowNs();
          std::memcpy(dest.data(), w.reference + i * chunk, dest.size());
          const int64_t m1 = NowNs();
          if (m0 >= sh.measure_start.load() && m1 <= sh.measure_end.load()) {
            w.memcpy_ns.push_back(m1 - m0);
          }
        }
      } else if (status.code() == absl::StatusCode::kNotFound) {
        ++w.get_misses;  // evicted by the puts of a mixed run
      } else {
        ++w.get_errors;
        w.Error(absl::StrCat("get of chunk ", i), status);
      }
    } else {
      ChunkKey key;
      uint64_t index;
      if (c.put_keys == "repeat") {
        index = rng() % sh.working_set.size();
        key = sh.working_set[index];
      } else {
        const uint32_t tokens[] = {static_cast<uint32_t>(sh.nonce), static_cast<uint32_t>(sh.nonce >> 32),
                                   static_cast<uint32_t>(w.id), counter++, 1};
        key = KeyChain::Next(sh.root, tokens);
        index = (uint64_t{1} << 63) | (uint64_t(w.id) << 32) | (counter - 1);
      }
      WriteHeader(index, key, src.data());
      status = SaveOne(w, key, src);
      if (!status.ok()) {
        ++w.put_errors;
        w.Error("put", status);
      }
    }
    const int64_t t1 = done_ns != 0 ? done_ns : NowNs();
    if (t1 > sh.measure_end.load()) {
      // Ended after the run: in neither the summary nor the progress lines.
    } else if (status.ok()) {
      (is_get ? w.gets : w.puts).fetch_add(1, std::memory_order_relaxed);
    } else if (status.code() == absl::StatusCode::kNotFound && is_get) {
      w.misses.fetch_add(1, std::memory_order_relaxed);
    } else {
      w.errors.fetch_add(1, std::memory_order_relaxed);
    }
    if (status.ok() && t0 >= sh.measure_start.load() && t1 <= sh.measure_end.load()) {
      (is_get ? w.get_ns : w.put_ns).push_back(t1 - t0);
      if (first_slice > 0) w.first_slice_ns.push_back(first_slice);
    }
    if (NodeUnreachable(status)) {
      // Without a pause a worker retries tens of thousands of times a second
      // against a node that is gone.
      w.unreachable.store(true, std::memory_order_relaxed);
      SleepWithin(backoff_ns, sh);
      backoff_ns = std::min(2 * backoff_ns, kBackoffLastNs);
    } else {
      w.unreachable.store(false, std::memory_order_relaxed);
      backoff_ns = kBackoffFirstNs;
    }
  }
}

// Nearest-rank percentile of sorted samples.
double PercentileMs(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1] / 1e6;
}

// --memcpy_reference's source: `bytes` of a new memfd holding `pattern`
// repeated, mapped read-only and shared. Never unmapped (the process exits).
absl::StatusOr<const std::byte*> MapReferenceSource(uint64_t bytes,
                                                    const std::vector<std::byte>& pattern) {
  const int fd = memfd_create("strata-bench-reference", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
      fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::ResourceExhaustedError(absl::StrCat(
        "--memcpy_reference: cannot create a shared source of ", FormatBytes(bytes), ": ",
        std::strerror(err)));
  }
  void* w = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  void* r = w == MAP_FAILED ? MAP_FAILED : mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);
  if (r == MAP_FAILED) {
    if (w != MAP_FAILED) munmap(w, bytes);
    return absl::ResourceExhaustedError(absl::StrCat(
        "--memcpy_reference: cannot map a shared source of ", FormatBytes(bytes), ": ",
        std::strerror(err)));
  }
  auto* out = static_cast<std::byte*>(w);
  for (uint64_t off = 0; off < bytes; off += pattern.size()) {
    std::memcpy(out + off, pattern.data(), std::min<uint64_t>(pattern.size(), bytes - off));
  }
  munmap(w, bytes);
  return static_cast<const std::byte*>(r);
}

void PrintRow(const char* name, std::vector<int64_t> samples, double seconds, double bytes_per_op) {
  std::sort(samples.begin(), samples.end());
  const double ops = samples.size() / seconds;
  std::printf("%-12s %9zu %10.1f %8.3f %9.3f %9.3f %9.3f %9.3f\n", name, samples.size(), ops,
              ops * bytes_per_op / 1e9, PercentileMs(samples, 0.5), PercentileMs(samples, 0.99),
              PercentileMs(samples, 0.999), samples.empty() ? 0.0 : samples.back() / 1e6);
}

}  // namespace

int BenchCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  ClusterFlags cl;
  Shared sh;
  Config& c = sh.config;
  FlagSet flags(
      "strata bench [flags]\n\n"
      "Load generator: --clients threads, each with its own client (gRPC channel and\n"
      "UCX endpoint), run a mix of gets (fraction --get_ratio) and puts of single\n"
      "chunks of --chunk_bytes for --duration after --warmup. The namespace is\n"
      "model strata-bench, --slices layers, head_dim 64, fp16, 1 KV head (more, by\n"
      "powers of two, for chunks past 65536 tokens), so a chunk is exactly\n"
      "--chunk_bytes (tokens x KV heads = chunk_bytes / 256 / slices).\n"
      "Before the run, --keys chunks (the working set) are stored. A get loads a\n"
      "random working-set chunk; the client verifies its checksum and bench compares\n"
      "every byte with the expected content (key header + shared pattern). A put\n"
      "stores a never-used key (--put_keys distinct: every put moves its bytes) or a\n"
      "random working-set key (repeat: already stored, an idempotent success that\n"
      "moves no bytes; the node's counters tell how many were new).\n"
      "Latency percentiles are nearest-rank over exact per-operation samples (no\n"
      "histogram); a get's latency ends when the load (checksum included) is done,\n"
      "before bench's own byte comparison, which still occupies the client thread.\n"
      "With --slices > 1, gets load layer by layer (as a worker that computes on\n"
      "a layer while later ones arrive) and also report the time until layer 0's\n"
      "slice (chunk_bytes / slices) has arrived. Ctrl-C stops early and still prints the\n"
      "summary. Exit 1 on any error or mismatch.\n"
      "With --etcd (and --cluster) or --peers, each client is a cluster client: chunks\n"
      "are placed on the members by rendezvous hashing (--replicas each) and a get of\n"
      "--chunks_per_get chunks fans out to the nodes that hold them.");
  cf.Register(&flags);
  cl.Register(&flags);
  int64_t replicas = 1;
  flags.Add("replicas", "cluster: nodes that hold each chunk", &replicas);
  flags.Add("chunks_per_get", "consecutive working-set chunks one get loads", &c.chunks_per_get);
  std::string tenant = "bench";
  flags.Add("tenant", "tenant of the bench namespace (with --token_file: the token's tenant)",
            &tenant);
  flags.Add("clients", "concurrent clients (threads, one Client each)", &c.clients);
  flags.Add("chunk_bytes", "chunk size; a multiple of 256 x --slices", &c.chunk_bytes);
  flags.Add("slices", "layers per chunk (one slice each)", &c.slices);
  flags.Add("get_ratio", "fraction of operations that are gets, 0..1", &c.get_ratio);
  flags.Add("duration", "measured time", &c.duration);
  flags.Add("warmup", "unmeasured time before it", &c.warmup);
  flags.Add("keys", "working-set chunks (0: 256MiB worth, at least 4 per client, at most 1024)",
            &c.keys);
  flags.Add("put_keys", "distinct or repeat (see above)", &c.put_keys);
  flags.Add("seed", "seed of the pattern and the key choice", &c.seed);
  flags.Add("verify",
            "compare every loaded byte with the expected content (off: the client's checksum "
            "check only)",
            &c.verify);
  flags.Add("progress", "print a line each second during runs longer than 3 s", &c.progress);
  flags.Add("memcpy_reference",
            "after each get, time a memcpy of as many bytes into the same destination, out of "
            "a source as large as the working set (a shared memfd mapped read-only, as a "
            "client maps a node's pool), and print the get's p50 against memcpy's; the reference "
            "copies take time between ops, so compare latencies, not ops/s",
            &c.memcpy_reference);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit("bench", flags, args, &positional); rc >= 0) return rc;
  std::string bad;
  const uint64_t chunk = c.chunk_bytes.value;
  if (!positional.empty()) bad = "no positional arguments are taken";
  else if (c.clients < 1 || c.clients > 256) bad = "--clients must be 1..256";
  else if (c.chunks_per_get < 1 || c.chunks_per_get > 4096)
    bad = "--chunks_per_get must be 1..4096";
  else if (!cl.etcd.empty() && !cl.peers.empty()) bad = "give --etcd or --peers, not both";
  else if (replicas < 1 || replicas > 16) bad = "--replicas must be 1..16";
  else if (c.slices < 1 || c.slices > 1024) bad = "--slices must be 1..1024";
  else if (chunk == 0 || chunk % (256 * c.slices) != 0)
    bad = absl::StrCat("--chunk_bytes=", chunk, " is not a multiple of 256 x --slices (",
                       256 * c.slices, ")");
  else if (chunk > NamespaceSpec::kMaxChunkBytes)
    bad = absl::StrCat("--chunk_bytes: at most ", FormatBytes(NamespaceSpec::kMaxChunkBytes),
                       " (the largest chunk a namespace allows)");
  else if (!(c.get_ratio >= 0 && c.get_ratio <= 1)) bad = "--get_ratio must be within 0..1";
  else if (c.duration <= absl::ZeroDuration() || c.warmup < absl::ZeroDuration())
    bad = "--duration must be positive and --warmup not negative";
  else if (c.keys < 0) bad = "--keys must not be negative";
  else if (c.put_keys != "distinct" && c.put_keys != "repeat")
    bad = "--put_keys must be distinct or repeat";
  else if (c.memcpy_reference && c.get_ratio == 0)
    bad = "--memcpy_reference compares gets with memcpy: it needs --get_ratio above 0";
  if (!bad.empty()) {
    std::fprintf(stderr, "strata bench: %s (see --help)\n", bad.c_str());
    return kExitUsage;
  }
  if (!cl.given()) {
    if (int rc = cf.CheckServerOrExit("bench"); rc >= 0) return rc;
  }

  NamespaceSpec spec;
  spec.model_id = "strata-bench";
  spec.num_layers = static_cast<uint32_t>(c.slices);
  // 256 bytes per token and KV head of a layer; past the most tokens a chunk
  // may have, more KV heads (so any chunk a namespace allows benches as is).
  const uint64_t token_heads = chunk / 256 / c.slices;
  uint32_t kv_heads = 1;
  while (token_heads / kv_heads > NamespaceSpec::kMaxTokensPerChunk ||
         token_heads % kv_heads != 0) {
    kv_heads *= 2;
  }
  spec.num_kv_heads = kv_heads;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = static_cast<uint32_t>(token_heads / kv_heads);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int64_t i = 0; i < c.clients; ++i) {
    auto w = std::make_unique<Worker>();
    w->id = static_cast<int>(i);
    if (cl.given()) {
      w->cluster = OpenCluster("bench", cl, cf);
      if (w->cluster == nullptr) return kExitFailure;
      auto ns = w->cluster->RegisterNamespace(spec, tenant, static_cast<uint32_t>(replicas));
      if (!ns.ok()) {
        std::fprintf(stderr, "strata bench: %s\n", StatusText(ns.status()).c_str());
        return kExitFailure;
      }
      w->cns = *std::move(ns);
    } else {
      auto session = OpenSession("bench", cf, spec, tenant);
      if (session == nullptr) return kExitFailure;
      w->client = std::move(session->client);
      w->ns = std::move(session->ns);
    }
    workers.push_back(std::move(w));
  }
  Worker& first = *workers[0];
  // The counters of the node, or of every member summed.
  auto node_stats = [&first]() -> absl::StatusOr<std::map<std::string, uint64_t>> {
    if (first.cluster == nullptr) return first.client->Stats();
    std::map<std::string, uint64_t> sum;
    for (const auto& [id, s] : first.cluster->NodeStats()) {
      if (!s.ok()) return s.status();
      for (const auto& [k, v] : *s) sum[k] += v;
    }
    return sum;
  };
  uint64_t dram = 0;
  std::string target, data_path;
  if (first.cluster == nullptr) {
    dram = first.client->node().dram_bytes;
    target = absl::StrCat(cf.server, " (node ", first.client->node().node_id, ")");
    data_path = std::string(first.client->data_path());
  } else {
    auto s = node_stats();
    if (!s.ok()) {
      std::fprintf(stderr, "strata bench: %s\n", StatusText(s.status()).c_str());
      return kExitFailure;
    }
    // What the cluster holds once: each chunk takes `replicas` slots.
    dram = (*s)["dram_capacity_bytes"] / static_cast<uint64_t>(replicas);
    target = absl::StrCat("a cluster of ", first.cluster->View().nodes.size(), " nodes (R=",
                          replicas, ")");
    data_path = "the nodes' own paths";
  }
  int64_t keys = c.keys;
  if (keys == 0) {
    keys = std::clamp<int64_t>((256ll << 20) / chunk, 4 * c.clients, 1024);
    keys = std::max<int64_t>(1, std::min<int64_t>(keys, dram / 2 / chunk));
  }
  keys = std::max<int64_t>(keys, c.chunks_per_get);
  if (static_cast<uint64_t>(keys) * chunk > dram) {
    std::fprintf(stderr, "strata bench: warning: the working set (%s) exceeds the node's DRAM (%s)\n",
                 FormatBytes(keys * chunk).c_str(), FormatBytes(dram).c_str());
  }
  sh.root = first.cluster != nullptr ? first.cns.chain->root() : first.ns.chain->root();
  sh.nonce = std::random_device()() | (uint64_t{std::random_device()()} << 32);
  for (int64_t i = 0; i < keys; ++i) {
    const uint32_t tokens[] = {static_cast<uint32_t>(c.seed), static_cast<uint32_t>(c.seed >> 32),
                               static_cast<uint32_t>(i), 0};
    sh.working_set.push_back(KeyChain::Next(sh.root, tokens));
  }
  sh.pattern.resize(chunk);
  std::mt19937_64 pattern_rng(c.seed);
  for (size_t i = 0; i + 8 <= chunk; i += 8) {
    const uint64_t v = pattern_rng();
    std::memcpy(sh.pattern.data() + i, &v, 8);
  }

  if (c.memcpy_reference) {
    for (auto& w : workers) {
      auto ref = MapReferenceSource(static_cast<uint64_t>(keys) * chunk, sh.pattern);
      if (!ref.ok()) {
        std::fprintf(stderr, "strata bench: %s\n", StatusText(ref.status()).c_str());
        return kExitFailure;
      }
      w->reference = *ref;
    }
  }

  struct sigaction sa{};
  sa.sa_handler = OnInterrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::printf("strata bench: %lld clients -> %s, loads over %s, UCX %s; chunk %s in "
              "%lld slice(s), %lld per get; get_ratio %.2f; puts %s; working set %lld chunks (%s)\n",
              static_cast<long long>(c.clients), target.c_str(), data_path.c_str(),
              cf.ucx_transports.empty() ? "default transports" : cf.ucx_transports.c_str(),
              FormatBytes(chunk).c_str(), static_cast<long long>(c.slices),
              static_cast<long long>(c.chunks_per_get), c.get_ratio,
              c.put_keys.c_str(), static_cast<long long>(keys), FormatBytes(keys * chunk).c_str());
  std::fflush(stdout);
  const int64_t prefill_start = NowNs();
  {
    std::vector<std::thread> threads;
    for (auto& w : workers) {
      threads.emplace_back([&sh, w = w.get()] {
        std::vector<std::byte> buf(sh.pattern);
        Prefill(*w, sh, buf);
      });
    }
    for (auto& t : threads) t.join();
  }
  for (auto& w : workers) {
    if (!w->prefill_status.ok()) {
      std::fprintf(stderr, "strata bench: %s\n", StatusText(w->prefill_status).c_str());
      return kExitFailure;
    }
  }
  const double prefill_s = (NowNs() - prefill_start) / 1e9;
  std::printf("prefill: %lld chunks in %.2f s\n", static_cast<long long>(keys), prefill_s);
  auto before = node_stats();

  const int64_t start = NowNs();
  sh.measure_start = start + absl::ToInt64Nanoseconds(c.warmup);
  sh.measure_end = sh.measure_start.load() + absl::ToInt64Nanoseconds(c.duration);
  for (auto& w : workers) w->thread = std::thread([&sh, w = w.get()] { Run(*w, sh); });
  const bool progress = c.progress && c.warmup + c.duration > absl::Seconds(3);
  uint64_t last_gets = 0, last_puts = 0, last_misses = 0, last_errors = 0, last_reconnects = 0;
  int64_t next_report = start + 1'000'000'000;
  while (!g_interrupted.load() && NowNs() < sh.measure_end.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (progress && NowNs() >= next_report) {
      uint64_t gets = 0, puts = 0, misses = 0, errors = 0, reconnects = 0;
      int unreachable = 0;
      for (auto& w : workers) {
        gets += w->gets.load(std::memory_order_relaxed);
        puts += w->puts.load(std::memory_order_relaxed);
        misses += w->misses.load(std::memory_order_relaxed);
        errors += w->errors.load(std::memory_order_relaxed);
        unreachable += w->unreachable.load(std::memory_order_relaxed);
        if (w->client != nullptr) reconnects += w->client->counters().reconnects;
      }
      // Succeeded operations only; misses and failures are counted apart, so
      // a node that stops answering (or comes back empty) shows as errors
      // (or misses), not as throughput.
      std::string extra;
      if (misses != last_misses) {
        absl::StrAppend(&extra, absl::StrFormat("  misses %8.1f/s",
                                                static_cast<double>(misses - last_misses)));
      }
      if (errors != last_errors) {
        absl::StrAppend(&extra, absl::StrFormat("  errors %8.1f/s",
                                                static_cast<double>(errors - last_errors)));
      }
      if (unreachable > 0) {
        absl::StrAppend(&extra, "  node unreachable: ", unreachable, " of ", workers.size(),
                        " clients backing off (up to 1 s)");
      }
      if (reconnects != last_reconnects) {
        absl::StrAppend(&extra, "  reconnected to a restarted node (", reconnects - last_reconnects,
                        " clients)");
      }
      std::printf("  [%3.0f s%s] gets %8.1f/s  puts %8.1f/s  %.3f GB/s%s\n",
                  (next_report - start) / 1e9, next_report <= sh.measure_start ? ", warm-up" : "",
                  static_cast<double>(gets - last_gets), static_cast<double>(puts - last_puts),
                  ((gets - last_gets) * static_cast<double>(chunk * c.chunks_per_get) +
                   (puts - last_puts) * static_cast<double>(chunk)) / 1e9,
                  extra.c_str());
      std::fflush(stdout);
      last_gets = gets;
      last_puts = puts;
      last_misses = misses;
      last_errors = errors;
      last_reconnects = reconnects;
      next_report += 1'000'000'000;
    }
  }
  const bool interrupted = g_interrupted.load();
  if (interrupted) sh.measure_end = std::min<int64_t>(sh.measure_end.load(), NowNs());
  for (auto& w : workers) w->thread.join();
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);

  const double seconds = (sh.measure_end.load() - sh.measure_start.load()) / 1e9;
  std::vector<int64_t> get_ns, put_ns, slice_ns, memcpy_ns;
  uint64_t misses = 0, get_errors = 0, corrupt = 0, put_errors = 0;
  for (auto& w : workers) {
    get_ns.insert(get_ns.end(), w->get_ns.begin(), w->get_ns.end());
    put_ns.insert(put_ns.end(), w->put_ns.begin(), w->put_ns.end());
    slice_ns.insert(slice_ns.end(), w->first_slice_ns.begin(), w->first_slice_ns.end());
    memcpy_ns.insert(memcpy_ns.end(), w->memcpy_ns.begin(), w->memcpy_ns.end());
    misses += w->get_misses;
    get_errors += w->get_errors;
    corrupt += w->corrupt;
    put_errors += w->put_errors;
    if (!w->first_error.empty()) {
      std::fprintf(stderr, "client %d: first error: %s\n", w->id, w->first_error.c_str());
    }
  }
  if (interrupted) std::printf("interrupted: summary of what ran\n");
  if (seconds <= 0) {
    std::printf("nothing measured (stopped during the warm-up)\n");
    return get_errors + put_errors + corrupt == 0 ? kExitOk : kExitFailure;
  }
  std::printf("\nmeasured %.2f s after %s warm-up; latency: nearest-rank percentiles of exact "
              "per-op samples, ms\n",
              seconds, absl::FormatDuration(c.warmup).c_str());
  std::printf("%-12s %9s %10s %8s %9s %9s %9s %9s\n", "op", "count", "ops/s", "GB/s", "p50",
              "p99", "p999", "max");
  if (!get_ns.empty() || c.get_ratio > 0) {
    PrintRow("get", get_ns, seconds, chunk * c.chunks_per_get);
  }
  if (!slice_ns.empty()) {
    PrintRow("get slice0", slice_ns, seconds, chunk * c.chunks_per_get / c.slices);
  }
  if (!put_ns.empty() || c.get_ratio < 1) PrintRow("put", put_ns, seconds, chunk);
  std::vector<int64_t> all(get_ns);
  all.insert(all.end(), put_ns.begin(), put_ns.end());
  // Bytes per operation of the mix: a get moves --chunks_per_get chunks.
  const double all_bytes =
      all.empty() ? 0.0
                  : (static_cast<double>(get_ns.size()) * chunk * c.chunks_per_get +
                     static_cast<double>(put_ns.size()) * chunk) / all.size();
  PrintRow("all", all, seconds, all_bytes);
  if (!slice_ns.empty()) {
    std::printf("(get slice0: time until layer 0 (%s) of the chunk arrived; GB/s counts that slice)\n",
                FormatBytes(chunk / c.slices).c_str());
  }
  if (c.memcpy_reference && !memcpy_ns.empty() && !get_ns.empty()) {
    std::sort(memcpy_ns.begin(), memcpy_ns.end());
    std::sort(get_ns.begin(), get_ns.end());
    const double get_p50 = PercentileMs(get_ns, 0.5), copy_p50 = PercentileMs(memcpy_ns, 0.5);
    const double bytes = static_cast<double>(chunk * c.chunks_per_get);
    std::printf("memcpy reference (--memcpy_reference): %zu copies of %s, p50 %.3f ms = %.2f GB/s, "
                "p99 %.3f ms; the get alone: p50 %.3f ms = %.2f GB/s, %.0f%% of memcpy\n",
                memcpy_ns.size(), FormatBytes(chunk * c.chunks_per_get).c_str(), copy_p50,
                bytes / copy_p50 / 1e6, PercentileMs(memcpy_ns, 0.99), get_p50,
                bytes / get_p50 / 1e6, 100 * copy_p50 / get_p50);
  }
  uint64_t reconnects = 0;
  for (auto& w : workers) {
    if (w->client != nullptr) reconnects += w->client->counters().reconnects;
  }
  const char* missed = reconnects > 0 ? "evicted, or lost in the node's restart" : "evicted";
  std::printf(c.verify ? "gets: %zu verified byte for byte, %llu misses (%s), %llu corrupt, "
                         "%llu errors\n"
                       : "gets: %zu checksum-verified only (--noverify), %llu misses (%s), "
                         "%llu corrupt, %llu errors\n",
              get_ns.size(), static_cast<unsigned long long>(misses), missed,
              static_cast<unsigned long long>(corrupt), static_cast<unsigned long long>(get_errors));
  if (first.cluster == nullptr && first.client->data_path() == "shm") {
    client::ClientCounters lf;
    for (auto& w : workers) {
      const client::ClientCounters one = w->client->counters();
      lf.lease_free_loads += one.lease_free_loads;
      lf.lease_free_fallbacks += one.lease_free_fallbacks;
    }
    std::printf("lease-free loads (--lease_free): %llu served from the read index, %llu fell "
                "back to a lease (warm-up and prefill included)\n",
                static_cast<unsigned long long>(lf.lease_free_loads),
                static_cast<unsigned long long>(lf.lease_free_fallbacks));
  }
  auto after = node_stats();
  std::printf("puts: %llu errors", static_cast<unsigned long long>(put_errors));
  if (reconnects > 0) {
    // The restarted node counts from zero: a difference would mean nothing.
    std::printf("; the node restarted during the run (%llu reconnects): no node counters over it\n",
                static_cast<unsigned long long>(reconnects));
  } else if (before.ok() && after.ok()) {
    auto delta = [&](const char* k) { return (*after)[k] - (*before)[k]; };
    std::printf("; node counters over warm-up + run: %llu stored new, %llu already present\n",
                static_cast<unsigned long long>(delta("puts_committed")),
                static_cast<unsigned long long>(delta("puts_already_present")));
  } else {
    std::printf("; node counters not read: %s\n",
                StatusText(before.ok() ? after.status() : before.status()).c_str());
  }
  return get_errors + put_errors + corrupt == 0 ? kExitOk : kExitFailure;
}

}  // namespace strata::cli
