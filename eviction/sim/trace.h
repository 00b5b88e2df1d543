// Multi-turn conversation traces for the eviction simulator: the data model,
// a seeded generator with ShareGPT-like defaults, and a line-oriented text
// format (specified in eviction/README.md) with a writer and a reader.
#ifndef STRATA_EVICTION_SIM_TRACE_H_
#define STRATA_EVICTION_SIM_TRACE_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::eviction::sim {

// A system prompt shared by every session that names it.
struct SystemPrompt {
  uint32_t tokens = 0;
};

// One user turn: the user thinks, sends a prompt, the model responds.
struct Turn {
  // Seconds between the end of the previous turn's response and this turn's
  // arrival. Ignored (written as 0) for the first turn of a session.
  double think_s = 0;
  uint32_t prompt_tokens = 0;
  uint32_t response_tokens = 0;
};

// A conversation. Its context before turn t is the system prompt followed by
// the prompts and responses of turns 0 .. t-1 (append-only, never truncated).
struct Session {
  double arrival_s = 0;  // arrival of turn 0, from the start of the trace
  uint32_t system_id = 0;
  std::vector<Turn> turns;  // at least one
};

// Session i has id i; system prompt j has id j.
struct Trace {
  std::vector<SystemPrompt> systems;
  std::vector<Session> sessions;  // by non-decreasing arrival
};

// Generator parameters. Defaults: our approximation of ShareGPT-style chat
// (a few turns per conversation, short prompts, responses 2-3x longer, a
// handful of shared system prompts); not fitted to the dataset.
struct GeneratorOptions {
  uint64_t seed = 1;
  uint32_t sessions = 1000;
  double arrival_rate = 1.0;  // sessions per second, Poisson
  // Turns per session: 1 + geometric, mean `mean_turns`, at most max_turns.
  double mean_turns = 5.0;
  uint32_t max_turns = 40;
  // Tokens per user prompt and per response: log-normal with these medians
  // and log-space sigmas, clamped to [4, max].
  double prompt_median = 64;
  double prompt_sigma = 1.0;
  uint32_t prompt_max = 4096;
  double response_median = 180;
  double response_sigma = 0.8;
  uint32_t response_max = 2048;
  double mean_think_s = 30;  // exponential
  // Shared system prompts: their lengths and relative weights.
  std::vector<uint32_t> system_tokens = {256, 768, 1536, 3072};
  std::vector<double> system_weights = {0.4, 0.3, 0.2, 0.1};
  // A session ends early once its context would pass this many tokens.
  uint32_t max_context_tokens = 32768;
};

// InvalidArgument names the bad option.
absl::StatusOr<Trace> GenerateTrace(const GeneratorOptions& options);

// Checks the invariants documented on Trace and Session.
absl::Status ValidateTrace(const Trace& trace);

// The text format. FormatTrace never fails; ParseTrace returns
// InvalidArgument naming the line for malformed input.
std::string FormatTrace(const Trace& trace);
absl::StatusOr<Trace> ParseTrace(std::string_view text);

// Files: a file that cannot be opened for reading is NotFound, one that
// cannot be written Unavailable (both name the path); parse errors as from
// ParseTrace.
absl::Status WriteTraceFile(const Trace& trace, const std::string& path);
absl::StatusOr<Trace> ReadTraceFile(const std::string& path);

}  // namespace strata::eviction::sim

#endif  // STRATA_EVICTION_SIM_TRACE_H_
