#include "writer_service/copy_text.h"

#include <string>

#include <gtest/gtest.h>

namespace etl {
namespace {

std::string Copy(absl::string_view v) {
  std::string out;
  AppendCopyText(&out, v);
  return out;
}

TEST(CopyTextTest, EscapesBackslashTabNewlineAndCarriageReturn) {
  EXPECT_EQ(Copy("a\\b"), "a\\\\b");
  EXPECT_EQ(Copy("a\tb\nc\rd"), "a\\tb\\nc\\rd");
  EXPECT_EQ(Copy("{\"q\": \"\\\"x\\\"\"}"), "{\"q\": \"\\\\\"x\\\\\"\"}");
}

TEST(CopyTextTest, LeavesQuotesAndMultibyteTextUntouched) {
  std::string s = "{\"a\": \"'quoted' 😀 Привет 漢字 \\u00e9\"}";
  EXPECT_EQ(Copy("'\" 😀 Привет 漢字"), "'\" 😀 Привет 漢字");
  EXPECT_EQ(Copy(s), "{\"a\": \"'quoted' 😀 Привет 漢字 \\\\u00e9\"}");
}

TEST(JsonNulEscapeTest, FindsUnescapedNulEscapeOnly) {
  EXPECT_TRUE(HasJsonNulEscape(R"({"a": "x\u0000y"})"));
  EXPECT_TRUE(HasJsonNulEscape(R"({"a": "\\\u0000"})"));   // \\ then \u0000
  EXPECT_FALSE(HasJsonNulEscape(R"({"a": "\\u0000"})"));   // an escaped backslash, then text
  EXPECT_FALSE(HasJsonNulEscape(R"({"a": "u0000"})"));
  EXPECT_TRUE(HasJsonNulEscape(R"({"a": "\u00001"})"));  // \u0000 followed by a digit
}

TEST(PrecheckRecordTest, RejectsWhatJsonbCannotStore) {
  EXPECT_TRUE(PrecheckRecord(R"({"a": 1})").ok());
  EXPECT_FALSE(PrecheckRecord("").ok());
  EXPECT_FALSE(PrecheckRecord("{\"a\": \"\xff\"}").ok());
  EXPECT_FALSE(PrecheckRecord("{\"a\": \"\xed\xa0\x80\"}").ok());  // UTF-8 encoded surrogate
  EXPECT_FALSE(PrecheckRecord(std::string("{\"a\": \"\0\"}", 10)).ok());
  EXPECT_FALSE(PrecheckRecord(R"({"a": "\u0000"})").ok());
}

TEST(LossyUtf8Test, ReplacesInvalidBytesAndKeepsValidText) {
  EXPECT_EQ(LossyUtf8("ok Привет"), "ok Привет");
  EXPECT_EQ(LossyUtf8("a\xff" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(LossyUtf8(std::string("a\0b", 3)), "a\xEF\xBF\xBD" "b");
}

}  // namespace
}  // namespace etl
