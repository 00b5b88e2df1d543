// Tenants of a store node and their tokens: the tenants file that turns
// authentication on (strata serve --tenants FILE).
//
// A token is "TENANT:SECRET"; the node keeps only a salted SHA-256 of it:
//
//   # tenant   token hashes (comma-separated)    quotas (optional)
//   team-a     sha256:SALT_HEX:HASH_HEX          dram=4GiB nvme=100GiB hint_jobs=512
//
// HASH = SHA-256(SALT || token bytes), both lowercase hex. A tenant may list
// several hashes (to rotate a token: add the new one, reload, move clients
// over, remove the old one, reload). Blank lines and lines starting with '#'
// are ignored. Quotas: dram= and nvme= take a byte size (B, KiB, MiB, GiB,
// TiB; no suffix: bytes), hint_jobs= a count (jobs in one scheduler's hint
// set); each at most once per line. A quota of 0 or none means no limit.
#ifndef STRATA_STORE_AUTH_TENANTS_H_
#define STRATA_STORE_AUTH_TENANTS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::auth {

// Tenant names: 1 to 64 of [A-Za-z0-9._-]. InvalidArgument otherwise.
absl::Status ValidateTenantName(std::string_view name);

struct TenantQuota {
  uint64_t dram_bytes = 0;  // 0: no limit
  uint64_t nvme_bytes = 0;  // 0: no limit
  uint64_t hint_jobs = 0;   // 0: no limit
};

struct TenantEntry {
  std::string name;
  // Each "sha256:SALT_HEX:HASH_HEX", parsed: raw salt and raw hash.
  std::vector<std::pair<std::string, std::string>> hashes;
  TenantQuota quota;
};

// An immutable table of tenants; safe for concurrent use.
class TenantTable {
 public:
  // Parses the file format above. InvalidArgument naming `source` and the
  // line for a malformed line, a bad name or hash, an unknown, bad or
  // repeated quota, or a tenant listed twice.
  static absl::StatusOr<TenantTable> Parse(std::string_view text, std::string_view source);
  // Reads and parses `path`. NotFound / PermissionDenied naming the file when
  // it cannot be read; Parse's errors otherwise.
  static absl::StatusOr<TenantTable> Load(const std::string& path);

  // The tenant a token authenticates. Unauthenticated (never saying whether
  // the tenant exists) for an empty, malformed, unknown or wrong token.
  absl::StatusOr<std::string> Authenticate(std::string_view token) const;
  // The tenant's entry, or null.
  const TenantEntry* Find(std::string_view name) const;
  size_t size() const { return tenants_.size(); }
  const std::map<std::string, TenantEntry, std::less<>>& tenants() const { return tenants_; }

 private:
  std::map<std::string, TenantEntry, std::less<>> tenants_;
};

// A fresh token for `tenant`: "TENANT:" and 64 random hex digits (256 bits
// from the OS). InvalidArgument for a bad tenant name.
absl::StatusOr<std::string> NewToken(std::string_view tenant);
// The tenants-file field for `token` with a fresh random salt:
// "sha256:SALT_HEX:HASH_HEX".
std::string HashToken(std::string_view token);
// The same with a given salt (for tests and test vectors).
std::string HashTokenWithSalt(std::string_view token, std::string_view salt);

}  // namespace strata::auth

#endif  // STRATA_STORE_AUTH_TENANTS_H_
