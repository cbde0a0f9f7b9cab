// Page parsing: records by JSON pointer, natural keys, cursor / next-URL / totals extraction, and
// the invalid-UTF-8 fallback scanner. The first byte picks the pointers; the rest is the body.
// Invariants: no crash, records are views inside the body, one natural key per record when asked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/json_page.h"

namespace {

const char* const kRecordPaths[] = {"", "/data", "/a/0", "/d~1x", "/items/records"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  etl::PageParseOptions options;
  options.records_path = kRecordPaths[selector % 5];
  if (selector & 0x08) options.id_path = "/id";
  if (selector & 0x10) options.cursor_path = "/next_cursor";
  if (selector & 0x20) options.next_url_path = "/links/next";
  if (selector & 0x40) options.total_pages_path = "/meta/total_pages";
  if (selector & 0x80) options.total_count_path = "/meta/total";
  auto parser = etl::JsonPageParser::Create(options);
  if (!parser.ok()) abort();
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  for (int round = 0; round < 2; ++round) {  // The second round reuses the parser's buffers.
    auto page = (*parser)->Parse(&body);
    if (!page.ok()) continue;
    const char* begin = body.data();
    const char* end = begin + body.size();
    for (absl::string_view r : page->records) {
      if (r.data() < begin || r.data() + r.size() > end) abort();
    }
    if (!options.id_path.empty() && page->natural_keys.size() != page->records.size()) abort();
    (void)etl::JsonScalarToInt(page->total_pages);
    (void)etl::JsonScalarToInt(page->total_count);
  }
  return 0;
}
