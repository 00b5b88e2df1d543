#include "tools/cli/flags.h"

#include <cctype>
#include <cinttypes>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace strata::cli {
namespace {

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string DefaultText(const std::variant<std::string*, int64_t*, double*, bool*, Bytes*,
                                           absl::Duration*>& target) {
  struct Visitor {
    std::string operator()(std::string* v) const { return v->empty() ? "\"\"" : *v; }
    std::string operator()(int64_t* v) const { return absl::StrCat(*v); }
    std::string operator()(double* v) const { return absl::StrCat(*v); }
    std::string operator()(bool* v) const { return *v ? "true" : "false"; }
    std::string operator()(Bytes* v) const { return FormatBytes(v->value); }
    std::string operator()(absl::Duration* v) const { return absl::FormatDuration(*v); }
  };
  return std::visit(Visitor{}, target);
}

}  // namespace

absl::StatusOr<uint64_t> ParseBytes(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) ||
                                   text[digits] == '.')) {
    ++digits;
  }
  double number;
  if (digits == 0 || !absl::SimpleAtod(AsAbsl(text.substr(0, digits)), &number)) {
    return absl::InvalidArgumentError(absl::StrCat("'", AsAbsl(text), "' is not a byte size"));
  }
  std::string unit(text.substr(digits));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  uint64_t scale;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else if (unit == "k" || unit == "kib" || unit == "kb") {
    scale = uint64_t{1} << 10;
  } else if (unit == "m" || unit == "mib" || unit == "mb") {
    scale = uint64_t{1} << 20;
  } else if (unit == "g" || unit == "gib" || unit == "gb") {
    scale = uint64_t{1} << 30;
  } else if (unit == "t" || unit == "tib" || unit == "tb") {
    scale = uint64_t{1} << 40;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", AsAbsl(text),
                                                   "' has an unknown unit (use KiB, MiB, GiB, TiB)"));
  }
  const double bytes = number * static_cast<double>(scale);
  if (bytes >= 1.8e19) {
    return absl::InvalidArgumentError(absl::StrCat("'", AsAbsl(text), "' is too large"));
  }
  return static_cast<uint64_t>(bytes);
}

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (v == static_cast<uint64_t>(v)) return absl::StrCat(static_cast<uint64_t>(v), units[u]);
  return absl::StrFormat("%.1f%s", v, units[u]);
}

void FlagSet::Add(std::string name, std::string help, std::string* t) {
  flags_.push_back({std::move(name), std::move(help), DefaultText(t), t});
}
void FlagSet::Add(std::string name, std::string help, int64_t* t) {
  flags_.push_back({std::move(name), std::move(help), DefaultText(t), t});
}
void FlagSet::Add(std::string name, std::string help, double* t) {
  flags_.push_back({std::move(name), std::move(help), DefaultText(t), t});
}
void FlagSet::Add(std::string name, std::string help, bool* t) {
  flags_.push_back({std::move(name), std::move(help), DefaultText(t), t});
}
void FlagSet::Add(std::string name, std::string help, Bytes* t) {
  flags_.push_back({std::move(name), std::move(help), DefaultText(t), t});
}
void FlagSet::Add(std::string name, std::string help, absl::Duration* t) {
  flags_.push_back({std::move(name), std::move(help), DefaultText(t), t});
}

FlagSet::Flag* FlagSet::Find(std::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status FlagSet::Set(Flag& flag, std::string_view value) {
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag.name, "=", AsAbsl(value),
                                                   ": expected ", AsAbsl(what)));
  };
  if (auto* s = std::get_if<std::string*>(&flag.target)) {
    **s = std::string(value);
  } else if (auto* i = std::get_if<int64_t*>(&flag.target)) {
    int64_t parsed;
    if (!absl::SimpleAtoi(AsAbsl(value), &parsed)) return bad("an integer");
    **i = parsed;
  } else if (auto* d = std::get_if<double*>(&flag.target)) {
    double parsed;
    if (!absl::SimpleAtod(AsAbsl(value), &parsed)) return bad("a number");
    **d = parsed;
  } else if (auto* b = std::get_if<bool*>(&flag.target)) {
    if (value == "true" || value == "1") {
      **b = true;
    } else if (value == "false" || value == "0") {
      **b = false;
    } else {
      return bad("true or false");
    }
  } else if (auto* bytes = std::get_if<Bytes*>(&flag.target)) {
    auto parsed = ParseBytes(value);
    if (!parsed.ok()) return bad("a byte size such as 512MiB or 4GiB");
    (*bytes)->value = *parsed;
  } else if (auto* dur = std::get_if<absl::Duration*>(&flag.target)) {
    absl::Duration parsed;
    if (!absl::ParseDuration(AsAbsl(value), &parsed)) {
      return bad("a duration such as 30s or 500ms");
    }
    **dur = parsed;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = Find(name);
    if (flag == nullptr && !has_value && name.rfind("no", 0) == 0) {
      Flag* negated = Find(name.substr(2));
      if (negated != nullptr && std::holds_alternative<bool*>(negated->target)) {
        *std::get<bool*>(negated->target) = false;
        continue;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!has_value) {
      if (std::holds_alternative<bool*>(flag->target)) {
        *std::get<bool*>(flag->target) = true;
        continue;
      }
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (absl::Status s = Set(*flag, value); !s.ok()) return s;
  }
  return positional;
}

std::string FlagSet::Help() const {
  std::string out = usage_ + "\n\nFlags:\n";
  for (const Flag& f : flags_) {
    absl::StrAppend(&out, "  --", f.name, "  (default: ", f.default_text, ")\n      ", f.help,
                    "\n");
  }
  return out;
}

}  // namespace strata::cli
