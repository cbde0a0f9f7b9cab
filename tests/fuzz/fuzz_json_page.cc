// Page parsing: records by JSON pointer, natural keys, cursor / next-URL / totals extraction, and
// the invalid-UTF-8 fallback scanner. The first byte picks the pointers; the rest is the body.
// Invariants: no crash, records are views inside the body, one natural key per record when asked,
// and the production parse (structural fast path, full walk when it declines) gives exactly what
// the full walk alone gives: same status, same records (same byte ranges), keys and captures.
// Besides, on every input: the fast path alone on one stage-1 kernel (chosen by the input's size,
// so every kernel this CPU runs gets inputs) either declines or agrees; a second option set with
// array-index pointers and a tight record limit agrees; and a parser that has just parsed the body
// parses its first half (stale structural indexes of a longer document must not matter).
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/json_page.h"
#include "common/json_page_internal.h"

namespace {

const char* const kRecordPaths[] = {"", "/data", "/a/0", "/d~1x", "/items/records"};

bool SameScalar(const etl::JsonScalar& a, const etl::JsonScalar& b) {
  return a.kind == b.kind && a.text == b.text;
}

// Same outcome, records compared as offsets into their own copy of the body.
bool SameOutcome(const absl::StatusOr<etl::ParsedPage>& a, const std::string& body_a,
                 const absl::StatusOr<etl::ParsedPage>& b, const std::string& body_b) {
  if (a.status() != b.status()) return false;
  if (!a.ok()) return true;
  if (a->records.size() != b->records.size() || a->natural_keys != b->natural_keys ||
      a->used_utf8_fallback != b->used_utf8_fallback || !SameScalar(a->cursor, b->cursor) ||
      !SameScalar(a->next_url, b->next_url) || !SameScalar(a->total_pages, b->total_pages) ||
      !SameScalar(a->total_count, b->total_count)) {
    return false;
  }
  for (size_t i = 0; i < a->records.size(); ++i) {
    if (a->records[i].data() - body_a.data() != b->records[i].data() - body_b.data() ||
        a->records[i].size() != b->records[i].size()) {
      return false;
    }
  }
  return true;
}

const std::vector<const simdjson::implementation*>& Kernels() {
  static const auto* kernels = [] {
    auto* out = new std::vector<const simdjson::implementation*>();
    for (const simdjson::implementation* k : simdjson::get_available_implementations()) {
      if (k->supported_by_runtime_system()) out->push_back(k);
    }
    return out;
  }();
  return *kernels;
}

// Production and reference parsers for `options` on `input`: they must agree (aborts otherwise),
// also when the production parser then parses the input's first half.
void CheckAgreement(const etl::PageParseOptions& options, const std::string& input) {
  using etl::json_page_internal::Engine;
  using etl::json_page_internal::JsonPageParserPeer;
  auto parser = etl::JsonPageParser::Create(options);
  auto reference = etl::JsonPageParser::Create(options);
  auto fast = etl::JsonPageParser::Create(options);
  if (!parser.ok() || !reference.ok() || !fast.ok()) abort();
  JsonPageParserPeer::SetEngine(reference->get(), Engine::kFullWalk);
  JsonPageParserPeer::SetEngine(fast->get(), Engine::kFastOnly);
  JsonPageParserPeer::SetStage1Implementation(fast->get(),
                                              Kernels()[input.size() % Kernels().size()]);
  for (const std::string& text : {input, input.substr(0, input.size() / 2)}) {
    std::string body = text, reference_body = text, fast_body = text;
    const auto expected = (*reference)->Parse(&reference_body);
    if (!SameOutcome((*parser)->Parse(&body), body, expected, reference_body)) abort();
    const auto alone = (*fast)->Parse(&fast_body);
    if (alone.status().code() != absl::StatusCode::kUnavailable &&
        !SameOutcome(alone, fast_body, expected, reference_body)) {
      abort();
    }
  }
}

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
  auto reference = etl::JsonPageParser::Create(options);
  if (!parser.ok() || !reference.ok()) abort();
  etl::json_page_internal::JsonPageParserPeer::SetEngine(
      reference->get(), etl::json_page_internal::Engine::kFullWalk);
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string reference_body = body;
  const auto expected = (*reference)->Parse(&reference_body);
  for (int round = 0; round < 2; ++round) {  // The second round reuses the parser's buffers.
    auto page = (*parser)->Parse(&body);
    if (!SameOutcome(page, body, expected, reference_body)) abort();
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
  CheckAgreement(options, body);
  etl::PageParseOptions indexes;
  indexes.records_path = (selector & 1) ? "/data/0" : "/data";
  indexes.id_path = (selector & 2) ? "/0" : "/id/x";
  indexes.cursor_path = "/data/1/id";
  indexes.next_url_path = "/items/10";
  indexes.total_pages_path = "/a~0b/c~1d";
  indexes.max_records = 1 + selector % 4;
  CheckAgreement(indexes, body);
  return 0;
}
