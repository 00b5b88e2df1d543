#include "tools/cli/common.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "store/common/key_chain.h"

namespace strata::cli {

namespace {

// The client library's option names in its messages, and the flags a user of
// these commands sets them with.
constexpr std::pair<std::string_view, std::string_view> kFlagNames[] = {
    {"server_address", "--server"},
    {"ucx_transports", "--ucx_transports"},
    {"rpc_timeout", "--rpc_timeout"},
    {"same_host off", "--nosame_host"},
    {"lease_free off", "--nolease_free"},
    {"tls_ca_file", "--tls_ca"},
    {"tls_cert_file", "--tls_cert"},
    {"tls_key_file", "--tls_key"},
    {"tls_server_name", "--tls_server_name"},
    {"token_file", "--token_file"},
};

}  // namespace

std::string StatusText(const absl::Status& in) {
  // Messages of the client library name its options; here they are flags.
  const absl::Status status = client::RenameOptions(in, kFlagNames);
  const char* name = "Unknown";
  switch (status.code()) {
    case absl::StatusCode::kOk: name = "OK"; break;
    case absl::StatusCode::kCancelled: name = "Cancelled"; break;
    case absl::StatusCode::kUnknown: name = "Unknown"; break;
    case absl::StatusCode::kInvalidArgument: name = "InvalidArgument"; break;
    case absl::StatusCode::kDeadlineExceeded: name = "DeadlineExceeded"; break;
    case absl::StatusCode::kNotFound: name = "NotFound"; break;
    case absl::StatusCode::kAlreadyExists: name = "AlreadyExists"; break;
    case absl::StatusCode::kPermissionDenied: name = "PermissionDenied"; break;
    case absl::StatusCode::kResourceExhausted: name = "ResourceExhausted"; break;
    case absl::StatusCode::kFailedPrecondition: name = "FailedPrecondition"; break;
    case absl::StatusCode::kAborted: name = "Aborted"; break;
    case absl::StatusCode::kOutOfRange: name = "OutOfRange"; break;
    case absl::StatusCode::kUnimplemented: name = "Unimplemented"; break;
    case absl::StatusCode::kInternal: name = "Internal"; break;
    case absl::StatusCode::kUnavailable: name = "Unavailable"; break;
    case absl::StatusCode::kDataLoss: name = "DataLoss"; break;
    case absl::StatusCode::kUnauthenticated: name = "Unauthenticated"; break;
    default: break;
  }
  if (status.message().empty()) return name;
  return absl::StrCat(name, ": ", std::string(status.message()));
}

void ConnectFlags::Register(FlagSet* flags) {
  flags->Add("server", "store node to talk to, host:port", &server);
  flags->Add("ucx_transports",
             "UCX transports of the data plane, as UCX_TLS takes them (default: UCX's choice, "
             "shared memory on one host)",
             &ucx_transports);
  flags->Add("rpc_timeout", "deadline of each control-plane call", &rpc_timeout);
  flags->Add("same_host",
             "loads from a node on this host copy out of its shared DRAM pool when it can be "
             "mapped (--nosame_host: loads always use UCX)",
             &same_host);
  flags->Add("lease_free",
             "loads from a node on this host copy chunks its read index vouches for without a "
             "Get round trip, falling back to a lease when a chunk is absent or changed while "
             "copied (--nolease_free: every load takes a lease)",
             &lease_free);
  flags->Add("tls_ca",
             "PEM file of the CA that signed the node's certificate: talk TLS to the node "
             "(default: plaintext)",
             &tls_ca);
  flags->Add("tls_cert", "PEM file of this client's certificate, for a node that requires one "
             "(mutual TLS; with --tls_key)", &tls_cert);
  flags->Add("tls_key", "PEM file of this client's private key (with --tls_cert)", &tls_key);
  flags->Add("tls_server_name",
             "name the node's certificate must carry (default: the host of --server)",
             &tls_server_name);
  flags->Add("token_file",
             "file holding this tenant's token (TENANT:SECRET, as `strata token` writes it), "
             "sent with every call to a node started with --tenants",
             &token_file);
}

client::ClientOptions ConnectFlags::Options() const {
  client::ClientOptions options;
  options.server_address = server;
  options.ucx_transports = ucx_transports;
  options.rpc_timeout = rpc_timeout;
  options.same_host = same_host ? client::SameHost::kAuto : client::SameHost::kOff;
  options.lease_free = lease_free;
  options.tls_ca_file = tls_ca;
  options.tls_cert_file = tls_cert;
  options.tls_key_file = tls_key;
  options.tls_server_name = tls_server_name;
  options.token_file = token_file;
  return options;
}

int ConnectFlags::CheckServerOrExit(const char* command) const {
  absl::Status s = client::CheckServerAddress(server);
  if (s.ok()) return -1;
  std::fprintf(stderr, "strata %s: --server %s\n", command, std::string(s.message()).c_str());
  return kExitUsage;
}

void NamespaceFlags::Register(FlagSet* flags) {
  flags->Add("model", "model id of the namespace", &model);
  flags->Add("tenant", "tenant of the namespace (also the key chain's salt)", &tenant);
  flags->Add("layers", "layers per chunk", &layers);
  flags->Add("kv_heads", "KV heads", &kv_heads);
  flags->Add("head_dim", "head dimension", &head_dim);
  flags->Add("dtype", "fp16 or bf16", &dtype);
  flags->Add("tokens_per_chunk", "tokens per chunk", &tokens_per_chunk);
}

absl::StatusOr<NamespaceSpec> NamespaceFlags::Spec() const {
  auto in_range = [](const char* name, int64_t v) -> absl::Status {
    if (v <= 0 || v > UINT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", v, " must be positive"));
    }
    return absl::OkStatus();
  };
  for (auto [name, v] : {std::pair{"layers", layers}, std::pair{"kv_heads", kv_heads},
                         std::pair{"head_dim", head_dim},
                         std::pair{"tokens_per_chunk", tokens_per_chunk}}) {
    if (absl::Status s = in_range(name, v); !s.ok()) return s;
  }
  auto parsed = ParseDType(dtype);
  if (!parsed.ok()) return parsed.status();
  NamespaceSpec spec;
  spec.model_id = model;
  spec.num_layers = static_cast<uint32_t>(layers);
  spec.num_kv_heads = static_cast<uint32_t>(kv_heads);
  spec.head_dim = static_cast<uint32_t>(head_dim);
  spec.dtype = *parsed;
  spec.tokens_per_chunk = static_cast<uint32_t>(tokens_per_chunk);
  if (absl::Status s = spec.Validate(); !s.ok()) return s;
  return spec;
}

int ParseOrExit(const char* command, FlagSet& flags, const std::vector<std::string>& args,
                std::vector<std::string>* positional) {
  auto rest = flags.Parse(args);
  if (!rest.ok()) {
    std::fprintf(stderr, "strata %s: %s\n", command, std::string(rest.status().message()).c_str());
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return kExitOk;
  }
  *positional = *std::move(rest);
  return -1;
}

std::unique_ptr<Session> OpenSession(const char* command, const ConnectFlags& connect,
                                     const NamespaceSpec& spec, const std::string& tenant) {
  auto client = client::Client::Connect(connect.Options());
  if (!client.ok()) {
    std::fprintf(stderr, "strata %s: cannot connect to %s: %s\n", command,
                 connect.server.c_str(), StatusText(client.status()).c_str());
    return nullptr;
  }
  auto ns = (*client)->RegisterNamespace(spec, tenant);
  if (!ns.ok()) {
    std::fprintf(stderr, "strata %s: cannot register namespace %s: %s\n", command,
                 spec.model_id.c_str(), StatusText(ns.status()).c_str());
    return nullptr;
  }
  auto session = std::make_unique<Session>();
  session->client = *std::move(client);
  session->ns = *std::move(ns);
  return session;
}

absl::StatusOr<std::unique_ptr<ChunkedFile>> ChunkedFile::Open(const std::string& path,
                                                               uint64_t chunk_bytes,
                                                               const ChunkKey& root) {
  if (chunk_bytes == 0 || chunk_bytes % 4 != 0) {
    return absl::InvalidArgumentError("chunk size must be a positive multiple of 4");
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  struct stat st;
  if (f == nullptr || fstat(fileno(f), &st) != 0) {
    const int err = errno;
    if (f != nullptr) std::fclose(f);
    const std::string msg = absl::StrCat(path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  if (!S_ISREG(st.st_mode)) {
    std::fclose(f);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  return std::unique_ptr<ChunkedFile>(
      new ChunkedFile(path, f, static_cast<uint64_t>(st.st_size), chunk_bytes, root));
}

ChunkedFile::~ChunkedFile() { std::fclose(f_); }

absl::StatusOr<size_t> ChunkedFile::ReadBatch(size_t max_chunks) {
  const size_t n = static_cast<size_t>(std::min<uint64_t>(max_chunks, num_chunks() - next_));
  first_ = next_;
  parent_ = next_ == 0 ? std::nullopt : std::optional<ChunkKey>(prev_);
  keys_.clear();
  const size_t words_per_chunk = chunk_bytes_ / 4;
  words_.assign(n * words_per_chunk, 0);  // zero: the padding
  const uint64_t want = std::min<uint64_t>(n * chunk_bytes_, size_ - next_ * chunk_bytes_);
  if (n > 0 && std::fread(words_.data(), 1, want, f_) != want) {
    return absl::DataLossError(absl::StrCat(path_, ": short read (did the file change?)"));
  }
  for (size_t i = 0; i < n; ++i) {
    prev_ = KeyChain::Next(prev_, std::span<const uint32_t>(words_).subspan(i * words_per_chunk,
                                                                           words_per_chunk));
    keys_.push_back(prev_);
  }
  next_ += n;
  return n;
}

std::span<const std::byte> ChunkedFile::batch_bytes() const {
  return std::as_bytes(std::span<const uint32_t>(words_));
}

uint64_t ChunkedFile::batch_file_bytes() const {
  const uint64_t start = first_ * chunk_bytes_;
  return std::min<uint64_t>(keys_.size() * chunk_bytes_, size_ - std::min(size_, start));
}

size_t BatchChunks(uint64_t chunk_bytes) {
  return static_cast<size_t>(std::clamp<uint64_t>((64ull << 20) / chunk_bytes, 1, 4096));
}

bool LooksLikeHexKey(const std::string& arg) {
  return arg.size() == 2 * ChunkKey::kSize &&
         std::all_of(arg.begin(), arg.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

void FillFromKey(const ChunkKey& key, std::span<std::byte> out) {
  uint64_t x;
  std::memcpy(&x, key.bytes.data(), 8);
  x |= 1;
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, 8);
  }
  for (; i < out.size(); ++i) out[i] = static_cast<std::byte>(x >> (8 * (i % 8)));
}

}  // namespace strata::cli
