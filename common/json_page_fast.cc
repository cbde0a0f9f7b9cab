// The structural fast path of JsonPageParser (see json_page_internal.h).
//
// simdjson's stage 1 (UTF-8 validation, string boundaries and raw control characters, the index of
// every structural character and value start) runs in libsimdjson.so on the kernel simdjson picks
// for this CPU at run time (icelake/haswell/westmere/fallback); On-Demand uses that same stage 1,
// but its iteration code is compiled into this program for the build's baseline target, and the
// full walk spends most of its time there, visiting every value. This engine walks stage 1's index
// directly instead: the grammar token by token (a subtree no pointer looks into is checked by a
// loop, not a recursion), numbers (eight digits at a time) and literals on their raw text, and
// escapes through the same kernel's unescaper as the full walk; strings without a backslash need
// nothing more (one memchr finds the next backslash for all the strings before it). Nothing here
// is compiled for a particular instruction set, so a baseline build runs on any x86-64 CPU.
//
// Exactness: the walk accepts a body only when it is JSON that the full walk also accepts (stage 1
// passed, every token where the grammar allows it, every number, literal and escape valid,
// nesting within kMaxJsonNestingDepth, records_path at an array or null, at most max_records
// records) and then returns the same records (same byte ranges) and captures, because it makes
// the same decisions (Targets/Captures) in the same order. Anything else, including bodies that
// are merely unusual (a bare scalar, a records_path that is absent or an object), is declined and
// the full walk produces the result and the error message. Declining costs one stage 1 pass;
// being too lax would change results, so every check errs on the side of declining.
#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "common/json_page_internal.h"

namespace etl {
namespace json_page_internal {

struct FastPathBuffers::State {
  // The kernel chosen by a test; nullptr = simdjson's run-time choice.
  const simdjson::implementation* chosen = nullptr;
  // Stage 1's working memory (the structural index), for documents up to capacity() bytes.
  std::unique_ptr<simdjson::internal::dom_parser_implementation> stage1;
  // Unescaped strings (keys compared with a pointer token, captured values, validation).
  std::unique_ptr<uint8_t[]> scratch;
  size_t scratch_size = 0;

  // Makes `stage1` able to index `len` bytes; false when simdjson cannot (too big, no memory).
  bool Prepare(size_t len) {
    if (stage1 && stage1->capacity() >= len) return true;
    // Grow in steps so that pages of slowly growing size do not reallocate each time.
    constexpr size_t kStep = size_t(64) << 10;
    size_t capacity = (len + kStep - 1) / kStep * kStep;
    if (capacity > simdjson::SIMDJSON_MAXSIZE_BYTES) capacity = len;
    if (stage1) {
      if (stage1->set_capacity(capacity) == simdjson::SUCCESS) return true;
      stage1.reset();
      return false;
    }
    const simdjson::implementation* implementation =
        chosen
            ? chosen
            : static_cast<const simdjson::implementation*>(simdjson::get_active_implementation());
    // Stage 1 does not use the depth stack; the smallest one is allocated.
    if (implementation->create_dom_parser_implementation(capacity, 1, stage1) !=
        simdjson::SUCCESS) {
      stage1.reset();
      return false;
    }
    return true;
  }

  uint8_t* Scratch(size_t len) {
    const size_t need = len + simdjson::SIMDJSON_PADDING;
    if (scratch_size < need) {
      scratch.reset(new uint8_t[need]);
      scratch_size = need;
    }
    return scratch.get();
  }
};

FastPathBuffers::FastPathBuffers() : state_(std::make_unique<State>()) {}
FastPathBuffers::~FastPathBuffers() = default;

void FastPathBuffers::Release() {
  state_->stage1.reset();
  state_->scratch.reset();
  state_->scratch_size = 0;
}

void FastPathBuffers::set_implementation(const simdjson::implementation* implementation) {
  state_->chosen = implementation;
  state_->stage1.reset();
}

namespace {

// The number of ASCII digits at the start of [p, end). Reads up to 7 bytes past `end` (the body's
// padding) but ignores them.
inline size_t DigitRun(const char* p, const char* end) {
  const char* q = p;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint64_t kHigh = 0xF0F0F0F0F0F0F0F0u, kThirty = 0x3030303030303030u;
  constexpr uint64_t kSix = 0x0606060606060606u;
  while (q < end) {
    uint64_t x;
    std::memcpy(&x, q, sizeof x);
    // A byte is a digit when it is 0x3_ and still 0x3_ plus 6. A byte of 0xFA or more carries
    // into the next one, but is itself flagged, so the first flagged byte is exact.
    const uint64_t not_digit = ((x & kHigh) ^ kThirty) | (((x + kSix) & kHigh) ^ kThirty);
    if (not_digit != 0) {
      q += __builtin_ctzll(not_digit) / 8;
      break;
    }
    q += 8;
  }
  return size_t((q < end ? q : end) - p);
#else
  while (q < end && *q >= '0' && *q <= '9') ++q;
  return size_t(q - p);
#endif
}

// IsJsonNumber (json_page_internal.h), the same grammar, eight digits at a time. Reads up to 7
// bytes past the text (the body's padding).
inline bool IsJsonNumberPadded(absl::string_view text) {
  const char* p = text.data();
  const char* const end = p + text.size();
  if (p < end && *p == '-') ++p;
  if (p >= end) return false;
  if (*p == '0') {
    ++p;
  } else if (*p >= '1' && *p <= '9') {
    p += DigitRun(p, end);
  } else {
    return false;
  }
  if (p < end && *p == '.') {
    ++p;
    const size_t digits = DigitRun(p, end);
    if (digits == 0) return false;
    p += digits;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < end && (*p == '+' || *p == '-')) ++p;
    const size_t digits = DigitRun(p, end);
    if (digits == 0) return false;
    p += digits;
  }
  return p == end;
}

bool IsJsonLiteral(absl::string_view text) {
  return text == "true" || text == "false" || text == "null";
}

class StructuralWalker {
 public:
  // `data[len]` must be readable (a std::string's terminating NUL): the token one past the last
  // reads it, and no token starts with '\0'.
  StructuralWalker(Targets* targets, Captures* captures, FastPathBuffers::State* state,
                   const char* buf, size_t len)
      : targets_(targets),
        captures_(captures),
        state_(state),
        buf_(buf),
        end_(buf + len),
        ix_(state->stage1->structural_indexes.get()),
        n_(state->stage1->n_structural_indexes) {
    // Tokens n_ and n_ + 1 start at the end of the body (stage 1 allocates room for them), so
    // that Start(t + 1) needs no bounds check and Char(n_) is '\0'.
    state->stage1->structural_indexes[n_] = uint32_t(len);
    state->stage1->structural_indexes[n_ + 1] = uint32_t(len);
  }

  bool WalkDocument() {
    if (n_ == 0) return false;
    const char c = Char(0);
    if (c != '{' && c != '[') return false;  // A bare scalar: never records.
    if (!WalkValue(0, targets_->enabled & kAllRootTargets)) return false;
    return i_ == n_;  // Anything after the document is an error.
  }

 private:
  // The first byte of token t; '\0' for t == n_.
  char Char(uint32_t t) const { return buf_[ix_[t]]; }
  const char* Start(uint32_t t) const { return buf_ + ix_[t]; }
  // Tokens [first, i_) as text, without the whitespace that follows them.
  absl::string_view TextFrom(uint32_t first) const { return TrimRight(Start(first), Start(i_)); }
  // The text of token t (a number or a literal; a string with its quotes).
  absl::string_view TokenText(uint32_t t) const { return TrimRight(Start(t), Start(t + 1)); }

  // Whether string token t holds a backslash. Strings are visited in document order, so one
  // memchr finds the next backslash for all the strings before it.
  bool HasBackslash(uint32_t t) {
    const char* s = Start(t);
    if (next_backslash_ < s) {
      const void* found = std::memchr(s, '\\', size_t(end_ - s));
      next_backslash_ = found ? static_cast<const char*>(found) : end_;
    }
    return next_backslash_ < Start(t + 1);
  }

  // Unescapes string token t (which has a backslash) with the stage-1 kernel's unescaper, as the
  // full walk does; false for an invalid escape. The result is valid until the next call.
  bool Unescape(uint32_t t, absl::string_view* out) {
    const char* s = Start(t);
    uint8_t* dst = state_->Scratch(size_t(Start(t + 1) - s));
    const uint8_t* dst_end =
        state_->stage1->parse_string(reinterpret_cast<const uint8_t*>(s + 1), dst);
    if (dst_end == nullptr) return false;
    *out = absl::string_view(reinterpret_cast<const char*>(dst), size_t(dst_end - dst));
    return true;
  }

  // Checks string token t; nothing is extracted.
  bool CheckString(uint32_t t) {
    if (!HasBackslash(t)) return true;  // Stage 1 checked its bytes.
    absl::string_view ignored;
    return Unescape(t, &ignored);
  }

  // Checks string token t and sets `*out` to its value (valid until the next call).
  bool ReadString(uint32_t t, absl::string_view* out) {
    if (HasBackslash(t)) return Unescape(t, out);
    // Without a backslash the string ends at its first quote after the opening one, which stage 1
    // made the last byte of the token before any whitespace.
    const absl::string_view token = TokenText(t);
    if (token.size() < 2 || token.back() != '"') return false;
    *out = token.substr(1, token.size() - 2);
    return true;
  }

  void StoreComposite(uint32_t here, uint32_t first) {
    here &= ~Bit(kRecords);
    if (!here) return;
    captures_->Store(here, JsonScalar{JsonScalar::Kind::kComposite, std::string(TextFrom(first))});
  }

  // Checks the value at token i_ (nesting `depth`) and everything in it, and moves past it;
  // nothing is captured. The same checks as WalkValue, without recursion.
  bool SkipValue(size_t depth) {
    enum class State { kValue, kKey, kAfterValue };
    State state = State::kValue;
    size_t open = 0;  // Containers opened here; open_[k] is '}' or ']', the k-th one's end.
    uint32_t i = i_;
    bool ok = true;
    while (ok) {
      switch (state) {
        case State::kValue:
          if (depth + open > kMaxJsonNestingDepth) {
            ok = false;
            break;
          }
          switch (Char(i)) {
            case '{':
              open_[open++] = '}';
              ++i;
              if (Char(i) == '}') {
                ++i;
                --open;
                state = State::kAfterValue;
              } else {
                state = State::kKey;
              }
              break;
            case '[':
              open_[open++] = ']';
              ++i;
              if (Char(i) == ']') {
                ++i;
                --open;
                state = State::kAfterValue;
              }
              break;
            case '"':
              ok = CheckString(i);
              ++i;
              state = State::kAfterValue;
              break;
            case 't':
            case 'f':
            case 'n':
              ok = IsJsonLiteral(TokenText(i));
              ++i;
              state = State::kAfterValue;
              break;
            default:
              ok = IsJsonNumberPadded(TokenText(i));
              ++i;
              state = State::kAfterValue;
              break;
          }
          break;
        case State::kKey:
          ok = Char(i) == '"' && CheckString(i) && Char(i + 1) == ':';
          i += 2;
          state = State::kValue;
          break;
        case State::kAfterValue: {
          if (open == 0) {
            i_ = i;
            return true;
          }
          const char c = Char(i++);
          if (c == ',') {
            state = open_[open - 1] == '}' ? State::kKey : State::kValue;
          } else if (c == open_[open - 1]) {
            --open;
          } else {
            ok = false;
          }
          break;
        }
      }
    }
    return false;
  }

  // The value at token i_ when a target is at or below it (`mask` != 0): the full walk's logic.
  bool WalkValue(size_t depth, uint32_t mask) {
    if (mask == 0) return SkipValue(depth);
    if (depth > kMaxJsonNestingDepth) return false;
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    if (here & Bit(kRecords)) return WalkRecords(depth, mask & ~Bit(kRecords));
    const uint32_t first = i_;
    switch (Char(i_)) {
      case '{': {
        ++i_;
        if (Char(i_) == '}') {
          ++i_;
        } else {
          while (true) {
            if (Char(i_) != '"') return false;
            // A target already captured is not looked for again (a later match would store
            // nothing), so most keys of a record need no reading once its id is found.
            const uint32_t live = deeper & ~captures_->captured;
            uint32_t child = 0;
            if (live) {
              absl::string_view key;
              if (!ReadString(i_, &key)) return false;
              child = targets_->ChildByKey(live, depth, key);
            } else if (!CheckString(i_)) {
              return false;
            }
            ++i_;
            if (Char(i_) != ':') return false;
            ++i_;
            if (!(child ? WalkValue(depth + 1, child) : SkipValue(depth + 1))) return false;
            const char c = Char(i_++);
            if (c == ',') continue;
            if (c == '}') break;
            return false;
          }
        }
        if (here) StoreComposite(here, first);
        return true;
      }
      case '[': {
        ++i_;
        if (Char(i_) == ']') {
          ++i_;
        } else {
          size_t index = 0;
          while (true) {
            const uint32_t live = deeper & ~captures_->captured;
            const uint32_t child = live ? targets_->ChildByIndex(live, depth, index) : 0;
            if (!(child ? WalkValue(depth + 1, child) : SkipValue(depth + 1))) return false;
            ++index;
            const char c = Char(i_++);
            if (c == ',') continue;
            if (c == ']') break;
            return false;
          }
        }
        if (here) StoreComposite(here, first);
        return true;
      }
      case '"': {
        absl::string_view s;
        if (!ReadString(i_, &s)) return false;
        ++i_;
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kString, std::string(s)});
        return true;
      }
      case 't':
      case 'f':
      case 'n': {
        const absl::string_view text = TokenText(i_);
        if (!IsJsonLiteral(text)) return false;
        ++i_;
        if (here && text == "null") {
          captures_->Store(here, JsonScalar{JsonScalar::Kind::kNull, ""});
        } else if (here) {
          captures_->Store(here, JsonScalar{JsonScalar::Kind::kBool, std::string(text)});
        }
        return true;
      }
      default: {
        const absl::string_view text = TokenText(i_);
        if (!IsJsonNumberPadded(text)) return false;
        ++i_;
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kNumber, std::string(text)});
        return true;
      }
    }
  }

  // The value at records_path: its elements are the records. Only an array or null is taken;
  // anything else is an error result, worded by the full walk.
  bool WalkRecords(size_t depth, uint32_t mask) {
    captures_->records_found = true;
    const char c = Char(i_);
    if (c == 'n') return WalkValue(depth, mask);  // null: no records.
    if (c != '[') return false;
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    ++i_;
    if (Char(i_) == ']') {
      ++i_;
      return true;
    }
    size_t index = 0;
    while (true) {
      const uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
      if (!WalkRecord(depth + 1, child)) return false;
      ++index;
      const char next = Char(i_++);
      if (next == ',') continue;
      if (next == ']') return true;
      return false;
    }
  }

  bool WalkRecord(size_t depth, uint32_t mask) {
    mask = BeginRecord(targets_, captures_, depth, mask);
    const uint32_t first = i_;
    if (!WalkValue(depth, mask)) return false;
    return EndRecord(*targets_, captures_, TextFrom(first));  // The full walk reports the limit.
  }

  Targets* targets_;
  Captures* captures_;
  FastPathBuffers::State* state_;
  const char* buf_;
  const char* end_;
  const uint32_t* ix_;
  uint32_t n_;
  uint32_t i_ = 0;                        // The next token.
  const char* next_backslash_ = nullptr;  // The first backslash at or after the last string read.
  char open_[kMaxJsonNestingDepth + 2];   // SkipValue's stack of open containers.
};

}  // namespace

FastOutcome FastParse(const ParseRequest& request, FastPathBuffers* buffers, const char* data,
                      size_t len, ParsedPage* page) {
  FastPathBuffers::State* state = buffers->state();
  if (len == 0 || !state->Prepare(len)) return FastOutcome::kDeclined;
  if (state->stage1->stage1(reinterpret_cast<const uint8_t*>(data), len,
                            simdjson::stage1_mode::regular) != simdjson::SUCCESS) {
    return FastOutcome::kDeclined;
  }
  Captures captures;
  captures.page = page;
  captures.max_records = request.max_records;
  StructuralWalker walker(request.targets, &captures, state, data, len);
  if (!walker.WalkDocument() || !captures.records_found || captures.records_object ||
      captures.too_many_records || !captures.status.ok()) {
    return FastOutcome::kDeclined;
  }
  return FastOutcome::kParsed;
}

}  // namespace json_page_internal
}  // namespace etl
