#include "eviction/sim/trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace strata::eviction::sim {
namespace {

constexpr absl::string_view kHeader = "strata-trace 1";

uint32_t Clamp(double x, uint32_t max) {
  return static_cast<uint32_t>(std::clamp(std::round(x), 4.0, static_cast<double>(max)));
}

absl::Status LineError(size_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("trace line ", line, ": ", what));
}

}  // namespace

absl::StatusOr<Trace> GenerateTrace(const GeneratorOptions& o) {
  if (o.sessions == 0) return absl::InvalidArgumentError("sessions must be > 0");
  if (!(o.arrival_rate > 0)) return absl::InvalidArgumentError("arrival_rate must be > 0");
  if (!(o.mean_turns >= 1) || o.max_turns == 0) {
    return absl::InvalidArgumentError("mean_turns must be >= 1 and max_turns > 0");
  }
  if (!(o.mean_think_s >= 0)) return absl::InvalidArgumentError("mean_think_s must be >= 0");
  if (!(o.prompt_median >= 1) || !(o.response_median >= 1) || o.prompt_sigma < 0 ||
      o.response_sigma < 0) {
    return absl::InvalidArgumentError("token medians must be >= 1 and sigmas >= 0");
  }
  if (o.system_tokens.empty() || o.system_tokens.size() != o.system_weights.size()) {
    return absl::InvalidArgumentError("system_tokens and system_weights: same non-zero size");
  }
  for (double w : o.system_weights) {
    if (!(w >= 0)) return absl::InvalidArgumentError("system_weights must be >= 0");
  }

  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.arrival_rate);
  // 1 + geometric with mean mean_turns - 1.
  std::geometric_distribution<uint32_t> extra_turns(1.0 / o.mean_turns);
  std::lognormal_distribution<double> prompt(std::log(o.prompt_median), o.prompt_sigma);
  std::lognormal_distribution<double> response(std::log(o.response_median), o.response_sigma);
  std::exponential_distribution<double> think(o.mean_think_s > 0 ? 1.0 / o.mean_think_s : 1.0);
  std::discrete_distribution<uint32_t> system(o.system_weights.begin(), o.system_weights.end());

  Trace trace;
  for (uint32_t tokens : o.system_tokens) trace.systems.push_back({tokens});
  double now = 0;
  for (uint32_t s = 0; s < o.sessions; ++s) {
    now += gap(rng);
    Session session;
    session.arrival_s = now;
    session.system_id = system(rng);
    const uint32_t turns = std::min(o.max_turns, 1 + extra_turns(rng));
    uint64_t context = trace.systems[session.system_id].tokens;
    for (uint32_t t = 0; t < turns; ++t) {
      Turn turn;
      turn.think_s = t == 0 || o.mean_think_s == 0 ? 0 : think(rng);
      turn.prompt_tokens = Clamp(prompt(rng), o.prompt_max);
      turn.response_tokens = Clamp(response(rng), o.response_max);
      context += turn.prompt_tokens + turn.response_tokens;
      if (t > 0 && context > o.max_context_tokens) break;
      session.turns.push_back(turn);
    }
    trace.sessions.push_back(std::move(session));
  }
  return trace;
}

absl::Status ValidateTrace(const Trace& trace) {
  double last_arrival = 0;
  for (size_t s = 0; s < trace.sessions.size(); ++s) {
    const Session& session = trace.sessions[s];
    if (session.system_id >= trace.systems.size()) {
      return absl::InvalidArgumentError(absl::StrCat("session ", s, ": unknown system prompt"));
    }
    if (!(session.arrival_s >= last_arrival)) {
      return absl::InvalidArgumentError(absl::StrCat("session ", s, ": arrival out of order"));
    }
    last_arrival = session.arrival_s;
    if (session.turns.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("session ", s, ": no turns"));
    }
    for (const Turn& turn : session.turns) {
      if (!(turn.think_s >= 0) || turn.prompt_tokens == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("session ", s, ": think_s must be >= 0 and prompt_tokens > 0"));
      }
    }
  }
  return absl::OkStatus();
}

std::string FormatTrace(const Trace& trace) {
  std::string out = absl::StrCat(kHeader, "\n");
  absl::StrAppend(&out, "# system <id> <tokens>\n");
  for (size_t i = 0; i < trace.systems.size(); ++i) {
    absl::StrAppend(&out, "system ", i, " ", trace.systems[i].tokens, "\n");
  }
  absl::StrAppend(&out, "# session <id> <arrival_s> <system_id> <turns>\n",
                  "# turn <session_id> <index> <think_s> <prompt_tokens> <response_tokens>\n");
  for (size_t s = 0; s < trace.sessions.size(); ++s) {
    const Session& session = trace.sessions[s];
    absl::StrAppend(&out, absl::StrFormat("session %d %.6f %d %d\n", s, session.arrival_s,
                                          session.system_id, session.turns.size()));
    for (size_t t = 0; t < session.turns.size(); ++t) {
      const Turn& turn = session.turns[t];
      absl::StrAppend(&out, absl::StrFormat("turn %d %d %.6f %d %d\n", s, t, turn.think_s,
                                            turn.prompt_tokens, turn.response_tokens));
    }
  }
  return out;
}

absl::StatusOr<Trace> ParseTrace(std::string_view text) {
  Trace trace;
  bool header = false;
  size_t expected_turns = 0;  // turns still due for the last session
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (!header) {
      if (line != kHeader) return LineError(line_no, absl::StrCat("expected \"", kHeader, "\""));
      header = true;
      continue;
    }
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto u32 = [&](size_t i, uint32_t* out) { return absl::SimpleAtoi(f[i], out); };
    if (f[0] == "system") {
      uint32_t id, tokens;
      if (f.size() != 3 || !u32(1, &id) || !u32(2, &tokens)) {
        return LineError(line_no, "expected: system <id> <tokens>");
      }
      if (id != trace.systems.size()) return LineError(line_no, "system ids must be 0, 1, ...");
      if (!trace.sessions.empty()) return LineError(line_no, "system after a session");
      trace.systems.push_back({tokens});
    } else if (f[0] == "session") {
      uint32_t id, system, turns;
      double arrival;
      if (f.size() != 5 || !u32(1, &id) || !absl::SimpleAtod(f[2], &arrival) || !u32(3, &system) ||
          !u32(4, &turns)) {
        return LineError(line_no, "expected: session <id> <arrival_s> <system_id> <turns>");
      }
      if (expected_turns != 0) return LineError(line_no, "previous session lacks turns");
      if (id != trace.sessions.size()) return LineError(line_no, "session ids must be 0, 1, ...");
      if (system >= trace.systems.size()) return LineError(line_no, "unknown system id");
      if (turns == 0) return LineError(line_no, "a session needs at least one turn");
      if (!(arrival >= 0) ||
          (!trace.sessions.empty() && !(arrival >= trace.sessions.back().arrival_s))) {
        return LineError(line_no, "arrival must be >= 0 and non-decreasing");
      }
      trace.sessions.push_back(Session{arrival, system, {}});
      // The count comes from the file: reserve no more than a sane session
      // needs, or a count of 4e9 would ask for ~100 GB before any turn.
      trace.sessions.back().turns.reserve(std::min<uint32_t>(turns, 1024));
      expected_turns = turns;
    } else if (f[0] == "turn") {
      uint32_t session, index;
      Turn turn;
      if (f.size() != 6 || !u32(1, &session) || !u32(2, &index) ||
          !absl::SimpleAtod(f[3], &turn.think_s) || !u32(4, &turn.prompt_tokens) ||
          !u32(5, &turn.response_tokens)) {
        return LineError(line_no,
                         "expected: turn <session_id> <index> <think_s> <prompt_tokens> "
                         "<response_tokens>");
      }
      if (expected_turns == 0 || session + 1 != trace.sessions.size() ||
          index != trace.sessions.back().turns.size()) {
        return LineError(line_no, "turns must follow their session, in order");
      }
      if (!(turn.think_s >= 0) || turn.prompt_tokens == 0) {
        return LineError(line_no, "think_s must be >= 0 and prompt_tokens > 0");
      }
      trace.sessions.back().turns.push_back(turn);
      --expected_turns;
    } else {
      return LineError(line_no, absl::StrCat("unknown record \"", f[0], "\""));
    }
  }
  if (!header) return absl::InvalidArgumentError("trace: empty (no header)");
  if (expected_turns != 0) return absl::InvalidArgumentError("trace: last session lacks turns");
  return trace;
}

absl::Status WriteTraceFile(const Trace& trace, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot open ", path, " for writing"));
  out << FormatTrace(trace);
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<Trace> ReadTraceFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  return ParseTrace(text);
}

}  // namespace strata::eviction::sim
