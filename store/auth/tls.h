// TLS material of a node's gRPC port, read from PEM files and checked before
// gRPC sees it, so that a bad file is named in a clear error at start-up.
#ifndef STRATA_STORE_AUTH_TLS_H_
#define STRATA_STORE_AUTH_TLS_H_

#include <string>

#include "absl/status/statusor.h"

namespace strata::auth {

struct ServerTlsPem {
  std::string cert_chain;   // the node's certificate, then any intermediates
  std::string private_key;
  std::string client_ca;    // empty: clients present no certificate
};

// Reads and checks the files: NotFound / PermissionDenied naming a file that
// cannot be read; InvalidArgument for a file that holds no PEM certificate
// (or key), or a key that does not belong to the certificate.
absl::StatusOr<ServerTlsPem> LoadServerTls(const std::string& cert_file,
                                           const std::string& key_file,
                                           const std::string& client_ca_file);

// A client's TLS material: the CA(s) of the node's certificate and, for
// mutual TLS, the client's certificate (chain) and key.
struct ClientTlsPem {
  std::string root_certs;
  std::string cert_chain;   // empty: no client certificate
  std::string private_key;
};

// Reads and checks the files (cert_file and key_file both empty or both
// set): the same errors as LoadServerTls, naming the client's options
// (tls_ca_file, tls_cert_file, tls_key_file).
absl::StatusOr<ClientTlsPem> LoadClientTls(const std::string& ca_file,
                                           const std::string& cert_file,
                                           const std::string& key_file);

// A whole file: NotFound / PermissionDenied / Unavailable naming `what` and
// the path when it cannot be read.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, const char* what);

}  // namespace strata::auth

#endif  // STRATA_STORE_AUTH_TLS_H_
