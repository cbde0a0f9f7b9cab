// Human-readable rendering of job progress for etlctl: the live progress line, job summaries, job
// lists and the writer's counters.
//
// Thread-safety: pure functions.
#ifndef ETL_CLI_PROGRESS_FORMAT_H_
#define ETL_CLI_PROGRESS_FORMAT_H_

#include <cstdint>
#include <string>

#include "etl.pb.h"

namespace etl::cli {

// 1234567 -> "1,234,567".
std::string FormatCount(int64_t n);
// Seconds as "0.4s", "42s", "3m05s", "2h03m", "3d04h"; negative or NaN -> "?".
std::string FormatDuration(double seconds);
// Records per second: "950/s", "12,345/s".
std::string FormatRate(double per_second);
// Unix milliseconds as "2026-11-28 11:00:00Z"; 0 -> "-".
std::string FormatTimestamp(int64_t unix_ms);

// One line: state, records committed (of total), percent, pages, rate, ETA, elapsed, retries,
// failures.
std::string FormatProgressLine(const etl::v1::JobProgress& progress);
// The closing line of a finished job, e.g. "job 1f3c SUCCEEDED: 100,000 records in 4.1s (...)".
std::string FormatJobOutcome(const etl::v1::Job& job);
// Several lines describing a job (status command), failed pages included.
std::string FormatJobDetails(const etl::v1::Job& job);
// A table of jobs (list command).
std::string FormatJobTable(const etl::v1::ListJobsResponse& jobs);
// The writer's counters (writer-status command).
std::string FormatWriterStatus(const etl::v1::WriterStatus& status);

bool IsTerminal(etl::v1::JobState state);
// etlctl's exit status for a job that ended in `state`: 0 SUCCEEDED, 2 PARTIAL, 1 otherwise.
int ExitCodeForState(etl::v1::JobState state);

}  // namespace etl::cli

#endif  // ETL_CLI_PROGRESS_FORMAT_H_
