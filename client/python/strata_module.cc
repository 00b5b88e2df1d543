// The `strata` Python module: the C++ client (client/client.h) for inference
// engines written in Python.
//
//   import strata
//   c = strata.connect("127.0.0.1:7400")
//   ns = c.register_namespace("llama-3-8b", layers=32, kv_heads=8, head_dim=128,
//                             dtype="bf16", tokens_per_chunk=64, tenant="t")
//   keys = ns.keys(tokens)                      # bytes of 32, full chunks only
//   hit = c.lookup(ns, keys)                    # {"tiers", "prefix_chunks", "persisted"}
//   t = c.load(ns, keys[:hit["prefix_chunks"]], buf)   # any writable buffer
//   t.wait_layer(0); t.wait()                   # the GIL is released while waiting
//   c.save(ns, keys, kv_bytes).wait()
//
//   # TLS, mutual TLS and tenants (keyword arguments of connect):
//   c = strata.connect("node:7400", tls_ca_file="ca.pem", tls_cert_file="me.pem",
//                      tls_key_file="me.key", token_file="team-a.token")
//
// Errors are strata.Error exceptions whose `code` is the status code's name
// ("NOT_FOUND", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", ...). Buffers: anything with the buffer
// protocol (numpy arrays, bytearray, memoryview; read-only ones for save),
// C-contiguous; the transfer keeps a reference until it is done. GPU memory
// (a CUDA torch tensor, anything with __cuda_array_interface__) goes through
// DeviceTransfers (device_transfers.h): the CUDA build stages it through
// pinned memory; the CPU-only build refuses it (UNIMPLEMENTED).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/python/device_array.h"
#include "client/python/device_transfers.h"

namespace py = pybind11;

namespace strata::python {
namespace {

// strata.Error, set up in the module init.
PyObject* g_error = nullptr;

[[noreturn]] void Raise(const absl::Status& status) {
  py::object error = py::reinterpret_borrow<py::object>(g_error);
  py::object e = error(std::string(status.message()));
  e.attr("code") = absl::StatusCodeToString(status.code());
  PyErr_SetObject(g_error, e.ptr());
  throw py::error_already_set();
}

void Check(const absl::Status& status) {
  if (!status.ok()) Raise(status);
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) Raise(value.status());
  return *std::move(value);
}

ChunkKey ToKey(const py::bytes& raw) {
  const std::string s = raw;
  auto key = ChunkKey::FromBytes(s);
  if (!key.ok()) Raise(absl::InvalidArgumentError(absl::StrCat("a key: ", key.status().message())));
  return *key;
}

std::vector<ChunkKey> ToKeys(const std::vector<py::bytes>& raw) {
  std::vector<ChunkKey> keys;
  keys.reserve(raw.size());
  for (const py::bytes& k : raw) keys.push_back(ToKey(k));
  return keys;
}

py::bytes FromKey(const ChunkKey& key) {
  return py::bytes(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size());
}

const char* TierName(client::Tier tier) {
  switch (tier) {
    case client::Tier::kDram:
      return "dram";
    case client::Tier::kNvme:
      return "nvme";
    case client::Tier::kMissing:
      break;
  }
  return "missing";
}

// A C-contiguous view of a Python buffer, held for as long as the transfer.
struct Buffer {
  py::buffer_info info;
  py::object owner;
  std::span<std::byte> bytes() {
    return {static_cast<std::byte*>(info.ptr), static_cast<size_t>(info.size * info.itemsize)};
  }
};

Buffer GetBuffer(py::object obj, bool writable) {
  if (py::hasattr(obj, "numpy") && py::hasattr(obj, "data_ptr") && !PyObject_CheckBuffer(obj.ptr())) {
    obj = obj.attr("numpy")();  // a CPU torch tensor: its numpy view shares the memory
  }
  if (!PyObject_CheckBuffer(obj.ptr())) {
    Raise(absl::InvalidArgumentError("expected a buffer (numpy array, bytearray, memoryview)"));
  }
  py::buffer buffer = py::reinterpret_borrow<py::buffer>(obj);
  // Asked read-only, so that a read-only object says so instead of failing.
  Buffer b{buffer.request(/*writable=*/false), obj};
  if (writable && b.info.readonly) {
    Raise(absl::InvalidArgumentError("the destination buffer is read-only"));
  }
  // C-contiguous: strides are the packed row-major ones.
  py::ssize_t expected = b.info.itemsize;
  for (py::ssize_t d = b.info.ndim - 1; d >= 0; --d) {
    if (b.info.shape[d] > 1 && b.info.strides[d] != expected) {
      Raise(absl::InvalidArgumentError("the buffer is not C-contiguous"));
    }
    expected *= b.info.shape[d];
  }
  return b;
}

// GPU memory described by `obj`, or nothing when it is host memory. Raises
// for GPU memory the module cannot use, and (UNIMPLEMENTED) for any GPU
// memory in the CPU-only build.
std::optional<DeviceArray> GetDeviceArray(py::handle obj) {
  std::optional<DeviceArray> a = Check(DescribeDeviceArray(obj));
  if (!a.has_value()) return a;
  Check(DeviceTransfers::Availability());
  if (a->stream_kind == StreamKind::kTorchCurrent) {
    // The stream torch queues the tensor's work on; torch is imported, as
    // the tensor exists.
    py::object stream = py::module_::import("torch").attr("cuda").attr("current_stream")(
        obj.attr("device"));
    a->stream_kind = StreamKind::kHandle;
    a->stream = stream.attr("cuda_stream").cast<uintptr_t>();
  }
  return a;
}

class PyTransfer {
 public:
  // A transfer between host memory and the store.
  PyTransfer(std::shared_ptr<client::Transfer> t, Buffer buffer)
      : owner_(buffer.owner), buffer_(std::move(buffer)), transfer_(std::move(t)) {}
  // A transfer between GPU memory (owned by `owner`) and the store.
  PyTransfer(std::shared_ptr<client::Transfer> t, py::object owner)
      : owner_(std::move(owner)), transfer_(std::move(t)) {}
  PyTransfer(PyTransfer&&) = default;
  // A transfer dropped before it finished is waited for (without the GIL)
  // before the memory it uses is let go.
  ~PyTransfer() {
    if (transfer_ != nullptr && !transfer_->done()) {
      py::gil_scoped_release release;
      (void)transfer_->Wait();
      transfer_.reset();
    }
  }

  void Wait() {
    absl::Status s;
    {
      py::gil_scoped_release release;
      s = transfer_->Wait();
    }
    Check(s);
  }
  void WaitLayer(uint32_t layer) {
    absl::Status s;
    {
      py::gil_scoped_release release;
      s = transfer_->WaitLayer(layer);
    }
    Check(s);
  }
  bool done() const { return transfer_->done(); }

 private:
  // Destroyed last: the memory outlives the transfer.
  py::object owner_;
  std::optional<Buffer> buffer_;
  std::shared_ptr<client::Transfer> transfer_;
};

class PyClient {
 public:
  explicit PyClient(std::unique_ptr<client::Client> c)
      : client_(std::move(c)), device_(DeviceTransfers::Create()) {}

  client::Namespace RegisterNamespace(const std::string& model, uint32_t layers,
                                      uint32_t kv_heads, uint32_t head_dim,
                                      const std::string& dtype, uint32_t tokens_per_chunk,
                                      const std::string& tenant,
                                      const std::map<std::string, std::string>& extra_keys) {
    NamespaceSpec spec;
    spec.model_id = model;
    spec.num_layers = layers;
    spec.num_kv_heads = kv_heads;
    spec.head_dim = head_dim;
    spec.dtype = Check(ParseDType(dtype));
    spec.tokens_per_chunk = tokens_per_chunk;
    for (const auto& [k, v] : extra_keys) spec.extra_keys.emplace_back(k, v);
    Check(spec.Validate());
    py::gil_scoped_release release;
    auto ns = client_->RegisterNamespace(spec, tenant);
    py::gil_scoped_acquire acquire;
    return Check(std::move(ns));
  }

  py::dict Lookup(const client::Namespace& ns, const std::vector<py::bytes>& raw) {
    const std::vector<ChunkKey> keys = ToKeys(raw);
    absl::StatusOr<client::LookupResult> r;
    {
      py::gil_scoped_release release;
      r = client_->Lookup(ns, keys);
    }
    client::LookupResult result = Check(std::move(r));
    py::list tiers, persisted;
    for (client::Tier t : result.tiers) tiers.append(TierName(t));
    for (bool p : result.persisted) persisted.append(p);
    py::dict out;
    out["tiers"] = tiers;
    out["prefix_chunks"] = result.prefix_chunks;
    out["persisted"] = persisted;
    return out;
  }

  PyTransfer Load(const client::Namespace& ns, const std::vector<py::bytes>& raw,
                  py::object dest) {
    std::vector<ChunkKey> keys = ToKeys(raw);
    if (std::optional<DeviceArray> d = GetDeviceArray(dest); d.has_value()) {
      absl::StatusOr<std::shared_ptr<client::Transfer>> t;
      {
        py::gil_scoped_release release;
        t = device_->Load(client_, ns, std::move(keys), *d);
      }
      return PyTransfer(Check(std::move(t)), std::move(dest));
    }
    Buffer b = GetBuffer(std::move(dest), /*writable=*/true);
    absl::StatusOr<std::shared_ptr<client::Transfer>> t;
    {
      // The call may wait on the node (a Get, or a reconnect after a
      // restart): other Python threads run meanwhile; `b` keeps the buffer.
      py::gil_scoped_release release;
      t = client_->Load(ns, keys, b.bytes());
    }
    return PyTransfer(Check(std::move(t)), std::move(b));
  }

  PyTransfer Save(const client::Namespace& ns, const std::vector<py::bytes>& raw,
                  py::object src, std::optional<py::bytes> parent) {
    std::vector<ChunkKey> keys = ToKeys(raw);
    std::optional<ChunkKey> p;
    if (parent.has_value()) p = ToKey(*parent);
    if (std::optional<DeviceArray> d = GetDeviceArray(src); d.has_value()) {
      absl::StatusOr<std::shared_ptr<client::Transfer>> t;
      {
        py::gil_scoped_release release;
        t = device_->Save(client_, ns, std::move(keys), *d, p);
      }
      return PyTransfer(Check(std::move(t)), std::move(src));
    }
    Buffer b = GetBuffer(std::move(src), /*writable=*/false);
    absl::StatusOr<std::shared_ptr<client::Transfer>> t;
    {
      py::gil_scoped_release release;
      t = client_->Save(ns, keys, b.bytes(), p);
    }
    return PyTransfer(Check(std::move(t)), std::move(b));
  }

  void Hint(const client::Namespace& ns, const std::string& scheduler,
            const std::vector<std::pair<py::bytes, uint32_t>>& jobs, double ttl_seconds) {
    std::vector<client::HintJob> hints;
    for (const auto& [key, position] : jobs) hints.push_back({ToKey(key), position});
    absl::Status s;
    {
      py::gil_scoped_release release;
      s = client_->Hint(ns, scheduler, hints, absl::Seconds(ttl_seconds));
    }
    Check(s);
  }

  std::map<std::string, uint64_t> Stats() {
    absl::StatusOr<std::map<std::string, uint64_t>> s;
    {
      py::gil_scoped_release release;
      s = client_->Stats();
    }
    return Check(std::move(s));
  }

  void Health() {
    absl::Status s;
    {
      py::gil_scoped_release release;
      s = client_->Health();
    }
    Check(s);
  }

 private:
  // Shared with the threads of GPU transfers, which may outlive this object.
  std::shared_ptr<client::Client> client_;
  std::unique_ptr<DeviceTransfers> device_;
};

PyClient Connect(const std::string& address, const std::string& ucx_transports,
                 const std::string& client_id, double rpc_timeout, double transfer_timeout,
                 const std::string& tls_ca_file, const std::string& tls_cert_file,
                 const std::string& tls_key_file, const std::string& tls_server_name,
                 const std::string& token, const std::string& token_file, bool reconnect) {
  client::ClientOptions o;
  o.server_address = address;
  o.ucx_transports = ucx_transports;
  o.client_id = client_id;
  o.rpc_timeout = absl::Seconds(rpc_timeout);
  o.transfer_timeout = absl::Seconds(transfer_timeout);
  o.tls_ca_file = tls_ca_file;
  o.tls_cert_file = tls_cert_file;
  o.tls_key_file = tls_key_file;
  o.tls_server_name = tls_server_name;
  o.token = token;
  o.token_file = token_file;
  o.reconnect = reconnect;
  absl::StatusOr<std::unique_ptr<client::Client>> c;
  {
    py::gil_scoped_release release;
    c = client::Client::Connect(o);
  }
  // The library's messages name its options; this module's keywords are the
  // same names but for the address.
  constexpr std::pair<std::string_view, std::string_view> kKeywords[] = {
      {"server_address", "address"}};
  if (!c.ok()) Raise(client::RenameOptions(c.status(), kKeywords));
  return PyClient(*std::move(c));
}

}  // namespace
}  // namespace strata::python

PYBIND11_MODULE(strata, m) {
  using namespace strata::python;
  namespace client = strata::client;
  m.doc() = "Strata KV-cache store client";
  static py::exception<std::exception> error(m, "Error");
  g_error = error.ptr();
  m.attr("cuda_supported") = DeviceTransfers::Availability().ok();

  py::class_<client::Namespace>(m, "Namespace")
      .def_readonly("id", &client::Namespace::id)
      .def_readonly("chunk_bytes", &client::Namespace::chunk_bytes)
      .def_readonly("layer_bytes", &client::Namespace::layer_bytes)
      .def_property_readonly("tokens_per_chunk",
                             [](const client::Namespace& ns) { return ns.spec.tokens_per_chunk; })
      .def_property_readonly("layers",
                             [](const client::Namespace& ns) { return ns.spec.num_layers; })
      .def(
          "keys",
          [](const client::Namespace& ns, const std::vector<uint32_t>& tokens) {
            py::list out;
            for (const strata::ChunkKey& k : ns.Keys(tokens)) out.append(FromKey(k));
            return out;
          },
          py::arg("tokens"), "Keys of every full chunk of `tokens` (a sequence of ints).");

  py::class_<PyTransfer>(m, "Transfer")
      .def("wait", &PyTransfer::Wait,
           "Blocks (without the GIL) until the transfer finished; raises strata.Error "
           "on failure (then treat the buffer as unwritten).")
      .def("wait_layer", &PyTransfer::WaitLayer, py::arg("layer"),
           "Load only: blocks until layer `layer` of every chunk has arrived.")
      .def_property_readonly("done", &PyTransfer::done);

  py::class_<PyClient>(m, "Client")
      .def("register_namespace", &PyClient::RegisterNamespace, py::arg("model"),
           py::arg("layers"), py::arg("kv_heads"), py::arg("head_dim"),
           py::arg("dtype") = "fp16", py::arg("tokens_per_chunk") = 64, py::arg("tenant") = "",
           py::arg("extra_keys") = std::map<std::string, std::string>())
      .def("lookup", &PyClient::Lookup, py::arg("ns"), py::arg("keys"))
      .def("load", &PyClient::Load, py::arg("ns"), py::arg("keys"), py::arg("dest"))
      .def("save", &PyClient::Save, py::arg("ns"), py::arg("keys"), py::arg("src"),
           py::arg("parent") = py::none())
      .def("hint", &PyClient::Hint, py::arg("ns"), py::arg("scheduler_id"), py::arg("jobs"),
           py::arg("ttl") = 30.0,
           "jobs: [(last_key, queue_position), ...]; replaces the scheduler's hint set.")
      .def("stats", &PyClient::Stats)
      .def("health", &PyClient::Health);

  m.def("connect", &Connect, py::arg("address") = "127.0.0.1:7400",
        py::arg("ucx_transports") = "", py::arg("client_id") = "", py::arg("rpc_timeout") = 10.0,
        py::arg("transfer_timeout") = 30.0, py::kw_only(), py::arg("tls_ca_file") = "",
        py::arg("tls_cert_file") = "", py::arg("tls_key_file") = "",
        py::arg("tls_server_name") = "", py::arg("token") = "", py::arg("token_file") = "",
        py::arg("reconnect") = true,
        R"doc(Connects to a store node (gRPC control plane and UCX data plane).

address: host:port of the node. rpc_timeout / transfer_timeout: seconds.
tls_ca_file: PEM file of the CA(s) that signed the node's certificate; setting it
  turns TLS on for the gRPC port (the data plane is not encrypted).
tls_cert_file, tls_key_file: this client's certificate (chain) and key, PEM files,
  for a node with mutual TLS (both or neither; need tls_ca_file).
tls_server_name: the name the node's certificate must carry when it differs from
  the host of `address`.
token: the tenant token "TENANT:SECRET" for a node that authenticates tenants
  (`strata serve --tenants`); token_file: a file holding it (`strata token --out`).
  At most one of the two.
reconnect: when the node restarts behind `address`, connect anew on the next call
  (namespaces registered again, the call retried once; see the README's
  "Node restarts"); False: calls then raise UNAVAILABLE ("restarted ...").

Raises strata.Error with `code`: "UNAVAILABLE" when the node cannot be reached or
the TLS handshake fails (the message names the options to check),
"UNAUTHENTICATED" when the node authenticates and the token is missing or wrong,
"NOT_FOUND" / "INVALID_ARGUMENT" for unreadable or bad TLS or token files and
options that do not go together.)doc");
}
