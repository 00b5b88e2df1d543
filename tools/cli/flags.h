// A small command-line flag parser for Strata's binaries: `--name=value` or
// `--name value`, booleans as `--name` / `--noname`, sizes with binary
// suffixes (KiB, MiB, GiB, TiB; K, M, G, T), durations as absl parses them
// ("30s", "500ms"). `--help` prints every flag with its help and default.
#ifndef STRATA_TOOLS_CLI_FLAGS_H_
#define STRATA_TOOLS_CLI_FLAGS_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace strata::cli {

// A byte count parsed from "4GiB", "512M", "1048576".
struct Bytes {
  uint64_t value = 0;
};
absl::StatusOr<uint64_t> ParseBytes(std::string_view text);
std::string FormatBytes(uint64_t bytes);

// Not thread-safe; used once at start-up.
class FlagSet {
 public:
  explicit FlagSet(std::string usage) : usage_(std::move(usage)) {}

  // Registers a flag bound to `*target`, whose current value is the default.
  // `target` must outlive Parse().
  void Add(std::string name, std::string help, std::string* target);
  void Add(std::string name, std::string help, int64_t* target);
  void Add(std::string name, std::string help, double* target);
  void Add(std::string name, std::string help, bool* target);
  void Add(std::string name, std::string help, Bytes* target);
  void Add(std::string name, std::string help, absl::Duration* target);

  // Parses args (without the program and subcommand names). InvalidArgument
  // names the offending flag; positional arguments are returned in order.
  // Sets help_requested() on --help / -h.
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_; }
  std::string Help() const;

 private:
  using Target = std::variant<std::string*, int64_t*, double*, bool*, Bytes*, absl::Duration*>;
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    Target target;
  };
  absl::Status Set(Flag& flag, std::string_view value);
  Flag* Find(std::string_view name);

  std::string usage_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace strata::cli

#endif  // STRATA_TOOLS_CLI_FLAGS_H_
