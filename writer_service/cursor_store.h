// Incremental high-water marks (etl_cursors): one row per (cliente_id, rota, cursor_path) holding
// the greatest cursor value committed so far. The writer advances a mark inside the transaction
// that commits the records carrying it, so a crash can neither skip nor repeat data past the mark.
//
// CursorExtractor reads a record's cursor value (simdjson DOM at a JSON pointer) and turns it into
// a comparable sort key: integers as themselves, timestamps as microseconds since the Unix epoch.
//
// Thread-safety: CursorExtractor holds a reusable parser (one per thread); the free functions are
// thread-safe given distinct connections.
#ifndef ETL_WRITER_SERVICE_CURSOR_STORE_H_
#define ETL_WRITER_SERVICE_CURSOR_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "etl.pb.h"
#include "writer_service/pg_conn.h"

namespace etl {

// One cursor value: the text to send back to the API and the number it sorts by.
struct CursorValue {
  std::string text;
  int64_t sort_key = 0;
};

// Parses a cursor value of `type` given as text: INTEGER = optional sign and digits (64-bit);
// TIMESTAMP = as CursorTimestampMicros (common/job_modes.h). INVALID_ARGUMENT otherwise.
absl::StatusOr<CursorValue> ParseCursorValue(v1::CursorType type, absl::string_view text);

class CursorExtractor {
 public:
  CursorExtractor();
  ~CursorExtractor();
  CursorExtractor(const CursorExtractor&) = delete;
  CursorExtractor& operator=(const CursorExtractor&) = delete;

  // The record's value at `pointer`, or nullopt when the record is not JSON, lacks the field, or
  // the value does not parse as `type` (such records still load; they just do not move the mark).
  std::optional<CursorValue> Extract(absl::string_view record, const std::string& pointer,
                                     v1::CursorType type);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Identifies one mark.
struct CursorKey {
  std::string cliente_id;
  std::string rota;
  std::string cursor_path;
  v1::CursorType cursor_type = v1::CURSOR_TYPE_UNSPECIFIED;
  bool operator<(const CursorKey& o) const {
    return std::tie(cliente_id, rota, cursor_path) < std::tie(o.cliente_id, o.rota, o.cursor_path);
  }
};

// Raises the mark of `key` to `value` unless the stored one is already greater or equal.
// REQUIRES: inside the transaction that commits the records carrying `value`.
absl::Status AdvanceCursor(PgConnection* conn, const CursorKey& key, const CursorValue& value,
                           const std::string& job_id);

// Stored marks, optionally of one client and/or route, ordered by client, route, path.
absl::StatusOr<std::vector<v1::Cursor>> ListCursors(PgConnection* conn,
                                                    const std::string& cliente_id,
                                                    const std::string& rota);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_CURSOR_STORE_H_
