#include "writer_service/copy_text.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace etl {
namespace {

std::string Copy(absl::string_view v) {
  std::string out;
  AppendCopyText(&out, v);
  return out;
}

// Byte-at-a-time definitions the fast versions must agree with.
std::string ReferenceCopy(absl::string_view v) {
  std::string out;
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

bool ReferenceNulEscape(absl::string_view json) {
  for (size_t u = 0; u + 5 <= json.size(); ++u) {
    if (json.substr(u, 5) != "u0000") continue;
    size_t backslashes = 0;
    while (backslashes < u && json[u - 1 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 1) return true;
  }
  return false;
}

TEST(CopyTextTest, WordAtATimeScanAgreesWithByteAtATimeOnEveryPosition) {
  // Each special byte (and control bytes that are not special) at every offset of words and tails.
  const std::string specials = std::string("\\\t\n\r\x01\x0b\x0c\x0d\x0e\x1f\x5b\x5d\x00", 13);
  for (size_t len = 0; len <= 40; ++len) {
    for (size_t pos = 0; pos < len; ++pos) {
      for (char c : specials) {
        std::string v(len, 'a');
        v[pos] = c;
        ASSERT_EQ(Copy(v), ReferenceCopy(v))
            << "len " << len << " pos " << pos << " byte " << int(c);
      }
    }
  }
  std::mt19937 rng(7);
  const std::string alphabet = std::string("ab\\\t\n\ru0{}\"\x01\xc3\xa9\x80", 15);
  for (int i = 0; i < 20000; ++i) {
    std::string v(rng() % 64, ' ');
    for (char& c : v) c = alphabet[rng() % alphabet.size()];
    ASSERT_EQ(Copy(v), ReferenceCopy(v));
    ASSERT_EQ(HasJsonNulEscape(v), ReferenceNulEscape(v)) << v;
    std::string w(rng() % 16, ' ');  // Dense in backslashes, 'u' and '0'.
    for (char& c : w) c = "\\u0"[rng() % 3];
    ASSERT_EQ(HasJsonNulEscape(w), ReferenceNulEscape(w)) << w;
  }
}

TEST(JsonNulEscapeTest, AgreesWithTheBackslashCountOnRunsAndEdges) {
  for (int k = 0; k <= 5; ++k) {
    std::string run(size_t(k), '\\');
    for (const std::string& v : {run + "u0000", "x" + run + "u0000x", run + "u000", run}) {
      EXPECT_EQ(HasJsonNulEscape(v), ReferenceNulEscape(v)) << v;
    }
  }
  EXPECT_TRUE(HasJsonNulEscape("{\"a\":\"\\u0000\"}"));
  EXPECT_FALSE(HasJsonNulEscape("{\"a\":\"\\\\u0000\"}"));
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
  EXPECT_TRUE(HasJsonNulEscape(R"({"a": "\\\u0000"})"));  // \\ then \u0000
  EXPECT_FALSE(HasJsonNulEscape(R"({"a": "\\u0000"})"));  // an escaped backslash, then text
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
  EXPECT_EQ(LossyUtf8("a\xff"
                      "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(LossyUtf8(std::string("a\0b", 3)),
            "a\xEF\xBF\xBD"
            "b");
}

}  // namespace
}  // namespace etl
