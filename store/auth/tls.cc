#include "store/auth/tls.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace strata::auth {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> Bio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of `pem`, or null.
std::unique_ptr<X509, X509Free> FirstCert(const std::string& pem) {
  auto bio = Bio(pem);
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

}  // namespace

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<ServerTlsPem> LoadServerTls(const std::string& cert_file,
                                           const std::string& key_file,
                                           const std::string& client_ca_file) {
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate (--tls_cert) and its key "
                                      "(--tls_key)");
  }
  ServerTlsPem pem;
  auto cert = ReadWholeFile(cert_file, "TLS certificate");
  if (!cert.ok()) return cert.status();
  pem.cert_chain = *std::move(cert);
  auto key = ReadWholeFile(key_file, "TLS key");
  if (!key.ok()) return key.status();
  pem.private_key = *std::move(key);
  auto x509 = FirstCert(pem.cert_chain);
  if (x509 == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", cert_file, " holds no PEM certificate"));
  }
  auto key_bio = Bio(pem.private_key);
  std::unique_ptr<EVP_PKEY, KeyFree> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key ", key_file, " holds no PEM private key (or it is encrypted)"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", key_file,
                                                   " does not belong to the certificate in ",
                                                   cert_file));
  }
  if (!client_ca_file.empty()) {
    auto ca = ReadWholeFile(client_ca_file, "TLS client CA");
    if (!ca.ok()) return ca.status();
    pem.client_ca = *std::move(ca);
    if (FirstCert(pem.client_ca) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS client CA ", client_ca_file, " holds no PEM certificate"));
    }
  }
  return pem;
}

absl::StatusOr<ClientTlsPem> LoadClientTls(const std::string& ca_file,
                                           const std::string& cert_file,
                                           const std::string& key_file) {
  ClientTlsPem pem;
  auto ca = ReadWholeFile(ca_file, "TLS CA (tls_ca_file)");
  if (!ca.ok()) return ca.status();
  pem.root_certs = *std::move(ca);
  if (FirstCert(pem.root_certs) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS CA (tls_ca_file) ", ca_file, " holds no PEM certificate"));
  }
  if (cert_file.empty() && key_file.empty()) return pem;
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both tls_cert_file and tls_key_file");
  }
  auto cert = ReadWholeFile(cert_file, "TLS client certificate (tls_cert_file)");
  if (!cert.ok()) return cert.status();
  pem.cert_chain = *std::move(cert);
  auto key = ReadWholeFile(key_file, "TLS client key (tls_key_file)");
  if (!key.ok()) return key.status();
  pem.private_key = *std::move(key);
  auto x509 = FirstCert(pem.cert_chain);
  if (x509 == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("TLS client certificate (tls_cert_file) ",
                                                   cert_file, " holds no PEM certificate"));
  }
  auto key_bio = Bio(pem.private_key);
  std::unique_ptr<EVP_PKEY, KeyFree> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS client key (tls_key_file) ", key_file, " holds no PEM private key (or it is encrypted)"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS client key (tls_key_file) ", key_file,
                                                   " does not belong to the certificate in ",
                                                   cert_file));
  }
  return pem;
}

}  // namespace strata::auth
