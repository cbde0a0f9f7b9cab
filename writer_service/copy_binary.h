// Encoding of rows for PostgreSQL's COPY ... FROM STDIN (FORMAT binary), the writer's hot path.
//
// Binary rows need no escaping, and PostgreSQL reads each field by its length instead of scanning
// every byte for delimiters and escapes: that saves CPU in the writer and in the backend. Every
// value still goes through its column type's input checks (jsonb parses the JSON text, text checks
// the encoding), so a record PostgreSQL refuses is refused exactly as in text format.
//
// A stream is: header, then per row a tuple start followed by exactly that many fields, then the
// trailer.
//
// Thread-safety: all functions are pure.
#ifndef ETL_WRITER_SERVICE_COPY_BINARY_H_
#define ETL_WRITER_SERVICE_COPY_BINARY_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace etl {

// Largest field a binary row can carry (its length is a signed 32-bit integer); PostgreSQL's own
// limit for one value (1 GB) is lower still.
inline constexpr size_t kMaxCopyBinaryFieldBytes = 0x7FFFFFFE;

// The signature, flags and header extension that open a binary COPY stream.
void AppendCopyBinaryHeader(std::string* out);
// The end-of-data marker that closes it.
void AppendCopyBinaryTrailer(std::string* out);

// Opens a row of `fields` fields.
void AppendCopyBinaryRow(std::string* out, int16_t fields);

// One field each. REQUIRES: the value's size (plus one for jsonb) <= kMaxCopyBinaryFieldBytes.
void AppendCopyBinaryJsonb(std::string* out, absl::string_view json);  // jsonb: version 1 + text.
void AppendCopyBinaryText(std::string* out, absl::string_view text);   // text, bytes as is.
void AppendCopyBinaryInt8(std::string* out, int64_t value);            // bigint.
void AppendCopyBinaryNull(std::string* out);                           // NULL of any type.

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_COPY_BINARY_H_
