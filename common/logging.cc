#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace etl {
namespace {

bool ParseLevel(absl::string_view text, LogLevel* level) {
  std::string s = absl::AsciiStrToLower(text);
  if (s == "debug") {
    *level = LogLevel::kDebug;
  } else if (s == "info") {
    *level = LogLevel::kInfo;
  } else if (s == "warning" || s == "warn") {
    *level = LogLevel::kWarning;
  } else if (s == "error") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

bool ParseFormat(absl::string_view text, LogFormat* format) {
  std::string s = absl::AsciiStrToLower(text);
  if (s == "text") {
    *format = LogFormat::kText;
  } else if (s == "json") {
    *format = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

LogLevel LevelFromEnv() {
  LogLevel level = LogLevel::kInfo;
  if (const char* v = std::getenv("ETL_LOG_LEVEL")) ParseLevel(v, &level);
  return level;
}

LogFormat FormatFromEnv() {
  LogFormat format = LogFormat::kText;
  if (const char* v = std::getenv("ETL_LOG_FORMAT")) ParseFormat(v, &format);
  return format;
}

std::atomic<int>& MinLevel() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

std::atomic<int>& Format() {
  static std::atomic<int> format{static_cast<int>(FormatFromEnv())};
  return format;
}

thread_local std::string tls_component = "main";
thread_local std::string tls_job_id;
thread_local std::string tls_request_id;
thread_local std::string tls_trace_id;

char LevelChar(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
  }
  return '?';
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

// Length of the valid UTF-8 sequence at in[i], or 0.
size_t Utf8Len(absl::string_view in, size_t i) {
  unsigned char c = static_cast<unsigned char>(in[i]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > in.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(in[i + k]) & 0xC0) != 0x80) return 0;
  }
  unsigned char c1 = len > 1 ? static_cast<unsigned char>(in[i + 1]) : 0;
  if (len == 2 && c < 0xC2) return 0;
  if (len == 3 && ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))) return 0;
  if (len == 4 && (c > 0xF4 || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))) return 0;
  return len;
}

// One line of text: newlines folded into " | " (trailing ones dropped), then each byte that is a
// control character or not valid UTF-8 escaped as \xNN, or, for JSON, escaped as JSON requires.
std::string OneLine(absl::string_view message, bool json) {
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r'))
    message.remove_suffix(1);
  std::string out;
  out.reserve(message.size() + 8);
  for (size_t i = 0; i < message.size();) {
    unsigned char c = static_cast<unsigned char>(message[i]);
    if (c == '\r' && i + 1 < message.size() && message[i + 1] == '\n') {
      ++i;
      continue;
    }
    if (c == '\n' || c == '\r') {
      out.append(" | ");
      ++i;
      continue;
    }
    if (json && (c == '"' || c == '\\')) {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7F) {
      out.append(json ? absl::StrFormat("\\u%04x", c)
                      : (c == '\t' ? std::string("\t") : absl::StrFormat("\\x%02x", c)));
      ++i;
      continue;
    }
    size_t len = Utf8Len(message, i);
    if (len == 0) {
      // Invalid UTF-8: JSON must stay valid, so the byte becomes U+FFFD; text keeps its value
      // visible.
      out.append(json ? "\\ufffd" : absl::StrFormat("\\x%02x", c));
      ++i;
      continue;
    }
    out.append(message.data() + i, len);
    i += len;
  }
  return out;
}

std::string FormatLine(LogLevel level, absl::string_view time_text, absl::string_view message) {
  const bool json =
      static_cast<LogFormat>(Format().load(std::memory_order_relaxed)) == LogFormat::kJson;
  std::string line;
  if (json) {
    line = absl::StrCat("{\"time\":\"", time_text, "\",\"level\":\"", LevelName(level),
                        "\",\"component\":\"", OneLine(tls_component, true), "\"");
    if (!tls_job_id.empty())
      absl::StrAppend(&line, ",\"job_id\":\"", OneLine(tls_job_id, true), "\"");
    if (!tls_request_id.empty())
      absl::StrAppend(&line, ",\"request_id\":\"", OneLine(tls_request_id, true), "\"");
    if (!tls_trace_id.empty()) absl::StrAppend(&line, ",\"trace_id\":\"", tls_trace_id, "\"");
    absl::StrAppend(&line, ",\"msg\":\"", OneLine(message, true), "\"}");
    return line;
  }
  line = absl::StrCat(time_text, " ", std::string(1, LevelChar(level)), " [",
                      OneLine(tls_component, false), "]");
  if (!tls_job_id.empty()) absl::StrAppend(&line, " job=", OneLine(tls_job_id, false));
  if (!tls_request_id.empty()) absl::StrAppend(&line, " req=", OneLine(tls_request_id, false));
  if (!tls_trace_id.empty()) absl::StrAppend(&line, " trace=", tls_trace_id);
  absl::StrAppend(&line, " ", OneLine(message, false));
  return line;
}

}  // namespace

void SetMinLogLevel(LogLevel level) { MinLevel().store(static_cast<int>(level)); }
LogLevel MinLogLevel() { return static_cast<LogLevel>(MinLevel().load(std::memory_order_relaxed)); }
void SetLogFormat(LogFormat format) { Format().store(static_cast<int>(format)); }
LogFormat CurrentLogFormat() {
  return static_cast<LogFormat>(Format().load(std::memory_order_relaxed));
}

absl::Status ConfigureLogging(absl::string_view format, absl::string_view level) {
  if (!format.empty()) {
    LogFormat f;
    if (!ParseFormat(format, &f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--log-format must be text or json, not \"", format, "\""));
    }
    SetLogFormat(f);
  }
  if (!level.empty()) {
    LogLevel l;
    if (!ParseLevel(level, &l)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--log-level must be debug, info, warning or error, not \"", level, "\""));
    }
    SetMinLogLevel(l);
  }
  return absl::OkStatus();
}

void SetThreadComponent(absl::string_view component) { tls_component = std::string(component); }
const std::string& ThreadComponent() { return tls_component; }

std::string TraceIdFromTraceparent(absl::string_view tp) {
  // version "-" trace-id(32 hex) "-" parent-id(16 hex) "-" flags(2 hex)
  if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-') return "";
  absl::string_view id = tp.substr(3, 32);
  for (char c : id) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return "";
  }
  if (id == "00000000000000000000000000000000") return "";
  return absl::AsciiStrToLower(id);
}

ScopedLogContext::ScopedLogContext(absl::string_view job_id, absl::string_view request_id,
                                   absl::string_view traceparent)
    : saved_job_id_(std::move(tls_job_id)),
      saved_request_id_(std::move(tls_request_id)),
      saved_trace_id_(std::move(tls_trace_id)) {
  tls_job_id = std::string(job_id);
  tls_request_id = std::string(request_id);
  tls_trace_id = TraceIdFromTraceparent(traceparent);
}

ScopedLogContext::ScopedLogContext(const LogContext& context)
    : saved_job_id_(std::move(tls_job_id)),
      saved_request_id_(std::move(tls_request_id)),
      saved_trace_id_(std::move(tls_trace_id)) {
  tls_job_id = context.job_id;
  tls_request_id = context.request_id;
  tls_trace_id = context.trace_id;
}

LogContext CurrentLogContext() { return LogContext{tls_job_id, tls_request_id, tls_trace_id}; }

ScopedLogContext::~ScopedLogContext() {
  tls_job_id = std::move(saved_job_id_);
  tls_request_id = std::move(saved_request_id_);
  tls_trace_id = std::move(saved_trace_id_);
}

std::string FormatLogLineForTest(LogLevel level, absl::string_view time_text,
                                 absl::string_view message) {
  return FormatLine(level, time_text, message);
}

void LogLine(LogLevel level, absl::string_view message) {
  std::string line = FormatLine(
      level, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), message);
  line.push_back('\n');
  // One write() per line keeps lines from different threads whole.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace etl
