// The structural fast path of JsonPageParser (see json_page_internal.h).
//
// simdjson's stage 1 (UTF-8 validation, strings, the index of every structural character and
// value start) runs in libsimdjson.so on the kernel simdjson picks for this CPU at run time
// (icelake/haswell/westmere/fallback); nothing here is compiled for a particular instruction set,
// so a baseline build runs anywhere. The full walk then spends most of its time in On-Demand's
// generic iteration code, visiting every value. This engine walks the same structural index
// directly, one token at a time: the grammar is checked token by token, numbers and literals on
// their raw text, strings with a 16-byte scan for quotes, backslashes and control characters, and
// strings with escapes through the same kernel's unescaper as the full walk.
//
// Exactness: the walk accepts a body only when it is JSON that the full walk also accepts (valid
// UTF-8, every escape valid, no raw control character in a string, nesting within
// kMaxJsonNestingDepth, records_path at an array or null, at most max_records records) and then
// returns the same records (same byte ranges) and captures, because it makes the same decisions
// (Targets/Captures) in the same order. Anything else, including bodies that are merely unusual
// (a bare scalar, a records_path that is absent or an object), is declined and the full walk
// produces the result and the error message. Declining costs one stage 1 pass; being too lax
// would change results, so every check errs on the side of declining.
#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "common/json_page_internal.h"

#if defined(__SSE2__)
#include <emmintrin.h>  // Part of the x86-64 baseline: no run-time check needed.
#endif

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
        chosen ? chosen : static_cast<const simdjson::implementation*>(
                              simdjson::get_active_implementation());
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

// Offset of the first byte of [p, end) that is '"', '\\' or a control character (< 0x20); end - p
// when there is none. Reads up to 15 bytes past `end` (the body's padding) but ignores them.
inline size_t FindStringSpecial(const char* p, const char* end) {
  const char* const start = p;
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i below_space = _mm_set1_epi8(0x1F);
  while (p < end) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmpeq_epi8(_mm_max_epu8(v, below_space), below_space));
    uint32_t bits = uint32_t(_mm_movemask_epi8(special));
    const size_t left = size_t(end - p);
    if (left < 16) bits &= (uint32_t(1) << left) - 1;
    if (bits != 0) return size_t(p - start) + size_t(__builtin_ctz(bits));
    p += 16;
  }
  return size_t(end - start);
#else
  for (; p < end; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"' || c == '\\' || c < 0x20) break;
  }
  return size_t(p - start);
#endif
}

class StructuralWalker {
 public:
  StructuralWalker(Targets* targets, Captures* captures, FastPathBuffers::State* state,
                   const char* buf, size_t len)
      : targets_(targets),
        captures_(captures),
        state_(state),
        buf_(buf),
        len_(len),
        ix_(state->stage1->structural_indexes.get()),
        n_(state->stage1->n_structural_indexes) {}

  bool WalkDocument() {
    if (n_ == 0) return false;
    const char c = Char(0);
    if (c != '{' && c != '[') return false;  // A bare scalar: never records.
    if (!WalkValue(0, targets_->enabled & kAllRootTargets)) return false;
    return i_ == n_;  // Anything after the document is an error.
  }

 private:
  char Char(uint32_t t) const { return buf_[ix_[t]]; }
  // Where token t starts (the end of the body for the one past the last).
  size_t Start(uint32_t t) const { return t < n_ ? ix_[t] : len_; }
  // Tokens [first, i_) as text, without the whitespace that follows them.
  absl::string_view TextFrom(uint32_t first) const {
    return TrimRight(buf_ + ix_[first], buf_ + Start(i_));
  }
  // The text of scalar token t (a number or a literal).
  absl::string_view ScalarText(uint32_t t) const {
    return TrimRight(buf_ + ix_[t], buf_ + Start(t + 1));
  }

  // Checks string token t and, when `want`, sets `*out` to its unescaped value (valid until the
  // next call). False for anything the full walk might reject.
  bool ReadString(uint32_t t, bool want, absl::string_view* out) {
    const absl::string_view token = ScalarText(t);
    if (token.size() < 2 || token.back() != '"') return false;
    const char* const begin = token.data() + 1;
    const char* const end = token.data() + token.size() - 1;  // The closing quote.
    const char* p = begin + FindStringSpecial(begin, end);
    if (p == end) {
      if (want) *out = absl::string_view(begin, size_t(end - begin));
      return true;
    }
    // Escapes: the closing quote must be the first quote not escaped, and no control character.
    while (p < end) {
      if (*p != '\\') return false;  // A quote or a control character inside the string.
      if (end - p < 2) return false;  // The closing quote would be escaped.
      p += 2;
      p += FindStringSpecial(p, end);
    }
    // Escape sequences are checked (and decoded) by the kernel's unescaper, as in the full walk.
    uint8_t* dst = state_->Scratch(size_t(end - begin));
    const uint8_t* dst_end =
        state_->stage1->parse_string(reinterpret_cast<const uint8_t*>(begin), dst);
    if (dst_end == nullptr) return false;
    if (want) *out = absl::string_view(reinterpret_cast<const char*>(dst), size_t(dst_end - dst));
    return true;
  }

  void StoreComposite(uint32_t here, uint32_t first) {
    here &= ~Bit(kRecords);
    if (!here) return;
    captures_->Store(here, JsonScalar{JsonScalar::Kind::kComposite, std::string(TextFrom(first))});
  }

  bool WalkValue(size_t depth, uint32_t mask) {
    if (depth > kMaxJsonNestingDepth || i_ >= n_) return false;
    uint32_t here = 0, deeper = 0;
    targets_->Split(mask, depth, &here, &deeper);
    if (here & Bit(kRecords)) return WalkRecords(depth, mask & ~Bit(kRecords));
    const uint32_t first = i_;
    switch (Char(i_)) {
      case '{': {
        ++i_;
        if (i_ < n_ && Char(i_) == '}') {
          ++i_;
        } else {
          while (true) {
            if (i_ >= n_ || Char(i_) != '"') return false;
            absl::string_view key;
            if (!ReadString(i_, deeper != 0, &key)) return false;
            ++i_;
            if (i_ >= n_ || Char(i_) != ':') return false;
            ++i_;
            const uint32_t child = deeper ? targets_->ChildByKey(deeper, depth, key) : 0;
            if (!WalkValue(depth + 1, child)) return false;
            if (i_ >= n_) return false;
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
        if (i_ < n_ && Char(i_) == ']') {
          ++i_;
        } else {
          size_t index = 0;
          while (true) {
            const uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
            if (!WalkValue(depth + 1, child)) return false;
            ++index;
            if (i_ >= n_) return false;
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
        if (!ReadString(i_, here != 0, &s)) return false;
        ++i_;
        if (here) captures_->Store(here, JsonScalar{JsonScalar::Kind::kString, std::string(s)});
        return true;
      }
      case 't':
      case 'f':
      case 'n': {
        const absl::string_view text = ScalarText(i_);
        JsonScalar::Kind kind;
        if (text == "true" || text == "false") {
          kind = JsonScalar::Kind::kBool;
        } else if (text == "null") {
          kind = JsonScalar::Kind::kNull;
        } else {
          return false;
        }
        ++i_;
        if (here) {
          captures_->Store(here, JsonScalar{kind, kind == JsonScalar::Kind::kNull
                                                      ? std::string()
                                                      : std::string(text)});
        }
        return true;
      }
      default: {
        const absl::string_view text = ScalarText(i_);
        if (!IsJsonNumber(text)) return false;
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
    if (i_ < n_ && Char(i_) == ']') {
      ++i_;
      return true;
    }
    size_t index = 0;
    while (true) {
      const uint32_t child = deeper ? targets_->ChildByIndex(deeper, depth, index) : 0;
      if (!WalkRecord(depth + 1, child)) return false;
      ++index;
      if (i_ >= n_) return false;
      const char next = Char(i_++);
      if (next == ',') continue;
      if (next == ']') return true;
      return false;
    }
  }

  bool WalkRecord(size_t depth, uint32_t mask) {
    const bool want_id = targets_->enabled & Bit(kId);
    if (want_id) {
      targets_->base[kId] = depth;
      captures_->captured[kId] = false;
      captures_->current_id = JsonScalar{};
      mask |= Bit(kId);
    }
    const uint32_t first = i_;
    if (!WalkValue(depth, mask)) return false;
    if (!captures_->Admit()) return false;  // The full walk reports the limit.
    captures_->page->records.push_back(TextFrom(first));
    if (want_id) {
      JsonScalar& id = captures_->current_id;
      captures_->page->natural_keys.push_back(id.present() ? std::move(id.text) : std::string());
    }
    return true;
  }

  Targets* targets_;
  Captures* captures_;
  FastPathBuffers::State* state_;
  const char* buf_;
  size_t len_;
  const uint32_t* ix_;
  uint32_t n_;
  uint32_t i_ = 0;  // The next token.
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
