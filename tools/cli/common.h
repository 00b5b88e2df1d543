// Pieces shared by the `strata` subcommands that talk to a store node:
// connection and namespace flags, exit codes, status formatting, and the rule
// that turns a file into keyed chunks.
#ifndef STRATA_TOOLS_CLI_COMMON_H_
#define STRATA_TOOLS_CLI_COMMON_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/cluster_client.h"
#include "store/common/chunk_key.h"
#include "store/common/namespace.h"
#include "tools/cli/flags.h"

namespace strata::cli {

// Exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and failed
inline constexpr int kExitUsage = 2;    // bad flags or arguments

// "NotFound: message": the absl code under the name the README uses, the
// client library's option names in the message replaced by the flags that
// set them (tls_ca_file -> --tls_ca).
std::string StatusText(const absl::Status& status);

// --server, --ucx_transports, --rpc_timeout, --same_host, --lease_free, the
// TLS flags and --token_file.
struct ConnectFlags {
  std::string server = "127.0.0.1:7400";
  std::string ucx_transports;
  absl::Duration rpc_timeout = absl::Seconds(10);
  bool same_host = true;  // false: ClientOptions::same_host = kOff
  bool lease_free = true;  // ClientOptions::lease_free
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token_file;

  void Register(FlagSet* flags);
  client::ClientOptions Options() const;
  // Returns -1 when --server is host:port, else prints a usage error naming
  // --server and the expected form and returns kExitUsage.
  int CheckServerOrExit(const char* command) const;
};

// --etcd, --cluster, --peers: a cluster instead of one --server.
struct ClusterFlags {
  std::string etcd;
  std::string cluster = "strata";
  std::string peers;

  void Register(FlagSet* flags);
  bool given() const { return !etcd.empty() || !peers.empty(); }
  // Each node is reached with `connect`'s options.
  client::ClusterClientOptions Options(const ConnectFlags& connect) const;
};

// The cluster's client; prints the error and returns null on failure.
std::unique_ptr<client::ClusterClient> OpenCluster(const char* command, const ClusterFlags& cluster,
                                                   const ConnectFlags& connect);

// strata stats over a cluster: every member's counters summed.
int ClusterStats(const ClusterFlags& cluster, const ConnectFlags& connect);

// --model --layers --kv_heads --head_dim --dtype --tokens_per_chunk --tenant,
// with the defaults of `strata local`.
struct NamespaceFlags {
  std::string model = "demo-model";
  std::string tenant = "demo";
  std::string dtype = "fp16";
  int64_t layers = 4;
  int64_t kv_heads = 8;
  int64_t head_dim = 128;
  int64_t tokens_per_chunk = 64;

  void Register(FlagSet* flags);
  // InvalidArgument naming the field out of range.
  absl::StatusOr<NamespaceSpec> Spec() const;
};

// Parses `args` into `flags`. Returns -1 when the command should go on, or
// the exit code to return at once: 0 after printing --help, kExitUsage after
// printing the parse error (prefixed with `command`).
int ParseOrExit(const char* command, FlagSet& flags, const std::vector<std::string>& args,
                std::vector<std::string>* positional);

// Connects and registers the namespace; prints the error and returns null on
// failure.
struct Session {
  std::unique_ptr<client::Client> client;
  client::Namespace ns;
};
std::unique_ptr<Session> OpenSession(const char* command, const ConnectFlags& connect,
                                     const NamespaceSpec& spec, const std::string& tenant);

// A file read as a sequence of chunks, keyed by the file-key rule:
//
//   chunk i  = bytes [i * C, (i + 1) * C) of the file, C = the namespace's
//              chunk size; the last chunk is zero-padded to C bytes
//   key[-1]  = the namespace's key-chain root (README "Keys": SHA-256 of
//              "strata-kv-v1", the canonical namespace bytes and the tenant)
//   key[i]   = SHA256(key[i-1] || chunk i's C bytes, padding included)
//
// That is the README's key chain with each chunk's bytes read as
// little-endian uint32 words standing for its tokens (C / 4 "tokens" per
// chunk rather than tokens_per_chunk): KeyChain::Next(key[i-1], words of
// chunk i). An empty file has no chunks. Not thread-safe.
class ChunkedFile {
 public:
  // NotFound / PermissionDenied / ... naming the file when it cannot be read.
  static absl::StatusOr<std::unique_ptr<ChunkedFile>> Open(const std::string& path,
                                                           uint64_t chunk_bytes,
                                                           const ChunkKey& root);
  ~ChunkedFile();

  uint64_t size() const { return size_; }
  uint64_t num_chunks() const { return (size_ + chunk_bytes_ - 1) / chunk_bytes_; }
  // Zero bytes appended to the last chunk.
  uint64_t padding() const { return num_chunks() * chunk_bytes_ - size_; }

  // Reads the next up to `max_chunks` chunks (padded) into an internal
  // buffer and keys them. Returns the number read (0 at the end).
  absl::StatusOr<size_t> ReadBatch(size_t max_chunks);
  // The current batch: its bytes, its keys, the index of its first chunk,
  // and the key before it (none for chunk 0).
  std::span<const std::byte> batch_bytes() const;
  const std::vector<ChunkKey>& batch_keys() const { return keys_; }
  uint64_t batch_first() const { return first_; }
  std::optional<ChunkKey> batch_parent() const { return parent_; }
  // Bytes of the current batch that belong to the file (the rest is padding).
  uint64_t batch_file_bytes() const;

 private:
  ChunkedFile(std::string path, FILE* f, uint64_t size, uint64_t chunk_bytes, const ChunkKey& root)
      : path_(std::move(path)), f_(f), size_(size), chunk_bytes_(chunk_bytes), prev_(root) {}

  const std::string path_;
  FILE* const f_;
  const uint64_t size_;
  const uint64_t chunk_bytes_;
  ChunkKey prev_;  // key of the last chunk read, or the root
  uint64_t next_ = 0;
  uint64_t first_ = 0;
  std::optional<ChunkKey> parent_;
  std::vector<uint32_t> words_;  // the batch, as words for KeyChain::Next
  std::vector<ChunkKey> keys_;
};

// Chunks per batch for a chunk size: about 64 MiB, at most the node's 4096
// keys per call, at least 1.
size_t BatchChunks(uint64_t chunk_bytes);

// True for 64 hex digits.
bool LooksLikeHexKey(const std::string& arg);

// Stand-in KV bytes for a chunk: a deterministic function of its key, so that
// any reader can verify them (`strata local`, `strata replay`).
void FillFromKey(const ChunkKey& key, std::span<std::byte> out);

}  // namespace strata::cli

#endif  // STRATA_TOOLS_CLI_COMMON_H_
