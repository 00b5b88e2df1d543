// A Client that outlives restarts of its node (ClientOptions::reconnect).
//
// It forwards every call to a connection (a Client of one node
// incarnation). When that connection says the node restarted
// (Client::node_restarted(): an answer named another incarnation), it
// connects anew with the same options, registers again each namespace this
// client registered (on first use after the reconnect), and retries the call
// that found out, once. Loads and saves learn of a restart before any byte
// moves, so a retry repeats nothing that took effect.
//
// Namespace ids: the id a caller sees is the one the node gave at the first
// registration of (spec, tenant) through this client (another unused id if a
// restarted node reused it for something else), and stays valid across
// reconnects; the client translates it to the current connection's. A
// namespace removed through this client (RemoveNamespace) is NotFound and is
// not registered again by a reconnect, until the caller registers it again.
//
// Transfers and mapped chunks keep the connection that started them alive
// until they are gone; a connection no longer used is closed on a later call
// (never on a transfer's callback thread).
#ifndef STRATA_CLIENT_RECONNECTING_CLIENT_H_
#define STRATA_CLIENT_RECONNECTING_CLIENT_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "client/client.h"

namespace strata::client {

using ConnectFn = std::function<absl::StatusOr<std::unique_ptr<Client>>(const ClientOptions&)>;

// Wraps `first` (connected with `options` by `connect`), reconnecting with
// `connect`.
std::unique_ptr<Client> NewReconnectingClient(const ClientOptions& options,
                                              std::unique_ptr<Client> first, ConnectFn connect);

}  // namespace strata::client

#endif  // STRATA_CLIENT_RECONNECTING_CLIENT_H_
