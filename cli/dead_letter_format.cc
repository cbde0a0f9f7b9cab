#include "cli/dead_letter_format.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace etl::cli {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

std::string Time(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

}  // namespace

bool IsUtf8(absl::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    size_t n = Utf8SequenceLength(bytes, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(ch);
        }
    }
  }
  out += "\"";
  return out;
}

std::string DeadLetterJsonLine(const etl::v1::DeadLetter& d) {
  auto text = [](absl::string_view s) {
    return IsUtf8(s) ? JsonQuote(s) : JsonQuote(absl::StrCat("base64:", absl::Base64Escape(s)));
  };
  std::string raw = IsUtf8(d.raw())
                        ? absl::StrCat("\"raw\": ", JsonQuote(d.raw()))
                        : absl::StrCat("\"raw_base64\": \"", absl::Base64Escape(d.raw()), "\"");
  return absl::StrCat(
      "{\"id\": ", d.id(), ", \"job_id\": ", text(d.job_id()),
      ", \"page_number\": ", d.page_number(), ", \"record_index\": ", d.record_index(),
      ", \"table_name\": ", text(d.table_name()), ", \"natural_key\": ", text(d.natural_key()),
      ", \"reason\": ", text(d.reason()), ", \"created_at\": \"", Time(d.created_at_unix_ms()),
      "\", ", raw, "}");
}

std::string Excerpt(absl::string_view raw, size_t max_chars) {
  std::string out;
  size_t chars = 0;
  size_t i = 0;
  for (; i < raw.size() && chars < max_chars; ++chars) {
    size_t n = Utf8SequenceLength(raw, i);
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
      i += 1;
    } else if (n == 1 && (c < 0x20 || c == 0x7F)) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
      i += 1;
    } else {
      out.append(raw.data() + i, n);
      i += n;
    }
  }
  if (i < raw.size()) out += "...";
  return out;
}

std::string FormatDeadLetterTable(const std::vector<etl::v1::DeadLetter>& rows) {
  if (rows.empty()) return "no dead letters\n";
  std::string out = absl::StrFormat("%-8s %-24s %6s %6s  %-40s  %s\n", "ID", "JOB", "PAGE",
                                    "RECORD", "REASON", "RECORD (excerpt)");
  for (const auto& d : rows) {
    absl::StrAppendFormat(&out, "%-8d %-24s %6d %6d  %-40s  %s\n", d.id(), Excerpt(d.job_id(), 24),
                          d.page_number(), d.record_index(), Excerpt(d.reason(), 40),
                          Excerpt(d.raw(), 60));
  }
  return out;
}

std::string FormatCursorTable(const etl::v1::ListCursorsResponse& cursors) {
  if (cursors.cursors_size() == 0) return "no incremental marks\n";
  std::string out = absl::StrFormat("%-12s %-16s %-20s %-9s %-30s %-24s %s\n", "CLIENTE", "ROTA",
                                    "CURSOR", "TYPE", "MARK", "JOB", "UPDATED");
  for (const auto& c : cursors.cursors()) {
    absl::StrAppendFormat(&out, "%-12s %-16s %-20s %-9s %-30s %-24s %s\n", c.cliente_id(), c.rota(),
                          Excerpt(c.cursor_path(), 20), etl::v1::CursorType_Name(c.cursor_type()),
                          Excerpt(c.value(), 30), Excerpt(c.job_id(), 24),
                          Time(c.updated_at_unix_ms()));
  }
  return out;
}

}  // namespace etl::cli
