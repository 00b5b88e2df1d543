// Fuzzes the tenants file parser (store/auth/tenants.h): TenantTable::Parse
// on any text returns a table or InvalidArgument naming the source, never
// crashes. A table it accepts agrees with a second, plain reading of the
// format done here: the same tenants, each with a valid name, one parsed
// hash per listed hash (raw salt of half its hex digits, raw hash of 32
// bytes) and the quotas the line gives. Tokens derived from the input
// authenticate to a tenant of the table or are Unauthenticated; a line added
// for a new tenant, with a token hashed by HashTokenWithSalt, parses and
// authenticates that token to that tenant.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/auth/tenants.h"

namespace {

using strata::auth::TenantEntry;
using strata::auth::TenantTable;

constexpr char kSource[] = "fuzz-tenants";

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "tenants_fuzzer: %s\n", what);
  std::abort();
}

std::vector<std::string_view> Split(std::string_view s, std::string_view separators,
                                    bool skip_empty) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || separators.find(s[i]) != std::string_view::npos) {
      if (!skip_empty || i > start) out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// A decimal number that fits 64 bits, shifted left by `shift` without
// overflow; nullopt otherwise.
std::optional<uint64_t> Number(std::string_view digits, int shift) {
  if (!AllDigits(digits)) return std::nullopt;
  uint64_t n = 0;
  for (char c : digits) {
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return std::nullopt;
    n = n * 10 + d;
  }
  if (shift > 0 && n > (UINT64_MAX >> shift)) return std::nullopt;
  return n << shift;
}

std::optional<uint64_t> Size(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    int shift;
  };
  for (const Unit& u : {Unit{"KiB", 10}, Unit{"MiB", 20}, Unit{"GiB", 30}, Unit{"TiB", 40},
                        Unit{"B", 0}}) {
    if (text.size() > u.suffix.size() && text.ends_with(u.suffix)) {
      return Number(text.substr(0, text.size() - u.suffix.size()), u.shift);
    }
  }
  return Number(text, 0);
}

// What the plain reading expects of one accepted tenant's line.
struct Expected {
  std::string name;
  std::vector<size_t> salt_bytes;  // per hash, in order
  strata::auth::TenantQuota quota;
};

// The plain reading of a line that Parse accepted: nullopt for a blank or
// comment line; aborts where the line should not have been accepted.
std::optional<Expected> ReadAcceptedLine(std::string_view line) {
  const std::vector<std::string_view> fields = Split(line, " \t\r", /*skip_empty=*/true);
  if (fields.empty() || fields[0][0] == '#') return std::nullopt;
  Check(fields.size() >= 2, "accepted a line without token hashes");
  Expected e;
  e.name = std::string(fields[0]);
  Check(strata::auth::ValidateTenantName(e.name).ok(), "accepted an invalid tenant name");
  for (std::string_view h : Split(fields[1], ",", /*skip_empty=*/false)) {
    const std::vector<std::string_view> parts = Split(h, ":", /*skip_empty=*/false);
    Check(parts.size() == 3 && parts[0] == "sha256", "accepted a hash not of sha256:SALT:HASH");
    for (std::string_view hex : {parts[1], parts[2]}) {
      Check(!hex.empty() && hex.size() % 2 == 0, "accepted a hex field of odd or zero length");
      for (char c : hex) {
        Check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), "accepted a non-hex digit");
      }
    }
    Check(parts[2].size() == 64, "accepted a hash that is not 64 hex digits");
    e.salt_bytes.push_back(parts[1].size() / 2);
  }
  bool seen[3] = {false, false, false};
  for (size_t i = 2; i < fields.size(); ++i) {
    const std::vector<std::string_view> kv = Split(fields[i], "=", /*skip_empty=*/false);
    Check(kv.size() == 2, "accepted a quota field that is not one NAME=VALUE");
    std::optional<uint64_t> value;
    int which = -1;
    if (kv[0] == "dram") {
      which = 0;
      value = Size(kv[1]);
      if (value) e.quota.dram_bytes = *value;
    } else if (kv[0] == "nvme") {
      which = 1;
      value = Size(kv[1]);
      if (value) e.quota.nvme_bytes = *value;
    } else if (kv[0] == "hint_jobs") {
      which = 2;
      value = Number(kv[1], 0);
      if (value) e.quota.hint_jobs = *value;
    }
    Check(which >= 0, "accepted an unknown quota field");
    Check(value.has_value(), "accepted a quota value that does not parse");
    Check(!seen[which], "accepted a quota field given twice");
    seen[which] = true;
  }
  return e;
}

// Aborts unless `table` is what the plain reading of `text` gives.
void CheckTable(const TenantTable& table, std::string_view text) {
  size_t tenants = 0;
  for (std::string_view line : Split(text, "\n", /*skip_empty=*/false)) {
    const std::optional<Expected> e = ReadAcceptedLine(line);
    if (!e) continue;
    ++tenants;
    const TenantEntry* entry = table.Find(e->name);
    Check(entry != nullptr && entry->name == e->name, "a tenant of the file is not in the table");
    Check(entry->hashes.size() == e->salt_bytes.size(), "a tenant with another number of hashes");
    for (size_t i = 0; i < entry->hashes.size(); ++i) {
      Check(entry->hashes[i].first.size() == e->salt_bytes[i], "a salt of the wrong size");
      Check(entry->hashes[i].second.size() == 32, "a hash that is not 32 bytes");
    }
    Check(entry->quota.dram_bytes == e->quota.dram_bytes &&
              entry->quota.nvme_bytes == e->quota.nvme_bytes &&
              entry->quota.hint_jobs == e->quota.hint_jobs,
          "quotas other than the line gives");
  }
  Check(table.size() == tenants, "the table holds tenants the file does not list (or twice)");
}

void CheckAuthenticate(const TenantTable& table, std::string_view token) {
  absl::StatusOr<std::string> who = table.Authenticate(token);
  if (who.ok()) {
    Check(table.Find(*who) != nullptr, "authenticated to a tenant not in the table");
    Check(token.substr(0, token.find(':')) == *who, "authenticated to another tenant than named");
  } else {
    Check(who.status().code() == absl::StatusCode::kUnauthenticated,
          "a refused token that is not Unauthenticated");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<TenantTable> table = TenantTable::Parse(text, kSource);
  if (!table.ok()) {
    Check(table.status().code() == absl::StatusCode::kInvalidArgument,
          "a parse error other than InvalidArgument");
    Check(std::string(table.status().message()).find(kSource) != std::string::npos,
          "a parse error that does not name the source");
    return 0;
  }
  CheckTable(*table, text);

  // Tokens from the input: the whole text, and each tenant's name with a
  // secret cut from the input.
  CheckAuthenticate(*table, text);
  const std::string_view secret = text.substr(0, std::min<size_t>(size, 40));
  for (const auto& [name, entry] : table->tenants()) {
    CheckAuthenticate(*table, name + ":" + std::string(secret));
    CheckAuthenticate(*table, name);
  }

  // A new tenant's line appended: it parses and its token authenticates.
  std::string name = "added";
  while (table->Find(name) != nullptr) name += "x";
  const std::string token = name + ":" + std::string(secret);
  const std::string salt = size > 0 ? std::string(text.substr(size / 2, 16)) : "s";
  std::string grown(text);
  if (!grown.empty() && grown.back() != '\n') grown += '\n';
  grown += name + " " + strata::auth::HashTokenWithSalt(token, salt) + " dram=1MiB\n";
  absl::StatusOr<TenantTable> again = TenantTable::Parse(grown, kSource);
  Check(again.ok(), "a valid line appended to an accepted file is refused");
  CheckTable(*again, grown);
  absl::StatusOr<std::string> who = again->Authenticate(token);
  Check(who.ok() && *who == name, "the added tenant's token does not authenticate it");
  Check(again->Find(name)->quota.dram_bytes == 1 << 20, "the added tenant's quota is not 1 MiB");
  return 0;
}
