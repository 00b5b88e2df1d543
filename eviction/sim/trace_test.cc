#include "eviction/sim/trace.h"

#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace strata::eviction::sim {
namespace {

GeneratorOptions Small(uint64_t seed) {
  GeneratorOptions options;
  options.seed = seed;
  options.sessions = 200;
  return options;
}

TEST(GenerateTraceTest, DeterministicPerSeedAndValid) {
  auto a = GenerateTrace(Small(3));
  auto b = GenerateTrace(Small(3));
  auto c = GenerateTrace(Small(4));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(FormatTrace(*a), FormatTrace(*b));
  EXPECT_NE(FormatTrace(*a), FormatTrace(*c));
  ASSERT_TRUE(ValidateTrace(*a).ok()) << ValidateTrace(*a);
  ASSERT_EQ(a->sessions.size(), 200u);
  ASSERT_EQ(a->systems.size(), 4u);
  size_t turns = 0;
  for (const Session& session : a->sessions) {
    turns += session.turns.size();
    EXPECT_EQ(session.turns[0].think_s, 0);
    uint64_t context = a->systems[session.system_id].tokens;
    for (const Turn& turn : session.turns) {
      EXPECT_GE(turn.prompt_tokens, 4u);
      EXPECT_LE(turn.prompt_tokens, 4096u);
      EXPECT_LE(turn.response_tokens, 2048u);
      context += turn.prompt_tokens + turn.response_tokens;
    }
    EXPECT_TRUE(session.turns.size() == 1 || context <= 32768);
  }
  // Mean turns near the default 5 (200 sessions: loose bounds).
  EXPECT_GT(turns, 200u * 3);
  EXPECT_LT(turns, 200u * 7);
  // Poisson arrivals at 1/s: the last of 200 near 200 s.
  EXPECT_GT(a->sessions.back().arrival_s, 120);
  EXPECT_LT(a->sessions.back().arrival_s, 300);
}

TEST(GenerateTraceTest, BadOptionsAreInvalidArgument) {
  GeneratorOptions o;
  o.arrival_rate = 0;
  EXPECT_EQ(GenerateTrace(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = GeneratorOptions{};
  o.system_weights = {1};
  EXPECT_EQ(GenerateTrace(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = GeneratorOptions{};
  o.mean_turns = 0.5;
  EXPECT_EQ(GenerateTrace(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TraceFormatTest, RoundTrips) {
  auto trace = GenerateTrace(Small(9));
  ASSERT_TRUE(trace.ok());
  const std::string text = FormatTrace(*trace);
  auto parsed = ParseTrace(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(FormatTrace(*parsed), text);
}

TEST(TraceFormatTest, ParsesTheDocumentedExample) {
  auto trace = ParseTrace(
      "# a comment\n"
      "strata-trace 1\n"
      "system 0 512\n"
      "system 1 64\n"
      "\n"
      "session 0 0.5 1 2\n"
      "turn 0 0 0 100 200\n"
      "turn 0 1 12.25 30 40\n"
      "session 1 0.75 0 1\n"
      "turn 1 0 0 8 0\n");
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->systems.size(), 2u);
  EXPECT_EQ(trace->systems[0].tokens, 512u);
  ASSERT_EQ(trace->sessions.size(), 2u);
  EXPECT_EQ(trace->sessions[0].system_id, 1u);
  EXPECT_DOUBLE_EQ(trace->sessions[0].arrival_s, 0.5);
  ASSERT_EQ(trace->sessions[0].turns.size(), 2u);
  EXPECT_DOUBLE_EQ(trace->sessions[0].turns[1].think_s, 12.25);
  EXPECT_EQ(trace->sessions[0].turns[1].prompt_tokens, 30u);
  EXPECT_EQ(trace->sessions[0].turns[1].response_tokens, 40u);
  EXPECT_EQ(trace->sessions[1].turns[0].response_tokens, 0u);
}

TEST(TraceFormatTest, MalformedInputNamesTheLine) {
  const char* kBad[] = {
      "",                                                                // no header
      "strata-trace 2\n",                                                // version
      "strata-trace 1\nsystem 1 64\n",                                   // ids from 0
      "strata-trace 1\nsystem 0 64\nsession 0 0 1 1\nturn 0 0 0 1 1\n",  // system id
      "strata-trace 1\nsystem 0 64\nsession 0 0 0 2\nturn 0 0 0 1 1\n",  // missing turn
      "strata-trace 1\nsystem 0 64\nsession 0 0 0 1\nturn 0 1 0 1 1\n",  // turn index
      "strata-trace 1\nsystem 0 64\nsession 0 0 0 1\nturn 0 0 0 0 1\n",  // empty prompt
      "strata-trace 1\nsystem 0 64\nsession 0 5 0 1\nturn 0 0 0 1 1\n"
      "session 1 4 0 1\nturn 1 0 0 1 1\n",                                // arrival order
      "strata-trace 1\nsystem 0 64\nsession 0 0 0 1\nturn 0 0 -1 1 1\n",  // think < 0
      "strata-trace 1\nsystem 0 x\n",                                     // number
      "strata-trace 1\nsessions 0 0 0 1\n",                               // record
  };
  for (const char* text : kBad) {
    auto trace = ParseTrace(text);
    ASSERT_FALSE(trace.ok()) << text;
    EXPECT_EQ(trace.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  auto trace = ParseTrace("strata-trace 1\nsystem 0 64\nsession 0 0 0 1\nturn 0 0 0 0 1\n");
  EXPECT_NE(trace.status().message().find("line 4"), std::string::npos) << trace.status();
}

// A session line's turn count is read from the file: the parser reserved
// that many turns at once, so "4000000000" asked for ~100 GB (an ASan
// out-of-memory in tools/fuzz/trace_fuzzer; corpus: trace/huge-turn-count).
TEST(TraceFormatTest, HugeTurnCountIsRefusedWithoutAllocatingIt) {
  auto trace = ParseTrace("strata-trace 1\nsystem 0 10\nsession 0 0 0 4000000000\n");
  ASSERT_FALSE(trace.ok());
  EXPECT_EQ(trace.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(trace.status().message().find("lacks turns"), std::string::npos) << trace.status();
}

TEST(TraceFileTest, WriteThenRead) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/trace.txt";
  auto trace = GenerateTrace(Small(5));
  ASSERT_TRUE(trace.ok());
  ASSERT_TRUE(WriteTraceFile(*trace, path).ok());
  auto read = ReadTraceFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(FormatTrace(*read), FormatTrace(*trace));
  EXPECT_EQ(ReadTraceFile(path + ".missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace strata::eviction::sim
