#include "writer_service/cursor_store.h"

#include <simdjson.h>

#include <cmath>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/job_modes.h"
#include "common/status_macros.h"

namespace etl {
absl::StatusOr<CursorValue> ParseCursorValue(v1::CursorType type, absl::string_view text) {
  CursorValue v;
  v.text = std::string(text);
  switch (type) {
    case v1::INTEGER: {
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &v.sort_key)) {
        return absl::InvalidArgumentError(
            absl::StrCat("cursor value \"", text.substr(0, 100), "\" is not a 64-bit integer"));
      }
      return v;
    }
    case v1::TIMESTAMP: {
      ASSIGN_OR_RETURN(v.sort_key, CursorTimestampMicros(text));
      return v;
    }
    default:
      return absl::InvalidArgumentError("cursor type must be TIMESTAMP or INTEGER");
  }
}

struct CursorExtractor::Impl {
  // On-Demand: only the path to the cursor is parsed, so values simdjson cannot represent elsewhere
  // in the record (integers beyond 64 bits) do not hide it.
  simdjson::ondemand::parser parser;
  std::string buffer;  // The record with simdjson's padding.
};

CursorExtractor::CursorExtractor() : impl_(std::make_unique<Impl>()) {}
CursorExtractor::~CursorExtractor() = default;

std::optional<CursorValue> CursorExtractor::Extract(absl::string_view record,
                                                    const std::string& pointer,
                                                    v1::CursorType type) {
  namespace od = simdjson::ondemand;
  std::string& buf = impl_->buffer;
  buf.assign(record.data(), record.size());
  buf.reserve(record.size() + simdjson::SIMDJSON_PADDING);
  od::document doc;
  if (impl_->parser.iterate(buf.data(), record.size(), buf.capacity()).get(doc) !=
      simdjson::SUCCESS) {
    return std::nullopt;
  }
  od::value value;
  if (doc.at_pointer(pointer).get(value) != simdjson::SUCCESS) return std::nullopt;
  od::json_type json_type;
  if (value.type().get(json_type) != simdjson::SUCCESS) return std::nullopt;
  std::string text;
  if (json_type == od::json_type::string) {
    std::string_view sv;
    if (value.get_string().get(sv) != simdjson::SUCCESS) return std::nullopt;
    text = std::string(sv);
  } else if (json_type == od::json_type::number) {
    std::string_view raw = value.raw_json_token();
    text = std::string(absl::StripAsciiWhitespace(absl::string_view(raw.data(), raw.size())));
  } else {
    return std::nullopt;
  }
  if (buf.capacity() > (size_t{1} << 20)) std::string().swap(buf);  // Keep no huge buffer.
  absl::StatusOr<CursorValue> v = ParseCursorValue(type, text);
  if (!v.ok()) return std::nullopt;
  return *std::move(v);
}

absl::Status AdvanceCursor(PgConnection* conn, const CursorKey& key, const CursorValue& value,
                           const std::string& job_id) {
  return conn
      ->Query(
          "INSERT INTO etl_cursors (cliente_id, rota, cursor_path, cursor_type, value, sort_key, "
          "job_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, now()) "
          "ON CONFLICT (cliente_id, rota, cursor_path) DO UPDATE SET "
          "cursor_type = EXCLUDED.cursor_type, value = EXCLUDED.value, "
          "sort_key = EXCLUDED.sort_key, job_id = EXCLUDED.job_id, updated_at = now() "
          "WHERE etl_cursors.sort_key < EXCLUDED.sort_key "
          "OR etl_cursors.cursor_type <> EXCLUDED.cursor_type",
          {PgParam::Text(key.cliente_id), PgParam::Text(key.rota), PgParam::Text(key.cursor_path),
           PgParam::Text(v1::CursorType_Name(key.cursor_type)), PgParam::Text(value.text),
           PgParam::Text(absl::StrCat(value.sort_key)), PgParam::Text(job_id)})
      .status();
}

absl::StatusOr<std::vector<v1::Cursor>> ListCursors(PgConnection* conn,
                                                    const std::string& cliente_id,
                                                    const std::string& rota) {
  ASSIGN_OR_RETURN(PgResult res,
                   conn->Query("SELECT cliente_id, rota, cursor_path, cursor_type, value, job_id, "
                               "(extract(epoch from updated_at) * 1000)::bigint FROM etl_cursors "
                               "WHERE ($1 = '' OR cliente_id = $1) AND ($2 = '' OR rota = $2) "
                               "ORDER BY cliente_id, rota, cursor_path",
                               {PgParam::Text(cliente_id), PgParam::Text(rota)}));
  std::vector<v1::Cursor> out;
  for (int r = 0; r < res.rows(); ++r) {
    v1::Cursor c;
    c.set_cliente_id(res.Get(r, 0));
    c.set_rota(res.Get(r, 1));
    c.set_cursor_path(res.Get(r, 2));
    v1::CursorType t = v1::CURSOR_TYPE_UNSPECIFIED;
    v1::CursorType_Parse(res.Get(r, 3), &t);
    c.set_cursor_type(t);
    c.set_value(res.Get(r, 4));
    c.set_job_id(res.Get(r, 5));
    c.set_updated_at_unix_ms(res.GetInt(r, 6));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace etl
