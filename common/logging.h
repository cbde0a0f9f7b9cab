// A small thread-safe logger (abseil 20220623 has no absl/log).
//
// Each line: "2026-11-28T11:00:00.123Z W [writer/commit] message". The component is a short name set
// per thread with SetThreadComponent() (e.g. "writer/commit", "collector/job-3f2a"), so every line says
// which part of which service wrote it. Lines go to stderr in one write() each.
//
// Never log secrets: auth values are read by the collector and never passed to these functions.
#ifndef ETL_COMMON_LOGGING_H_
#define ETL_COMMON_LOGGING_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace etl {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below `level` are dropped. Default kInfo; ETL_LOG_LEVEL=debug|info|warning|error overrides it.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

// Names the calling thread in log lines. Default: "main".
void SetThreadComponent(absl::string_view component);
const std::string& ThreadComponent();

void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void LogDebug(const Args&... args) {
  if (MinLogLevel() <= LogLevel::kDebug) LogLine(LogLevel::kDebug, absl::StrCat(args...));
}
template <typename... Args>
void LogInfo(const Args&... args) {
  if (MinLogLevel() <= LogLevel::kInfo) LogLine(LogLevel::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  if (MinLogLevel() <= LogLevel::kWarning) LogLine(LogLevel::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  LogLine(LogLevel::kError, absl::StrCat(args...));
}

}  // namespace etl

#endif  // ETL_COMMON_LOGGING_H_
