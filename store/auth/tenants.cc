#include "store/auth/tenants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace strata::auth {
namespace {

constexpr size_t kMaxTenantName = 64;
constexpr size_t kSaltBytes = 16;
constexpr size_t kSecretBytes = 32;

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Sha256(std::string_view salt, std::string_view token) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, salt.data(), salt.size());
  EVP_DigestUpdate(ctx, token.data(), token.size());
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool IsLowerHex(absl::string_view s) {
  if (s.empty() || s.size() % 2 != 0) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // RAND_bytes fails only without an entropy source; never hand out a
    // predictable secret.
    std::abort();
  }
  return out;
}

// "4GiB", "512MiB", "1048576" (binary suffixes only).
absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  uint64_t number = 0;
  if (digits == 0 || !absl::SimpleAtoi(text.substr(0, digits), &number)) {
    return absl::InvalidArgumentError("not a byte size");
  }
  const absl::string_view unit = text.substr(digits);
  int shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "KiB") {
    shift = 10;
  } else if (unit == "MiB") {
    shift = 20;
  } else if (unit == "GiB") {
    shift = 30;
  } else if (unit == "TiB") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError("unknown unit (use B, KiB, MiB, GiB or TiB)");
  }
  if (shift > 0 && number > (UINT64_MAX >> shift)) return absl::InvalidArgumentError("too large");
  return number << shift;
}

}  // namespace

absl::Status ValidateTenantName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTenantName) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant name must be 1 to ", kMaxTenantName, " characters"));
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "tenant name '", AsAbsl(name), "' may hold only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantTable> TenantTable::Parse(std::string_view text, std::string_view source) {
  TenantTable table;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(AsAbsl(text), '\n')) {
    ++line_no;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(source), ":", line_no, ": ", why));
    };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty() || fields[0][0] == '#') continue;
    if (fields.size() < 2) {
      return bad("expected: TENANT sha256:SALT:HASH [dram=SIZE] [nvme=SIZE] [hint_jobs=N]");
    }
    TenantEntry entry;
    entry.name = std::string(fields[0]);
    if (absl::Status s = ValidateTenantName(entry.name); !s.ok()) return bad(s.message());
    if (table.tenants_.count(entry.name) != 0) {
      return bad(absl::StrCat("tenant '", entry.name, "' is listed twice"));
    }
    for (absl::string_view h : absl::StrSplit(fields[1], ',')) {
      std::vector<absl::string_view> parts = absl::StrSplit(h, ':');
      if (parts.size() != 3 || parts[0] != "sha256" || !IsLowerHex(parts[1]) ||
          parts[2].size() != 64 || !IsLowerHex(parts[2])) {
        return bad(absl::StrCat("token hash '", h,
                                "' is not sha256:SALT_HEX:HASH_HEX (64 lowercase hex digits of "
                                "hash; `strata token` writes one)"));
      }
      entry.hashes.emplace_back(absl::HexStringToBytes(parts[1]),
                                absl::HexStringToBytes(parts[2]));
    }
    std::vector<absl::string_view> given;
    for (size_t i = 2; i < fields.size(); ++i) {
      // (A pair takes the first two pieces of a split: "dram=1=2" would
      // read as dram=1.)
      if (std::count(fields[i].begin(), fields[i].end(), '=') > 1) {
        return bad(absl::StrCat(fields[i], ": more than one '=' (quotas: dram=SIZE nvme=SIZE "
                                           "hint_jobs=N)"));
      }
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(fields[i], '=');
      uint64_t* target = nullptr;
      bool is_size = true;
      if (kv.first == "dram") {
        target = &entry.quota.dram_bytes;
      } else if (kv.first == "nvme") {
        target = &entry.quota.nvme_bytes;
      } else if (kv.first == "hint_jobs") {
        target = &entry.quota.hint_jobs;
        is_size = false;
      } else {
        return bad(absl::StrCat("unknown field '", fields[i],
                                "' (quotas: dram=SIZE nvme=SIZE hint_jobs=N)"));
      }
      if (std::find(given.begin(), given.end(), kv.first) != given.end()) {
        return bad(absl::StrCat(kv.first, "= is given twice"));
      }
      given.push_back(kv.first);
      if (is_size) {
        auto size = ParseSize(kv.second);
        if (!size.ok()) return bad(absl::StrCat(fields[i], ": ", size.status().message()));
        *target = *size;
      } else if (kv.second.empty() ||
                 !std::all_of(kv.second.begin(), kv.second.end(),
                              [](char c) { return c >= '0' && c <= '9'; }) ||
                 !absl::SimpleAtoi(kv.second, target)) {
        return bad(absl::StrCat(fields[i], ": not a count of jobs"));
      }
    }
    table.tenants_.emplace(entry.name, std::move(entry));
  }
  return table;
}

absl::StatusOr<TenantTable> TenantTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string msg = absl::StrCat("tenants file ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<std::string> TenantTable::Authenticate(std::string_view token) const {
  const absl::Status refused = absl::UnauthenticatedError(
      "the token is not valid for any tenant of this node (unknown tenant, or a wrong or "
      "revoked token)");
  const size_t colon = token.find(':');
  if (colon == std::string_view::npos) {
    return absl::UnauthenticatedError("malformed token: expected TENANT:SECRET");
  }
  const TenantEntry* entry = Find(token.substr(0, colon));
  if (entry == nullptr) return refused;
  bool match = false;
  for (const auto& [salt, hash] : entry->hashes) {
    const std::string got = Sha256(salt, token);
    match |= got.size() == hash.size() && CRYPTO_memcmp(got.data(), hash.data(), got.size()) == 0;
  }
  if (!match) return refused;
  return entry->name;
}

const TenantEntry* TenantTable::Find(std::string_view name) const {
  auto it = tenants_.find(name);
  return it == tenants_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::string> NewToken(std::string_view tenant) {
  if (absl::Status s = ValidateTenantName(tenant); !s.ok()) return s;
  return absl::StrCat(AsAbsl(tenant), ":", absl::BytesToHexString(RandomBytes(kSecretBytes)));
}

std::string HashTokenWithSalt(std::string_view token, std::string_view salt) {
  return absl::StrCat("sha256:", absl::BytesToHexString(AsAbsl(salt)), ":",
                      absl::BytesToHexString(Sha256(salt, token)));
}

std::string HashToken(std::string_view token) {
  return HashTokenWithSalt(token, RandomBytes(kSaltBytes));
}

}  // namespace strata::auth
