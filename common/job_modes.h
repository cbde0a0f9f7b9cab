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

// INVALID_ARGUMENT naming the field: MERGE without id_path, REPLACE with incremental, an incremental
// cursor without a type or with a malformed pointer, a lookback on an integer cursor, an
// initial_value that does not parse as the cursor type.
absl::Status ValidateJobModes(const v1::JobSpec& spec);

// "append" | "merge" | "replace" (case-insensitive).
absl::StatusOr<v1::WriteMode> ParseWriteMode(absl::string_view text);
// "timestamp" | "integer" (case-insensitive; "int" and "time" too).
absl::StatusOr<v1::CursorType> ParseCursorType(absl::string_view text);
// A duration: "90" (seconds), "90s", "15m", "1h", "2d", or combinations absl understands ("1h30m").
absl::StatusOr<double> ParseDurationSeconds(absl::string_view text);

}  // namespace etl

#endif  // ETL_COMMON_JOB_MODES_H_
