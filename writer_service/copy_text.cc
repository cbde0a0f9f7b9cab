#include "writer_service/copy_text.h"

#include <cstring>

#include <simdjson.h>

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
  const char* p = value.data();
  const char* end = p + value.size();
  // Copy runs of ordinary bytes in one append; most JSON has no byte that needs escaping.
  while (p < end) {
    const char* run = p;
    while (p < end && !kEscapes.special[static_cast<unsigned char>(*p)]) ++p;
    out->append(run, static_cast<size_t>(p - run));
    if (p == end) break;
    char e;
    switch (*p) {
      case '\\': e = '\\'; break;
      case '\t': e = 't'; break;
      case '\n': e = 'n'; break;
      default: e = 'r'; break;
    }
    out->push_back('\\');
    out->push_back(e);
    ++p;
  }
}

bool IsValidUtf8(absl::string_view bytes) {
  return simdjson::validate_utf8(bytes.data(), bytes.size());
}

bool HasJsonNulEscape(absl::string_view json) {
  size_t pos = 0;
  while (true) {
    const void* hit = memmem(json.data() + pos, json.size() - pos, "u0000", 5);
    if (hit == nullptr) return false;
    size_t u = static_cast<size_t>(static_cast<const char*>(hit) - json.data());
    // It is an escape when an odd number of backslashes precedes the 'u'.
    size_t backslashes = 0;
    while (backslashes < u && json[u - 1 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 1) return true;
    pos = u + 1;
  }
}

absl::Status PrecheckRecord(absl::string_view json) {
  if (json.empty()) return absl::InvalidArgumentError("empty record (not JSON)");
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
