// A small thread-safe logger (abseil 20220623 has no absl/log).
//
// Every line carries the time (UTC), the level, the component (a short name set per thread with
// SetThreadComponent(), e.g. "writer/commit", "collector/job"), and, where the thread works for one
// job, the job id and the request id / trace id that came with StartJob's gRPC metadata
// (x-request-id, traceparent); ScopedLogContext sets those for the current thread.
//
//   text (default): 2026-11-28T11:00:00.123Z W [collector/job] job=3f2a.. req=abc trace=4bf9..
//   message json: {"time":"2026-11-28T11:00:00.123Z","level":"warning","component":"collector/job",
//                    "job_id":"3f2a..","request_id":"abc","trace_id":"4bf9..","msg":"message"}
//
// A message is always one line: embedded newlines (libpq's "ERROR: ...\nDETAIL: ...") are folded
// into " | ", other control characters and invalid UTF-8 are escaped. Lines go to stderr in one
// write() each.
//
// Configuration: --log-format=text|json (env ETL_LOG_FORMAT) and
// --log-level=debug|info|warning|error (env ETL_LOG_LEVEL) through ConfigureLogging(), called by
// each main.cc.
//
// Never log secrets: auth values are read by the collector and never passed to these functions.
#ifndef ETL_COMMON_LOGGING_H_
#define ETL_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace etl {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText = 0, kJson = 1 };

// Lines below `level` are dropped. Default kInfo, or ETL_LOG_LEVEL.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
void SetLogFormat(LogFormat format);
LogFormat CurrentLogFormat();

// Applies --log-format / --log-level; an empty value keeps the environment's (ETL_LOG_FORMAT,
// ETL_LOG_LEVEL) or the default (text, info). INVALID_ARGUMENT names the bad value.
absl::Status ConfigureLogging(absl::string_view format, absl::string_view level);

// Names the calling thread in log lines. Default: "main".
void SetThreadComponent(absl::string_view component);
const std::string& ThreadComponent();

// The trace id (32 hex digits) of a W3C traceparent header, or "" when it is not one.
std::string TraceIdFromTraceparent(absl::string_view traceparent);

// The job id, request id and trace id of the calling thread's log lines.
struct LogContext {
  std::string job_id;
  std::string request_id;
  std::string trace_id;  // 32 hex digits.
};
LogContext CurrentLogContext();

// Sets the job id, request id and trace id of the calling thread's log lines until destroyed
// (then restores the previous ones). Empty fields are left out of lines. A thread started for a
// job's work passes CurrentLogContext() of its parent to keep the parent's fields.
class ScopedLogContext {
 public:
  ScopedLogContext(absl::string_view job_id, absl::string_view request_id,
                   absl::string_view traceparent);
  explicit ScopedLogContext(const LogContext& context);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

 private:
  std::string saved_job_id_;
  std::string saved_request_id_;
  std::string saved_trace_id_;
};

void LogLine(LogLevel level, absl::string_view message);

// The line LogLine would write (without the trailing newline) for `message` at `time_text`; for
// tests.
std::string FormatLogLineForTest(LogLevel level, absl::string_view time_text,
                                 absl::string_view message);

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
