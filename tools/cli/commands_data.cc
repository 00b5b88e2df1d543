// strata put / get / lookup / stats: files as keyed chunks on a store node.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"

namespace strata::cli {
namespace {

constexpr char kKeyRule[] =
    "Each file is split into chunks of the namespace's chunk size C (layers x 2 x\n"
    "kv_heads x tokens_per_chunk x head_dim x 2 bytes); the last chunk is padded\n"
    "with zero bytes. Keys form a chain:\n"
    "  key[-1] = the namespace's key-chain root (README, \"Keys\")\n"
    "  key[i]  = SHA256(key[i-1] || the C bytes of chunk i, padding included)\n"
    "i.e. the README's key chain with chunk i's bytes, read as little-endian\n"
    "uint32 words, standing for its tokens. The same file in the same namespace\n"
    "always gets the same keys.";

const char* TierName(client::Tier tier) {
  switch (tier) {
    case client::Tier::kDram: return "dram";
    case client::Tier::kNvme: return "nvme";
    default: return "missing";
  }
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// One positional argument of get / lookup: a file, or a run of hex keys.
struct Source {
  std::string file;            // empty for keys
  std::vector<ChunkKey> keys;  // for keys
  std::string Name() const {
    return file.empty() ? absl::StrCat(keys.size(), " key(s) from the command line") : file;
  }
};

// Groups arguments into sources; consecutive hex keys form one source.
absl::StatusOr<std::vector<Source>> ParseSources(const std::vector<std::string>& args) {
  std::vector<Source> sources;
  for (const std::string& arg : args) {
    if (IsFile(arg)) {
      sources.push_back(Source{arg, {}});
      continue;
    }
    if (!LooksLikeHexKey(arg)) {
      return absl::NotFoundError(
          absl::StrCat(arg, ": no such file, and not a key (64 hex digits)"));
    }
    if (sources.empty() || !sources.back().file.empty()) sources.push_back(Source{});
    sources.back().keys.push_back(*ChunkKey::FromHex(arg));
  }
  return sources;
}

// Lists which keys of a failed load are missing, for the error message.
std::string DescribeMissing(Session& s, std::span<const ChunkKey> keys, uint64_t first) {
  auto found = s.client->Lookup(s.ns, keys);
  if (!found.ok()) return "";
  size_t missing = 0, first_missing = 0;
  for (size_t i = keys.size(); i-- > 0;) {
    if (found->tiers[i] == client::Tier::kMissing) {
      ++missing;
      first_missing = i;
    }
  }
  if (missing == 0) return "";
  return absl::StrFormat("%d of %d chunks are not stored (first: chunk %d, key %s); ", missing,
                         keys.size(), first + first_missing, keys[first_missing].ToHex());
}

// The status for a failed file operation on `what`, by errno: the caller's
// mistakes (a directory, a missing parent, no permission) apart from the
// machine's (a full disk, an I/O error).
absl::Status ErrnoStatus(int err, const std::string& what) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS: return absl::PermissionDeniedError(msg);
    case EISDIR:
    case ENOTDIR:
    case EXDEV: return absl::InvalidArgumentError(msg);
    case ENOSPC:
    case EDQUOT: return absl::ResourceExhaustedError(msg);
    default: return absl::UnavailableError(msg);
  }
}

// Where `strata get` writes: --out itself, or, when --out is a directory and
// the only source is a FILE, DIR/<the file's name> (as cp does).
// InvalidArgument, before anything is loaded, for a directory with KEYs or
// several sources (no name to take), or a target that is the source FILE.
absl::StatusOr<std::string> OutputPath(const std::string& out, const std::vector<Source>& sources) {
  struct stat st;
  std::string target = out;
  if (::stat(out.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    if (sources.size() != 1 || sources[0].file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--out ", out, " is a directory: a get of one FILE writes DIR/<its name>; for KEYs or "
          "several sources give the output file's path"));
    }
    const std::string& file = sources[0].file;
    const size_t slash = file.find_last_of('/');
    target = absl::StrCat(out, out.back() == '/' ? "" : "/",
                          slash == std::string::npos ? file : file.substr(slash + 1));
    if (::stat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("--out ", out, ": ", target,
                                                     " is a directory"));
    }
  } else if (!out.empty() && out.back() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--out ", out, " ends in '/' but is not a directory"));
  }
  struct stat src, dst;
  for (const Source& source : sources) {
    if (!source.file.empty() && ::stat(source.file.c_str(), &src) == 0 &&
        ::stat(target.c_str(), &dst) == 0 && src.st_dev == dst.st_dev && src.st_ino == dst.st_ino) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--out ", target, " is ", source.file, " itself; give another output path"));
    }
  }
  return target;
}

int CommonSetup(const char* command, FlagSet& flags, const std::vector<std::string>& args,
                const ConnectFlags& cf, const NamespaceFlags& nsf,
                std::vector<std::string>* positional, NamespaceSpec* spec) {
  if (int rc = ParseOrExit(command, flags, args, positional); rc >= 0) return rc;
  if (int rc = cf.CheckServerOrExit(command); rc >= 0) return rc;
  auto parsed = nsf.Spec();
  if (!parsed.ok()) {
    std::fprintf(stderr, "strata %s: %s\n", command, StatusText(parsed.status()).c_str());
    return kExitUsage;
  }
  *spec = *parsed;
  return -1;
}

}  // namespace

int PutCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  NamespaceFlags nsf;
  bool summary_only = false;
  FlagSet flags(absl::StrCat(
      "strata put [flags] FILE...\n\n"
      "Stores each FILE on the node as chunks of the namespace and prints their keys.\n",
      kKeyRule,
      "\nKeys already stored are skipped (a repeated put succeeds and moves no bytes)."));
  cf.Register(&flags);
  nsf.Register(&flags);
  flags.Add("summary_only", "print one summary line per file, not every key", &summary_only);
  absl::Duration progress_every = absl::Seconds(1);
  flags.Add("progress_every",
            "with --summary_only: a progress line on stderr at most this often while a file is "
            "stored (chunks and bytes done, rate; 0s: after every batch)",
            &progress_every);
  std::vector<std::string> files;
  NamespaceSpec spec;
  if (int rc = CommonSetup("put", flags, args, cf, nsf, &files, &spec); rc >= 0) return rc;
  if (files.empty()) {
    std::fprintf(stderr, "strata put: no FILE given (see --help)\n");
    return kExitUsage;
  }
  if (progress_every < absl::ZeroDuration()) {
    std::fprintf(stderr, "strata put: --progress_every must not be negative\n");
    return kExitUsage;
  }
  auto session = OpenSession("put", cf, spec, nsf.tenant);
  if (session == nullptr) return kExitFailure;
  Session& s = *session;
  const uint64_t chunk = s.ns.chunk_bytes;
  int rc = kExitOk;
  for (const std::string& path : files) {
    auto file = ChunkedFile::Open(path, chunk, s.ns.chain->root());
    if (!file.ok()) {
      std::fprintf(stderr, "strata put: %s\n", StatusText(file.status()).c_str());
      rc = kExitFailure;
      continue;
    }
    ChunkedFile& f = **file;
    if (f.size() == 0) {
      std::fprintf(stderr, "strata put: %s: empty file, nothing to store\n", path.c_str());
      rc = kExitFailure;
      continue;
    }
    const absl::Time start = absl::Now();
    absl::Time last_report = start;
    uint64_t present = 0;
    absl::Status status;
    while (status.ok()) {
      auto n = f.ReadBatch(BatchChunks(chunk));
      if (!n.ok()) status = n.status();
      if (!n.ok() || *n == 0) break;
      const std::vector<ChunkKey>& keys = f.batch_keys();
      if (auto before = s.client->Lookup(s.ns, keys); before.ok()) {
        for (client::Tier t : before->tiers) present += t != client::Tier::kMissing;
      }
      auto transfer = s.client->Save(s.ns, keys, f.batch_bytes(), f.batch_parent());
      status = transfer.ok() ? (*transfer)->Wait() : transfer.status();
      if (!status.ok()) {
        status = absl::Status(status.code(), absl::StrCat("saving chunks ", f.batch_first(), "..",
                                                          f.batch_first() + keys.size() - 1, ": ",
                                                          std::string(status.message())));
        break;
      }
      if (!summary_only) {
        for (size_t i = 0; i < keys.size(); ++i) {
          std::printf("%s  %s#%llu\n", keys[i].ToHex().c_str(), path.c_str(),
                      static_cast<unsigned long long>(f.batch_first() + i));
        }
      } else if (const absl::Time now = absl::Now(); now - last_report >= progress_every &&
                 f.batch_first() + keys.size() < f.num_chunks()) {
        // The key lines are the progress of a put without --summary_only;
        // the summary line follows the last batch.
        last_report = now;
        const uint64_t done = f.batch_first() + keys.size();
        const uint64_t bytes = std::min(done * chunk, f.size());
        const double secs = absl::ToDoubleSeconds(now - start);
        std::fprintf(stderr, "strata put: %s: %llu of %llu chunks, %s of %s, %.1f s, %.1f MB/s\n",
                     path.c_str(), static_cast<unsigned long long>(done),
                     static_cast<unsigned long long>(f.num_chunks()), FormatBytes(bytes).c_str(),
                     FormatBytes(f.size()).c_str(), secs, secs > 0 ? bytes / secs / 1e6 : 0.0);
      }
    }
    if (!status.ok()) {
      std::fprintf(stderr, "strata put: %s: %s\n", path.c_str(), StatusText(status).c_str());
      rc = kExitFailure;
      continue;
    }
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf(
        "%s: %llu bytes -> %llu chunks of %s, last chunk zero-padded by %llu bytes; "
        "%llu stored, %llu already present; %.3f s\n",
        path.c_str(), static_cast<unsigned long long>(f.size()),
        static_cast<unsigned long long>(f.num_chunks()), FormatBytes(chunk).c_str(),
        static_cast<unsigned long long>(f.padding()),
        static_cast<unsigned long long>(f.num_chunks() - present),
        static_cast<unsigned long long>(present), secs);
  }
  return rc;
}

int GetCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  NamespaceFlags nsf;
  std::string out;
  FlagSet flags(absl::StrCat(
      "strata get [flags] --out PATH (FILE | KEY)...\n\n"
      "Loads chunks from the node into --out, in argument order. For a FILE (stored\n"
      "earlier with `strata put`), its keys are recomputed from its bytes, every\n"
      "loaded chunk is compared with the file, and exactly the file's bytes are\n"
      "written (the padding is dropped): --out is then identical to FILE. For KEYs\n"
      "(64 hex digits each), whole chunks are written, padding included. Every chunk\n"
      "is checksum-verified by the client. --out is written to a temporary file and\n"
      "renamed only when everything succeeded. When --out is a directory and the only\n"
      "argument is a FILE, the copy is DIR/<the file's name>, as cp makes it.\n",
      kKeyRule));
  cf.Register(&flags);
  nsf.Register(&flags);
  flags.Add("out", "output file, or a directory for a single FILE (required)", &out);
  std::vector<std::string> positional;
  NamespaceSpec spec;
  if (int rc = CommonSetup("get", flags, args, cf, nsf, &positional, &spec); rc >= 0) return rc;
  if (positional.empty() || out.empty()) {
    std::fprintf(stderr, "strata get: %s (see --help)\n",
                 out.empty() ? "--out is required" : "no FILE or KEY given");
    return kExitUsage;
  }
  auto sources = ParseSources(positional);
  if (!sources.ok()) {
    std::fprintf(stderr, "strata get: %s\n", StatusText(sources.status()).c_str());
    return kExitFailure;
  }
  if (auto target = OutputPath(out, *sources); target.ok()) {
    out = *std::move(target);
  } else {
    std::fprintf(stderr, "strata get: %s\n", StatusText(target.status()).c_str());
    return kExitUsage;
  }
  auto session = OpenSession("get", cf, spec, nsf.tenant);
  if (session == nullptr) return kExitFailure;
  Session& s = *session;
  const uint64_t chunk = s.ns.chunk_bytes;
  const std::string tmp = out + ".strata-tmp";
  FILE* o = std::fopen(tmp.c_str(), "wb");
  if (o == nullptr) {
    std::fprintf(stderr, "strata get: cannot write %s: %s\n", tmp.c_str(), std::strerror(errno));
    return kExitFailure;
  }
  std::vector<std::byte> buf;
  uint64_t written = 0, chunks = 0;
  // Loads `keys` (chunk indices from `first`) into buf; NotFound names what is missing.
  auto load = [&](std::span<const ChunkKey> keys, uint64_t first) -> absl::Status {
    buf.resize(keys.size() * chunk);
    auto transfer = s.client->Load(s.ns, keys, buf);
    absl::Status st = transfer.ok() ? (*transfer)->Wait() : transfer.status();
    if (st.code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat(DescribeMissing(s, keys, first), std::string(st.message())));
    }
    if (st.ok()) chunks += keys.size();
    return st;
  };
  auto write = [&](const std::byte* data, size_t n) -> absl::Status {
    if (std::fwrite(data, 1, n, o) != n) {
      return absl::UnavailableError(absl::StrCat("writing ", tmp, ": ", std::strerror(errno)));
    }
    written += n;
    return absl::OkStatus();
  };
  absl::Status status;
  for (const Source& src : *sources) {
    if (src.file.empty()) {
      const size_t batch = BatchChunks(chunk);
      for (size_t i = 0; status.ok() && i < src.keys.size(); i += batch) {
        auto keys = std::span<const ChunkKey>(src.keys).subspan(i, std::min(batch, src.keys.size() - i));
        status = load(keys, i);
        if (status.ok()) status = write(buf.data(), buf.size());
      }
    } else {
      auto file = ChunkedFile::Open(src.file, chunk, s.ns.chain->root());
      if (!file.ok()) {
        status = file.status();
        break;
      }
      ChunkedFile& f = **file;
      while (status.ok()) {
        auto n = f.ReadBatch(BatchChunks(chunk));
        if (!n.ok()) status = n.status();
        if (!n.ok() || *n == 0) break;
        status = load(f.batch_keys(), f.batch_first());
        if (status.ok() && std::memcmp(buf.data(), f.batch_bytes().data(), buf.size()) != 0) {
          status = absl::DataLossError(absl::StrCat(
              "chunks ", f.batch_first(), "..", f.batch_first() + *n - 1,
              " passed their checksums but differ from the file"));
        }
        if (status.ok()) status = write(buf.data(), f.batch_file_bytes());
      }
    }
    if (!status.ok()) {
      status = absl::Status(status.code(),
                            absl::StrCat(src.Name(), ": ", std::string(status.message())));
      break;
    }
  }
  if (std::fclose(o) != 0 && status.ok()) {
    status = absl::UnavailableError(absl::StrCat("closing ", tmp, ": ", std::strerror(errno)));
  }
  if (status.ok() && std::rename(tmp.c_str(), out.c_str()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("renaming ", tmp, " to ", out));
  }
  if (!status.ok()) {
    std::remove(tmp.c_str());
    std::fprintf(stderr, "strata get: %s\n", StatusText(status).c_str());
    return kExitFailure;
  }
  std::printf("%s: %llu bytes from %llu chunks, verified\n", out.c_str(),
              static_cast<unsigned long long>(written), static_cast<unsigned long long>(chunks));
  return kExitOk;
}

int LookupCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  NamespaceFlags nsf;
  bool summary_only = false;
  FlagSet flags(absl::StrCat(
      "strata lookup [flags] (FILE | KEY)...\n\n"
      "Reports where each chunk is stored (dram, nvme or missing) and the length of\n"
      "the cached prefix: the chunks before the first missing one. A FILE's keys are\n"
      "computed from its bytes; consecutive KEYs (64 hex digits) form one chain.\n",
      kKeyRule));
  cf.Register(&flags);
  nsf.Register(&flags);
  flags.Add("summary_only", "print one summary line per source, not every key", &summary_only);
  std::vector<std::string> positional;
  NamespaceSpec spec;
  if (int rc = CommonSetup("lookup", flags, args, cf, nsf, &positional, &spec); rc >= 0) return rc;
  if (positional.empty()) {
    std::fprintf(stderr, "strata lookup: no FILE or KEY given (see --help)\n");
    return kExitUsage;
  }
  auto sources = ParseSources(positional);
  if (!sources.ok()) {
    std::fprintf(stderr, "strata lookup: %s\n", StatusText(sources.status()).c_str());
    return kExitFailure;
  }
  auto session = OpenSession("lookup", cf, spec, nsf.tenant);
  if (session == nullptr) return kExitFailure;
  Session& s = *session;
  const uint64_t chunk = s.ns.chunk_bytes;
  for (const Source& src : *sources) {
    uint64_t total = 0, prefix = 0, dram = 0, nvme = 0;
    bool prefix_open = true;
    auto report = [&](std::span<const ChunkKey> keys, uint64_t first) -> absl::Status {
      auto found = s.client->Lookup(s.ns, keys);
      if (!found.ok()) return found.status();
      for (size_t i = 0; i < keys.size(); ++i) {
        const client::Tier t = found->tiers[i];
        dram += t == client::Tier::kDram;
        nvme += t == client::Tier::kNvme;
        if (!summary_only) {
          std::printf("%6llu  %s  %s\n", static_cast<unsigned long long>(first + i),
                      keys[i].ToHex().c_str(), TierName(t));
        }
      }
      if (prefix_open) prefix += found->prefix_chunks;
      prefix_open = prefix_open && found->prefix_chunks == keys.size();
      total += keys.size();
      return absl::OkStatus();
    };
    absl::Status status;
    if (src.file.empty()) {
      for (size_t i = 0; status.ok() && i < src.keys.size(); i += 4096) {
        status = report(std::span<const ChunkKey>(src.keys).subspan(i, std::min<size_t>(4096, src.keys.size() - i)), i);
      }
    } else {
      auto file = ChunkedFile::Open(src.file, chunk, s.ns.chain->root());
      if (!file.ok()) status = file.status();
      while (status.ok()) {
        auto n = (*file)->ReadBatch(BatchChunks(chunk));
        if (!n.ok()) status = n.status();
        if (!n.ok() || *n == 0) break;
        status = report((*file)->batch_keys(), (*file)->batch_first());
      }
    }
    if (!status.ok()) {
      std::fprintf(stderr, "strata lookup: %s: %s\n", src.Name().c_str(), StatusText(status).c_str());
      return kExitFailure;
    }
    std::printf("%s: cached prefix %llu of %llu chunks (%s); dram %llu, nvme %llu, missing %llu\n",
                src.Name().c_str(), static_cast<unsigned long long>(prefix),
                static_cast<unsigned long long>(total), FormatBytes(prefix * chunk).c_str(),
                static_cast<unsigned long long>(dram), static_cast<unsigned long long>(nvme),
                static_cast<unsigned long long>(total - dram - nvme));
  }
  return kExitOk;
}

int StatsCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  ClusterFlags cl;
  FlagSet flags(
      "strata stats [flags]\n\n"
      "Prints the node's counters, one \"key: value\" per line, sorted by key. With\n"
      "--etcd (and --cluster) or --peers: every member's counters summed, with\n"
      "cluster.nodes_answered, cluster.nodes_failed and cluster.view_current (exit\n"
      "status 1 when a member does not answer).");
  cf.Register(&flags);
  cl.Register(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit("stats", flags, args, &positional); rc >= 0) return rc;
  if (!positional.empty()) {
    std::fprintf(stderr, "strata stats: no positional arguments are taken (see --help)\n");
    return kExitUsage;
  }
  if (!cl.etcd.empty() && !cl.peers.empty()) {
    std::fprintf(stderr, "strata stats: give --etcd or --peers, not both\n");
    return kExitUsage;
  }
  if (cl.given()) return ClusterStats(cl, cf);
  if (int rc = cf.CheckServerOrExit("stats"); rc >= 0) return rc;
  auto client = client::Client::Connect(cf.Options());
  if (!client.ok()) {
    std::fprintf(stderr, "strata stats: cannot connect to %s: %s\n", cf.server.c_str(),
                 StatusText(client.status()).c_str());
    return kExitFailure;
  }
  auto stats = (*client)->Stats();
  if (!stats.ok()) {
    std::fprintf(stderr, "strata stats: %s\n", StatusText(stats.status()).c_str());
    return kExitFailure;
  }
  for (const auto& [key, value] : *stats) {
    std::printf("%s: %llu\n", key.c_str(), static_cast<unsigned long long>(value));
  }
  return kExitOk;
}

int RemoveNamespaceCommand(const std::vector<std::string>& args) {
  ConnectFlags cf;
  NamespaceFlags nf;
  FlagSet flags(
      "strata remove-namespace [flags]\n\n"
      "Removes the namespace given by the namespace flags (model, layout, tenant) from\n"
      "the node, with every chunk stored in it (DRAM and NVMe), and frees its id.\n"
      "Refused (FailedPrecondition) while a load or save on it holds a lease.");
  cf.Register(&flags);
  nf.Register(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit("remove-namespace", flags, args, &positional); rc >= 0) return rc;
  if (int rc = cf.CheckServerOrExit("remove-namespace"); rc >= 0) return rc;
  if (!positional.empty()) {
    std::fprintf(stderr, "strata remove-namespace: no positional arguments are taken\n");
    return kExitUsage;
  }
  auto spec = nf.Spec();
  if (!spec.ok()) {
    std::fprintf(stderr, "strata remove-namespace: %s\n", StatusText(spec.status()).c_str());
    return kExitUsage;
  }
  auto client = client::Client::Connect(cf.Options());
  if (!client.ok()) {
    std::fprintf(stderr, "strata remove-namespace: cannot connect to %s: %s\n",
                 cf.server.c_str(), StatusText(client.status()).c_str());
    return kExitFailure;
  }
  auto removed = (*client)->RemoveNamespace(*spec, nf.tenant);
  if (!removed.ok()) {
    std::fprintf(stderr, "strata remove-namespace: %s\n", StatusText(removed.status()).c_str());
    return kExitFailure;
  }
  std::printf("removed namespace of model %s for tenant %s: %llu chunks\n",
              spec->model_id.c_str(), nf.tenant.c_str(),
              static_cast<unsigned long long>(*removed));
  return kExitOk;
}

}  // namespace strata::cli
