#include "writer_service/copy_text.h"

#include <simdjson.h>

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace etl {
namespace {

// Bytes that need an escape in COPY text format.
struct EscapeTable {
  bool special[256] = {};
  constexpr EscapeTable() {
    special[static_cast<unsigned char>('\\')] = true;
    special[static_cast<unsigned char>('\t')] = true;
    special[static_cast<unsigned char>('\n')] = true;
    special[static_cast<unsigned char>('\r')] = true;
  }
};
constexpr EscapeTable kEscapes;

// True when some byte of `word` is a backslash or below 0x0E (tab, newline and carriage return are;
// other control bytes give a harmless false positive). Exact "has a zero byte" bit tricks: no byte
// that needs escaping is ever missed.
inline bool WordMayNeedEscape(uint64_t word) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  const uint64_t backslashes = word ^ (kOnes * static_cast<unsigned char>('\\'));
  const uint64_t has_backslash = (backslashes - kOnes) & ~backslashes & kHighs;
  const uint64_t has_below_0e = (word - kOnes * 0x0E) & ~word & kHighs;
  return (has_backslash | has_below_0e) != 0;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid.
size_t ValidSequenceLength(absl::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  unsigned char c = p[i];
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return i + k < n && (p[i + k] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && p[i + 1] < 0xA0) return 0;   // overlong
    if (c == 0xED && p[i + 1] >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && p[i + 1] < 0x90) return 0;   // overlong
    if (c == 0xF4 && p[i + 1] >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

void AppendCopyText(std::string* out, absl::string_view value) {
  // Most JSON has no byte that needs escaping: skip 8 bytes at a time while no byte of the word can
  // be one, and copy whole runs of ordinary bytes with one append.
  out->reserve(out->size() + value.size());
  const char* p = value.data();
  const char* const end = p + value.size();
  const char* run = p;  // First byte not appended yet.
  while (true) {
    while (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, sizeof(word));
      if (WordMayNeedEscape(word)) break;
      p += 8;
    }
    const char* const stop = end - p >= 8 ? p + 8 : end;
    while (p < stop && !kEscapes.special[static_cast<unsigned char>(*p)]) ++p;
    if (p == end) break;
    if (p == stop) continue;  // The word held another control byte: nothing to escape.
    out->append(run, static_cast<size_t>(p - run));
    char e;
    switch (*p) {
      case '\\':
        e = '\\';
        break;
      case '\t':
        e = 't';
        break;
      case '\n':
        e = 'n';
        break;
      default:
        e = 'r';
        break;
    }
    out->push_back('\\');
    out->push_back(e);
    run = ++p;
  }
  out->append(run, static_cast<size_t>(end - run));
}

bool IsValidUtf8(absl::string_view bytes) {
  return simdjson::validate_utf8(bytes.data(), bytes.size());
}

bool HasJsonNulEscape(absl::string_view json) {
  // Escapes read left to right from the first backslash of a run: "\\" pairs are skipped whole, so
  // a 'u' is an escape exactly when an odd number of backslashes precedes it.
  const char* p = json.data();
  const char* const end = p + json.size();
  while (end - p >= 2) {
    p = static_cast<const char*>(std::memchr(p, '\\', static_cast<size_t>(end - p)));
    if (p == nullptr || end - p < 2) return false;
    if (p[1] == 'u' && end - p >= 6 && std::memcmp(p + 2, "0000", 4) == 0) return true;
    p += 2;
  }
  return false;
}

absl::Status PrecheckRecord(absl::string_view json) {
  if (json.empty()) return absl::InvalidArgumentError("empty record (not JSON)");
  if (json.size() > kMaxPgValueBytes) {
    return absl::InvalidArgumentError("record larger than PostgreSQL's 1 GB value limit");
  }
  if (!IsValidUtf8(json)) return absl::InvalidArgumentError("invalid UTF-8");
  if (memchr(json.data(), '\0', json.size()) != nullptr) {
    return absl::InvalidArgumentError("NUL byte in record");
  }
  if (HasJsonNulEscape(json)) {
    return absl::InvalidArgumentError("\\u0000 in a JSON string (jsonb cannot store it)");
  }
  return absl::OkStatus();
}

std::string LossyUtf8(absl::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  size_t i = 0;
  while (i < raw.size()) {
    size_t len = raw[i] == '\0' ? 0 : ValidSequenceLength(raw, i);
    if (len == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(raw.data() + i, len);
      i += len;
    }
  }
  return out;
}

}  // namespace etl
