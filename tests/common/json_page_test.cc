#include "common/json_page.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace etl {
namespace {

using ::testing::ElementsAre;

ParsedPage MustParse(const PageParseOptions& options, std::string* body) {
  auto parser = JsonPageParser::Create(options);
  EXPECT_TRUE(parser.ok()) << parser.status();
  auto page = (*parser)->Parse(body);
  EXPECT_TRUE(page.ok()) << page.status();
  return page.ok() ? *std::move(page) : ParsedPage();
}

PageParseOptions RecordsAt(const std::string& path) {
  PageParseOptions options;
  options.records_path = path;
  return options;
}

std::vector<std::string> Records(const ParsedPage& page) {
  return std::vector<std::string>(page.records.begin(), page.records.end());
}

TEST(JsonPointerTest, ParsesTokensAndEscapes) {
  EXPECT_THAT(*ParseJsonPointer(""), ElementsAre());
  EXPECT_THAT(*ParseJsonPointer("/data"), ElementsAre("data"));
  EXPECT_THAT(*ParseJsonPointer("/a~1b/c~0d/0"), ElementsAre("a/b", "c~d", "0"));
  EXPECT_THAT(*ParseJsonPointer("/"), ElementsAre(""));
  EXPECT_THAT(*ParseJsonPointer("/~01"), ElementsAre("~1"));
}

TEST(JsonPointerTest, RejectsMissingSlashAndBadEscapes) {
  EXPECT_EQ(ParseJsonPointer("data").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJsonPointer("/a~2").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJsonPointer("/a~").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonPageTest, TopLevelArrayKeepsExactRecordText) {
  std::string body = R"([ {"id": 1,  "v": 123456789012345678901234567890} ,
    {"id":2,"s":"a\"b\\c\u00e9\ud83d\ude00","f":-1.5e+300}, 7, "x y", null, true ])";
  ParsedPage page = MustParse({}, &body);
  EXPECT_THAT(Records(page),
              ElementsAre(R"({"id": 1,  "v": 123456789012345678901234567890})",
                          R"({"id":2,"s":"a\"b\\c\u00e9\ud83d\ude00","f":-1.5e+300})", "7",
                          R"("x y")", "null", "true"));
  EXPECT_FALSE(page.used_utf8_fallback);
}

TEST(JsonPageTest, NestedRecordsPathAndPaginationValues) {
  std::string body = R"({"meta":{"next":"c2","total":{"pages":3},"count":"41"},
    "page":{"items":[{"id":"a","x":[1,{"y":2}]},{"id":"b"}]}, "url":"http://h/p?x=1&y=\u00e9"})";
  PageParseOptions options;
  options.records_path = "/page/items";
  options.cursor_path = "/meta/next";
  options.total_pages_path = "/meta/total/pages";
  options.total_count_path = "/meta/count";
  options.next_url_path = "/url";
  ParsedPage page = MustParse(options, &body);
  EXPECT_THAT(Records(page), ElementsAre(R"({"id":"a","x":[1,{"y":2}]})", R"({"id":"b"})"));
  EXPECT_EQ(page.cursor.kind, JsonScalar::Kind::kString);
  EXPECT_EQ(page.cursor.text, "c2");
  EXPECT_EQ(JsonScalarToInt(page.total_pages), 3);
  EXPECT_EQ(JsonScalarToInt(page.total_count), 41);
  EXPECT_EQ(page.next_url.text, "http://h/p?x=1&y=\xc3\xa9");
}

TEST(JsonPageTest, NaturalKeysStringUnescapedNumberRaw) {
  std::string body =
      R"({"data":[{"id":"a\/b\u0041"},{"id":123456789012345678901234567890},{"no":1},{"id":null},{"k":{"id":5}}]})";
  PageParseOptions options;
  options.records_path = "/data";
  options.id_path = "/id";
  ParsedPage page = MustParse(options, &body);
  ASSERT_EQ(page.records.size(), 5u);
  EXPECT_THAT(page.natural_keys, ElementsAre("a/bA", "123456789012345678901234567890", "", "", ""));
}

TEST(JsonPageTest, EscapedKeysMatchUnescapedPointer) {
  std::string body = R"({"da\u0074a":[1,2],"a/b":{"c~d":"z"}})";
  PageParseOptions options;
  options.records_path = "/data";
  options.cursor_path = "/a~1b/c~0d";
  ParsedPage page = MustParse(options, &body);
  EXPECT_THAT(Records(page), ElementsAre("1", "2"));
  EXPECT_EQ(page.cursor.text, "z");
}

TEST(JsonPageTest, AbsentAndNullCursor) {
  std::string body = R"({"data":[],"next":null})";
  PageParseOptions options;
  options.records_path = "/data";
  options.cursor_path = "/next";
  options.next_url_path = "/missing";
  ParsedPage page = MustParse(options, &body);
  EXPECT_TRUE(page.records.empty());
  EXPECT_EQ(page.cursor.kind, JsonScalar::Kind::kNull);
  EXPECT_EQ(page.next_url.kind, JsonScalar::Kind::kAbsent);
}

TEST(JsonPageTest, ArrayIndexInPointer) {
  std::string body = R"({"pages":[{"items":[1]},{"items":[2,3]}]})";
  PageParseOptions options;
  options.records_path = "/pages/1/items";
  ParsedPage page = MustParse(options, &body);
  EXPECT_THAT(Records(page), ElementsAre("2", "3"));
}

TEST(JsonPageTest, ObjectAtRecordsPathIsAnErrorNamingTheKeysAndNullIsNone) {
  std::string body = R"({"data":{"a":1}, "items": [1], "count": 1})";
  auto parser = *JsonPageParser::Create(RecordsAt("/data"));
  auto parsed = parser->Parse(&body);
  ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parsed.status().message(),
            "records path /data is an object, not an array of records; top-level keys: data, "
            "items (array), count");
  std::string null_body = R"({"data":null})";
  PageParseOptions options;
  options.records_path = "/data";
  EXPECT_TRUE(MustParse(options, &null_body).records.empty());
}

TEST(JsonPageTest, ObjectBodyWithoutRecordsPathIsAnErrorAndAnArrayBodyIsFine) {
  auto parser = *JsonPageParser::Create(RecordsAt(""));
  std::string body = R"({"results": [{"id": 1}], "count": 1})";
  auto parsed = parser->Parse(&body);
  ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parsed.status().message(),
            "the response is an object, not an array of records: set records_path to the array; "
            "top-level keys: results (array), count");
  std::string array = R"([{"id": 1}, {"id": 2}])";
  auto ok = parser->Parse(&array);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->records.size(), 2u);
}

TEST(JsonPageTest, MissingRecordsPathIsNotFound) {
  std::string body = R"({"results":[1], "count": 1})";
  auto parser = *JsonPageParser::Create(RecordsAt("/data"));
  auto parsed = parser->Parse(&body);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(parsed.status().message(),
            "records path /data not found; top-level keys: results (array), count");
  std::string scalar = R"({"data":5})";
  EXPECT_EQ(parser->Parse(&scalar).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonPageTest, TruncatedAndMalformedBodiesAreDataLoss) {
  auto parser = *JsonPageParser::Create(RecordsAt("/data"));
  for (std::string body :
       {std::string(R"({"data":[{"a":1},{"b":2})"), std::string(R"({"data":[{"a":1},{"b":)"),
        std::string(R"({"data":[{"a":1},{"b":"x)"), std::string("<html>oops</html>"),
        std::string(""), std::string(R"({"data":[1 2]})"), std::string(R"({"data":[01]})"),
        std::string(R"({"data":[{"a" 1}]})"), std::string(R"({"data":[]}} )"),
        std::string(R"({"data":[tru]})")}) {
    auto page = parser->Parse(&body);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss) << body << " -> " << page.status();
  }
}

TEST(JsonPageTest, BadStringsAndKeysInsideRecordsAreDataLossWhetherEscapedOrNot) {
  // Values and keys nobody looks up are not copied out, yet each is still fully checked.
  auto parser = *JsonPageParser::Create(RecordsAt("/data"));
  for (std::string body : {
           std::string("{\"data\":[{\"a\":\"x\ty\"}]}"),  // Raw control character in a value.
           std::string("{\"data\":[{\"a\":\"x\ny\"}]}"),  // ... a raw newline.
           std::string("{\"data\":[{\"a\x01\":1}]}"),     // ... in a key.
           std::string(R"({"data":[{"a":"x\qy"}]})"),     // Invalid escape in a value.
           std::string(R"({"data":[{"a\q":1}]})"),        // ... in a key.
           std::string(R"({"data":[{"a":"\u12"}]})"),     // Short \u escape.
           std::string(R"({"data":[{"a":["\x"]}]})"),     // Nested in an array.
           std::string(R"({"data":[{"a":"\ud800x"}]})"),  // Lone high surrogate.
       }) {
    auto page = parser->Parse(&body);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss) << body << " -> " << page.status();
  }
  // Valid escapes in keys and values still pass, and keys with escapes still match pointers.
  std::string ok = R"({"d\u0061ta":[{"a\"b":"x\"y\\z\u00e9\ud83d\ude00","c":"\/"}]})";
  auto page = parser->Parse(&ok);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->records.size(), 1u);
}

TEST(JsonPageTest, SharedParseBuffersGiveTheSameResults) {
  auto parser = *JsonPageParser::Create(RecordsAt("/data"));
  JsonParseBuffers buffers;
  std::string body = R"({"data":[{"id":1},{"id":2}]})";
  auto page = parser->Parse(&body, &buffers);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Records(*page), ElementsAre(R"({"id":1})", R"({"id":2})"));
  buffers.Release();
  std::string bad = R"({"data":[{"id":1},{"id":)";
  EXPECT_EQ(parser->Parse(&bad, &buffers).status().code(), absl::StatusCode::kDataLoss);
}

TEST(JsonPageTest, InvalidUtf8FallsBackAndStillExtractsRecords) {
  std::string body =
      "{\"data\":[{\"id\":1,\"s\":\"ok\"},{\"id\":2,\"s\":\"bad\xff\xfe\"},{\"id\":\"3\\u0041\"}],"
      "\"next\":\"n\\/1\"}";
  PageParseOptions options;
  options.records_path = "/data";
  options.id_path = "/id";
  options.cursor_path = "/next";
  ParsedPage page = MustParse(options, &body);
  EXPECT_TRUE(page.used_utf8_fallback);
  EXPECT_THAT(Records(page), ElementsAre(R"({"id":1,"s":"ok"})", "{\"id\":2,\"s\":\"bad\xff\xfe\"}",
                                         R"({"id":"3\u0041"})"));
  EXPECT_THAT(page.natural_keys, ElementsAre("1", "2", "3A"));
  EXPECT_EQ(page.cursor.text, "n/1");
}

TEST(JsonPageTest, InvalidUtf8AndTruncatedIsStillAnError) {
  std::string body = "{\"data\":[{\"s\":\"bad\xff\"},{\"s\":";
  auto parser = *JsonPageParser::Create(RecordsAt("/data"));
  EXPECT_EQ(parser->Parse(&body).status().code(), absl::StatusCode::kDataLoss);
}

TEST(JsonPageTest, ParserIsReusableAcrossPages) {
  auto parser = *JsonPageParser::Create(RecordsAt(""));
  for (int i = 0; i < 3; ++i) {
    std::string body =
        "[" + std::to_string(i) + ",{\"k\":\"" + std::string(size_t(i) * 100, 'x') + "\"}]";
    auto page = parser->Parse(&body);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->records.size(), 2u);
    EXPECT_EQ(std::string(page->records[0]), std::to_string(i));
  }
}

TEST(JsonScalarTest, ToInt) {
  EXPECT_EQ(JsonScalarToInt({JsonScalar::Kind::kNumber, "12"}), 12);
  EXPECT_EQ(JsonScalarToInt({JsonScalar::Kind::kNumber, "12.0"}), 12);
  EXPECT_EQ(JsonScalarToInt({JsonScalar::Kind::kString, "7"}), 7);
  EXPECT_EQ(JsonScalarToInt({JsonScalar::Kind::kNumber, "-1"}), std::nullopt);
  EXPECT_EQ(JsonScalarToInt({JsonScalar::Kind::kNull, ""}), std::nullopt);
}

// A page nested 100,000 deep used to overflow the walker's stack (and crash the collector again on
// every restart, because the job resumes at start-up): it is now a page error on every path.
std::string Nested(size_t depth, absl::string_view leaf) {
  return std::string(depth, '[') + std::string(leaf) + std::string(depth, ']');
}

TEST(JsonPageDepthTest, HundredThousandDeepIsAPageErrorNotACrash) {
  for (const std::string& records_path : {std::string(""), std::string("/data")}) {
    auto parser = JsonPageParser::Create(RecordsAt(records_path));
    ASSERT_TRUE(parser.ok());
    std::string body = Nested(100000, "1");
    if (!records_path.empty()) body = "{\"data\":" + body + "}";
    auto page = (*parser)->Parse(&body);
    ASSERT_FALSE(page.ok());
    EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(page.status().message()),
                ::testing::HasSubstr("nesting deeper than 512"));
  }
}

TEST(JsonPageDepthTest, DeepObjectsAndInvalidUtf8FallbackAreRefusedToo) {
  auto parser = JsonPageParser::Create(RecordsAt("/data"));
  ASSERT_TRUE(parser.ok());
  std::string objects = "{\"data\":[";
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  objects += "1";
  for (int i = 0; i < 100000; ++i) objects += "}";
  objects += "]}";
  auto page = (*parser)->Parse(&objects);
  ASSERT_FALSE(page.ok());
  EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss);

  // Invalid UTF-8 sends the body to the fallback scanner, which has the same limit.
  std::string bad = "{\"data\":[\"\xff\"," + Nested(100000, "1") + "]}";
  page = (*parser)->Parse(&bad);
  ASSERT_FALSE(page.ok());
  EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(page.status().message()),
              ::testing::HasSubstr("nesting deeper than 512"));
}

TEST(JsonPageDepthTest, NestingUpToTheLimitIsAccepted) {
  auto parser = JsonPageParser::Create(RecordsAt(""));
  ASSERT_TRUE(parser.ok());
  // The records array is level 0, so a record may nest kMaxJsonNestingDepth - 1 more levels.
  std::string body = "[" + Nested(kMaxJsonNestingDepth - 1, "1") + "]";
  auto page = (*parser)->Parse(&body);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->records.size(), 1u);
  std::string bad = "[\"\xff\"," + Nested(kMaxJsonNestingDepth - 1, "1") + "]";
  page = (*parser)->Parse(&bad);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->used_utf8_fallback);
  std::string deeper = "[" + Nested(kMaxJsonNestingDepth + 1, "1") + "]";
  EXPECT_FALSE((*parser)->Parse(&deeper).ok());
}

TEST(JsonPageLimitsTest, RecordsPerPageAreCapped) {
  PageParseOptions options = RecordsAt("");
  options.max_records = 1000;
  auto parser = JsonPageParser::Create(options);
  ASSERT_TRUE(parser.ok());
  std::string at_limit = "[";
  for (int i = 0; i < 1000; ++i) at_limit += i ? ",1" : "1";
  at_limit += "]";
  auto page = (*parser)->Parse(&at_limit);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->records.size(), 1000u);
  for (const std::string& bad_byte : {std::string(""), std::string("\"\xff\",")}) {
    std::string over = "[" + bad_byte + "1";
    for (int i = 0; i < 5000; ++i) over += ",1";
    over += "]";
    page = (*parser)->Parse(&over);
    ASSERT_FALSE(page.ok());
    EXPECT_EQ(page.status().code(), absl::StatusCode::kResourceExhausted) << page.status();
    EXPECT_THAT(std::string(page.status().message()),
                ::testing::HasSubstr("more than 1000 records"));
  }
}

}  // namespace
}  // namespace etl
