// Internals of JsonPageParser (common/json_page.h), shared by its parsing engines; not an API.
//
// Engines, all filling a ParsedPage through the same Targets/Captures:
//   - the full walk (json_page_walk.cc): simdjson On-Demand visits and validates every value; a
//     hand-written scanner takes over for bodies that are not valid UTF-8. It defines the results
//     (records, captures, errors) for every input.
//   - the structural fast path (json_page_fast.cc): simdjson's run-time dispatched stage 1 and a
//     light walk over its structural index. It either returns exactly what the full walk would, or
//     declines and the full walk runs.
//
// Thread-safety: the types here are per-Parse state (one thread); the functions are thread-safe.
#ifndef ETL_COMMON_JSON_PAGE_INTERNAL_H_
#define ETL_COMMON_JSON_PAGE_INTERNAL_H_

#include <simdjson.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "common/json_page.h"

namespace etl {
namespace json_page_internal {

// RFC 8259 number grammar; validated on the raw text so integers of any size pass unchanged.
inline bool IsJsonNumber(absl::string_view s) {
  size_t i = 0, n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n) return false;
  if (s[i] == '0') {
    ++i;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && absl::ascii_isdigit(s[i])) ++i;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    size_t start = i;
    while (i < n && absl::ascii_isdigit(s[i])) ++i;
    if (i == start) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    size_t start = i;
    while (i < n && absl::ascii_isdigit(s[i])) ++i;
    if (i == start) return false;
  }
  return i == n;
}

inline bool IsJsonWhitespace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline absl::string_view TrimRight(const char* begin, const char* end) {
  while (end > begin && IsJsonWhitespace(end[-1])) --end;
  return absl::string_view(begin, size_t(end - begin));
}

inline bool IsArrayIndex(const std::string& token, size_t index) {
  // RFC 6901: decimal without leading zeros.
  if (token.empty() || (token.size() > 1 && token[0] == '0')) return false;
  size_t v = 0;
  for (char c : token) {
    if (!absl::ascii_isdigit(c)) return false;
    v = v * 10 + size_t(c - '0');
    if (v > (size_t(1) << 40)) return false;
  }
  return v == index;
}

enum Target : int { kRecords = 0, kCursor, kNextUrl, kTotalPages, kTotalCount, kId, kTargetCount };
constexpr uint32_t Bit(int t) { return 1u << t; }
constexpr uint32_t kAllRootTargets =
    Bit(kRecords) | Bit(kCursor) | Bit(kNextUrl) | Bit(kTotalPages) | Bit(kTotalCount);

// The pointers being looked for and where each one is anchored (the id pointer is relative to the
// record being walked). Shared by every engine.
struct Targets {
  std::vector<std::string> tokens[kTargetCount];
  uint32_t enabled = 0;
  size_t base[kTargetCount] = {0, 0, 0, 0, 0, 0};

  bool EndsHere(int t, size_t depth) const { return depth == base[t] + tokens[t].size(); }

  // Split `mask` into targets whose pointer ends at this node and those that continue below it.
  void Split(uint32_t mask, size_t depth, uint32_t* here, uint32_t* deeper) const {
    *here = *deeper = 0;
    if (mask == 0) return;  // Most values of a record: nothing is looked for at or below them.
    for (uint32_t m = mask; m != 0; m &= m - 1) {
      const int t = __builtin_ctz(m);
      if (EndsHere(t, depth)) {
        *here |= Bit(t);
      } else {
        *deeper |= Bit(t);
      }
    }
  }
  uint32_t ChildByKey(uint32_t deeper, size_t depth, absl::string_view key) const {
    uint32_t out = 0;
    for (uint32_t m = deeper; m != 0; m &= m - 1) {
      const int t = __builtin_ctz(m);
      if (tokens[t][depth - base[t]] == key) out |= Bit(t);
    }
    return out;
  }
  uint32_t ChildByIndex(uint32_t deeper, size_t depth, size_t index) const {
    uint32_t out = 0;
    for (uint32_t m = deeper; m != 0; m &= m - 1) {
      const int t = __builtin_ctz(m);
      if (IsArrayIndex(tokens[t][depth - base[t]], index)) out |= Bit(t);
    }
    return out;
  }
};

// Per-Parse state shared by every engine: where captured values go.
struct Captures {
  ParsedPage* page = nullptr;
  bool records_found = false;
  JsonScalar current_id;
  // Targets already stored (Bit(t)); a later match of the same target changes nothing.
  uint32_t captured = 0;
  absl::Status status;  // Non-JSON problems found while walking (e.g. records not an array).
  size_t max_records = 0;
  bool too_many_records = false;  // Stops both walkers; reported before any JSON error.

  // False (and the walk stops) once the page holds max_records records.
  bool Admit() {
    if (page->records.size() < max_records) return true;
    too_many_records = true;
    return false;
  }
  bool records_object = false;  // The value at records_path is an object (not records).

  JsonScalar* Slot(int t) {
    switch (t) {
      case kCursor:
        return &page->cursor;
      case kNextUrl:
        return &page->next_url;
      case kTotalPages:
        return &page->total_pages;
      case kTotalCount:
        return &page->total_count;
      case kId:
        return &current_id;
      default:
        return nullptr;
    }
  }
  // Stores `value` for every target in `here` (first occurrence wins for duplicate keys).
  void Store(uint32_t here, const JsonScalar& value) {
    for (int t = kCursor; t < kTargetCount; ++t) {
      if (!(here & Bit(t)) || (captured & Bit(t))) continue;
      *Slot(t) = value;
      captured |= Bit(t);
    }
  }
};

// A record's start, shared by every walker: arms the id pointer (relative to the record at `depth`)
// and returns the mask to walk the record with.
inline uint32_t BeginRecord(Targets* targets, Captures* captures, size_t depth, uint32_t mask) {
  if (!(targets->enabled & Bit(kId))) return mask;
  targets->base[kId] = depth;
  captures->captured &= ~Bit(kId);
  captures->current_id = JsonScalar{};
  return mask | Bit(kId);
}

// A record's end: adds its text and (with an id pointer) its natural key. False, with nothing
// added, once the page holds max_records records.
inline bool EndRecord(const Targets& targets, Captures* captures, absl::string_view record) {
  if (!captures->Admit()) return false;
  captures->page->records.push_back(record);
  if (targets.enabled & Bit(kId)) {
    JsonScalar& id = captures->current_id;
    captures->page->natural_keys.push_back(id.present() ? std::move(id.text) : std::string());
  }
  return true;
}

inline constexpr char kTooDeep[] = "nesting deeper than 512 levels";
static_assert(kMaxJsonNestingDepth == 512, "update kTooDeep");

// ---------------------------------------------------------------------------------------------------
// The full walk (json_page_walk.cc).
// ---------------------------------------------------------------------------------------------------

// What a parse is asked for: the pointers and the per-page record limit.
struct ParseRequest {
  Targets* targets = nullptr;  // Mutable: the id pointer's anchor moves from record to record.
  const std::string* records_path = nullptr;  // For error messages.
  size_t max_records = 0;
};

// Parses data[0, len) (capacity >= len + SIMDJSON_PADDING bytes readable) with simdjson On-Demand,
// every value visited; the UTF-8 fallback scanner takes over for invalid UTF-8. Defines
// JsonPageParser::Parse's result for every input.
absl::StatusOr<ParsedPage> FullWalkParse(const ParseRequest& request,
                                         simdjson::ondemand::parser* parser, const char* data,
                                         size_t len, size_t capacity);

// ---------------------------------------------------------------------------------------------------
// The structural fast path (json_page_fast.cc).
// ---------------------------------------------------------------------------------------------------

// Working memory of the fast path: stage 1's structural index (four bytes per byte of the largest
// document so far) and a scratch buffer for unescaping strings.
class FastPathBuffers {
 public:
  FastPathBuffers();
  ~FastPathBuffers();
  FastPathBuffers(const FastPathBuffers&) = delete;
  FastPathBuffers& operator=(const FastPathBuffers&) = delete;

  void Release();

  // The stage-1 kernel to use; nullptr (default) = simdjson's run-time choice for this CPU. For
  // tests that compare kernels ("fallback", "westmere", "haswell", "icelake").
  void set_implementation(const simdjson::implementation* implementation);

  struct State;
  State* state() { return state_.get(); }

 private:
  std::unique_ptr<State> state_;
};

enum class FastOutcome {
  kParsed,    // `page` holds exactly what FullWalkParse would return (an OK page).
  kDeclined,  // Anything else (malformed, invalid UTF-8, an error result, too deep, too many
              // records, a bare scalar body...): FullWalkParse must run. `page` is garbage.
};

// The fast path over data[0, len) (capacity >= len + SIMDJSON_PADDING bytes readable, and
// data[len] == '\0' as in a std::string).
FastOutcome FastParse(const ParseRequest& request, FastPathBuffers* buffers, const char* data,
                      size_t len, ParsedPage* page);

// Which engines JsonPageParser::Parse runs, for tests and benchmarks.
enum class Engine {
  kAuto,      // The fast path, the full walk when it declines (production).
  kFullWalk,  // The full walk only (the reference).
  kFastOnly,  // The fast path only; UNAVAILABLE when it declines.
};

// Test and benchmark hooks on one parser.
struct JsonPageParserPeer {
  static void SetEngine(JsonPageParser* parser, Engine engine);
  // nullptr = the run-time choice (see FastPathBuffers::set_implementation).
  static void SetStage1Implementation(JsonPageParser* parser,
                                      const simdjson::implementation* implementation);
};

}  // namespace json_page_internal
}  // namespace etl

#endif  // ETL_COMMON_JSON_PAGE_INTERNAL_H_
