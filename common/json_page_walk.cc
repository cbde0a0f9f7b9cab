// The full walk of a JSON page (see json_page_internal.h): simdjson On-Demand visits and validates
// every value, and a hand-written scanner extracts the records of bodies that are not valid UTF-8.
// This engine defines JsonPageParser::Parse's results; the fast path must match it exactly.
#include <simdjson.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_page_internal.h"

namespace etl {
namespace json_page_internal {
namespace {

// ---------------------------------------------------------------------------------------------------
// simdjson On-Demand walker. Every value is visited, so syntax errors anywhere are reported;
// records are delimited by the iterator's position before and after the walk of each one.
// ---------------------------------------------------------------------------------------------------
namespace od = simdjson::ondemand;
using simdjson::error_code;

#define SJ_TRY(expr)                                  \
  do {                                                \
    error_code sj_err_ = (expr);                      \
    if (sj_err_ != simdjson::SUCCESS) return sj_err_; \
  } while (0)

class SimdWalker {
 public:
  SimdWalker(Targets* targets, Captures* captures, od::document* doc, const char* body_end)
      : targets_(targets), captures_(captures), doc_(doc), body_end_(body_end) {}

  // `depth` is the nesting level of `v`; the recursion stops at kMaxJsonNestingDepth so a hostile
  // page cannot overflow the stack.
  error_code WalkValue(od::value& v, size_t depth, uint32_t mask) {
    if (depth > kMaxJsonNestingDepth) return simdjson::DEPTH_ERROR;
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    if (here & Bit(kRecords)) {
      return WalkRecords(v, depth, mask & ~Bit(kRecords));
    }
    od::json_type type;
    SJ_TRY(v.type().get(type));
    switch (type) {
      case od::json_type::object: {
        const char* start = here ? v.raw_json_token().data() : nullptr;
        od::object obj;
        SJ_TRY(v.get_object().get(obj));
        for (auto field_result : obj) {
          od::field field;
          SJ_TRY(std::move(field_result).get(field));
          std::string_view key;
          SJ_TRY(Key(field, &key));
          uint32_t child = deeper ? targets_->ChildByKey(deeper, depth,
                                                         absl::string_view(key.data(), key.size()))
                                  : 0;
          od::value child_value = field.value();
          SJ_TRY(WalkValue(child_value, depth + 1, child));
        }
        if (here) StoreComposite(here, start);
        return simdjson::SUCCESS;
      }
      case od::json_type::array: {
        const char* start = here ? v.raw_json_token().data() : nullptr;
        od::array arr;
        SJ_TRY(v.get_array().get(arr));
        size_t index = 0;
        for (auto element_result : arr) {
          od::value element;
          SJ_TRY(std::move(element_result).get(element));
          uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
          SJ_TRY(WalkValue(element, depth + 1, child));
          ++index;
        }
        if (here) StoreComposite(here, start);
        return simdjson::SUCCESS;
      }
      case od::json_type::string: {
        // Stage 1 already checked the string's UTF-8 and that it holds no raw control character;
        // what is left to check are its escapes. Without a backslash there are none, and a string
        // that is not captured need not be copied out at all (the iterator skips it).
        if (!here) {
          std::string_view raw = v.raw_json_token();
          if (std::memchr(raw.data(), '\\', raw.size()) == nullptr) return simdjson::SUCCESS;
        }
        std::string_view s;
        SJ_TRY(v.get_string().get(s));
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kString, std::string(s)});
        return simdjson::SUCCESS;
      }
      case od::json_type::number: {
        // Not consumed (the iterator skips it); validated on its raw text so any size is accepted.
        std::string_view raw = v.raw_json_token();
        absl::string_view text = TrimRight(raw.data(), raw.data() + raw.size());
        if (!IsJsonNumber(text)) return simdjson::NUMBER_ERROR;
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kNumber, std::string(text)});
        return simdjson::SUCCESS;
      }
      case od::json_type::boolean: {
        bool b = false;
        SJ_TRY(v.get_bool().get(b));
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kBool, b ? "true" : "false"});
        return simdjson::SUCCESS;
      }
      case od::json_type::null: {
        bool is_null = false;
        SJ_TRY(v.is_null().get(is_null));
        if (!is_null) return simdjson::N_ATOM_ERROR;
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kNull, ""});
        return simdjson::SUCCESS;
      }
    }
    return simdjson::TAPE_ERROR;
  }

 private:
  error_code WalkRecords(od::value& v, size_t depth, uint32_t mask) {
    captures_->records_found = true;
    od::json_type type;
    SJ_TRY(v.type().get(type));
    if (type == od::json_type::null) return WalkValue(v, depth, mask);
    if (type != od::json_type::array) {
      if (type == od::json_type::object) {
        captures_->records_object = true;
      } else {
        captures_->status = absl::InvalidArgumentError(
            "the value at records_path is neither an array of records nor null");
      }
      return WalkValue(v, depth, mask);
    }
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    od::array arr;
    SJ_TRY(v.get_array().get(arr));
    size_t index = 0;
    for (auto element_result : arr) {
      od::value element;
      SJ_TRY(std::move(element_result).get(element));
      uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
      SJ_TRY(WalkRecord(element, depth + 1, child));
      ++index;
    }
    return simdjson::SUCCESS;
  }

  error_code WalkRecord(od::value& v, size_t depth, uint32_t mask) {
    mask = BeginRecord(targets_, captures_, depth, mask);
    std::string_view token = v.raw_json_token();
    const char* start = token.data();
    od::json_type type;
    SJ_TRY(v.type().get(type));
    absl::string_view record;
    if (type == od::json_type::object || type == od::json_type::array) {
      SJ_TRY(WalkValue(v, depth, mask));
      record = TrimRight(start, CurrentLocation());
    } else {
      record = TrimRight(start, start + token.size());
      SJ_TRY(WalkValue(v, depth, mask));
    }
    return EndRecord(*targets_, captures_, record) ? simdjson::SUCCESS : simdjson::CAPACITY;
  }

  // The key of `field` (unescaped). A key without a backslash is its raw bytes (stage 1 checked
  // them), so only keys with escapes are copied out by simdjson's unescaping, which validates them.
  static error_code Key(od::field& field, std::string_view* key) {
    const char* raw = field.key().raw();
    for (const char* p = raw;; ++p) {
      if (*p == '"') {
        *key = std::string_view(raw, size_t(p - raw));
        return simdjson::SUCCESS;
      }
      if (*p == '\\') return field.unescaped_key().get(*key);
    }
  }

  const char* CurrentLocation() {
    const char* p = nullptr;
    if (doc_->current_location().get(p) != simdjson::SUCCESS) p = body_end_;
    return p;
  }

  void StoreComposite(uint32_t here, const char* start) {
    here &= ~Bit(kRecords);
    if (!here) return;
    absl::string_view raw = TrimRight(start, CurrentLocation());
    captures_->Store(here, JsonScalar{JsonScalar::Kind::kComposite, std::string(raw)});
  }

  Targets* targets_;
  Captures* captures_;
  od::document* doc_;
  const char* body_end_;
};

// ---------------------------------------------------------------------------------------------------
// Fallback scanner: the same walk over raw bytes, used only for bodies that are not valid UTF-8.
// It checks the JSON grammar but passes bytes >= 0x80 through unchecked.
// ---------------------------------------------------------------------------------------------------
class FallbackScanner {
 public:
  FallbackScanner(Targets* targets, Captures* captures, absl::string_view body)
      : targets_(targets), captures_(captures), p_(body.data()), end_(body.data() + body.size()) {}

  absl::Status ScanDocument() {
    SkipWs();
    if (!WalkValue(0, targets_->enabled & kAllRootTargets)) return Error();
    SkipWs();
    if (p_ != end_) {
      error_ = "trailing content after the JSON document";
      return Error();
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error() const {
    return absl::DataLossError(
        absl::StrCat("malformed JSON: ", error_.empty() ? "syntax error" : error_));
  }
  bool Fail(const char* what) {
    if (error_.empty()) error_ = what;
    return false;
  }
  void SkipWs() {
    while (p_ < end_ && IsJsonWhitespace(*p_)) ++p_;
  }

  bool WalkValue(size_t depth, uint32_t mask) {
    if (depth > kMaxJsonNestingDepth) return Fail(kTooDeep);
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    if (here & Bit(kRecords)) return WalkRecords(depth, mask & ~Bit(kRecords));
    if (p_ >= end_) return Fail("unexpected end of input");
    const char* start = p_;
    switch (*p_) {
      case '{': {
        ++p_;
        SkipWs();
        if (p_ < end_ && *p_ == '}') {
          ++p_;
        } else {
          while (true) {
            SkipWs();
            std::string key;
            if (p_ >= end_ || *p_ != '"') return Fail("expected an object key");
            if (!ParseString(&key)) return false;
            SkipWs();
            if (p_ >= end_ || *p_ != ':') return Fail("expected ':'");
            ++p_;
            SkipWs();
            uint32_t child = deeper ? targets_->ChildByKey(deeper, depth, key) : 0;
            if (!WalkValue(depth + 1, child)) return false;
            SkipWs();
            if (p_ < end_ && *p_ == ',') {
              ++p_;
              continue;
            }
            if (p_ < end_ && *p_ == '}') {
              ++p_;
              break;
            }
            return Fail("expected ',' or '}'");
          }
        }
        if (here) StoreComposite(here, start);
        return true;
      }
      case '[': {
        ++p_;
        SkipWs();
        if (p_ < end_ && *p_ == ']') {
          ++p_;
        } else {
          size_t index = 0;
          while (true) {
            SkipWs();
            uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
            if (!WalkValue(depth + 1, child)) return false;
            ++index;
            SkipWs();
            if (p_ < end_ && *p_ == ',') {
              ++p_;
              continue;
            }
            if (p_ < end_ && *p_ == ']') {
              ++p_;
              break;
            }
            return Fail("expected ',' or ']'");
          }
        }
        if (here) StoreComposite(here, start);
        return true;
      }
      case '"': {
        std::string s;
        if (!ParseString(here ? &s : nullptr)) return false;
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kString, std::move(s)});
        return true;
      }
      case 't':
      case 'f':
      case 'n': {
        for (const char* lit : {"true", "false", "null"}) {
          size_t n = strlen(lit);
          if (size_t(end_ - p_) >= n && memcmp(p_, lit, n) == 0) {
            p_ += n;
            if (here) {
              JsonScalar::Kind kind =
                  lit[0] == 'n' ? JsonScalar::Kind::kNull : JsonScalar::Kind::kBool;
              captures_->Store(here, JsonScalar{kind, kind == JsonScalar::Kind::kNull ? "" : lit});
            }
            return true;
          }
        }
        return Fail("invalid literal");
      }
      default: {
        while (p_ < end_ && (absl::ascii_isdigit(*p_) || *p_ == '-' || *p_ == '+' || *p_ == '.' ||
                             *p_ == 'e' || *p_ == 'E')) {
          ++p_;
        }
        absl::string_view text(start, size_t(p_ - start));
        if (!IsJsonNumber(text)) return Fail("invalid number or unexpected character");
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kNumber, std::string(text)});
        return true;
      }
    }
  }

  bool WalkRecords(size_t depth, uint32_t mask) {
    captures_->records_found = true;
    if (p_ >= end_) return Fail("unexpected end of input");
    if (*p_ != '[') {
      if (*p_ == '{') {
        captures_->records_object = true;
      } else if (*p_ != 'n') {
        captures_->status = absl::InvalidArgumentError(
            "the value at records_path is neither an array of records nor null");
      }
      return WalkValue(depth, mask);
    }
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    ++p_;
    SkipWs();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    size_t index = 0;
    while (true) {
      SkipWs();
      uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
      if (!WalkRecord(depth + 1, child)) return false;
      ++index;
      SkipWs();
      if (p_ < end_ && *p_ == ',') {
        ++p_;
        continue;
      }
      if (p_ < end_ && *p_ == ']') {
        ++p_;
        return true;
      }
      return Fail("expected ',' or ']' in the records array");
    }
  }

  bool WalkRecord(size_t depth, uint32_t mask) {
    mask = BeginRecord(targets_, captures_, depth, mask);
    const char* start = p_;
    if (!WalkValue(depth, mask)) return false;
    if (!EndRecord(*targets_, captures_, absl::string_view(start, size_t(p_ - start)))) {
      return Fail("too many records");
    }
    return true;
  }

  void StoreComposite(uint32_t here, const char* start) {
    here &= ~Bit(kRecords);
    if (!here) return;
    captures_->Store(
        here, JsonScalar{JsonScalar::Kind::kComposite, std::string(start, size_t(p_ - start))});
  }

  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool ParseHex4(uint32_t* out) {
    if (end_ - p_ < 4) return Fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      int h = HexValue(p_[i]);
      if (h < 0) return Fail("invalid \\u escape");
      v = v * 16 + uint32_t(h);
    }
    p_ += 4;
    *out = v;
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(char(cp));
    } else if (cp < 0x800) {
      out->push_back(char(0xC0 | (cp >> 6)));
      out->push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(char(0xE0 | (cp >> 12)));
      out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(char(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(char(0xF0 | (cp >> 18)));
      out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(char(0x80 | (cp & 0x3F)));
    }
  }

  // At an opening quote; consumes the string, unescaping into `out` when given.
  bool ParseString(std::string* out) {
    ++p_;
    while (true) {
      if (p_ >= end_) return Fail("unterminated string");
      char c = *p_;
      if (c == '"') {
        ++p_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in a string");
      if (c != '\\') {
        if (out) out->push_back(c);
        ++p_;
        continue;
      }
      ++p_;
      if (p_ >= end_) return Fail("unterminated string");
      char e = *p_++;
      char plain = 0;
      switch (e) {
        case '"':
          plain = '"';
          break;
        case '\\':
          plain = '\\';
          break;
        case '/':
          plain = '/';
          break;
        case 'b':
          plain = '\b';
          break;
        case 'f':
          plain = '\f';
          break;
        case 'n':
          plain = '\n';
          break;
        case 'r':
          plain = '\r';
          break;
        case 't':
          plain = '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!ParseHex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            const char* save = p_;
            p_ += 2;
            uint32_t low = 0;
            if (!ParseHex4(&low)) return false;
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              p_ = save;
            }
          }
          if (out) AppendUtf8(cp, out);
          continue;
        }
        default:
          return Fail("invalid escape in a string");
      }
      if (out) out->push_back(plain);
    }
  }

  Targets* targets_;
  Captures* captures_;
  const char* p_;
  const char* end_;
  std::string error_;
};

// "; top-level keys: results (array), count" for messages about a misplaced records_path; "" when
// the body is not a JSON object.
std::string DescribeTopLevel(od::parser* parser, const char* data, size_t len, size_t capacity) {
  od::document doc;
  od::object obj;
  if (parser->iterate(data, len, capacity).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    return "";
  }
  std::vector<std::string> keys;
  for (auto field_result : obj) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) != simdjson::SUCCESS ||
        field.unescaped_key().get(key) != simdjson::SUCCESS) {
      break;
    }
    if (keys.size() == 20) {
      keys.push_back("...");
      break;
    }
    std::string k(key.substr(0, 64));
    od::json_type type;
    if (field.value().type().get(type) == simdjson::SUCCESS && type == od::json_type::array) {
      k += " (array)";
    }
    keys.push_back(std::move(k));
  }
  if (keys.empty()) return "; the response is an empty object";
  return absl::StrCat("; top-level keys: ", absl::StrJoin(keys, ", "));
}

}  // namespace

absl::StatusOr<ParsedPage> FullWalkParse(const ParseRequest& request, od::parser* parser_ptr,
                                         const char* data, size_t len, size_t capacity) {
  od::parser& parser = *parser_ptr;
  ParsedPage page;
  Captures captures;
  captures.page = &page;
  captures.max_records = request.max_records;
  Targets& targets = *request.targets;
  auto too_many = [&] {
    return absl::ResourceExhaustedError(absl::StrCat("the page has more than ", request.max_records,
                                                     " records (the per-page limit)"));
  };
  od::document doc;
  error_code err = parser.iterate(data, len, capacity).get(doc);
  if (err == simdjson::SUCCESS) {
    od::json_type root_type;
    err = doc.type().get(root_type);
    if (err == simdjson::SUCCESS) {
      if (root_type == od::json_type::object || root_type == od::json_type::array) {
        od::value root;
        err = doc.get_value().get(root);
        if (err == simdjson::SUCCESS) {
          SimdWalker walker(&targets, &captures, &doc, data + len);
          err = walker.WalkValue(root, 0, targets.enabled & kAllRootTargets);
        }
        if (err == simdjson::SUCCESS) {
          const char* rest = nullptr;
          if (doc.current_location().get(rest) == simdjson::SUCCESS) {
            return absl::DataLossError("malformed JSON: trailing content after the JSON document");
          }
        }
      } else {
        // A bare scalar body: only useful for scalar pagination values, never for records.
        std::string_view raw;
        err = doc.raw_json_token().get(raw);
      }
    }
  }
  if (captures.too_many_records) return too_many();
  if (err == simdjson::UTF8_ERROR) {
    // Invalid UTF-8 somewhere in the body: extract the records anyway so only the bad ones are
    // lost.
    page = ParsedPage();
    captures = Captures();
    captures.page = &page;
    captures.max_records = request.max_records;
    FallbackScanner scanner(&targets, &captures, absl::string_view(data, len));
    absl::Status s = scanner.ScanDocument();
    if (captures.too_many_records) return too_many();
    if (!s.ok()) return s;
    page.used_utf8_fallback = true;
  } else if (err != simdjson::SUCCESS) {
    if (len == 0) return absl::DataLossError("malformed JSON: empty body");
    if (err == simdjson::DEPTH_ERROR)
      return absl::DataLossError(absl::StrCat("malformed JSON: ", kTooDeep));
    return absl::DataLossError(absl::StrCat("malformed JSON: ", simdjson::error_message(err)));
  }
  if (!captures.status.ok()) return captures.status;
  if (!captures.records_found || captures.records_object) {
    // Never store a whole object as one record: say where the records might be instead.
    std::string keys = DescribeTopLevel(&parser, data, len, capacity);
    const std::string& path = *request.records_path;
    if (!captures.records_found) {
      return absl::NotFoundError(absl::StrCat("records path ", path, " not found", keys));
    }
    if (path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the response is an object, not an array of records: set records_path to the array",
          keys));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("records path ", path, " is an object, not an array of records", keys));
  }
  return page;
}

}  // namespace json_page_internal
}  // namespace etl
