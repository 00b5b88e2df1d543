// strata replay: drives a running store node through the client library with
// a multi-turn conversation trace (eviction/sim/trace.h), in accelerated
// time, with a scheduler model that sends the node hints about the jobs
// queued next (AttentionStore's scheduler-aware fetching and eviction).
//
// Time is simulated: each turn arrives at its trace time; its time to first
// token (TTFT) comes from a cost model whose figures are flags; the response
// then takes response_tokens / --decode_tps, and the next turn of the
// session arrives after the think time. Turns run one at a time in arrival
// order, with no waiting, so an hour of trace replays in seconds. The job
// queue holds the turns that have arrived (or arrive within --lookahead_s)
// and not yet run; before each turn runs, the first --lookahead jobs queued
// behind it are sent as hints, so their chunks move while it computes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <queue>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eviction/sim/trace.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"

namespace strata::cli {
namespace {

namespace sim = ::strata::eviction::sim;

struct ReplayFlags {
  std::string trace_path;
  int64_t sessions = 200, seed = 1;
  double arrival_rate = 2.0, mean_think_s = 30;
  int64_t lookahead = 8;
  double prefill_tps = 8000, decode_tps = 40;
  double dram_gbps = 20, nvme_gbps = 2;
  int64_t kv_bytes_per_token = 131072;  // Llama-3-8B: 32 layers x 8 KV heads x d128 x K,V x 2 B
  bool hints = true;
  std::string label;
};

// Token ids of a session's conversation, reproducible: the system prompt's
// tokens depend on the prompt only (so sessions share them), the rest on the
// session.
uint32_t Token(uint64_t stream, uint64_t i) {
  uint64_t x = stream * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 1;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return static_cast<uint32_t>(x % 128000);
}

struct SessionState {
  std::vector<uint32_t> tokens;  // context so far
  size_t next_turn = 0;
  double next_arrival = 0;
  std::optional<ChunkKey> last_saved;  // last key stored for this session
};

struct Totals {
  uint64_t turns = 0, chunks_needed = 0, dram_hits = 0, nvme_hits = 0, misses = 0;
  uint64_t computed_tokens = 0, reused_tokens = 0, errors = 0, refused = 0;
  std::vector<double> ttft_ms;
};

void FillChunks(std::span<const ChunkKey> keys, uint64_t chunk, std::vector<std::byte>* out) {
  out->resize(keys.size() * chunk);
  for (size_t c = 0; c < keys.size(); ++c) {
    FillFromKey(keys[c], std::span<std::byte>(*out).subspan(c * chunk, chunk));
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * v.size()));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

}  // namespace

int ReplayCommand(const std::vector<std::string>& args) {
  ConnectFlags connect;
  NamespaceFlags ns_flags;
  ns_flags.model = "replay-model";
  ns_flags.layers = 1;
  ns_flags.kv_heads = 1;
  ns_flags.head_dim = 64;
  ns_flags.tokens_per_chunk = 64;  // 16 KiB chunks: a trace's working set fits a small VM
  ReplayFlags f;
  FlagSet flags(
      "strata replay [flags]\n\n"
      "Replays a multi-turn conversation trace against a running node (see the\n"
      "README, \"Scheduling\"): per turn, look up the session's cached prefix, load\n"
      "it, and save the new prompt and response. A scheduler model sends the next\n"
      "--lookahead queued jobs as hints. Reports hit rates by tier, bytes read from\n"
      "NVMe, prefetch precision and TTFT from a cost model. Run it once per eviction\n"
      "policy of the node (strata serve --dram_policy ...).");
  connect.Register(&flags);
  ns_flags.Register(&flags);
  flags.Add("trace", "trace file (eviction/README.md format); empty: generate one", &f.trace_path);
  flags.Add("sessions", "sessions of a generated trace", &f.sessions);
  flags.Add("seed", "seed of a generated trace", &f.seed);
  flags.Add("arrival_rate", "sessions per second of a generated trace", &f.arrival_rate);
  flags.Add("mean_think_s", "mean think time of a generated trace", &f.mean_think_s);
  flags.Add("hints", "send scheduler hints", &f.hints);
  flags.Add("lookahead", "queued jobs sent as hints", &f.lookahead);
  flags.Add("prefill_tps", "cost model: prefill tokens per second", &f.prefill_tps);
  flags.Add("decode_tps", "cost model: decode tokens per second (response time)", &f.decode_tps);
  flags.Add("dram_gbps", "cost model: GB/s of loads from DRAM", &f.dram_gbps);
  flags.Add("nvme_gbps", "cost model: GB/s of loads from NVMe", &f.nvme_gbps);
  flags.Add("kv_bytes_per_token",
            "cost model: KV bytes per token of the modelled model (the replayed chunks are "
            "smaller stand-ins)",
            &f.kv_bytes_per_token);
  flags.Add("label", "name for this run in the summary", &f.label);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit("replay", flags, args, &positional); rc >= 0) return rc;
  if (int rc = connect.CheckServerOrExit("replay"); rc >= 0) return rc;
  if (!positional.empty() || f.lookahead < 0 || f.prefill_tps <= 0 || f.decode_tps <= 0 ||
      f.dram_gbps <= 0 || f.nvme_gbps <= 0 || f.kv_bytes_per_token <= 0) {
    std::fprintf(stderr, "strata replay: rates must be positive, --lookahead >= 0, and no "
                         "positional arguments are taken (see --help)\n");
    return kExitUsage;
  }
  absl::StatusOr<sim::Trace> trace;
  if (f.trace_path.empty()) {
    sim::GeneratorOptions g;
    g.seed = static_cast<uint64_t>(f.seed);
    g.sessions = static_cast<uint32_t>(std::max<int64_t>(1, f.sessions));
    g.arrival_rate = f.arrival_rate;
    g.mean_think_s = f.mean_think_s;
    trace = sim::GenerateTrace(g);
  } else {
    trace = sim::ReadTraceFile(f.trace_path);
  }
  if (!trace.ok()) {
    std::fprintf(stderr, "strata replay: %s\n", StatusText(trace.status()).c_str());
    return kExitUsage;
  }
  auto spec = ns_flags.Spec();
  if (!spec.ok()) {
    std::fprintf(stderr, "strata replay: %s\n", StatusText(spec.status()).c_str());
    return kExitUsage;
  }
  std::unique_ptr<Session> session = OpenSession("replay", connect, *spec, ns_flags.tenant);
  if (session == nullptr) return kExitFailure;
  client::Client& c = *session->client;
  const client::Namespace& ns = session->ns;
  auto before = c.Stats();
  if (!before.ok()) {
    std::fprintf(stderr, "strata replay: %s\n", StatusText(before.status()).c_str());
    return kExitFailure;
  }

  const size_t n = trace->sessions.size();
  std::vector<SessionState> state(n);
  // (arrival time, session) of every turn that can run next.
  using Event = std::pair<double, size_t>;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue;
  for (size_t s = 0; s < n; ++s) {
    const sim::Session& ses = trace->sessions[s];
    const uint32_t sys = trace->systems[ses.system_id].tokens;
    for (uint32_t i = 0; i < sys; ++i) state[s].tokens.push_back(Token(1000000 + ses.system_id, i));
    state[s].next_arrival = ses.arrival_s;
    queue.push({ses.arrival_s, s});
  }
  Totals t;
  std::vector<std::byte> buf;
  uint64_t turn_index = 0;
  const uint64_t chunk = ns.chunk_bytes;
  const uint32_t tpc = ns.spec.tokens_per_chunk;
  while (!queue.empty()) {
    auto [now, s] = queue.top();
    queue.pop();
    // The scheduler's queue: the jobs waiting behind the one starting now.
    // (The running job is not hinted: a prefetch for it would race its own
    // load; the queued jobs' chunks move while this one computes.)
    if (f.hints && f.lookahead > 0) {
      std::vector<client::HintJob> jobs;
      std::priority_queue<Event, std::vector<Event>, std::greater<>> copy = queue;
      while (!copy.empty() && static_cast<int64_t>(jobs.size()) < f.lookahead) {
        const size_t other = copy.top().second;
        copy.pop();
        if (state[other].last_saved) {
          jobs.push_back({*state[other].last_saved, static_cast<uint32_t>(jobs.size())});
        }
      }
      if (absl::Status st = c.Hint(ns, "replay", jobs, absl::Minutes(1)); !st.ok()) {
        std::fprintf(stderr, "hint: %s\n", StatusText(st).c_str());
        ++t.errors;
      }
    }
    SessionState& ss = state[s];
    const sim::Turn& turn = trace->sessions[s].turns[ss.next_turn];
    const uint64_t stream = 1 + s;
    for (uint32_t i = 0; i < turn.prompt_tokens; ++i) {
      ss.tokens.push_back(Token(stream, ss.tokens.size()));
    }
    // Prefill: reuse the cached prefix of context + prompt, compute the rest.
    std::vector<ChunkKey> keys = ns.Keys(ss.tokens);
    size_t hit = 0;
    double load_s = 0;
    if (!keys.empty()) {
      auto lookup = c.Lookup(ns, keys);
      if (!lookup.ok()) {
        ++t.errors;
      } else {
        hit = lookup->prefix_chunks;
        for (size_t i = 0; i < hit; ++i) {
          const double modelled = static_cast<double>(tpc) * f.kv_bytes_per_token;
          if (lookup->tiers[i] == client::Tier::kDram) {
            ++t.dram_hits;
            load_s += modelled / (f.dram_gbps * 1e9);
          } else {
            ++t.nvme_hits;
            load_s += modelled / (f.nvme_gbps * 1e9);
          }
        }
        t.misses += keys.size() - hit;
        t.chunks_needed += keys.size();
      }
    }
    if (hit > 0) {
      buf.resize(hit * chunk);
      auto load = c.Load(ns, std::span<const ChunkKey>(keys.data(), hit), buf);
      absl::Status st = load.ok() ? (*load)->Wait() : load.status();
      if (st.code() == absl::StatusCode::kNotFound) {
        hit = 0;  // evicted since the lookup: recompute
      } else if (st.code() == absl::StatusCode::kResourceExhausted) {
        ++t.refused;  // more than the node's DRAM can pin at once: recompute
        hit = 0;
      } else if (!st.ok()) {
        std::fprintf(stderr, "load: %s\n", StatusText(st).c_str());
        ++t.errors;
        hit = 0;
      }
    }
    const uint64_t reused = hit * tpc;
    const uint64_t computed = ss.tokens.size() - reused;
    t.reused_tokens += reused;
    t.computed_tokens += computed;
    const double ttft = computed / f.prefill_tps + load_s;
    t.ttft_ms.push_back(1e3 * ttft);
    // Decode the response, then save every new full chunk (asynchronously in
    // a real worker; here we wait so the next turn sees it).
    for (uint32_t i = 0; i < turn.response_tokens; ++i) {
      ss.tokens.push_back(Token(stream, ss.tokens.size()));
    }
    keys = ns.Keys(ss.tokens);
    // Everything after the reused prefix was computed: save it (keys still
    // stored are skipped by the node).
    const size_t from = std::min(hit, keys.size());
    if (from < keys.size()) {
      std::span<const ChunkKey> fresh(keys.data() + from, keys.size() - from);
      FillChunks(fresh, chunk, &buf);
      std::optional<ChunkKey> parent;
      if (from > 0) parent = keys[from - 1];
      auto save = c.Save(ns, fresh, buf, parent);
      absl::Status st = save.ok() ? (*save)->Wait() : save.status();
      if (!st.ok()) {
        std::fprintf(stderr, "save: %s\n", StatusText(st).c_str());
        ++t.errors;
      }
    }
    if (!keys.empty()) ss.last_saved = keys.back();
    ++t.turns;
    ++turn_index;
    if (++ss.next_turn < trace->sessions[s].turns.size()) {
      const double done = now + ttft + turn.response_tokens / f.decode_tps;
      queue.push({done + trace->sessions[s].turns[ss.next_turn].think_s, s});
    }
    if (turn_index % 500 == 0) {
      std::printf("  %llu turns replayed, trace time %.0f s\n",
                  static_cast<unsigned long long>(turn_index), now);
      std::fflush(stdout);
    }
  }
  if (f.hints) (void)c.Hint(ns, "replay", {}, absl::Seconds(1));  // withdraw
  auto after = c.Stats();
  if (!after.ok()) {
    std::fprintf(stderr, "strata replay: %s\n", StatusText(after.status()).c_str());
    return kExitFailure;
  }
  auto delta = [&](const char* k) { return after->at(k) - before->at(k); };
  const double needed = std::max<uint64_t>(1, t.chunks_needed);
  const uint64_t issued = delta("prefetches_issued");
  std::printf(
      "\nreplay %s: %llu turns of %zu sessions, chunk %s, hints %s (look-ahead %lld)\n"
      "  chunks needed %llu: DRAM %.1f%%, NVMe %.1f%%, miss %.1f%%\n"
      "  reused tokens %.1f%%; bytes read from NVMe %s (promotions on read %llu, prefetches %llu)\n"
      "  prefetch precision %.1f%% (%llu used of %llu issued, %llu wasted)\n"
      "  TTFT ms: mean %.2f, p50 %.2f, p99 %.2f\n"
      "  evictions: DRAM %llu (unhinted %llu, hinted %llu); loads refused for room %llu; "
      "errors %llu\n",
      f.label.c_str(), static_cast<unsigned long long>(t.turns), n,
      FormatBytes(chunk).c_str(), f.hints ? "on" : "off", static_cast<long long>(f.lookahead),
      static_cast<unsigned long long>(t.chunks_needed), 100.0 * t.dram_hits / needed,
      100.0 * t.nvme_hits / needed, 100.0 * t.misses / needed,
      100.0 * t.reused_tokens / std::max<uint64_t>(1, t.reused_tokens + t.computed_tokens),
      FormatBytes((delta("reads_nvme") + issued) * chunk).c_str(),
      static_cast<unsigned long long>(delta("reads_nvme")),
      static_cast<unsigned long long>(issued),
      issued ? 100.0 * delta("prefetches_used") / issued : 0.0,
      static_cast<unsigned long long>(delta("prefetches_used")),
      static_cast<unsigned long long>(issued),
      static_cast<unsigned long long>(delta("prefetches_wasted")),
      t.ttft_ms.empty() ? 0.0
                        : std::accumulate(t.ttft_ms.begin(), t.ttft_ms.end(), 0.0) / t.ttft_ms.size(),
      Percentile(t.ttft_ms, 0.5), Percentile(t.ttft_ms, 0.99),
      static_cast<unsigned long long>(delta("dram_evictions")),
      static_cast<unsigned long long>(delta("dram_evictions_unhinted")),
      static_cast<unsigned long long>(delta("dram_evictions_hinted")),
      static_cast<unsigned long long>(t.refused), static_cast<unsigned long long>(t.errors));
  return t.errors == 0 ? kExitOk : kExitFailure;
}

}  // namespace strata::cli
