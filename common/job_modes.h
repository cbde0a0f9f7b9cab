// Checks and parsing of the JobSpec fields that say how a job treats earlier loads: write_mode and
// incremental. Shared by the collector (StartJob refuses a bad spec with these messages) and etlctl
// (the same messages before any RPC, and for `etlctl validate`).
//
// Thread-safety: pure functions.
#ifndef ETL_COMMON_JOB_MODES_H_
#define ETL_COMMON_JOB_MODES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "etl.pb.h"

namespace etl {

// INVALID_ARGUMENT naming the field: MERGE without id_path, REPLACE with incremental, an
// incremental cursor without a type or with a malformed pointer, a lookback on an integer cursor,
// an initial_value that does not parse as the cursor type.
absl::Status ValidateJobModes(const v1::JobSpec& spec);

// "append" | "merge" | "replace" (case-insensitive).
absl::StatusOr<v1::WriteMode> ParseWriteMode(absl::string_view text);
// "timestamp" | "integer" (case-insensitive; "int" and "time" too).
absl::StatusOr<v1::CursorType> ParseCursorType(absl::string_view text);
// A duration: "90" (seconds), "90s", "15m", "1h", "2d", or combinations absl understands ("1h30m").
absl::StatusOr<double> ParseDurationSeconds(absl::string_view text);

// Microseconds since the Unix epoch of a TIMESTAMP cursor value: RFC 3339 (fractions, offsets), the
// same without an offset (UTC), "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD". INVALID_ARGUMENT otherwise.
absl::StatusOr<int64_t> CursorTimestampMicros(absl::string_view text);

// What a run sends to the API for the stored mark `value`: the mark itself, or for a timestamp with
// a lookback, the mark minus the lookback in RFC 3339 UTC.
absl::StatusOr<std::string> CursorStartValue(v1::CursorType type, const std::string& value,
                                             double lookback_seconds);

// Records `start` as the job's incremental start (incremental.start_value) and makes every request
// carry it: as the query parameter incremental.param (replacing one of that name), or, without one,
// as the date filter's start date (the mark's UTC day: dates are inclusive, so the overlap is
// re-read and merged, never skipped). REQUIRES: ValidateJobModes(*spec) is OK.
absl::Status ApplyIncrementalStart(v1::JobSpec* spec, const std::string& start);

}  // namespace etl

#endif  // ETL_COMMON_JOB_MODES_H_
