#include "store/common/log.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace strata {
namespace {

void Emit(char level, const char* format, va_list args) {
  char body[1024];
  std::vsnprintf(body, sizeof(body), format, args);
  const std::string stamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  char line[1200];
  const int n = std::snprintf(line, sizeof(line), "%s %c %s\n", stamp.c_str(), level, body);
  if (n > 0) {
    const size_t len = static_cast<size_t>(n) < sizeof(line) ? n : sizeof(line) - 1;
    (void)!write(STDERR_FILENO, line, len);
  }
}

}  // namespace

void LogInfo(const char* format, ...) {
  va_list args;
  va_start(args, format);
  Emit('I', format, args);
  va_end(args);
}

void LogError(const char* format, ...) {
  va_list args;
  va_start(args, format);
  Emit('E', format, args);
  va_end(args);
}

}  // namespace strata
