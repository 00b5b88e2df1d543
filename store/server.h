// StoreServer: a store node on the network. gRPC (proto/strata/v1) carries
// metadata; the bytes move by UCX one-sided RMA into and out of the engine's
// DRAM pool, which the server registers with UCX once at start.
#ifndef STRATA_STORE_SERVER_H_
#define STRATA_STORE_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/engine.h"

namespace strata::store {

struct ServerOptions {
  // host:port for gRPC; port 0 picks a free port (see StoreServer::port()).
  std::string listen_address = "127.0.0.1:7400";
  // Shown in node info and stats; defaults to the listen address.
  std::string node_id;
  // UCX transports for the data plane ("" = UCX's default or UCX_TLS).
  std::string ucx_transports;
  // Where the data plane may be reached over the network, "host[:port]"
  // (transport::UcxOptions::data_listen): UCX opens only the interfaces
  // holding the host (a wildcard host: all of them) and tcp listens on the
  // port (none or 0: any free port). Empty: the host of listen_address, so a
  // node listening on 127.0.0.1 is not reachable on its other interfaces.
  std::string data_listen;
  // Largest gRPC request accepted; larger ones fail with ResourceExhausted.
  int max_message_bytes = 8 << 20;
  // Most live namespaces one peer host may have registered since the node
  // started (registering an existing namespace is free); past it,
  // ResourceExhausted. 0: no limit.
  int max_namespaces_per_peer = 1024;
  // host:port for GET /metrics (Prometheus text format); empty: none; port 0
  // picks a free port (see StoreServer::metrics_port()).
  std::string metrics_listen;
  // Isolate tenants on the data plane (store/isolated_data_plane.h): grant
  // clients no remote access to the node's memory and move bytes as
  // two-sided messages; no shared pool is offered.
  bool isolate_tenants = false;

  // TLS on the gRPC port: PEM files of the node's certificate (chain) and its
  // private key; both or neither. Empty: plaintext (logged when the node
  // listens on anything but loopback).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Mutual TLS: only clients presenting a certificate signed by a CA in this
  // PEM file complete the handshake. Needs tls_cert_file.
  std::string tls_client_ca_file;
  // Tenants file (store/auth/tenants.h). Non-empty turns authentication on:
  // every call must carry a tenant token ("authorization: Bearer TOKEN"
  // metadata), a namespace belongs to the tenant that registered it, and
  // leases and hints to the calling tenant. Reloaded by ReloadTenants().
  // Quotas in the file (dram=, nvme=, hint_jobs=) bound each tenant's bytes
  // and hint sets (Engine::SetTenantQuotas).
  std::string tenants_file;
  // Most DRAM bytes one caller may hold reserved under open write leases
  // (the caller: its tenant with authentication, its host otherwise); past
  // it, PutBegin is ResourceExhausted for that caller only. 0: half the DRAM
  // pool.
  uint64_t max_put_reservation_bytes = 0;
};

// Thread-safe. Destroying a running server shuts it down with no grace.
class StoreServer {
 public:
  // Takes ownership of the engine. Unavailable when the address cannot be
  // bound; errors of UCX set-up as the transport reports them.
  static absl::StatusOr<std::unique_ptr<StoreServer>> Start(std::unique_ptr<Engine> engine,
                                                            const ServerOptions& options);
  virtual ~StoreServer() = default;

  virtual int port() const = 0;
  // "host:port" that clients connect to.
  virtual std::string address() const = 0;
  virtual std::string ucx_transports() const = 0;
  // The node id in node info (ServerOptions::node_id or its default).
  virtual std::string node_id() const = 0;
  // The server version in node info, e.g. "strata-0.2".
  virtual std::string server_version() const = 0;
  // The bound metrics port; 0 without --metrics_listen.
  virtual int metrics_port() const = 0;
  // Whether calls are authenticated (ServerOptions::tenants_file).
  virtual bool authentication() const = 0;
  // Whether the gRPC port speaks TLS.
  virtual bool tls() const = 0;

  // Reads the tenants file again and uses it for the calls that follow
  // (tokens added, rotated or revoked; quotas changed, applied at once:
  // Engine::SetTenantQuotas). On an error the
  // table in use stays. FailedPrecondition without a tenants file; the
  // file's errors (NotFound, InvalidArgument naming the line) otherwise.
  // Namespaces of a tenant that left stay stored but no token reaches them.
  virtual absl::Status ReloadTenants() = 0;

  // Graceful stop: refuses new gets and puts (Unavailable), waits up to
  // `grace` for outstanding leases to be released or committed, stops gRPC,
  // flushes write-back and closes the engine (RocksDB) cleanly. Idempotent.
  virtual absl::Status Shutdown(absl::Duration grace) = 0;
};

}  // namespace strata::store

#endif  // STRATA_STORE_SERVER_H_
