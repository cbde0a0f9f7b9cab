// Differential tests of JsonPageParser's engines: for every body of a hostile corpus, every
// truncation of small pages and random mutations of them, under several option sets, the
// production parse (fast path, full walk when it declines), the fast path alone on every stage-1
// kernel this CPU runs, and the full walk (the reference) must agree exactly: same status code and
// message, same records as the same byte ranges of the body, same natural keys and captures.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/json_page.h"
#include "common/json_page_internal.h"

namespace etl {
namespace {

using json_page_internal::Engine;
using json_page_internal::JsonPageParserPeer;

// A parse result in comparable form: records as offsets into the body.
struct Outcome {
  absl::Status status;
  std::vector<std::pair<size_t, size_t>> records;
  std::vector<std::string> natural_keys;
  std::vector<std::pair<int, std::string>> scalars;
  bool used_utf8_fallback = false;

  bool operator==(const Outcome& o) const {
    return status == o.status && records == o.records && natural_keys == o.natural_keys &&
           scalars == o.scalars && used_utf8_fallback == o.used_utf8_fallback;
  }
};

std::string Describe(const Outcome& o) {
  std::string out = o.status.ToString();
  for (const auto& r : o.records) absl::StrAppend(&out, " [", r.first, ",", r.second, ")");
  for (const auto& k : o.natural_keys) absl::StrAppend(&out, " key=", k);
  for (const auto& s : o.scalars) absl::StrAppend(&out, " ", s.first, ":", s.second);
  if (o.used_utf8_fallback) out += " utf8-fallback";
  return out;
}

// What a parse of `body` gave, with records as offsets into it.
Outcome OutcomeOf(const absl::StatusOr<ParsedPage>& page, const std::string& body) {
  Outcome o;
  o.status = page.status();
  if (!page.ok()) return o;
  for (absl::string_view r : page->records) {
    EXPECT_TRUE(r.data() >= body.data() && r.data() + r.size() <= body.data() + body.size());
    o.records.emplace_back(size_t(r.data() - body.data()), r.size());
  }
  o.natural_keys = page->natural_keys;
  for (const JsonScalar* s :
       {&page->cursor, &page->next_url, &page->total_pages, &page->total_count}) {
    o.scalars.emplace_back(int(s->kind), s->text);
  }
  o.used_utf8_fallback = page->used_utf8_fallback;
  return o;
}

Outcome ParseOutcome(JsonPageParser* parser, const std::string& input) {
  std::string body = input;
  auto page = parser->Parse(&body);
  return OutcomeOf(page, body);
}

std::vector<PageParseOptions> OptionSets() {
  std::vector<PageParseOptions> sets;
  for (const char* records : {"", "/data", "/a/0", "/d~1x", "/items/records"}) {
    PageParseOptions o;
    o.records_path = records;
    sets.push_back(o);
    o.id_path = "/id";
    o.cursor_path = "/next_cursor";
    o.next_url_path = "/links/next";
    o.total_pages_path = "/meta/total_pages";
    o.total_count_path = "/meta";
    sets.push_back(o);
  }
  PageParseOptions limited;
  limited.records_path = "/data";
  limited.id_path = "/k\xc3\xa9y";
  limited.max_records = 3;
  sets.push_back(limited);
  return sets;
}

// The stage-1 kernels this CPU can run (fallback is always among them).
std::vector<const simdjson::implementation*> Kernels() {
  std::vector<const simdjson::implementation*> kernels;
  for (const simdjson::implementation* k : simdjson::get_available_implementations()) {
    if (k->supported_by_runtime_system()) kernels.push_back(k);
  }
  return kernels;
}

class Differential {
 public:
  explicit Differential(const std::vector<PageParseOptions>& option_sets = OptionSets()) {
    for (const PageParseOptions& options : option_sets) {
      Set set;
      set.reference = *JsonPageParser::Create(options);
      JsonPageParserPeer::SetEngine(set.reference.get(), Engine::kFullWalk);
      set.production = *JsonPageParser::Create(options);
      for (const simdjson::implementation* k : Kernels()) {
        auto fast = *JsonPageParser::Create(options);
        JsonPageParserPeer::SetEngine(fast.get(), Engine::kFastOnly);
        JsonPageParserPeer::SetStage1Implementation(fast.get(), k);
        set.fast.push_back(std::move(fast));
        set.kernel_names.push_back(k->name());
      }
      sets_.push_back(std::move(set));
    }
  }

  // Compares every engine on `body`; returns how many option sets the fast path took.
  int Check(const std::string& body) {
    int taken = 0;
    for (size_t s = 0; s < sets_.size(); ++s) {
      Set& set = sets_[s];
      const Outcome reference = ParseOutcome(set.reference.get(), body);
      const Outcome production = ParseOutcome(set.production.get(), body);
      EXPECT_TRUE(production == reference)
          << "option set " << s << " body: " << absl::CEscape(body)
          << "\nfull walk:  " << Describe(reference) << "\nproduction: " << Describe(production);
      for (size_t k = 0; k < set.fast.size(); ++k) {
        const Outcome fast = ParseOutcome(set.fast[k].get(), body);
        if (fast.status.code() == absl::StatusCode::kUnavailable) continue;  // Declined.
        ++taken;
        EXPECT_TRUE(reference.status.ok() && fast == reference)
            << "kernel " << set.kernel_names[k] << " option set " << s
            << " body: " << absl::CEscape(body) << "\nfull walk: " << Describe(reference)
            << "\nfast path: " << Describe(fast);
      }
    }
    return taken;
  }

 private:
  struct Set {
    std::unique_ptr<JsonPageParser> reference, production;
    std::vector<std::unique_ptr<JsonPageParser>> fast;
    std::vector<std::string> kernel_names;
  };
  std::vector<Set> sets_;
};

std::string Nested(size_t depth, const std::string& leaf) {
  return std::string(depth, '[') + leaf + std::string(depth, ']');
}

std::string NestedObjects(size_t depth, const std::string& leaf) {
  std::string out;
  for (size_t i = 0; i < depth; ++i) out += "{\"a\":";
  out += leaf;
  out += std::string(depth, '}');
  return out;
}

// A record like the sample API's orders (escapes, Unicode, big integers, nested objects).
std::string Order(int i) {
  return absl::StrCat(
      "{\"id\":", i,
      ",\"cliente_id\":\"bench\",\"status\":\"pago\",\"created_at\":\"2023-01-01T08:39:31Z\","
      "\"customer\":{\"id\":31858,\"name\":\"\xd9\x85\xd8\xad\xd9\x85\xd8\xaf \xf0\x9f\x91\xa9\","
      "\"city\":\"S\xc3\xa3o Paulo\"},\"paid\":false,\"coupon\":null,\"items\":[{\"sku\":\"SKU-",
      i,
      "\",\"qty\":1,\"price\":723.68}],\"amount\":8546.90,\"seq53\":9007199254740993,"
      "\"big_counter\":18446744073709551617,\"note\":\"Entregar na \\\"portaria\\\" \\\\ bloco "
      "B\\tapto 12\\n\\u00e9\\ud83d\\ude00\"}");
}

std::vector<std::string> Corpus() {
  std::vector<std::string> c = {
      // Shapes and whitespace.
      "[]",
      "{}",
      "[ ]",
      "{ }",
      " \t\r\n[1] \n",
      "[1,2,3]",
      "[[],{},\"\",0]",
      "null",
      "1",
      "\"s\"",
      "true",
      "",
      " ",
      "[1]x",
      "[1] [2]",
      "[1],",
      "{\"data\":[]}",
      "{\"data\":null}",
      "{\"data\":{}}",
      "{\"data\":1}",
      "{\"data\":\"x\"}",
      "{\"data\":[1],\"data\":[2]}",
      "{\"data\" : [ {\"id\" : 1 } , {\"id\":2}\n]\n}\n",
      "{\"a\":[[1,{\"id\":5}]],\"data\":[]}",
      "{\"a\":[{\"id\":1},{\"id\":2}]}",
      "{\"d/x\":[1]}",
      "{\"items\":{\"records\":[{\"id\":\"r\"}]}}",
      "[{\"id\":null},{\"id\":true},{\"id\":{\"x\":1}},{\"id\":[1, 2 ]},{},{\"id\":\"\"}]",
      "[{\"id\":1,\"id\":2},{\"x\":{\"id\":3}}]",
      R"({"next_cursor":"c\u00e9","links":{"next":"http://h/?a=1&b=\/"},"meta":{"total_pages":3}, "data":[1]})",
      R"({"meta":{"total_pages":1e400,"x":[1,2]},"next_cursor":{"a":[1,2]},"data":[]})",
      R"({"next_cursor":1,"next_cursor":2,"data":[],"meta":null})",
      // Numbers.
      "[123456789012345678901234567890]",
      "[1e400]",
      "[-1e-400]",
      "[1E+2]",
      "[-0]",
      "[0.5]",
      "[-0.0e-0]",
      "[01]",
      "[1.]",
      "[.5]",
      "[-]",
      "[+1]",
      "[1e]",
      "[1e+]",
      "[0x1]",
      "[1.5.5]",
      "[--1]",
      "[1-]",
      "[Infinity]",
      "[NaN]",
      "[1 2]",
      "[{\"id\":18446744073709551617}]",
      "[{\"id\":-9223372036854775809}]",
      "[{\"id\":1.0}]",
      "[123456789012345678]",
      // Literals.
      "[tru]",
      "[truex]",
      "[nul]",
      "[null1]",
      "[falsee]",
      "[True]",
      "[true false]",
      // Strings and escapes.
      R"(["a\"b\\c\/\b\f\n\r\t\u0041\u00e9\u4e2d\ud83d\ude00"])",
      R"(["\u0000"])",
      R"(["\x"])",
      R"(["\u12"])",
      R"(["\u12G4"])",
      R"(["\ud800"])",
      R"(["\ud800x"])",
      R"(["\udc00"])",
      R"(["\ud800\u0041"])",
      R"(["\ud800\ud800"])",
      R"(["\uDBFF\uDFFF"])",
      R"(["\"])",
      R"(["\\"])",
      R"(["a\\\"b"])",
      R"(["\'"])",
      R"(["\ "])",
      "[\"tab\tinside\"]",
      "[\"nl\ninside\"]",
      std::string("[\"nul\0inside\"]", 14),
      std::string("[\"a\",\0]", 7),
      "[\"\x1f\"]",
      "[\"\x7f\"]",
      R"({"da\u0074a":[1,2]})",
      R"({"d\u0061ta":[{"\u0069d":"k\u00e9"}]})",
      R"({"da\ta":[1]})",
      R"({"data\u":[1]})",
      R"({"data":[{"id\ud800":1}]})",
      "{\"data\":[{\"id\":\"\\u00\"}]}",
      "{\"data\":[{\"a\":\"\\\\\"}],\"next_cursor\":\"\\\\\\\"\"}",
      // Invalid UTF-8 (the fallback scanner's path) in keys, values, outside strings.
      "[\"\xff\"]",
      "{\"data\":[{\"id\":\"\xc3\"}]}",
      "{\"d\xff\":[1],\"data\":[2]}",
      "[\xff]",
      "[\"\xed\xa0\x80\"]",
      "[\"\xf4\x90\x80\x80\"]",
      "[\"\xc0\xaf\"]",
      "{\"data\":[{\"id\":1,\"s\":\"bad\xff\xfe\"},{\"id\":\"3\\u0041\"}],\"next_cursor\":\"n\"}",
      // Structure errors.
      "[1,]",
      "[,1]",
      "{\"a\":1,}",
      "{\"a\"}",
      "{\"a\":}",
      "{\"a\" 1}",
      "{1:2}",
      "{\"a\":1 \"b\":2}",
      "[1}",
      "{\"a\":1]",
      "[[1]",
      "[1]]",
      "\"unterminated",
      "[\"a]",
      "{\"data\":[1,2",
      "{\"data\":[{\"id\":1},{\"id\":2}]",
      "[\"a\"\"b\"]",
      "[\"a\"b]",
      "[1\"a\"]",
      "[{\"id\":1}{\"id\":2}]",
      "\xef\xbb\xbf[1]",
      // Depth at and around the limit.
      Nested(512, "1"),
      Nested(513, "1"),
      Nested(513, ""),
      Nested(514, ""),
      "[" + Nested(511, "1") + "]",
      "[" + Nested(512, "1") + "]",
      "{\"data\":[" + NestedObjects(511, "1") + "]}",
      "{\"data\":[" + NestedObjects(512, "1") + "]}",
      "{\"data\":[" + Nested(100000, "1") + "]}",
      "[\"\xff\"," + Nested(511, "1") + "]",
  };
  std::string page = "{\"data\":[";
  for (int i = 0; i < 5; ++i) page += (i ? "," : "") + Order(i);
  page += "],\"page\":1,\"total_pages\":7,\"meta\":{\"total_pages\":7}}";
  c.push_back(page);
  std::string many = "{\"data\":[1,2,3,4]}";  // Over the limit of one option set.
  c.push_back(many);
  return c;
}

TEST(JsonPageDifferentialTest, HostileCorpusAgrees) {
  Differential d;
  for (const std::string& body : Corpus()) d.Check(body);
}

TEST(JsonPageDifferentialTest, EveryTruncationAgrees) {
  Differential d;
  const std::string pages[] = {
      "{\"data\":[" + Order(1) + "," + Order(2) + "],\"next_cursor\":\"c\\u00e9\"}",
      R"({"meta":{"total_pages":3},"data":[{"id":"a\"b","v":[1,2.5e3,true,null]},{"id":7}]})",
  };
  for (const std::string& page : pages) {
    for (size_t cut = 0; cut <= page.size(); ++cut) d.Check(page.substr(0, cut));
    // A page cut anywhere and closed again with every closing sequence that might fit.
    for (size_t cut = 0; cut <= page.size(); ++cut) {
      for (const char* tail : {"]}", "\"]}", "}]}", "1]}", "\"}]}"}) {
        d.Check(page.substr(0, cut) + tail);
      }
    }
  }
}

TEST(JsonPageDifferentialTest, RandomMutationsAgree) {
  Differential d;
  std::mt19937 rng(20261129);
  const std::vector<std::string> seeds = Corpus();
  const char alphabet[] = "{}[],:\"\\ 0123456789.eE+-tfnulrasx\xc3\xa9\xff\x01\t";
  for (int n = 0; n < 4000; ++n) {
    std::string body = seeds[rng() % seeds.size()];
    if (body.size() > 4000) continue;
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = body.empty() ? 0 : rng() % (body.size() + 1);
      const char c = alphabet[rng() % (sizeof(alphabet) - 1)];
      switch (rng() % 3) {
        case 0:
          body.insert(pos, 1, c);
          break;
        case 1:
          if (pos < body.size()) body.erase(pos, 1);
          break;
        default:
          if (pos < body.size()) body[pos] = c;
          break;
      }
    }
    d.Check(body);
  }
}

// The fast path is what the collector's pages take (not a silent fall-back every time), on every
// kernel: a page of typical records is never declined.
TEST(JsonPageDifferentialTest, TypicalPagesTakeTheFastPathOnEveryKernel) {
  std::string page = "{\"data\":[";
  for (int i = 0; i < 1000; ++i) page += (i ? "," : "") + Order(i);
  page += "],\"page\":1,\"page_size\":1000,\"total_pages\":100,\"total\":100000}";
  PageParseOptions options;
  options.records_path = "/data";
  options.total_pages_path = "/total_pages";
  options.id_path = "/id";
  for (const simdjson::implementation* k : Kernels()) {
    auto parser = *JsonPageParser::Create(options);
    JsonPageParserPeer::SetEngine(parser.get(), Engine::kFastOnly);
    JsonPageParserPeer::SetStage1Implementation(parser.get(), k);
    std::string body = page;
    auto parsed = parser->Parse(&body);
    ASSERT_TRUE(parsed.ok()) << k->name() << ": " << parsed.status();
    ASSERT_EQ(parsed->records.size(), 1000u);
    EXPECT_EQ(parsed->natural_keys[999], "999");
    EXPECT_EQ(parsed->total_pages.text, "100");
    EXPECT_EQ(std::string(parsed->records[3]), Order(3));
  }
  Differential d;
  EXPECT_GT(d.Check(page), 0);
}

// Parses that share one JsonParseBuffers (as the collector's fetch workers do), alternating pages
// the fast path takes and pages it declines, give the same results as separate parsers.
TEST(JsonPageDifferentialTest, SharedBuffersAcrossEnginesAgree) {
  PageParseOptions options;
  options.records_path = "/data";
  options.id_path = "/id";
  auto shared_parser = *JsonPageParser::Create(options);
  auto reference = *JsonPageParser::Create(options);
  JsonPageParserPeer::SetEngine(reference.get(), Engine::kFullWalk);
  JsonParseBuffers buffers;
  const std::vector<std::string> bodies = {"{\"data\":[" + Order(1) + "]}",
                                           "{\"data\":[{\"id\":123456789012345678901234567890}]}",
                                           "{\"data\":[{\"id\":\"\xff\"}]}",
                                           "{\"data\":[" + Order(2) + "," + Order(3) + "]}",
                                           "{\"data\":[1,",
                                           "{\"data\":[{\"id\":\"x\"}]}"};
  for (int round = 0; round < 2; ++round) {
    for (const std::string& b : bodies) {
      std::string body = b;
      auto page = shared_parser->Parse(&body, &buffers);
      const Outcome got = OutcomeOf(page, body);
      const Outcome want = ParseOutcome(reference.get(), b);
      EXPECT_TRUE(got == want) << absl::CEscape(b) << "\n"
                               << Describe(got) << "\n"
                               << Describe(want);
    }
    buffers.Release();
  }
}

// Pointers the default option sets do not use: array indexes inside and outside records, escaped
// tokens, a records array nested in an array, composite and missing natural keys, a tight limit.
std::vector<PageParseOptions> PointerOptionSets() {
  std::vector<PageParseOptions> sets;
  PageParseOptions a;
  a.records_path = "/data";
  a.id_path = "/0";
  a.cursor_path = "/data/0/id";
  a.next_url_path = "/items/10";
  a.total_pages_path = "/a~0b/c~1d";
  a.total_count_path = "/data/1";
  sets.push_back(a);
  PageParseOptions b;
  b.records_path = "/data/0";
  b.id_path = "/id/x";
  b.cursor_path = "/";
  b.next_url_path = "/data";
  b.max_records = 2;
  sets.push_back(b);
  PageParseOptions c;
  c.records_path = "/data";
  c.id_path = "/id";
  c.cursor_path = "/next_cursor";
  c.max_records = 3;
  sets.push_back(c);
  return sets;
}

// Bodies aimed at the fast path's shortcuts: backslash runs before quotes, escapes on both sides of
// every 64-byte block boundary, bodies cut mid-escape / mid-number / mid-literal, number and
// literal edge cases, bytes that are not JSON whitespace, NUL bytes, invalid UTF-8 (overlongs,
// UTF-8 encoded surrogates), escaped keys matching pointer tokens, duplicate targets, array-index
// pointers, the record limit and the nesting limit inside and outside records.
std::vector<std::string> AdversarialCorpus() {
  std::vector<std::string> c = {
      // Backslash runs before a quote, as skipped strings, keys, captured values and natural keys.
      R"({"data":[{"id":"\\"}],"next_cursor":"\\\""})",
      R"({"data":[{"id":"\\\\\""}],"next_cursor":"\\\\"})",
      R"({"data":[{"id":"\\\\\\\\"},{"id":"\"\"\\"}],"next_cursor":"\\\\\\\"x"})",
      R"({"data":[{"\\":1,"id\\":2,"id":"\\\\\\"}]})",
      R"({"data":[{"id":"\\\"}]})",
      R"({"data":[{"id":"a\\\\\\"}],"x":"\\\\\\\\\\"})",
      R"(["\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"])",
      // Cut mid-escape, mid-number, mid-literal, mid-key.
      "{\"data\":[\"\\",
      "{\"data\":[\"\\u00",
      "{\"data\":[\"\\ud83d\\u",
      "{\"data\":[\"\\\"",
      "{\"data\":[1e",
      "{\"data\":[1.",
      "{\"data\":[-",
      "{\"data\":[tr",
      "{\"data\":[null",
      "{\"data\":null",
      "{\"data\":nul}",
      "{\"data\":nullx}",
      "{\"data\":[true",
      "[true]",
      "[false]",
      "[null]",
      "{\"da",
      "{\"data\"",
      "{\"data\":",
      "[",
      "{",
      "]",
      "}",
      ",",
      ":",
      "\"",
      // Numbers.
      "[-0]",
      "[-0.0]",
      "[1E-0]",
      "[1e+0]",
      "[0e0]",
      "[0E+00]",
      "[1e99999999999999999999]",
      "[-1e-99999999999999999999]",
      "[0.e1]",
      "[2.]",
      "[-01]",
      "[00]",
      "[0.0.0]",
      "[1e1e1]",
      "[1e+-1]",
      "[- 1]",
      "[1 .5]",
      "[.]",
      "[e]",
      "[-e]",
      "[0x]",
      "[1_000]",
      "[12345678]",
      "[123456789]",
      "[1234567.8]",
      "[12345678.12345678e12345678]",
      "[1234567\xff]",
      "[12345678\xff]",
      "[9\xfa]",
      "[9:]",
      "[0/]",
      "[{\"id\":-0}]",
      "[{\"id\":1E-0}]",
      "[{\"id\":12345678901234567}]",
      "{\"data\":[],\"next_cursor\":-}",
      "{\"data\":[],\"next_cursor\":1.}",
      "{\"data\":[],\"next_cursor\":01}",
      // Literals with trailing letters, wrong case, at the end.
      "[truex]",
      "[nullnull]",
      "[falsey]",
      "[t]",
      "[f]",
      "[n]",
      "[tru\xc3\xa9]",
      "[trUe]",
      "{\"data\":[],\"next_cursor\":truex}",
      "{\"data\":[],\"next_cursor\":nul}",
      "{\"data\":[],\"next_cursor\":true}",
      "{\"data\":[{\"id\":false}]}",
      // Bytes that are not JSON whitespace.
      "[1\v]",
      "[\v1]",
      "[1\f]",
      "[\f]",
      "\v[1]",
      "[1]\f",
      "[\xc2\xa0"
      "1]",
      "[1\xc2\xa0]",
      "{\"data\":\v[]}",
      "{\"data\"\f:[]}",
      "[true\v]",
      "[\"a\"\v]",
      "[1\x85]",
      // NUL bytes outside strings.
      std::string("\0[1]", 4),
      std::string("[1]\0", 4),
      std::string("[\0]", 3),
      std::string("[1,\0]", 5),
      std::string("[1\0]", 4),
      std::string("[true\0]", 7),
      std::string("{\"data\":[]\0}", 12),
      std::string("{\"data\":[],\0\"x\":1}", 18),
      std::string("\0", 1),
      // Invalid UTF-8 and edge code points, in values, keys and outside strings.
      "[\"\xc0\x80\"]",
      "[\"\xe0\x80\x80\"]",
      "[\"\xf0\x80\x80\x80\"]",
      "[\"\xed\xa0\x80\"]",
      "[\"\xed\xbf\xbf\"]",
      "[\"\xef\xbf\xbf\"]",
      "[\"\xf4\x8f\xbf\xbf\"]",
      "[\"\xf5\x80\x80\x80\"]",
      "[\"\xe2\x82\"]",
      "[\"\x80\"]",
      "{\"data\":[{\"id\":\"\xef\xbf\xbf\"}]}",
      "{\"data\":[{\"id\":\"\xed\xa0\x80\"}]}",
      "{\"d\xc3\xa1ta\":[1],\"data\":[2]}",
      "{\"data\":[1],\"\xff\":2}",
      "[1]\xff",
      "\xff[1]",
      "{\"data\":[1]}\xc3",
      "{\"data\":[{\"id\":\"\\uffff\"},{\"id\":\"\\ufffe\"},{\"id\":\"\\udbff\\udfff\"}]}",
      "[\"\\uD834\\uDD1E\\ud834\\udd1e\"]",
      "[\"\\udc00\\ud800\"]",
      "[\"\\ud800\\\\u0041\"]",
      "[\"\\u004\"]",
      "[\"\\u\"]",
      "[\"\\U0041\"]",
      "[\"\\u+041\"]",
      "[\"\\u 041\"]",
      // BOM, empty and bare bodies.
      "\xef\xbb\xbf{\"data\":[]}",
      "\xef\xbb\xbf",
      "",
      " ",
      "\t\r\n",
      "\"x\"",
      "42",
      "-",
      "\"",
      "\"\\\"",
      "true",
      "null",
      "[] ",
      " {} ",
      "[]]",
      "{}}",
      "[][]",
      "{}{}",
      // Escaped keys that match (or nearly match) pointer tokens.
      R"({"d\u0061ta":[1],"data":[2]})",
      R"({"\u0064\u0061\u0074\u0061":[{"\u0069\u0064":"x"}]})",
      R"({"data\u0000":[1]})",
      R"({"d\/x":[1]})",
      R"({"d/x":[1],"d\/x":[2]})",
      R"({"a~b":{"c/d":7},"data":[]})",
      R"({"a\u007eb":{"c\/d":[7]},"data":[]})",
      R"({"a~0b":{"c~1d":7},"data":[]})",
      R"({"data":[{"id\u0000":1,"id":2}]})",
      R"({"data":[{"i\u0064":"k\"ey"}]})",
      R"({"data":[{"\"id":1,"id\"":2}]})",
      // Duplicate targets: the first one wins, records of every occurrence are kept.
      R"({"next_cursor":"a","next_cursor":"b","data":[]})",
      R"({"next_cursor":{"x":1},"next_cursor":"b","data":[]})",
      R"({"meta":{"total_pages":1},"meta":{"total_pages":2},"data":[]})",
      R"({"meta":{"total_pages":1},"meta":{"total_pages":[bad]},"data":[]})",
      R"({"meta":{"total_pages":1},"meta":7,"data":[]})",
      R"({"data":[{"id":1,"id":2,"id":[}]})",
      R"({"data":[{"id":1,"id":"\x"}]})",
      R"({"data":[{"id":1,"id":tru}]})",
      R"({"data":[1],"data":{"x":2}})",
      R"({"data":[1],"data":3})",
      R"({"data":[1],"data":null})",
      R"({"data":null,"data":[1]})",
      // Array-index pointers, composite and missing keys, nested records arrays.
      R"({"data":[{"id":1},{"id":2}],"items":[0,1,2,3,4,5,6,7,8,9,"ten",11],"a~b":{"c/d":1}})",
      R"({"data":[[1,2],[3]],"items":[0,1,2,3,4,5,6,7,8,9],"a~b":{"c/d":[]}})",
      R"({"data":[[{"id":{"x":"a"}},{"id":{"x":[1]}},{"id":{}},{"id":[]},{"id":null},7]]})",
      R"({"data":[[{"id":{"x":1,"x":2}}],[]],"":"empty key"})",
      R"({"data":[["a","b"],"c"]})",
      R"({"data":[{"0":1},[1,2]]})",
      R"({"data":[[],null,{},"",0,false]})",
      R"({"data":[[]]})",
      R"({"data":[null]})",
      R"({"data":["x"]})",
      R"({"data":[{}]})",
      R"({"data":[[[]]]})",
      // The record limit: exactly at it, one over, over inside a nested records array.
      R"({"data":[1,2]})",
      R"({"data":[1,2,3]})",
      R"({"data":[1,2,3,4]})",
      R"({"data":[[1,2],[3]]})",
      R"({"data":[[1,2,3],[3]]})",
      R"({"data":[[1,2,3,4]]})",
      R"({"data":[[1,2,3,x]]})",
      R"({"data":[1,2,3,x]})",
      R"({"data":[1,2,3,4,"\x"]})",
      // Nesting at the limit and one over, inside records, outside them and under a target.
      "{\"next_cursor\":" + Nested(511, "1") + ",\"data\":[]}",
      "{\"next_cursor\":" + Nested(512, "1") + ",\"data\":[]}",
      "{\"x\":" + NestedObjects(511, "[]") + ",\"data\":[]}",
      "{\"x\":" + NestedObjects(511, "[1]") + ",\"data\":[]}",
      "{\"data\":[{\"id\":" + Nested(510, "\"k\"") + "}]}",
      "{\"data\":[{\"id\":" + Nested(511, "\"k\"") + "}]}",
      "{\"data\":[[" + Nested(510, "") + "]]}",
      "{\"data\":[[" + Nested(511, "") + "]]}",
      "{\"data\":[],\"next_cursor\":" + Nested(100000, "") + "}",
      "{\"data\":[]," + std::string(100000, '[') + "}",
      Nested(100000, ""),
      NestedObjects(100000, "1"),
  };
  // A captured string, a key and a natural key with escapes on both sides of every 64-byte block
  // boundary (the stage-1 kernels work in 64-byte blocks, the unescapers in 16/32/64), and
  // bodies whose size is an exact multiple of 64 ending mid-escape.
  for (size_t pad = 0; pad < 140; ++pad) {
    const std::string x(pad, 'x');
    c.push_back("{\"data\":[{\"id\":\"" + x +
                "\\\\\\\"\\u00e9\\ud83d\\ude00\"}],\"next_cursor\":\"" + x + "\\\"\"}");
    c.push_back("{\"" + x + "\\\\\":1,\"data\":[{\"i\\u0064\":\"" + x + "\\/\"}]}");
    std::string cut = "{\"data\":[\"" + x + "\\";
    c.push_back(cut);
    c.push_back(cut + "u00");
    std::string exact = "{\"data\":[\"" + x + "\"]}";
    while (exact.size() % 64 != 0) exact += ' ';
    c.push_back(exact);
    exact.back() = '\\';
    c.push_back(exact);
  }
  // Strings longer than 64 KiB with escapes every few bytes, captured and skipped.
  std::string longs;
  for (int i = 0; i < 4000; ++i) longs += "abcdefghijklm\\\\\\\"\\u00e9\\n";
  c.push_back("{\"data\":[{\"id\":\"" + longs + "\"},\"" + longs + "\"],\"next_cursor\":\"" +
              longs + "\"}");
  c.push_back("{\"data\":[{\"id\":\"" + longs + "\\x\"}]}");
  c.push_back("{\"data\":[\"" + longs + "\xed\xa0\x80\"]}");
  c.push_back("{\"data\":[\"" + longs);
  return c;
}

TEST(JsonPageDifferentialTest, AdversarialCorpusAgrees) {
  Differential d;
  Differential pointers(PointerOptionSets());
  int taken = 0;
  for (const std::string& body : AdversarialCorpus()) taken += d.Check(body) + pointers.Check(body);
  EXPECT_GT(taken, 5000);  // The fast path really judged many of them (not declined every time).
}

// Every byte that must not be accepted where the fast path looks (NUL, \v, \f, a lone backslash,
// a quote, a stray UTF-8 lead byte, NBSP's bytes), inserted at and written over every position
// of a small page.
TEST(JsonPageDifferentialTest, EveryHostileByteAtEveryPositionAgrees) {
  Differential d(PointerOptionSets());
  const std::string page =
      R"({"data":[{"id":"a\"b","v":[1,-2.5e3,true,null,{}]},{"id":7}],"next_cursor":"c\u00e9",)"
      R"("items":[0,1,2,3,4,5,6,7,8,9,10]})";
  const std::string bytes("\0\v\f\\\"\xc2\xa0\x01/", 9);
  int taken = 0;
  for (size_t pos = 0; pos <= page.size(); ++pos) {
    for (char b : bytes) {
      std::string inserted = page;
      inserted.insert(pos, 1, b);
      taken += d.Check(inserted);
      if (pos < page.size()) {
        std::string replaced = page;
        replaced[pos] = b;
        taken += d.Check(replaced);
      }
    }
  }
  EXPECT_GT(taken, 300);
}

ParsedPage ParseOk(JsonPageParser* parser, std::string* body, JsonParseBuffers* buffers) {
  auto page = parser->Parse(body, buffers);
  EXPECT_TRUE(page.ok()) << page.status();
  return page.ok() ? *std::move(page) : ParsedPage();
}

// One parser and one JsonParseBuffers reused from a large page to tiny and malformed ones: nothing
// of the large page's structural index leaks into a later, shorter parse.
TEST(JsonPageDifferentialTest, ReuseFromHugePageToTinyPagesAgrees) {
  PageParseOptions options;
  options.records_path = "/data";
  options.id_path = "/id";
  options.cursor_path = "/next_cursor";
  auto parser = *JsonPageParser::Create(options);
  auto reference = *JsonPageParser::Create(options);
  JsonPageParserPeer::SetEngine(reference.get(), Engine::kFullWalk);
  JsonParseBuffers buffers;
  std::string huge = "{\"data\":[";
  for (int i = 0; i < 3000; ++i) huge += (i ? "," : "") + Order(i);
  huge += "],\"next_cursor\":\"end\"}";
  const std::vector<std::string> tiny = {"{\"data\":[]}",
                                         "[",
                                         "{\"data\":[1,",
                                         "{\"data\":[{\"id\":",
                                         "{\"data\":[{}]}",
                                         "{\"data\":[{\"id\":\"k\"}]}",
                                         "{",
                                         "{\"data\":[1]} 1",
                                         "[1]",
                                         "{\"data\":[\"a\"]"};
  for (int round = 0; round < 2; ++round) {
    std::string body = huge;
    ParsedPage big = ParseOk(parser.get(), &body, round ? &buffers : nullptr);
    EXPECT_EQ(big.records.size(), 3000u);
    EXPECT_EQ(big.cursor.text, "end");
    for (const std::string& t : tiny) {
      std::string got_body = t, want_body = t;
      auto got = parser->Parse(&got_body, round ? &buffers : nullptr);
      auto want = reference->Parse(&want_body);
      ASSERT_EQ(got.status(), want.status()) << absl::CEscape(t);
      if (!got.ok()) continue;
      ASSERT_EQ(got->records.size(), want->records.size()) << absl::CEscape(t);
      for (size_t i = 0; i < got->records.size(); ++i) {
        EXPECT_EQ(got->records[i].data() - got_body.data(),
                  want->records[i].data() - want_body.data());
        EXPECT_EQ(got->records[i], want->records[i]);
      }
      EXPECT_EQ(got->natural_keys, want->natural_keys);
      EXPECT_EQ(got->cursor.text, want->cursor.text);
    }
  }
}

// Parsers on several threads at once (one parser and one buffer set per thread) give the results
// of a single-threaded full walk.
TEST(JsonPageDifferentialTest, ConcurrentParsersAgree) {
  PageParseOptions options;
  options.records_path = "/data";
  options.id_path = "/id";
  options.cursor_path = "/next_cursor";
  std::vector<std::string> bodies = AdversarialCorpus();
  bodies.resize(200);
  auto reference = *JsonPageParser::Create(options);
  JsonPageParserPeer::SetEngine(reference.get(), Engine::kFullWalk);
  std::vector<std::string> want;
  for (const std::string& b : bodies) want.push_back(Describe(ParseOutcome(reference.get(), b)));
  std::vector<int> mismatches(2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto parser = *JsonPageParser::Create(options);
      JsonParseBuffers buffers;
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < bodies.size(); ++i) {
          std::string body = bodies[i];
          auto page = parser->Parse(&body, (i + round) % 2 ? &buffers : nullptr);
          const Outcome o = OutcomeOf(page, body);
          if (Describe(o) != want[i]) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>({0, 0}));
}

}  // namespace
}  // namespace etl
