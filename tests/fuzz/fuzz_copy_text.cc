// COPY text escaping and the writer's per-record prechecks.
// Invariants: escaped output has no raw tab/newline/CR, unescaping it gives the input back,
// LossyUtf8 output is valid UTF-8 without NUL bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "writer_service/copy_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  std::string out;
  etl::AppendCopyText(&out, in);
  std::string back;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    if (c == '\t' || c == '\n' || c == '\r') abort();
    if (c != '\\') {
      back.push_back(c);
      continue;
    }
    if (++i >= out.size()) abort();
    switch (out[i]) {
      case '\\':
        back.push_back('\\');
        break;
      case 't':
        back.push_back('\t');
        break;
      case 'n':
        back.push_back('\n');
        break;
      case 'r':
        back.push_back('\r');
        break;
      default:
        abort();
    }
  }
  if (back != in) abort();
  std::string lossy = etl::LossyUtf8(in);
  if (!etl::IsValidUtf8(lossy) || lossy.find('\0') != std::string::npos) abort();
  if (etl::IsValidUtf8(in) && in.find('\0') == absl::string_view::npos && lossy != in) abort();
  (void)etl::HasJsonNulEscape(in);
  (void)etl::PrecheckRecord(in);
  return 0;
}
