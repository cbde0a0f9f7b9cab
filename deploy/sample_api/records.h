// Deterministic sample order records, as served by the sample API (deploy/sample_api).
//
// Record i of (cliente, rota) is the same bytes on every call and in every process, so tests can
// compute exactly what the API served and compare it with the table the pipeline wrote. Records are
// realistic rather than minimal: non-ASCII names (accents, Cyrillic, CJK, emoji), JSON escapes
// (quotes, backslashes, tabs, newlines, \u escapes incl. a surrogate pair), decimal amounts, an
// integer just above 2^53 (not exact as a double) and one above 2^64 (not an int64), nested items.
//
// Dates: record i has created_at on day 2023-01-01 + i / records_per_day (plus a time of day), so
// dates never decrease with i and a date window is a contiguous range of indices (see
// DateWindowRange). Average size ~340 bytes of compact JSON.
//
// Thread-safety: all functions are pure and thread-safe.
#ifndef ETL_DEPLOY_SAMPLE_API_RECORDS_H_
#define ETL_DEPLOY_SAMPLE_API_RECORDS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace etl::sample_api {

inline constexpr int64_t kDefaultRecordsPerDay = 100;

// Appends record `index` (0-based) of (cliente, rota) as one line of compact JSON (no newline).
void AppendRecord(std::string* out, absl::string_view cliente, absl::string_view rota,
                  int64_t index, int64_t records_per_day = kDefaultRecordsPerDay);

// The same, as a new string.
std::string Record(absl::string_view cliente, absl::string_view rota, int64_t index,
                   int64_t records_per_day = kDefaultRecordsPerDay);

// The natural key of record `index` (the value of its "id" field): index + 1.
inline int64_t RecordId(int64_t index) { return index + 1; }

// Days since 1970-01-01 of record `index`, and the same as "YYYY-MM-DD".
int64_t RecordDay(int64_t index, int64_t records_per_day = kDefaultRecordsPerDay);
std::string FormatDay(int64_t days_since_epoch);
// Parses "YYYY-MM-DD" into days since 1970-01-01 (INVALID_ARGUMENT otherwise).
absl::StatusOr<int64_t> ParseDay(absl::string_view date);

// Indices [begin, end) of the records among the first `total` whose date lies in [start, end]
// (inclusive; empty strings = unbounded). INVALID_ARGUMENT for a malformed date.
struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end > begin ? end - begin : 0; }
};
absl::StatusOr<IndexRange> DateWindowRange(int64_t total, absl::string_view start_date,
                                           absl::string_view end_date,
                                           int64_t records_per_day = kDefaultRecordsPerDay);

}  // namespace etl::sample_api

#endif  // ETL_DEPLOY_SAMPLE_API_RECORDS_H_
