// Log lines of a node: one line on stderr each, with a UTC timestamp and a
// level, e.g. "2026-11-30T07:13:08.123Z E NVMe write-back failed ...".
// Thread-safe (one write(2) per line).
#ifndef STRATA_STORE_COMMON_LOG_H_
#define STRATA_STORE_COMMON_LOG_H_

namespace strata {

void LogInfo(const char* format, ...) __attribute__((format(printf, 1, 2)));
void LogError(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace strata

#endif  // STRATA_STORE_COMMON_LOG_H_
