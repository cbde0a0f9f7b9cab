#include "common/job_modes.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/json_page.h"

namespace etl {
namespace {

bool ParseTimestamp(absl::string_view text) { return CursorTimestampMicros(text).ok(); }

}  // namespace

absl::StatusOr<int64_t> CursorTimestampMicros(absl::string_view text) {
  absl::Time t;
  std::string err;
  std::string s(absl::StripAsciiWhitespace(text));
  if (absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return absl::ToUnixMicros(t);
  for (const char* f :
       {"%Y-%m-%dT%H:%M:%E*S", "%Y-%m-%d %H:%M:%E*S", "%Y-%m-%d %H:%M:%E*S%Ez", "%Y-%m-%d"}) {
    if (absl::ParseTime(f, s, absl::UTCTimeZone(), &t, &err)) return absl::ToUnixMicros(t);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text.substr(0, 100),
                   "\" is not a timestamp (RFC 3339, e.g. 2024-05-01T10:00:00Z, or YYYY-MM-DD)"));
}

absl::StatusOr<std::string> CursorStartValue(v1::CursorType type, const std::string& value,
                                             double lookback_seconds) {
  if (type != v1::TIMESTAMP || !(lookback_seconds > 0) || !std::isfinite(lookback_seconds)) {
    return value;
  }
  absl::StatusOr<int64_t> micros = CursorTimestampMicros(value);
  if (!micros.ok()) return micros.status();
  absl::Time t = absl::FromUnixMicros(*micros) - absl::Seconds(lookback_seconds);
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::Status ApplyIncrementalStart(v1::JobSpec* spec, const std::string& start) {
  v1::Incremental* inc = spec->mutable_incremental();
  inc->set_start_value(start);
  if (start.empty()) return absl::OkStatus();
  if (!inc->param().empty()) {
    auto* params = spec->mutable_query_params();
    for (int i = params->size() - 1; i >= 0; --i) {
      if (params->Get(i).key() == inc->param()) params->DeleteSubrange(i, 1);
    }
    v1::KeyValue* kv = params->Add();
    kv->set_key(inc->param());
    kv->set_value(start);
    return absl::OkStatus();
  }
  if (inc->cursor_type() != v1::TIMESTAMP) {
    return absl::InvalidArgumentError("an integer incremental cursor needs incremental param");
  }
  absl::StatusOr<int64_t> micros = CursorTimestampMicros(start);
  if (!micros.ok()) return micros.status();
  std::string day =
      absl::FormatTime("%Y-%m-%d", absl::FromUnixMicros(*micros), absl::UTCTimeZone());
  v1::DateFilter* d = spec->mutable_date_filter();
  if (d->start_date().empty() || d->start_date() < day) d->set_start_date(day);
  return absl::OkStatus();
}

absl::StatusOr<v1::WriteMode> ParseWriteMode(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "append") return v1::APPEND;
  if (t == "merge") return v1::MERGE;
  if (t == "replace") return v1::REPLACE;
  return absl::InvalidArgumentError(
      absl::StrCat("write_mode: unknown mode \"", text, "\"; use append, merge or replace"));
}

absl::StatusOr<v1::CursorType> ParseCursorType(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "timestamp" || t == "time" || t == "datetime") return v1::TIMESTAMP;
  if (t == "integer" || t == "int") return v1::INTEGER;
  return absl::InvalidArgumentError(
      absl::StrCat("incremental type: unknown type \"", text, "\"; use timestamp or integer"));
}

absl::StatusOr<double> ParseDurationSeconds(absl::string_view text) {
  std::string t(absl::StripAsciiWhitespace(text));
  double seconds = 0;
  absl::Duration d;
  if (absl::SimpleAtod(t, &seconds)) {
  } else if (!t.empty() && (t.back() == 'd') &&
             absl::SimpleAtod(t.substr(0, t.size() - 1), &seconds)) {
    seconds *= 86400;
  } else if (absl::ParseDuration(t, &d)) {
    seconds = absl::ToDoubleSeconds(d);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a duration (e.g. 3600, 90s, 15m, 1h, 2d)"));
  }
  if (!std::isfinite(seconds) || seconds < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" must be a non-negative duration"));
  }
  return seconds;
}

absl::Status ValidateJobModes(const v1::JobSpec& spec) {
  if (!v1::WriteMode_IsValid(spec.write_mode())) {
    return absl::InvalidArgumentError("write_mode: unknown value");
  }
  if (spec.write_mode() == v1::MERGE && spec.id_path().empty()) {
    return absl::InvalidArgumentError(
        "write_mode merge needs id_path (the JSON pointer to each record's natural key, e.g. /id)");
  }
  const v1::Incremental& inc = spec.incremental();
  bool any = !inc.cursor_path().empty() || inc.cursor_type() != v1::CURSOR_TYPE_UNSPECIFIED ||
             !inc.param().empty() || inc.lookback_seconds() != 0 || !inc.initial_value().empty() ||
             inc.full_refresh() || !inc.start_value().empty();
  if (!any) return absl::OkStatus();
  if (inc.cursor_path().empty()) {
    return absl::InvalidArgumentError(
        "incremental: cursor_path is required (JSON pointer to each record's cursor, e.g. "
        "/updated_at)");
  }
  if (absl::Status s = ParseJsonPointer(inc.cursor_path()).status(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("incremental cursor_path: ", s.message()));
  }
  if (inc.cursor_type() != v1::TIMESTAMP && inc.cursor_type() != v1::INTEGER) {
    return absl::InvalidArgumentError("incremental: cursor_type must be timestamp or integer");
  }
  if (spec.write_mode() == v1::REPLACE) {
    return absl::InvalidArgumentError(
        "incremental loads add to the table; write_mode replace would drop everything loaded "
        "before");
  }
  if (!std::isfinite(inc.lookback_seconds()) || inc.lookback_seconds() < 0) {
    return absl::InvalidArgumentError("incremental lookback must be a non-negative duration");
  }
  if (inc.lookback_seconds() > 0 && inc.cursor_type() != v1::TIMESTAMP) {
    return absl::InvalidArgumentError("incremental lookback applies to timestamp cursors only");
  }
  for (const auto& [what, value] : {std::make_pair("initial_value", &inc.initial_value()),
                                    std::make_pair("start_value", &inc.start_value())}) {
    if (value->empty()) continue;
    bool ok = inc.cursor_type() == v1::TIMESTAMP ? ParseTimestamp(*value) : [&] {
      int64_t v;
      return absl::SimpleAtoi(*value, &v);
    }();
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("incremental ", what, ": \"", *value, "\" is not a ",
                       inc.cursor_type() == v1::TIMESTAMP ? "timestamp (e.g. 2024-05-01T00:00:00Z)"
                                                          : "64-bit integer"));
    }
  }
  if (inc.param().empty() && inc.cursor_type() == v1::INTEGER) {
    return absl::InvalidArgumentError(
        "incremental: an integer cursor needs the query parameter that carries it (incremental "
        "param, e.g. since_id)");
  }
  if (inc.param().empty() && spec.date_filter().start_date().empty() &&
      spec.date_filter().start_param().empty()) {
    return absl::InvalidArgumentError(
        "incremental: name the query parameter that carries the mark (incremental param, e.g. "
        "updated_since), or a date filter start_param whose value it replaces");
  }
  return absl::OkStatus();
}

}  // namespace etl
