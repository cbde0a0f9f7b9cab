// JSON page parsing: finds the records of one API response page and the few values that drive
// pagination (next cursor, next URL, totals), without ever re-serialising a record.
//
// Each record is returned as the exact bytes the API sent (a view into the body), so huge integers
// (123456789012345678901234567890), escapes and Unicode reach PostgreSQL unchanged. Values are
// located with RFC 6901 JSON pointers ("" = the whole document, "/data/0/id", "~1" = '/', "~0" =
// '~'); object keys are compared after unescaping, so "da\u0074a" matches "/data".
//
// The whole document is validated, so a truncated or otherwise malformed body is an error (callers
// retry it). Two engines share the work (common/json_page_internal.h): a fast path walks the
// structural index of simdjson's run-time dispatched stage 1 and handles the usual pages; every
// page it does not prove valid goes to the full walk (simdjson On-Demand visiting every value),
// which defines the results, so both give the same answer for every body. One exception keeps bad
// data from costing a whole page: when simdjson rejects a body only because it is not valid UTF-8,
// a small hand-written scanner (same grammar, no UTF-8 check) extracts the records anyway and
// ParsedPage::used_utf8_fallback is set; the writer then dead-letters just the records PostgreSQL
// cannot store.
//
// Thread-safety: JsonPageParser holds reusable parse buffers: one instance per thread.
// JsonParseBuffers: one Parse at a time per instance. The free functions are thread-safe.
#ifndef ETL_COMMON_JSON_PAGE_H_
#define ETL_COMMON_JSON_PAGE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace etl {

namespace json_page_internal {
struct JsonPageParserPeer;
}  // namespace json_page_internal

// Deepest nesting of arrays/objects accepted in a page (every parser path, the UTF-8 fallback
// included); deeper pages are DATA_LOSS errors, never a stack overflow.
inline constexpr size_t kMaxJsonNestingDepth = 512;

// Splits an RFC 6901 pointer into unescaped reference tokens. "" -> {} (the whole document).
// INVALID_ARGUMENT when it does not start with '/' or has a '~' not followed by '0' or '1'.
absl::StatusOr<std::vector<std::string>> ParseJsonPointer(absl::string_view pointer);

// The value found at a pointer, for pagination fields and natural keys.
struct JsonScalar {
  enum class Kind { kAbsent, kNull, kString, kNumber, kBool, kComposite };
  Kind kind = Kind::kAbsent;
  // kString: the unescaped string; kNumber: the number's raw text (exact, any size); kBool: "true"/
  // "false"; kComposite: the raw JSON of the object/array; otherwise empty.
  std::string text;

  bool present() const { return kind != Kind::kAbsent && kind != Kind::kNull; }
};

// What to extract from a page. Empty optional pointers are not looked up.
struct PageParseOptions {
  std::string records_path;      // JSON pointer to the records array ("" = whole body).
  std::string id_path;           // Per record, relative pointer to the natural key; "" = none.
  std::string cursor_path;       // Next cursor.
  std::string next_url_path;     // Next page URL.
  std::string total_pages_path;  // Total number of pages.
  std::string total_count_path;  // Total number of records.
  // Most records accepted in one page: each costs a view (16 bytes) besides its text, so a body of
  // "[1,1,1,...]" must not turn into gigabytes. More is RESOURCE_EXHAUSTED.
  size_t max_records = 1000000;
};

struct ParsedPage {
  // Exact raw text of each record: views into the body passed to Parse (valid while it lives and is
  // not modified).
  std::vector<absl::string_view> records;
  // One per record when id_path is set: string values unescaped, numbers as raw text, absent/null
  // "".
  std::vector<std::string> natural_keys;
  JsonScalar cursor;
  JsonScalar next_url;
  JsonScalar total_pages;
  JsonScalar total_count;
  // True when the body is not valid UTF-8 and the fallback scanner extracted the records.
  bool used_utf8_fallback = false;
};

// Reads a JsonScalar as a non-negative integer ("42", 42, 42.0 are accepted); nullopt otherwise.
std::optional<int64_t> JsonScalarToInt(const JsonScalar& s);

// The working memory of a parse (simdjson's structural index, about four bytes per byte of the
// largest document parsed so far, and the full walk's string buffer when it runs). Parse can borrow one instead of using the
// parser's own, so that many parsers (one per fetch worker of every job) share a few buffers sized
// by the number of parses that really run at once.
class JsonParseBuffers {
 public:
  JsonParseBuffers();
  ~JsonParseBuffers();
  JsonParseBuffers(const JsonParseBuffers&) = delete;
  JsonParseBuffers& operator=(const JsonParseBuffers&) = delete;

  // Frees the buffers; the next parse allocates them again.
  void Release();

  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

class JsonPageParser {
 public:
  // INVALID_ARGUMENT when one of the pointers in `options` is malformed.
  static absl::StatusOr<std::unique_ptr<JsonPageParser>> Create(const PageParseOptions& options);
  ~JsonPageParser();
  JsonPageParser(const JsonPageParser&) = delete;
  JsonPageParser& operator=(const JsonPageParser&) = delete;

  // Parses `body` (its capacity may be grown for simdjson's padding, so views taken before the call
  // are invalidated; the returned views stay valid until `body` is modified again).
  // DATA_LOSS for a malformed/truncated body or one nested deeper than kMaxJsonNestingDepth,
  // RESOURCE_EXHAUSTED for more than max_records records, NOT_FOUND when records_path is absent,
  // INVALID_ARGUMENT when it points at something other than an array, an object (one record) or
  // null (no records).
  // `buffers` (optional) replaces the parser's own working memory for this call; the parser's own
  // is then never allocated.
  absl::StatusOr<ParsedPage> Parse(std::string* body, JsonParseBuffers* buffers = nullptr);

  // Frees the parser's internal buffers, which stay sized for the largest document parsed so far
  // (about four bytes per byte of it); the next Parse allocates them again. For callers that keep a
  // parser between large documents and care about memory more than a reallocation per document.
  void ReleaseBuffers();

  struct Impl;

 private:
  friend struct json_page_internal::JsonPageParserPeer;
  explicit JsonPageParser(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace etl

#endif  // ETL_COMMON_JSON_PAGE_H_
