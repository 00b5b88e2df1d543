// Checks shared by the fuzz targets that drive a real node (server_fuzzer,
// isolated_fuzzer): a failed invariant aborts with the target's name, so
// libFuzzer records the input; STRATA_FUZZ_VERBOSE=1 prints every call and
// its status (to see how far an input gets).
#ifndef STRATA_TOOLS_FUZZ_FUZZ_CHECK_H_
#define STRATA_TOOLS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

namespace strata::fuzz {

// The target's name in failure messages; each target defines it.
extern const char* const kTargetName;

[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", kTargetName, what.c_str());
  std::abort();
}

inline void Check(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

inline bool Verbose() {
  static const bool verbose = std::getenv("STRATA_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

}  // namespace strata::fuzz

#endif  // STRATA_TOOLS_FUZZ_FUZZ_CHECK_H_
