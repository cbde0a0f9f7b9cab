#include "common/json_page.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  for (std::string body : {std::string(R"({"data":[{"a":1},{"b":2})"), std::string(R"({"data":[{"a":1},{"b":)"),
                           std::string(R"({"data":[{"a":1},{"b":"x)"), std::string("<html>oops</html>"),
                           std::string(""), std::string(R"({"data":[1 2]})"), std::string(R"({"data":[01]})"),
                           std::string(R"({"data":[{"a" 1}]})"), std::string(R"({"data":[]}} )"),
                           std::string(R"({"data":[tru]})")}) {
    auto page = parser->Parse(&body);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss) << body << " -> " << page.status();
  }
}

TEST(JsonPageTest, InvalidUtf8FallsBackAndStillExtractsRecords) {
  std::string body = "{\"data\":[{\"id\":1,\"s\":\"ok\"},{\"id\":2,\"s\":\"bad\xff\xfe\"},{\"id\":\"3\\u0041\"}],"
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
    std::string body = "[" + std::to_string(i) + ",{\"k\":\"" + std::string(size_t(i) * 100, 'x') + "\"}]";
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

}  // namespace
}  // namespace etl
