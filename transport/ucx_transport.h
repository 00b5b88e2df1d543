// The UCX data plane of Strata: one-sided RMA (get/put) between a client's
// buffers and a store node's registered memory.
//
// A store node creates one UcxContext, registers its DRAM pool once
// (Register) and publishes worker_address() and the region's packed_rkey()
// through the control plane (gRPC). A client creates its own UcxContext,
// Connect()s to the node's worker address, ImportRemote()s the published
// region and reads or writes it with PostGet / PostPut, many operations in
// flight, then WaitAll()s or takes a per-operation callback.
//
// No UCX type appears in this header: everything UCX lives behind these
// interfaces in ucx_transport.cc. The byte strings exchanged between peers
// (worker addresses, packed rkeys) carry a small Strata envelope (magic,
// version, length, checksum) around UCX's own encoding, so that truncated,
// corrupted or foreign bytes are rejected with InvalidArgument instead of
// being handed to UCX, which may abort on garbage. They are opaque to callers
// and only meaningful between processes of the same host architecture and
// UCX version.
//
// Lifetime: a UcxContext must outlive every Endpoint, RegisteredMemory and
// RemoteMemory created from it; a RemoteMemory must not outlive the Endpoint
// that imported it. (Internally they share ownership of the UCX worker, so a
// violation degrades to "no progress thread" rather than a crash, but it is
// still a contract violation.)
#ifndef STRATA_TRANSPORT_UCX_TRANSPORT_H_
#define STRATA_TRANSPORT_UCX_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace strata::transport {

// Where the payload of an incoming message (Endpoint::PostSend) goes: into
// `dest`, which must be exactly as long as the payload, after which `done`
// runs with OK (or with the error that stopped the transfer). An empty
// `dest` drops the message (`done` is not called).
struct MessageTarget {
  std::span<std::byte> dest;
  std::function<void(absl::Status)> done;
};
// Decides, from a message's header and payload length, where its payload
// goes. Runs on the progress thread inside UCX's progress, under the
// transport's lock: it must be quick and must not call into the transport.
using MessageSink =
    std::function<MessageTarget(std::span<const std::byte> header, size_t payload_bytes)>;

struct UcxOptions {
  // UCX transports to use, as UCX_TLS would take them: "tcp",
  // "posix,sysv,cma,self", ... The empty string means UCX's default (or the
  // UCX_TLS environment variable when it is set).
  std::string transports;
  // When true, a background thread drives the UCX worker: after each event
  // it polls for a while (50 ms while operations of this context are in
  // flight, 0.5 ms otherwise), then sleeps on the worker's event file
  // descriptor (ucp_worker_arm) until the next event, for at most 1 ms while
  // operations are in flight or within 1 s of the last event, and at most 1 s
  // otherwise (UCX's keepalive runs from progress). When the worker cannot
  // be armed (a transport without event support), those sleeps are plain
  // 1 ms / 5 ms timeouts, i.e. a bounded poll; transports_in_use() says which
  // ("wakeup=event-fd" or "wakeup=poll (reason)"). A store node (the passive side of one-sided operations that
  // UCX emulates over active messages, e.g. get over tcp) needs it. When
  // false, progress happens only inside Endpoint::WaitAll, so a passive side
  // without a progress thread stalls its peers.
  bool progress_thread = true;
  // Where peers may reach this worker over the network, "host[:port]":
  // UCX opens only the network interfaces holding `host` (UCX_NET_DEVICES,
  // so tcp listens on those alone; a wildcard host such as 0.0.0.0 keeps
  // them all) and its tcp transport listens on `port` (0 or none: any free
  // port). Empty: UCX's defaults, i.e. every interface. The UCX_NET_DEVICES
  // and UCX_TCP_PORT_RANGE environment variables, when set, win over the
  // host and the port (e.g. to name RDMA devices, which hold no IP address). Shared-memory transports are not
  // affected. InvalidArgument from Create for an address that does not
  // parse or resolve; NotFound when no interface of this host holds it.
  std::string data_listen;
  // Connect() completes UCX's wire-up with the peer before returning and
  // gives up (Unavailable) after this long.
  absl::Duration connect_timeout = absl::Seconds(10);
  // Aborting or destroying an endpoint force-closes it and waits this long
  // for UCX to cancel its operations in flight; operations UCX has not
  // completed by then are reported failed (Cancelled) and abandoned (see
  // Endpoint::WaitAll). Bounds every wait on a dead peer.
  absl::Duration close_timeout = absl::Seconds(1);
  // How often UCX probes peers that give no other sign of failure (a killed
  // process behind shared memory): the bound on detecting a dead peer there.
  // UCX's default is 20 s; the UCX_KEEPALIVE_INTERVAL environment variable,
  // when set, wins.
  absl::Duration keepalive_interval = absl::Seconds(1);
  // Whether peers may read and write this process's memory with one-sided
  // operations. UCX 1.13 does not confine a peer's one-sided operations to
  // the region a remote key describes: over tcp (RMA emulated over active
  // messages) and cma (process_vm_readv/writev) a peer that can connect
  // reaches any address of the process, with any remote key, forged ones
  // included. With false the context is created without UCX's RMA feature,
  // so it serves no one-sided operation at all (a peer's get or put is
  // dropped and never completes); Register() is then FailedPrecondition and
  // the context can only exchange messages (PostSend / on_message). A
  // context with false may still connect to peers and send to them.
  bool remote_access = true;
  // Receives the messages peers send with Endpoint::PostSend; null drops
  // them.
  MessageSink on_message;
  // Segment sizes of UCX's tcp transport (its TCP_TX_SEG_SIZE and
  // TCP_RX_SEG_SIZE). Over tcp UCX emulates one-sided operations with active
  // messages of at most one send segment each, and the peer acknowledges
  // every segment of a put; with UCX's defaults (8 KiB out, 64 KiB in) an
  // 8 MiB put is 1,024 messages and as many acknowledgements. UCX does not
  // negotiate the sizes: a peer must be able to receive what is sent to it,
  // and one whose receive segment is smaller than a segment it gets
  // misreads it (it overflows its receive buffer). Hence the defaults:
  // receive large segments (safe with any peer; a connection receiving one
  // holds a buffer of twice this size meanwhile) and send at most 64 KiB,
  // UCX's default receive size, unless the peer said it takes more (a store
  // node publishes tcp_receive_segment() in its node info and a client
  // raises its send segment to it). A send segment larger than the receive
  // segment is lowered to it (UCX requires send <= receive); 0 keeps UCX's
  // default. The UCX_TCP_TX_SEG_SIZE / UCX_TCP_RX_SEG_SIZE environment
  // variables, when set, win.
  size_t tcp_send_segment = size_t{64} << 10;
  size_t tcp_receive_segment = size_t{1} << 20;
};

// A local region registered with UCX so that peers can reach it with
// one-sided operations. Move-only owner (held by unique_ptr); deregisters on
// destruction. The registered bytes themselves stay owned by the caller and
// must outlive this object. Thread-safe (all methods are const).
class RegisteredMemory {
 public:
  virtual ~RegisteredMemory() = default;
  // Address of the first byte as the remote side uses it in PostGet/PostPut
  // (this process's virtual address).
  virtual uint64_t base() const = 0;
  virtual size_t size() const = 0;
  // Bytes to send to peers; they pass them, with base() and size() or a
  // sub-range of them, to Endpoint::ImportRemote.
  virtual std::string packed_rkey() const = 0;
};

// A peer's registered region (or a sub-range of it), unpacked for one
// Endpoint. Usable only with the Endpoint that imported it. Thread-safe.
class RemoteMemory {
 public:
  virtual ~RemoteMemory() = default;
  virtual uint64_t base() const = 0;
  virtual size_t size() const = 0;
};

// A connection to one peer worker, and one batch of RMA operations in flight:
// WaitAll() waits for every operation posted so far and reports the first
// error of the batch. A failed or partial transfer is an error; the caller
// must then treat the destination (local for a get, remote for a put) as
// unwritten.
//
// Buffers: the bytes of `local` must stay valid and untouched until the
// operation completes, i.e. until WaitAll() returns (whatever it returns) or
// the operation's callback ran. On timeout WaitAll aborts the endpoint before
// it returns; see WaitAll for operations UCX does not cancel in time.
//
// Thread-safe: several threads may post on one Endpoint and wait on it; note
// that WaitAll waits for the operations of every thread.
class Endpoint {
 public:
  // Per-operation completion, called exactly once with OK or the operation's
  // error (Unavailable when the peer is gone, Cancelled/DeadlineExceeded when
  // the endpoint was aborted). It runs on the context's progress thread (or
  // on a thread inside WaitAll when there is none), never inside Post*, and
  // without internal locks held: it may post further operations, but must
  // not block for long and must not destroy this Endpoint.
  using DoneCallback = std::function<void(absl::Status)>;

  // Aborts every operation in flight (bounded as in WaitAll) before
  // returning.
  virtual ~Endpoint() = default;

  // Imports a peer region described by its base address, size and packed
  // rkey (RegisteredMemory::packed_rkey of the peer). [base, base + size) may
  // be any sub-range of the registered region. InvalidArgument for a
  // malformed rkey or a range outside the region the rkey describes;
  // Unavailable when the endpoint has failed.
  virtual absl::StatusOr<std::unique_ptr<RemoteMemory>> ImportRemote(
      uint64_t base, size_t size, std::string_view packed_rkey) = 0;

  // Posts a one-sided read of local.size() bytes at remote address
  // `remote_addr` into `local` (non-blocking). `local` may be registered or
  // not. Errors (nothing posted, callback not called): OutOfRange when
  // [remote_addr, remote_addr + local.size()) is not within `remote`;
  // InvalidArgument for an empty `local` or a `remote` imported by another
  // endpoint; Unavailable when the endpoint has failed or was aborted.
  virtual absl::Status PostGet(std::span<std::byte> local,
                               const RemoteMemory& remote,
                               uint64_t remote_addr) = 0;
  virtual absl::Status PostGet(std::span<std::byte> local,
                               const RemoteMemory& remote,
                               uint64_t remote_addr, DoneCallback done) = 0;

  // Posts a one-sided write of `local` to `remote_addr`; same contract as
  // PostGet. Completion means the bytes are in the remote memory.
  virtual absl::Status PostPut(std::span<const std::byte> local,
                               const RemoteMemory& remote,
                               uint64_t remote_addr) = 0;
  virtual absl::Status PostPut(std::span<const std::byte> local,
                               const RemoteMemory& remote,
                               uint64_t remote_addr, DoneCallback done) = 0;

  // Waits until every operation posted so far has completed and returns the
  // first error among them (then starts a fresh batch). Unavailable when the
  // peer became unreachable or closed. When `timeout` passes first, aborts
  // the endpoint (every operation in flight fails, later posts return
  // Unavailable; reconnect to continue) and returns DeadlineExceeded.
  // Returns within `timeout` plus at most twice UcxOptions::close_timeout:
  // operations UCX does not cancel within close_timeout of the abort (UCX
  // can leave those of a dead peer pending forever) are reported Cancelled
  // and abandoned. An abandoned operation can still move bytes only if its
  // peer was merely stalled and resumes; its caller was told it failed and
  // must treat the destination as unwritten anyway.
  virtual absl::Status WaitAll(absl::Duration timeout) = 0;

  // Posts a two-sided message: `header` (copied; at most 1 KiB) and
  // `payload` (which must stay valid until `done` ran), delivered to the
  // peer's UcxOptions::on_message, which chooses where the payload lands.
  // The peer grants no memory access for it. `done` reports local
  // completion (the payload may be reused), not that the peer accepted it.
  // Errors as PostPut; InvalidArgument for a header over 1 KiB.
  virtual absl::Status PostSend(std::span<const std::byte> header,
                                std::span<const std::byte> payload, DoneCallback done) = 0;
};

// Owns the UCX context and worker (and the progress thread). Thread-safe:
// every method, and the objects it creates, may be used from several threads
// (calls into UCX are serialised internally around the worker).
class UcxContext {
 public:
  // InvalidArgument for transports UCX does not know; Unavailable when none
  // of them can be opened here; Internal for other UCX failures.
  // InvalidArgument too for UCX_TCP_TX_SEG_SIZE / UCX_TCP_RX_SEG_SIZE
  // variables that are not sizes, or a UCX_TCP_TX_SEG_SIZE larger than the
  // receive segment (see UcxOptions::tcp_send_segment).
  static absl::StatusOr<std::unique_ptr<UcxContext>> Create(
      const UcxOptions& options);
  virtual ~UcxContext() = default;

  // Packed worker address (Strata envelope around UCX's) to send to peers.
  virtual std::string worker_address() const = 0;

  // Registers `region` for remote access. REQUIRES: the region outlives the
  // returned object. InvalidArgument for an empty region;
  // ResourceExhausted when UCX cannot pin/map it.
  virtual absl::StatusOr<std::unique_ptr<RegisteredMemory>> Register(
      std::span<std::byte> region) = 0;

  // Creates an endpoint to a peer worker and completes the connection
  // (blocks up to options.connect_timeout; the peer's worker must progress).
  // InvalidArgument for bytes that are not a worker address produced by
  // worker_address(); Unavailable when the peer cannot be reached over the
  // configured transports or does not answer in time.
  virtual absl::StatusOr<std::unique_ptr<Endpoint>> Connect(
      std::string_view peer_worker_address) = 0;

  // The transports requested and the ones the worker opened, e.g.
  // "requested=tcp; opened=tcp/lo,tcp/eth0", for logs and stats.
  virtual std::string transports_in_use() const = 0;

  // The largest tcp segment this context receives (UcxOptions, or the
  // UCX_TCP_RX_SEG_SIZE environment variable when set): what peers may send
  // it over tcp.
  virtual size_t tcp_receive_segment() const = 0;
};

}  // namespace strata::transport

#endif  // STRATA_TRANSPORT_UCX_TRANSPORT_H_
