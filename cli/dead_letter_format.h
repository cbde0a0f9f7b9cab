// How etlctl shows dead letters (records the database refused): a readable table, and JSON lines
// for `etlctl dead-letters --export FILE` that keep the record's exact bytes (as a JSON string when
// they are valid UTF-8, else base64 in "raw_base64").
//
// Thread-safety: pure functions.
#ifndef ETL_CLI_DEAD_LETTER_FORMAT_H_
#define ETL_CLI_DEAD_LETTER_FORMAT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "etl.pb.h"

namespace etl::cli {

bool IsUtf8(absl::string_view bytes);

// `s` as a JSON string literal (quotes included). REQUIRES: IsUtf8(s).
std::string JsonQuote(absl::string_view s);

// One line of JSON (no trailing newline) with every field of `d`; "raw" or "raw_base64".
std::string DeadLetterJsonLine(const etl::v1::DeadLetter& d);

// Up to `max_chars` readable characters of a record: invalid bytes as \xNN, control characters
// escaped, "..." when cut.
std::string Excerpt(absl::string_view raw, size_t max_chars);

// A table: id, job, page, record, reason, excerpt.
std::string FormatDeadLetterTable(const std::vector<etl::v1::DeadLetter>& rows);

// A table of incremental marks.
std::string FormatCursorTable(const etl::v1::ListCursorsResponse& cursors);

}  // namespace etl::cli

#endif  // ETL_CLI_DEAD_LETTER_FORMAT_H_
