// Encoding of values for PostgreSQL's COPY text format, and the cheap per-record checks that keep
// records PostgreSQL would refuse out of a COPY (they go to the dead-letter table instead).
//
// Thread-safety: all functions are pure.
#ifndef ETL_WRITER_SERVICE_COPY_TEXT_H_
#define ETL_WRITER_SERVICE_COPY_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace etl {

// Appends `value` to `out` escaped for one column of COPY ... (FORMAT text): backslash, tab,
// newline and carriage return become \\, \t, \n, \r; every other byte is copied as is.
void AppendCopyText(std::string* out, absl::string_view value);

// True when `bytes` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(absl::string_view bytes);

// True when the JSON text contains the escape \u0000 (which jsonb cannot store). An escaped
// backslash followed by "u0000" (the six characters \\u0000) is an ordinary string and does not
// count.
bool HasJsonNulEscape(absl::string_view json);

// Largest value PostgreSQL stores in one field (1 GB minus one byte); also within what a binary
// COPY row can carry (copy_binary.h).
inline constexpr size_t kMaxPgValueBytes = 0x3FFFFFFF;

// OK when a record may be sent to COPY; INVALID_ARGUMENT with the reason otherwise. Checks what is
// cheap to check here (invalid UTF-8, NUL bytes, \u0000, empty record, over kMaxPgValueBytes);
// anything else PostgreSQL refuses is found by the writer's isolation retry.
absl::Status PrecheckRecord(absl::string_view json);

// `raw` as valid UTF-8 text for reading in the dead-letter table: invalid sequences and NUL bytes
// are replaced by U+FFFD. (The exact bytes are stored separately.)
std::string LossyUtf8(absl::string_view raw);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_COPY_TEXT_H_
