// Crash-and-fault test: client processes run random saves, loads, lookups
// and hints against a `strata serve` that is repeatedly SIGKILLed (now and
// then stopped with SIGTERM) and restarted, each time under another profile
// of injected NVMe faults (write errors, a disk that fills, torn writes,
// read errors, slow I/O: --nvme_faults, store/faulty_nvme_tier.h). Every
// byte read is compared with the bytes saved. At the end a clean node is
// started and every acknowledged chunk is read back and classified.
//
// Figures printed: operations, kills, clean stops, faults injected,
// acknowledged chunks lost and wrong bytes served. Wrong bytes must be 0.
// A chunk is "durable" once a lookup said it was on NVMe; a durable chunk
// may be missing at the end only if the fault tier tore its write (a torn
// write the device acknowledged: README, "Reliability"). Chunks acknowledged
// but not yet written back when the node was killed may be lost (write-back
// is asynchronous); they are counted apart.
//
// usage: crash_test [--duration_s N] [--clients N] [--seed N]
//   (internal: crash_test --client ID --port P --dir D --stop_file F --seed S)
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "store/auth/key_scope.h"

extern char** environ;

namespace strata {
namespace {

namespace fs = std::filesystem;

constexpr int kConversations = 48;     // slots per client
constexpr int kMaxChunks = 12;         // per conversation
// A slot whose conversation is full and durable starts a new one, up to this
// many: at most 3 x 48 x 12 x 12 x 32 KiB = 648 MiB, under the node's 1 GiB
// of NVMe, so no acknowledged chunk is evicted by policy.
constexpr int kGenerations = 12;
constexpr char kTenant[] = "crash";

NamespaceSpec Spec() {
  NamespaceSpec spec;
  spec.model_id = "crash-test";
  spec.num_layers = 2;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = 32;  // 2 x 2 x 2 x 32 x 64 x 2 B = 32 KiB
  return spec;
}

// Bytes of a chunk, derived from its key: any process can verify them.
void FillChunk(const ChunkKey& key, std::span<std::byte> out) {
  uint64_t x;
  std::memcpy(&x, key.bytes.data(), 8);
  x |= 1;
  for (size_t i = 0; i + 8 <= out.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, 8);
  }
}

// The full key chain of generation `gen` of conversation slot `conv` of
// client `client`.
std::vector<ChunkKey> ConversationKeys(const client::Namespace& ns, int client, int conv,
                                       int gen) {
  std::vector<uint32_t> tokens(kMaxChunks * ns.spec.tokens_per_chunk);
  std::mt19937 rng((client * 1000 + conv) * 100 + gen);
  for (auto& t : tokens) t = rng() % 128000;
  return ns.Keys(tokens);
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string Flag(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return def;
}

std::unique_ptr<client::Client> Connect(int port, const std::string& id) {
  client::ClientOptions o;
  o.server_address = absl::StrCat("127.0.0.1:", port);
  o.client_id = id;
  o.rpc_timeout = absl::Seconds(3);
  o.transfer_timeout = absl::Seconds(6);
  o.lease_ttl = absl::Seconds(5);
  auto c = client::Client::Connect(o);
  return c.ok() ? *std::move(c) : nullptr;
}

// ------------------------------------------------------------------ client

struct ClientResult {
  uint64_t ops = 0, saves = 0, loads = 0, lookups = 0, hints = 0, errors = 0;
  uint64_t refused = 0;      // saves refused while the node was not persisting
  uint64_t wrong_bytes = 0;  // loads that returned OK with other bytes
  uint64_t unexpected = 0;   // errors no fault explains (printed)
};

int RunClient(int id, int port, const std::string& dir, const std::string& stop_file,
              uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + id);
  ClientResult r;
  // acked[conv] = chunks of the conversation acknowledged so far (a prefix);
  // durable = keys a lookup reported on NVMe.
  std::vector<int> acked(kConversations, 0);
  std::vector<int> gen(kConversations, 0);
  // Every acknowledged key (hex) -> known durable; (slot, generation, index).
  std::map<std::string, bool> acked_keys;
  std::map<std::string, std::tuple<int, int, int>> where;
  std::map<int, std::vector<ChunkKey>> keys_of;
  std::unique_ptr<client::Client> c;
  client::Namespace ns;
  std::vector<std::byte> buf;
  auto reconnect = [&] {
    c.reset();
    while (!fs::exists(stop_file)) {
      c = Connect(port, absl::StrCat("crash-client-", id));
      if (c != nullptr) {
        auto n = c->RegisterNamespace(Spec(), kTenant);
        if (n.ok()) {
          ns = *n;
          return true;
        }
        c.reset();
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  };
  auto note_error = [&](const absl::Status& s, const char* what) {
    ++r.errors;
    switch (s.code()) {
      case absl::StatusCode::kUnavailable:         // node down or draining
      case absl::StatusCode::kDeadlineExceeded:    // node died mid-call
      case absl::StatusCode::kCancelled:
      case absl::StatusCode::kAborted:             // another writer of the key
      case absl::StatusCode::kNotFound:            // lost before write-back / lease gone
      case absl::StatusCode::kDataLoss:            // a torn NVMe copy, detected
      case absl::StatusCode::kResourceExhausted:   // not persisting / full
        break;
      default:
        ++r.unexpected;
        std::printf("client %d: unexpected %s error: %s\n", id, what, s.ToString().c_str());
    }
    if (s.code() == absl::StatusCode::kUnavailable ||
        s.code() == absl::StatusCode::kDeadlineExceeded) {
      reconnect();
    }
  };
  if (!reconnect()) return 0;
  for (int i = 0; i < kConversations; ++i) keys_of[i] = ConversationKeys(ns, id, i, 0);
  while (!fs::exists(stop_file)) {
    if (c == nullptr && !reconnect()) break;
    ++r.ops;
    const int conv = static_cast<int>(rng() % kConversations);
    const std::vector<ChunkKey>& keys = keys_of[conv];
    const int op = static_cast<int>(rng() % 10);
    if (op < 4) {  // save the next 1-3 chunks (chunks the node lost come again)
      const int from = acked[conv] >= kMaxChunks ? static_cast<int>(rng() % kMaxChunks)
                                                 : acked[conv];
      const int n = std::min<int>(1 + rng() % 3, kMaxChunks - from);
      std::span<const ChunkKey> seg(keys.data() + from, n);
      buf.assign(n * ns.chunk_bytes, std::byte{0});
      for (int k = 0; k < n; ++k) {
        FillChunk(seg[k], std::span<std::byte>(buf.data() + k * ns.chunk_bytes, ns.chunk_bytes));
      }
      std::optional<ChunkKey> parent;
      if (from > 0) parent = keys[from - 1];
      auto t = c->Save(ns, seg, buf, parent);
      absl::Status s = t.ok() ? (*t)->Wait() : t.status();
      if (s.ok()) {
        ++r.saves;
        acked[conv] = std::max(acked[conv], from + n);
        for (int k = 0; k < n; ++k) {
          const std::string hex = seg[k].ToHex();
          acked_keys.emplace(hex, false);
          where[hex] = {conv, gen[conv], from + k};
        }
      } else {
        if (s.code() == absl::StatusCode::kResourceExhausted) ++r.refused;
        note_error(s, "save");
      }
    } else if (op < 8) {  // load a prefix of what was acknowledged
      if (acked[conv] == 0) continue;
      const int n = 1 + static_cast<int>(rng() % acked[conv]);
      std::span<const ChunkKey> seg(keys.data(), n);
      buf.assign(n * ns.chunk_bytes, std::byte{0});
      auto t = c->Load(ns, seg, buf);
      absl::Status s = t.ok() ? (*t)->Wait() : t.status();
      if (s.ok()) {
        ++r.loads;
        std::vector<std::byte> want(ns.chunk_bytes);
        for (int k = 0; k < n; ++k) {
          FillChunk(seg[k], want);
          if (std::memcmp(want.data(), buf.data() + k * ns.chunk_bytes, ns.chunk_bytes) != 0) {
            ++r.wrong_bytes;
            std::printf("client %d: WRONG BYTES for chunk %s\n", id, seg[k].ToHex().c_str());
          }
        }
      } else {
        note_error(s, "load");
      }
    } else if (op < 9) {  // lookup: learn which acknowledged chunks are durable
      if (acked[conv] == 0) continue;
      std::span<const ChunkKey> seg(keys.data(), acked[conv]);
      auto l = c->Lookup(ns, seg);
      if (l.ok()) {
        ++r.lookups;
        bool all = true;
        for (size_t k = 0; k < seg.size(); ++k) {
          if (l->persisted[k]) {
            acked_keys[seg[k].ToHex()] = true;
          } else {
            all = false;
          }
        }
        // A full, durable conversation makes room for a new one.
        if (all && acked[conv] == kMaxChunks && gen[conv] + 1 < kGenerations) {
          keys_of[conv] = ConversationKeys(ns, id, conv, ++gen[conv]);
          acked[conv] = 0;
        }
      } else {
        note_error(l.status(), "lookup");
      }
    } else {  // hint the next few conversations
      std::vector<client::HintJob> jobs;
      for (int j = 0; j < 4; ++j) {
        const int other = static_cast<int>(rng() % kConversations);
        if (acked[other] > 0) jobs.push_back({keys_of[other][acked[other] - 1], uint32_t(j)});
      }
      absl::Status s = c->Hint(ns, absl::StrCat("crash-sched-", id), jobs, absl::Seconds(5));
      if (s.ok()) {
        ++r.hints;
      } else {
        note_error(s, "hint");
      }
    }
  }
  // Results: counters, then every acknowledged key with its durability.
  std::ofstream out(absl::StrCat(dir, "/client-", id, ".result"));
  out << r.ops << " " << r.saves << " " << r.loads << " " << r.lookups << " " << r.hints << " "
      << r.errors << " " << r.refused << " " << r.wrong_bytes << " " << r.unexpected << "\n";
  for (const auto& [hex, is_durable] : acked_keys) {
    const auto& [conv, g, k] = where[hex];
    out << conv << " " << g << " " << k << " " << hex << " " << (is_durable ? 1 : 0) << "\n";
  }
  return 0;
}

// ------------------------------------------------------------------ harness

struct Profile {
  const char* name;
  std::string faults;  // --nvme_faults, "" for none
};

Profile PickProfile(std::mt19937_64& rng, int round, const std::string& log) {
  const std::string seed = absl::StrCat(",seed=", round + 1, ",log=", log);
  switch (rng() % 6) {
    case 0:
      return {"none", ""};
    case 1:
      return {"write errors", "write_error=0.05" + seed};
    case 2:
      return {"disk fills", absl::StrCat("full_after=", (256 << 10) + rng() % (2 << 20)) + seed};
    case 3:
      return {"torn writes", "torn=0.02" + seed};
    case 4:
      return {"read errors", "read_error=0.05" + seed};
    default:
      return {"slow I/O", "slow_ms=3" + seed};
  }
}

int RunHarness(int argc, char** argv) {
  const int duration_s = std::atoi(Flag(argc, argv, "duration_s", "40").c_str());
  const int clients = std::atoi(Flag(argc, argv, "clients", "3").c_str());
  const uint64_t seed = std::strtoull(Flag(argc, argv, "seed", "1").c_str(), nullptr, 10);
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / "crash_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const char* srcdir = std::getenv("TEST_SRCDIR");
  std::string strata = srcdir != nullptr ? std::string(srcdir) + "/strata/tools/strata"
                                         : Flag(argc, argv, "strata", "bazel-bin/tools/strata");
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const int port = FreePort();
  const std::string stop_file = (dir / "stop").string();
  const std::string fault_log = (dir / "faults.log").string();
  const std::string serve_log = (dir / "serve.log").string();
  std::mt19937_64 rng(seed);
  std::printf("crash test: %d clients, %d s, seed %llu, node on 127.0.0.1:%d, logs in %s\n",
              clients, duration_s, static_cast<unsigned long long>(seed), port, dir.c_str());

  auto start_node = [&](const std::string& faults) {
    std::vector<std::string> args = {strata, "serve", absl::StrCat("--listen=127.0.0.1:", port),
                                     "--data_dir=" + (dir / "data").string(), "--dram=24MiB",
                                     "--nvme=1GiB", "--lease_ttl=5s", "--shutdown_grace=2s"};
    if (!faults.empty()) args.push_back("--nvme_faults=" + faults);
    return Spawn(args, serve_log);
  };

  std::vector<pid_t> client_pids;
  for (int i = 0; i < clients; ++i) {
    client_pids.push_back(Spawn({self, "--client", std::to_string(i), "--port",
                                 std::to_string(port), "--dir", dir.string(), "--stop_file",
                                 stop_file, "--seed", std::to_string(seed)},
                                (dir / absl::StrCat("client-", i, ".log")).string()));
  }
  int kills = 0, clean_stops = 0, lossy_stops = 0, bad_stops = 0, round = 0;
  // Whether the node's last stop said it lost acknowledged, unpersisted chunks.
  auto LastStopLostUnpersisted = [&] {
    std::ifstream in(serve_log);
    std::string line, last;
    while (std::getline(in, line)) {
      if (line.rfind("strata serve: stopped", 0) == 0) last = line;
    }
    return last.find("are not persisted") != std::string::npos;
  };
  std::map<std::string, int> profiles;
  const absl::Time end = absl::Now() + absl::Seconds(duration_s);
  while (absl::Now() < end) {
    Profile p = PickProfile(rng, round++, fault_log);
    ++profiles[p.name];
    pid_t node = start_node(p.faults);
    absl::SleepFor(absl::Milliseconds(1500 + rng() % 3000));
    const bool clean = rng() % 4 == 0;
    kill(node, clean ? SIGTERM : SIGKILL);
    int status = 0;
    // A clean stop must end within its grace plus flushing.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (waitpid(node, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        std::printf("node did not stop within 30 s of %s\n", clean ? "SIGTERM" : "SIGKILL");
        kill(node, SIGKILL);
        waitpid(node, &status, 0);
        ++bad_stops;
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (clean) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ++clean_stops;
      } else if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && LastStopLostUnpersisted()) {
        // A stop while write-back fails: it names the chunks it loses.
        ++lossy_stops;
      } else {
        ++bad_stops;
        std::printf("node stopped by SIGTERM (profile %s) ended with status %d\n", p.name, status);
      }
    } else {
      ++kills;
    }
  }
  // Stop the clients while the node is up, so that they finish their calls.
  pid_t node = start_node("");
  absl::SleepFor(absl::Seconds(1));
  std::ofstream(stop_file).put('\n');
  int hung_clients = 0;
  for (pid_t pid : client_pids) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        ++hung_clients;
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  // A last restart without faults, then read back everything acknowledged.
  kill(node, SIGKILL);
  waitpid(node, nullptr, 0);
  ++kills;
  node = start_node("");
  std::unique_ptr<client::Client> c;
  for (int i = 0; i < 100 && c == nullptr; ++i) {
    c = Connect(port, "crash-verifier");
    if (c == nullptr) absl::SleepFor(absl::Milliseconds(100));
  }
  if (c == nullptr) {
    std::printf("FAIL: the node did not come back for verification\n");
    kill(node, SIGKILL);
    return 1;
  }
  auto ns = c->RegisterNamespace(Spec(), kTenant);
  if (!ns.ok()) {
    std::printf("FAIL: %s\n", ns.status().ToString().c_str());
    return 1;
  }
  std::set<std::string> torn;
  std::map<std::string, uint64_t> injected;
  {
    std::ifstream in(fault_log);
    std::string kind, hex;
    while (in >> kind >> hex) {
      ++injected[kind];
      if (kind == "torn") torn.insert(hex);
    }
  }
  ClientResult total;
  uint64_t acked = 0, durable = 0, survived = 0, lost_durable = 0, lost_torn = 0,
           lost_unpersisted = 0, wrong = 0, missing_results = 0;
  std::vector<std::byte> buf(ns->chunk_bytes), want(ns->chunk_bytes);
  for (int i = 0; i < clients; ++i) {
    std::ifstream in(dir / absl::StrCat("client-", i, ".result"));
    ClientResult r;
    if (!(in >> r.ops >> r.saves >> r.loads >> r.lookups >> r.hints >> r.errors >> r.refused >>
          r.wrong_bytes >> r.unexpected)) {
      ++missing_results;
      continue;
    }
    total.ops += r.ops;
    total.saves += r.saves;
    total.loads += r.loads;
    total.lookups += r.lookups;
    total.hints += r.hints;
    total.errors += r.errors;
    total.refused += r.refused;
    total.wrong_bytes += r.wrong_bytes;
    total.unexpected += r.unexpected;
    int conv, g, k, is_durable;
    std::string hex;
    while (in >> conv >> g >> k >> hex >> is_durable) {
      ++acked;
      durable += is_durable;
      auto key = ChunkKey::FromHex(hex);
      if (!key.ok()) continue;
      auto t = c->Load(*ns, std::span<const ChunkKey>(&*key, 1), buf);
      absl::Status s = t.ok() ? (*t)->Wait() : t.status();
      if (s.ok()) {
        FillChunk(*key, want);
        if (buf == want) {
          ++survived;
        } else {
          ++wrong;
          std::printf("WRONG BYTES at verification: chunk %s\n", hex.c_str());
        }
      } else if (torn.contains(auth::ScopeKey(ns->chain->root(), *key).ToHex())) {
        // The fault log names chunks by the key the node stores them under
        // (scoped to the namespace, store/auth/key_scope.h).
        ++lost_torn;
      } else if (is_durable) {
        ++lost_durable;
        std::printf("LOST: durable chunk %s (client %d, slot %d, generation %d, chunk %d): %s\n",
                    hex.c_str(), i, conv, g, k, s.ToString().c_str());
      } else {
        ++lost_unpersisted;
      }
    }
  }
  auto stats = c->Stats();
  c.reset();
  kill(node, SIGTERM);
  int status = 0;
  waitpid(node, &status, 0);
  const bool last_stop_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;

  std::printf("\ncrash test figures (seed %llu, %d s, %d clients)\n",
              static_cast<unsigned long long>(seed), duration_s, clients);
  std::printf("  operations           %llu (saves %llu, loads %llu, lookups %llu, hints %llu)\n",
              (unsigned long long)total.ops, (unsigned long long)total.saves,
              (unsigned long long)total.loads, (unsigned long long)total.lookups,
              (unsigned long long)total.hints);
  std::printf("  failed operations    %llu (saves refused while not persisting: %llu; "
              "unexplained: %llu)\n",
              (unsigned long long)total.errors, (unsigned long long)total.refused,
              (unsigned long long)total.unexpected);
  std::printf("  node runs            %d: %d SIGKILLs, %d SIGTERM stops (%d clean, %d naming "
              "unpersisted chunks lost while write-back failed), %d bad stops\n",
              round + 2, kills, clean_stops + lossy_stops, clean_stops, lossy_stops, bad_stops);
  std::printf("  fault profiles       ");
  for (const auto& [name, n] : profiles) std::printf("%s x%d  ", name.c_str(), n);
  std::printf("\n  faults injected      ");
  for (const auto& [kind, n] : injected) std::printf("%s %llu  ", kind.c_str(), (unsigned long long)n);
  std::printf("\n");
  std::printf("  acknowledged chunks  %llu (%llu known durable)\n", (unsigned long long)acked,
              (unsigned long long)durable);
  std::printf("  survived             %llu\n", (unsigned long long)survived);
  std::printf("  lost, torn write     %llu (expected: the fault destroys the NVMe copy)\n",
              (unsigned long long)lost_torn);
  std::printf("  lost, unpersisted    %llu (acknowledged, not yet written back at a kill or a "
              "stop)\n",
              (unsigned long long)lost_unpersisted);
  std::printf("  LOST, durable        %llu (must be 0)\n", (unsigned long long)lost_durable);
  std::printf("  WRONG BYTES served   %llu during the run, %llu at verification (must be 0)\n",
              (unsigned long long)total.wrong_bytes, (unsigned long long)wrong);
  std::printf("  hung clients         %d, missing client results %llu (must be 0)\n",
              hung_clients, (unsigned long long)missing_results);
  if (stats.ok()) {
    std::printf("  final node           chunks_restored %llu\n",
                (unsigned long long)stats->at("chunks_restored"));
  }
  if (total.unexpected > 0) {
    // The clients' own lines name those errors (their logs go with the
    // test's temporary directory).
    int shown = 0;
    for (int i = 0; i < clients && shown < 20; ++i) {
      std::ifstream in(dir / absl::StrCat("client-", i, ".log"));
      std::string line;
      while (shown < 20 && std::getline(in, line)) {
        if (line.find("unexpected") != std::string::npos) {
          std::printf("  %s\n", line.c_str());
          ++shown;
        }
      }
    }
  }
  const bool ok = lost_durable == 0 && total.wrong_bytes == 0 && wrong == 0 &&
                  hung_clients == 0 && missing_results == 0 && bad_stops == 0 &&
                  total.unexpected == 0 && last_stop_ok && total.saves > 0 && total.loads > 0;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const std::string client = strata::Flag(argc, argv, "client", "");
  if (!client.empty()) {
    return strata::RunClient(std::atoi(client.c_str()),
                             std::atoi(strata::Flag(argc, argv, "port", "0").c_str()),
                             strata::Flag(argc, argv, "dir", "."),
                             strata::Flag(argc, argv, "stop_file", ""),
                             std::strtoull(strata::Flag(argc, argv, "seed", "1").c_str(), nullptr,
                                           10));
  }
  return strata::RunHarness(argc, argv);
}
