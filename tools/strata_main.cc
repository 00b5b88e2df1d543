// strata: Strata's command-line tool.
//
//   strata serve [flags]   run a store node: gRPC control plane, UCX data
//                          plane, DRAM pool + RocksDB directory
//   strata local [flags]   run a store node's engine in this process (DRAM
//                          pool + RocksDB directory) under a multi-turn
//                          conversation workload, verifying every byte read
//   strata put FILE...     store files as keyed chunks on a node
//   strata get ... --out F load chunks (of files or keys) back, verifying
//   strata lookup ...      per-key tier and cached prefix of files or keys
//   strata stats           a node's counters
//   strata replay [flags]  a conversation trace against a node, with hints
//   strata bench [flags]   load generator: N clients, get/put mix, latency
//   strata worker run|bench|decode-bench   the GPU worker runtime
//                          (strata_worker): a conversation turn of a Llama
//                          model over a node; TTFT of returning
//                          conversations; batched decode tokens/s
//   strata token ...       a new tenant token and its tenants-file line
//   strata help            this text
//
// The subcommands that talk to a node live in tools/cli/commands*.
//
// `strata <command> --help` lists a command's flags.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "store/auth/tenants.h"
#include "store/auth/tls.h"
#include "store/cluster/etcd_registration.h"
#include "store/cluster/membership.h"
#include "store/cluster/node_record.h"
#include "store/common/checksum.h"
#include "store/common/key_chain.h"
#include "store/engine.h"
#include "store/faulty_nvme_tier.h"
#include "store/server.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"

namespace strata {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int Local(const std::vector<std::string>& args) {
  std::string data_dir = "strata-data";
  cli::Bytes dram{256ull << 20}, nvme{1ull << 30};
  std::string model = "demo-model", dtype_name = "fp16", tenant = "demo";
  int64_t layers = 4, kv_heads = 8, head_dim = 128, tokens_per_chunk = 64;
  int64_t conversations = 32, turns = 8, turn_tokens = 512, seed = 1;
  std::string dram_policy = "prefix-lru";
  cli::FlagSet flags(
      "strata local [flags]\n\n"
      "Opens a store node's engine in this process: a DRAM pool in front of a RocksDB\n"
      "directory (--data_dir). Runs multi-turn conversations against it: each turn\n"
      "looks up the conversation's cached prefix, loads those chunks (verifying every\n"
      "byte), and saves the chunks of the new tokens. Chunks persisted by an earlier\n"
      "run are restored at start. Ctrl-C stops after the current turn and flushes.");
  flags.Add("data_dir", "RocksDB directory of the NVMe tier (created if missing)", &data_dir);
  flags.Add("dram", "size of the DRAM pool", &dram);
  flags.Add("nvme", "capacity of the NVMe tier (chunk payload bytes)", &nvme);
  flags.Add("dram_policy", "DRAM eviction policy: lru, prefix-lru or scheduler", &dram_policy);
  flags.Add("model", "model id of the namespace", &model);
  flags.Add("tenant", "tenant of the namespace", &tenant);
  flags.Add("layers", "layers per chunk", &layers);
  flags.Add("kv_heads", "KV heads", &kv_heads);
  flags.Add("head_dim", "head dimension", &head_dim);
  flags.Add("dtype", "fp16 or bf16", &dtype_name);
  flags.Add("tokens_per_chunk", "tokens per chunk", &tokens_per_chunk);
  flags.Add("conversations", "concurrent conversations", &conversations);
  flags.Add("turns", "turns per conversation", &turns);
  flags.Add("turn_tokens", "new tokens per turn (prompt + response)", &turn_tokens);
  flags.Add("seed", "seed of the token generator", &seed);
  auto rest = flags.Parse(args);
  if (!rest.ok()) {
    std::fprintf(stderr, "strata local: %s\n", std::string(rest.status().message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (!rest->empty() || conversations <= 0 || turns <= 0 || turn_tokens <= 0 || layers <= 0 ||
      kv_heads <= 0 || head_dim <= 0 || tokens_per_chunk <= 0) {
    std::fprintf(stderr,
                 "strata local: counts must be positive and no positional arguments are taken "
                 "(see --help)\n");
    return 2;
  }
  auto dtype = ParseDType(dtype_name);
  if (!dtype.ok()) {
    std::fprintf(stderr, "strata local: %s\n", std::string(dtype.status().message()).c_str());
    return 2;
  }
  NamespaceSpec spec;
  spec.model_id = model;
  spec.num_layers = static_cast<uint32_t>(layers);
  spec.num_kv_heads = static_cast<uint32_t>(kv_heads);
  spec.head_dim = static_cast<uint32_t>(head_dim);
  spec.dtype = *dtype;
  spec.tokens_per_chunk = static_cast<uint32_t>(tokens_per_chunk);
  auto chain = KeyChain::Create(spec);
  if (!chain.ok()) {
    std::fprintf(stderr, "strata local: %s\n", std::string(chain.status().message()).c_str());
    return 2;
  }

  store::EngineOptions options;
  options.dram_bytes = dram.value;
  options.nvme_path = data_dir;
  options.nvme_capacity_bytes = nvme.value;
  options.dram_policy = dram_policy;
  const absl::Time open_start = absl::Now();
  auto opened = store::Engine::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "strata local: cannot open the store in %s: %s\n", data_dir.c_str(),
                 opened.status().ToString().c_str());
    return 1;
  }
  store::Engine& engine = **opened;
  store::EngineStats stats = engine.Stats();
  std::printf("strata local: DRAM %s, NVMe %s in %s; restored %llu chunks in %.1f ms\n",
              cli::FormatBytes(stats.dram_capacity_bytes).c_str(),
              cli::FormatBytes(options.nvme_capacity_bytes).c_str(), data_dir.c_str(),
              static_cast<unsigned long long>(stats.chunks_restored),
              absl::ToDoubleMilliseconds(absl::Now() - open_start));
  auto ns = engine.RegisterNamespace(spec, tenant);
  if (!ns.ok()) {
    std::fprintf(stderr, "strata local: %s\n", ns.status().ToString().c_str());
    return 1;
  }
  const uint64_t chunk_bytes = ChunkLayout(spec).chunk_bytes();
  std::printf("namespace %u: %s, %lld layers x %lld KV heads x d%lld %s, %lld tokens/chunk = %s\n",
              *ns, model.c_str(), static_cast<long long>(layers),
              static_cast<long long>(kv_heads), static_cast<long long>(head_dim),
              DTypeName(*dtype), static_cast<long long>(tokens_per_chunk),
              cli::FormatBytes(chunk_bytes).c_str());

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint32_t>> history(conversations);
  // Every conversation opens with one of four shared system prompts.
  std::vector<std::vector<uint32_t>> system_prompts(4);
  for (auto& p : system_prompts) {
    p.resize(4 * tokens_per_chunk);
    for (auto& t : p) t = static_cast<uint32_t>(rng() % 128000);
  }
  for (int64_t c = 0; c < conversations; ++c) history[c] = system_prompts[c % 4];

  uint64_t loaded_chunks = 0, saved_chunks = 0, computed_tokens = 0, reused_tokens = 0;
  uint64_t from_dram = 0, from_nvme = 0, errors = 0, raced = 0;
  std::vector<std::byte> buf(chunk_bytes);
  const absl::Time start = absl::Now();
  absl::Time last_report = start;
  int64_t turns_done = 0;
  for (int64_t turn = 0; turn < turns && !g_stop; ++turn) {
    for (int64_t c = 0; c < conversations && !g_stop; ++c) {
      std::vector<uint32_t>& tokens = history[c];
      for (int64_t i = 0; i < turn_tokens; ++i) tokens.push_back(static_cast<uint32_t>(rng() % 128000));
      std::vector<ChunkKey> keys = chain->Keys(tokens);
      auto lookup = engine.Lookup(*ns, keys);
      if (!lookup.ok()) {
        ++errors;
        std::fprintf(stderr, "lookup failed: %s\n", lookup.status().ToString().c_str());
        continue;
      }
      size_t hit = lookup->prefix_chunks;
      if (hit > 0) {
        auto lease = engine.Acquire(*ns, std::span<const ChunkKey>(keys.data(), hit));
        if (lease.status().code() == absl::StatusCode::kNotFound) {
          // Evicted between lookup and load: a miss, so recompute.
          ++raced;
          hit = 0;
        } else if (lease.ok()) {
          for (const store::ReadChunk& chunk : lease->chunks) {
            if (ChunkChecksum(chunk.data) != chunk.checksum) ++errors;
            (chunk.found_in == store::Tier::kDram ? from_dram : from_nvme)++;
          }
          loaded_chunks += hit;
          reused_tokens += hit * tokens_per_chunk;
          (void)engine.Release(lease->id);
        } else {
          ++errors;
          std::fprintf(stderr, "load failed: %s\n", lease.status().ToString().c_str());
        }
      }
      computed_tokens += tokens.size() - std::min<size_t>(tokens.size(), hit * tokens_per_chunk);
      for (size_t i = hit; i < keys.size(); ++i) {
        cli::FillFromKey(keys[i], buf);
        std::optional<ChunkKey> parent;
        if (i > 0) parent = keys[i - 1];
        absl::Status s = engine.Put(*ns, keys[i], parent, buf);
        if (s.ok()) {
          ++saved_chunks;
        } else {
          ++errors;
          std::fprintf(stderr, "put failed: %s\n", s.ToString().c_str());
        }
      }
      const absl::Time now = absl::Now();
      if (now - last_report >= absl::Seconds(1)) {
        last_report = now;
        std::printf("  turn %lld/%lld, conversation %lld/%lld: %llu chunks loaded, %llu saved\n",
                    static_cast<long long>(turn + 1), static_cast<long long>(turns),
                    static_cast<long long>(c + 1), static_cast<long long>(conversations),
                    static_cast<unsigned long long>(loaded_chunks),
                    static_cast<unsigned long long>(saved_chunks));
        std::fflush(stdout);
      }
    }
    if (!g_stop) ++turns_done;
  }
  if (g_stop) std::printf("interrupted: stopping after the current turn\n");
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (absl::Status s = engine.FlushWriteBack(); !s.ok()) {
    std::fprintf(stderr, "flush: %s\n", s.ToString().c_str());
  }
  stats = engine.Stats();
  const double moved = static_cast<double>((loaded_chunks + saved_chunks) * chunk_bytes);
  std::printf(
      "\n%lld turns x %lld conversations in %.2f s\n"
      "  prefix reuse:   %llu tokens loaded from cache, %llu tokens computed (%.1f%% reused)\n"
      "  chunks loaded:  %llu (DRAM %llu, NVMe %llu); saved: %llu; %.2f GB/s moved\n"
      "  loads that lost a race with eviction (recomputed): %llu\n"
      "  DRAM:  %s of %s used, %llu chunks, %llu evictions\n"
      "  NVMe:  %s of %s used, %llu chunks, %llu write-backs, %llu evictions\n"
      "  index: %llu entries, %.0f bytes/entry; checksum failures %llu; errors %llu\n",
      static_cast<long long>(turns_done), static_cast<long long>(conversations), seconds,
      static_cast<unsigned long long>(reused_tokens),
      static_cast<unsigned long long>(computed_tokens),
      100.0 * reused_tokens / std::max<uint64_t>(1, reused_tokens + computed_tokens),
      static_cast<unsigned long long>(loaded_chunks), static_cast<unsigned long long>(from_dram),
      static_cast<unsigned long long>(from_nvme), static_cast<unsigned long long>(saved_chunks),
      moved / seconds / 1e9, static_cast<unsigned long long>(raced),
      cli::FormatBytes(stats.dram_used_bytes).c_str(),
      cli::FormatBytes(stats.dram_capacity_bytes).c_str(),
      static_cast<unsigned long long>(stats.chunks_in_dram),
      static_cast<unsigned long long>(stats.dram_evictions),
      cli::FormatBytes(stats.nvme_used_bytes).c_str(),
      cli::FormatBytes(stats.nvme_capacity_bytes).c_str(),
      static_cast<unsigned long long>(stats.chunks_on_nvme),
      static_cast<unsigned long long>(stats.write_backs),
      static_cast<unsigned long long>(stats.nvme_evictions),
      static_cast<unsigned long long>(stats.index_entries),
      stats.index_entries ? static_cast<double>(stats.index_memory_bytes) / stats.index_entries : 0.0,
      static_cast<unsigned long long>(stats.checksum_failures),
      static_cast<unsigned long long>(errors));
  return errors == 0 ? 0 : 1;
}


// Blocks SIGINT and SIGTERM in this thread and every thread it starts later,
// so that ServeUntilSignal can wait for them with sigwait.
void BlockStopSignals(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGHUP);  // reloads the tenants file
  pthread_sigmask(SIG_BLOCK, set, nullptr);
}

int Serve(const std::vector<std::string>& args) {
  std::string listen = "127.0.0.1:7400", data_dir = "strata-data", node_id, transports;
  std::string data_listen;
  std::string port_file, dram_policy = "prefix-lru";
  cli::Bytes dram{1ull << 30}, nvme{16ull << 30};
  absl::Duration lease_ttl = absl::Seconds(30), grace = absl::Seconds(10);
  bool no_nvme = false;
  bool shm_pool = true;
  bool prefault_dram = true;
  bool lease_free_index = true;
  bool isolate_tenants = false;
  int64_t prefetch_jobs = 8;
  int64_t max_namespaces_per_peer = 1024;
  std::string nvme_faults;
  std::string metrics_listen;
  cli::Bytes prefetch_bytes{0};
  std::string etcd, cluster_name = "strata", peers, advertise;
  absl::Duration etcd_lease_ttl = absl::Seconds(5);
  std::string tls_cert, tls_key, tls_client_ca, tenants_file;
  cli::Bytes max_put_reservation{0};
  cli::FlagSet flags(
      "strata serve [flags]\n\n"
      "Runs a store node: gRPC control plane on --listen, UCX data plane over the\n"
      "node's DRAM pool, RocksDB NVMe tier in --data_dir (embedded default: no other\n"
      "service needed). With --etcd it registers in a cluster's membership under a\n"
      "lease. SIGTERM or Ctrl-C deregisters, stops accepting gets and puts, waits up to\n"
      "--shutdown_grace for leases, flushes write-back and closes RocksDB cleanly.");
  flags.Add("listen", "gRPC listen address host:port (port 0 picks a free port)", &listen);
  flags.Add("data_listen",
            "UCX data plane address host[:port]: UCX opens only the network interfaces "
            "holding host (0.0.0.0: all) and tcp listens on port (default: any free port); "
            "default: the host of --listen. Shared memory is not affected; the "
            "UCX_NET_DEVICES environment variable, when set, wins over host",
            &data_listen);
  flags.Add("dram", "size of the DRAM pool", &dram);
  flags.Add("prefault_dram",
            "fault in every page of the DRAM pool at start (about a second per few GiB), so "
            "that first puts take no page faults and a pool the host cannot hold fails at "
            "start, not with a SIGBUS later (--noprefault_dram: pages are faulted in on first "
            "write)",
            &prefault_dram);
  flags.Add("shm_pool",
            "put the DRAM pool in shared memory (a memfd, mode 0600) that clients of the same "
            "user on this host map read-only to copy leased chunks out (--noshm_pool: UCX only)",
            &shm_pool);
  flags.Add("lease_free_index",
            "with --shm_pool: publish committed DRAM chunks in a read index in shared memory "
            "beside the pool, so that clients on this host copy them out without a Get round "
            "trip, re-checking a per-entry generation after the copy (--nolease_free_index: "
            "every load takes a lease)",
            &lease_free_index);
  flags.Add("isolate_tenants",
            "grant clients no remote access to the node's memory: bytes move as two-sided "
            "UCX messages the node checks against the caller's leases, and no shared pool "
            "is offered (README \"Security\"); implies --noshm_pool",
            &isolate_tenants);
  flags.Add("data_dir", "RocksDB directory of the NVMe tier (created if missing)", &data_dir);
  flags.Add("nvme", "capacity of the NVMe tier (chunk payload bytes)", &nvme);
  flags.Add("no_nvme", "run with DRAM only (no --data_dir)", &no_nvme);
  flags.Add("node_id", "node id in node info and stats (default: the listen address)", &node_id);
  flags.Add("ucx_transports", "UCX transports, as UCX_TLS takes them (default: UCX's choice)",
            &transports);
  flags.Add("dram_policy",
            "DRAM eviction policy: lru, prefix-lru or scheduler (evicts what hinted jobs need "
            "latest, README \"Scheduling\")",
            &dram_policy);
  flags.Add("prefetch_jobs", "hinted jobs ahead whose chunks are prefetched from NVMe (0: none)",
            &prefetch_jobs);
  flags.Add("prefetch_bytes",
            "most prefetched bytes waiting to be read (0: a quarter of --dram)", &prefetch_bytes);
  flags.Add("lease_ttl", "default lease duration", &lease_ttl);
  flags.Add("shutdown_grace", "how long shutdown waits for outstanding leases", &grace);
  flags.Add("port_file", "write the bound port to this file once listening", &port_file);
  flags.Add("metrics_listen",
            "serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one)",
            &metrics_listen);
  flags.Add("max_namespaces_per_peer",
            "most namespaces one client host may register (0: no limit)",
            &max_namespaces_per_peer);
  flags.Add("nvme_faults",
            "testing only: inject NVMe faults, e.g. write_error=0.01,torn=0.001,seed=3 "
            "(store/faulty_nvme_tier.h)",
            &nvme_faults);
  flags.Add("etcd",
            "etcd client endpoints host:port[,host:port...]: register this node in the "
            "cluster's membership under a lease (default: none, the node runs alone)",
            &etcd);
  flags.Add("cluster", "cluster name: the node registers under /strata/NAME/nodes/ in etcd",
            &cluster_name);
  flags.Add("etcd_lease_ttl",
            "TTL of the node's etcd lease (whole seconds), renewed every third of it; a node "
            "that stops renewing leaves the membership within it",
            &etcd_lease_ttl);
  flags.Add("peers",
            "static cluster host:port,... (instead of --etcd): checked and logged; clients "
            "are given the same list",
            &peers);
  flags.Add("advertise",
            "host:port clients dial, published in etcd (default: the bound --listen address)",
            &advertise);
  flags.Add("tls_cert",
            "PEM file of the node's TLS certificate (chain): the gRPC port speaks TLS (with "
            "--tls_key; default: plaintext, logged when not on loopback)",
            &tls_cert);
  flags.Add("tls_key", "PEM file of the private key of --tls_cert", &tls_key);
  flags.Add("tls_client_ca",
            "PEM file of the CA whose signed client certificates alone may connect (mutual TLS; "
            "needs --tls_cert)",
            &tls_client_ca);
  flags.Add("tenants",
            "tenants file (a line per tenant: name, salted token hashes as `strata token` "
            "prints them, and optional quotas dram=SIZE nvme=SIZE hint_jobs=N): turns "
            "authentication on; reloaded on SIGHUP",
            &tenants_file);
  flags.Add("max_put_reservation",
            "most DRAM one caller (its tenant, or its host without --tenants) may hold under open "
            "write leases (0: half of --dram)",
            &max_put_reservation);
  auto rest = flags.Parse(args);
  if (!rest.ok() || !rest->empty()) {
    std::fprintf(stderr, "strata serve: %s\n",
                 rest.ok() ? "no positional arguments are taken (see --help)"
                           : std::string(rest.status().message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (prefetch_jobs < 0) {
    std::fprintf(stderr, "strata serve: --prefetch_jobs must be >= 0\n");
    return 2;
  }
  if (grace < absl::ZeroDuration()) {
    std::fprintf(stderr, "strata serve: --shutdown_grace must be >= 0 (0: do not wait for leases)\n");
    return 2;
  }
  if (lease_ttl <= absl::ZeroDuration()) {
    std::fprintf(stderr, "strata serve: --lease_ttl must be positive\n");
    return 2;
  }
  if (max_namespaces_per_peer < 0 || max_namespaces_per_peer > 65535) {
    std::fprintf(stderr, "strata serve: --max_namespaces_per_peer must be in [0, 65535]\n");
    return 2;
  }
  if (!etcd.empty() && !peers.empty()) {
    std::fprintf(stderr, "strata serve: give --etcd or --peers, not both\n");
    return 2;
  }
  if (!etcd.empty()) {
    if (absl::Status s = cluster::ValidateClusterName(cluster_name); !s.ok()) {
      std::fprintf(stderr, "strata serve: --cluster: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    if (node_id.empty() && listen.size() >= 2 && listen.substr(listen.size() - 2) == ":0") {
      std::fprintf(stderr,
                   "strata serve: --etcd with --listen on port 0 needs --node_id (the default id, "
                   "the listen address, would not be unique)\n");
      return 2;
    }
    if (absl::Status s = cluster::ValidateNodeId(node_id.empty() ? listen : node_id); !s.ok()) {
      std::fprintf(stderr, "strata serve: --node_id: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    if (etcd_lease_ttl < absl::Seconds(1)) {
      std::fprintf(stderr, "strata serve: --etcd_lease_ttl must be at least 1s\n");
      return 2;
    }
  }
  std::unique_ptr<cluster::Membership> static_peers;
  if (!peers.empty()) {
    auto parsed = cluster::CreateStaticMembership(peers);
    if (!parsed.ok()) {
      std::fprintf(stderr, "strata serve: --peers: %s\n",
                   std::string(parsed.status().message()).c_str());
      return 2;
    }
    static_peers = *std::move(parsed);
  }
  std::optional<store::NvmeFaults> faults;
  if (!nvme_faults.empty()) {
    auto parsed = store::NvmeFaults::Parse(nvme_faults);
    if (!parsed.ok()) {
      std::fprintf(stderr, "strata serve: %s\n", std::string(parsed.status().message()).c_str());
      return 2;
    }
    faults = *parsed;
  }
  sigset_t stop_signals;
  BlockStopSignals(&stop_signals);
  const absl::Time start_time = absl::Now();

  store::EngineOptions options;
  options.dram_bytes = dram.value;
  options.shared_dram = shm_pool && !isolate_tenants;
  options.read_index = lease_free_index;
  options.prefault_dram = prefault_dram;
  bool prefault_line_open = false;
  options.on_prefault = [&prefault_line_open](uint64_t bytes, bool done, absl::Duration took) {
    if (bytes < (uint64_t{1} << 30)) return;  // small pools take too little time to mention
    prefault_line_open = !done;
    if (!done) {
      std::printf("strata serve: pre-faulting %s DRAM pool ...", cli::FormatBytes(bytes).c_str());
    } else {
      std::printf(" done in %.1f s\n", absl::ToDoubleSeconds(took));
    }
    std::fflush(stdout);
  };
  if (!no_nvme) {
    options.nvme_path = data_dir;
    options.nvme_capacity_bytes = nvme.value;
  }
  options.dram_policy = dram_policy;
  options.prefetch_jobs = static_cast<size_t>(prefetch_jobs);
  options.prefetch_bytes = prefetch_bytes.value;
  options.default_lease_ttl = lease_ttl;
  options.max_lease_ttl = std::max(options.max_lease_ttl, lease_ttl);
  if (faults) {
    std::fprintf(stderr, "strata serve: injecting NVMe faults: %s\n", nvme_faults.c_str());
    options.wrap_nvme = [f = *faults](std::unique_ptr<store::NvmeTier> inner) {
      return std::unique_ptr<store::NvmeTier>(store::NewFaultyNvmeTier(std::move(inner), f));
    };
  }
  auto engine = store::Engine::Open(options);
  if (!engine.ok()) {
    if (prefault_line_open) std::printf(" failed\n");
    std::fflush(stdout);
    std::fprintf(stderr, "strata serve: cannot open the store%s%s: %s\n",
                 no_nvme ? "" : " in ", no_nvme ? "" : data_dir.c_str(),
                 engine.status().ToString().c_str());
    return 1;
  }
  const store::EngineStats stats = (*engine)->Stats();
  store::ServerOptions server_options;
  server_options.listen_address = listen;
  server_options.node_id = node_id;
  server_options.ucx_transports = transports;
  server_options.max_namespaces_per_peer = static_cast<int>(max_namespaces_per_peer);
  server_options.data_listen = data_listen;
  server_options.isolate_tenants = isolate_tenants;
  server_options.metrics_listen = metrics_listen;
  server_options.tls_cert_file = tls_cert;
  server_options.tls_key_file = tls_key;
  server_options.tls_client_ca_file = tls_client_ca;
  server_options.tenants_file = tenants_file;
  server_options.max_put_reservation_bytes = max_put_reservation.value;
  auto server = store::StoreServer::Start(*std::move(engine), server_options);
  if (!server.ok()) {
    std::fprintf(stderr, "strata serve: %s\n", server.status().ToString().c_str());
    return 1;
  }
  // The banner says the node serves: with --etcd it is printed only once the
  // node is registered (a node that cannot register stops instead).
  std::string banner;
  banner += absl::StrFormat(
      "strata serve: listening on %s; DRAM %s%s; NVMe %s; %llu chunks restored; UCX %s\n",
      (*server)->address(), cli::FormatBytes(stats.dram_capacity_bytes),
      isolate_tenants ? " (tenants isolated)" : shm_pool ? " (shared memory)" : "",
      no_nvme ? std::string("off") : absl::StrCat(cli::FormatBytes(nvme.value), " in ", data_dir),
      static_cast<unsigned long long>(stats.chunks_restored), (*server)->ucx_transports());
  banner += absl::StrFormat(
      "strata serve: gRPC %s; %s\n",
      (*server)->tls() ? (tls_client_ca.empty() ? "over TLS" : "over mutual TLS") : "in plaintext",
      (*server)->authentication() ? absl::StrCat("tenants authenticated (", tenants_file, ")")
                                  : std::string("no authentication (no --tenants)"));
  if ((*server)->metrics_port() != 0) {
    const std::string host = metrics_listen.substr(0, metrics_listen.rfind(':'));
    banner += absl::StrFormat("strata serve: metrics at http://%s:%d/metrics\n", host,
                              (*server)->metrics_port());
  }
  std::unique_ptr<cluster::EtcdRegistration> registration;
  if (!etcd.empty()) {
    cluster::EtcdRegistrationOptions reg;
    reg.endpoints = etcd;
    reg.cluster = cluster_name;
    reg.lease_ttl = etcd_lease_ttl;
    reg.record.node_id = (*server)->node_id();
    reg.record.grpc_address = advertise.empty() ? (*server)->address() : advertise;
    reg.record.dram_bytes = stats.dram_capacity_bytes;
    reg.record.nvme_capacity_bytes = no_nvme ? 0 : nvme.value;
    reg.record.start_unix_ms = absl::ToUnixMillis(start_time);
    reg.record.server_version = (*server)->server_version();
    reg.record.ucx_transports = (*server)->ucx_transports();
    const std::string host = reg.record.grpc_address.substr(0, reg.record.grpc_address.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]") {
      std::fprintf(stderr, "strata serve: listening on %s: give --advertise, the address "
                   "clients should dial\n", reg.record.grpc_address.c_str());
      return 2;
    }
    auto registered = cluster::EtcdRegistration::Start(reg);
    if (!registered.ok()) {
      std::fprintf(stderr, "strata serve: cannot register in etcd %s, so the node stops: %s\n",
                   etcd.c_str(), registered.status().ToString().c_str());
      return 1;
    }
    registration = *std::move(registered);
    std::printf("%s", banner.c_str());
    std::printf("strata serve: registered as %s in cluster %s on etcd %s (lease %s)\n",
                reg.record.node_id.c_str(), cluster_name.c_str(), etcd.c_str(),
                absl::FormatDuration(etcd_lease_ttl).c_str());
  } else {
    std::printf("%s", banner.c_str());
  }
  if (etcd.empty() && static_peers != nullptr) {
    const cluster::MembershipView view = static_peers->Snapshot();
    const bool listed = view.Find((*server)->node_id()) != nullptr ||
                        view.Find(advertise.empty() ? (*server)->address() : advertise) != nullptr;
    std::printf("strata serve: static cluster of %zu peers%s\n", view.nodes.size(),
                listed ? "" : " (this node is not among them)");
  }
  std::fflush(stdout);
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr || std::fprintf(f, "%d\n", (*server)->port()) < 0 || std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      std::fprintf(stderr, "strata serve: cannot write --port_file %s\n", port_file.c_str());
      return 1;
    }
  }
  int sig = 0;
  while (true) {
    sigwait(&stop_signals, &sig);
    if (sig != SIGHUP) break;
    absl::Status reloaded = (*server)->ReloadTenants();
    std::printf("strata serve: SIGHUP: %s\n",
                reloaded.ok() ? absl::StrCat("tenants reloaded from ", tenants_file).c_str()
                              : absl::StrCat("tenants not reloaded, the previous table stays: ",
                                             reloaded.ToString()).c_str());
    std::fflush(stdout);
  }
  if (registration != nullptr) {
    // Leave the membership first, so that clients stop routing here while
    // the node drains.
    absl::Status left = registration->Deregister();
    std::printf("strata serve: %s\n",
                left.ok() ? "deregistered from etcd"
                          : absl::StrCat("deregistration failed (the lease expires within ",
                                         absl::FormatDuration(etcd_lease_ttl), "): ",
                                         left.ToString()).c_str());
  }
  std::printf("strata serve: %s received; draining (grace %s)\n", strsignal(sig),
              absl::FormatDuration(grace).c_str());
  std::fflush(stdout);
  absl::Status s = (*server)->Shutdown(grace);
  std::printf("strata serve: stopped%s%s\n", s.ok() ? "" : " with error: ",
              s.ok() ? "" : s.ToString().c_str());
  return s.ok() ? 0 : 1;
}

// strata token: a new tenant token in a file (mode 0600) and its line for
// the tenants file on stdout; or, with --hash, the line for an existing one.
int Token(const std::vector<std::string>& args) {
  std::string tenant, out, hash;
  cli::FlagSet flags(
      "strata token --tenant NAME --out FILE\n"
      "strata token --hash FILE\n\n"
      "Writes a new random token TENANT:SECRET for tenant NAME to FILE (mode 0600; clients\n"
      "give it with --token_file) and prints the tenants-file line for it: the tenant, a\n"
      "salted SHA-256 of the token. The node keeps only the hash.\n"
      "With --hash, prints the line for the token already in FILE (a fresh salt).");
  flags.Add("tenant", "tenant of the new token ([A-Za-z0-9._-], 1-64)", &tenant);
  flags.Add("out", "file to write the new token to (created with mode 0600)", &out);
  flags.Add("hash", "file holding an existing token to print the line for", &hash);
  auto rest = flags.Parse(args);
  if (!rest.ok() || !rest->empty()) {
    std::fprintf(stderr, "strata token: %s\n",
                 rest.ok() ? "no positional arguments are taken (see --help)"
                           : std::string(rest.status().message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  std::string token;
  if (!hash.empty()) {
    if (!tenant.empty() || !out.empty()) {
      std::fprintf(stderr, "strata token: --hash takes no --tenant or --out\n");
      return 2;
    }
    auto text = auth::ReadWholeFile(hash, "token file");
    if (!text.ok()) {
      std::fprintf(stderr, "strata token: %s\n", text.status().ToString().c_str());
      return 1;
    }
    token = std::string(absl::StripAsciiWhitespace(*text));
    tenant = token.substr(0, token.find(':'));
    if (token.find(':') == std::string::npos || !auth::ValidateTenantName(tenant).ok()) {
      std::fprintf(stderr, "strata token: %s does not hold a token TENANT:SECRET\n",
                   hash.c_str());
      return 1;
    }
  } else {
    if (tenant.empty() || out.empty()) {
      std::fprintf(stderr, "strata token: give --tenant and --out (or --hash FILE)\n");
      return 2;
    }
    auto fresh = auth::NewToken(tenant);
    if (!fresh.ok()) {
      std::fprintf(stderr, "strata token: --tenant: %s\n",
                   std::string(fresh.status().message()).c_str());
      return 2;
    }
    token = *fresh;
    const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    const std::string line = token + "\n";
    if (fd < 0 || write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
        close(fd) != 0) {
      std::fprintf(stderr, "strata token: cannot create %s: %s\n", out.c_str(),
                   std::strerror(errno));
      return 1;
    }
  }
  std::printf("%s %s\n", tenant.c_str(), auth::HashToken(token).c_str());
  return 0;
}

constexpr char kUsage[] =
    "usage: strata <command> [flags]\n\n"
    "commands:\n"
    "  serve   run a store node (gRPC + UCX, DRAM + RocksDB)\n"
    "  local   run a store engine in this process (DRAM + RocksDB) under a\n"
    "          multi-turn conversation workload, verifying every byte read\n"
    "  put     store files on a node as chunks of a namespace; prints the keys\n"
    "  get     load chunks of files (or of keys) from a node into --out, verifying\n"
    "  lookup  per-key tier and the cached prefix of files or keys\n"
    "  stats   print a node's counters (or a cluster's, summed)\n"
    "  cluster list a cluster's members: fill, chunk counts, health\n"
    "  remove-namespace  remove a namespace and all its chunks from a node\n"
    "  replay  replay a multi-turn conversation trace against a node, with\n"
    "          scheduler hints; hits by tier, prefetch precision, modelled TTFT\n"
    "  bench   load generator: N clients, get/put mix, throughput and latency\n"
    "  worker  the GPU worker runtime (strata_worker; CUDA builds): `worker run` a\n"
    "          conversation turn of a Llama model over a node, `worker bench` TTFT,\n"
    "          `worker decode-bench` decode tokens/s per attention kernel\n"
    "  token   a new tenant token and its line for the tenants file (--tenants)\n"
    "  help    show this text\n\n"
    "Commands that talk to a node connect to --server (default 127.0.0.1:7400).\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n"
    "`strata <command> --help` lists the command's flags.\n";

// `strata worker ...`: the GPU worker runtime's tools live in their own
// binary (CUDA and cuBLAS), strata_worker, found beside this one (or in
// worker/ below it, as Bazel lays them out).
int Worker(char** argv) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (const std::filesystem::path& candidate :
       {self.parent_path() / "strata_worker", self.parent_path() / "worker" / "strata_worker"}) {
    if (std::filesystem::exists(candidate)) {
      const std::string path = candidate.string();
      argv[1] = const_cast<char*>(path.c_str());
      execv(path.c_str(), argv + 1);
      std::fprintf(stderr, "strata worker: cannot run %s: %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::fprintf(stderr,
               "strata worker: strata_worker is not installed beside %s (it is built only where a "
               "CUDA toolkit is present: bazel build //tools/worker:strata_worker)\n",
               self.c_str());
  return 1;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  if (argc < 2) {  // a usage error: the text goes to stderr
    std::fprintf(stderr, "%s", strata::kUsage);
    return 2;
  }
  if (std::strcmp(argv[1], "help") == 0 || std::strcmp(argv[1], "--help") == 0 ||
      std::strcmp(argv[1], "-h") == 0) {
    std::printf("%s", strata::kUsage);
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  if (std::strcmp(argv[1], "serve") == 0) return strata::Serve(args);
  if (std::strcmp(argv[1], "local") == 0) return strata::Local(args);
  if (std::strcmp(argv[1], "token") == 0) return strata::Token(args);
  if (std::strcmp(argv[1], "put") == 0) return strata::cli::PutCommand(args);
  if (std::strcmp(argv[1], "get") == 0) return strata::cli::GetCommand(args);
  if (std::strcmp(argv[1], "lookup") == 0) return strata::cli::LookupCommand(args);
  if (std::strcmp(argv[1], "stats") == 0) return strata::cli::StatsCommand(args);
  if (std::strcmp(argv[1], "cluster") == 0) return strata::cli::ClusterCommand(args);
  if (std::strcmp(argv[1], "remove-namespace") == 0) {
    return strata::cli::RemoveNamespaceCommand(args);
  }
  if (std::strcmp(argv[1], "bench") == 0) return strata::cli::BenchCommand(args);
  if (std::strcmp(argv[1], "replay") == 0) return strata::cli::ReplayCommand(args);
  if (std::strcmp(argv[1], "worker") == 0) return strata::Worker(argv);
  std::fprintf(stderr, "strata: unknown command '%s'\n\n%s", argv[1], strata::kUsage);
  return 2;
}
