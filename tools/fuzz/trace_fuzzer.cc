// Fuzzes the trace text format (eviction/sim/trace.h): ParseTrace on any
// bytes must return a trace or InvalidArgument, never crash or allocate
// without bound. A trace it accepts must pass ValidateTrace, and formatting
// is a fixed point after one round (FormatTrace rounds seconds to 6 digits).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <string_view>

#include "eviction/sim/trace.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "trace_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata::eviction::sim;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Trace> trace = ParseTrace(text);
  if (!trace.ok()) {
    Check(trace.status().code() == absl::StatusCode::kInvalidArgument,
          "a parse error other than InvalidArgument");
    return 0;
  }
  Check(ValidateTrace(*trace).ok(), "ParseTrace accepted a trace that ValidateTrace refuses");
  const std::string once = FormatTrace(*trace);
  absl::StatusOr<Trace> again = ParseTrace(once);
  Check(again.ok(), "ParseTrace refused FormatTrace's output");
  Check(FormatTrace(*again) == once, "FormatTrace(ParseTrace(FormatTrace(t))) differs");
  return 0;
}
