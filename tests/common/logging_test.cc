#include "common/logging.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace etl {
namespace {

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetThreadComponent("collector/job");
    SetLogFormat(LogFormat::kText);
  }
  void TearDown() override { SetLogFormat(LogFormat::kText); }
};

constexpr char kTraceparent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST_F(LoggingTest, TextLineCarriesTimeLevelComponentJobAndRequestIds) {
  ScopedLogContext ctx("job42", "req-7", kTraceparent);
  EXPECT_EQ(FormatLogLineForTest(LogLevel::kWarning, "T", "page 3 retried"),
            "T W [collector/job] job=job42 req=req-7 trace=4bf92f3577b34da6a3ce929d0e0e4736 page 3 "
            "retried");
}

TEST_F(LoggingTest, ContextIsRestoredWhenTheScopeEnds) {
  { ScopedLogContext ctx("job42", "", ""); }
  EXPECT_EQ(FormatLogLineForTest(LogLevel::kInfo, "T", "m"), "T I [collector/job] m");
}

TEST_F(LoggingTest, AThreadOfAJobCarriesItsParentsContext) {
  LogContext parent;
  {
    ScopedLogContext ctx("job42", "req-7", kTraceparent);
    parent = CurrentLogContext();
  }
  std::string line;
  std::thread worker([&] {
    SetThreadComponent("collector/fetch");
    ScopedLogContext ctx(parent);
    line = FormatLogLineForTest(LogLevel::kInfo, "T", "m");
  });
  worker.join();
  EXPECT_EQ(line,
            "T I [collector/fetch] job=job42 req=req-7 trace=4bf92f3577b34da6a3ce929d0e0e4736 m");
}

TEST_F(LoggingTest, JsonLineIsOneObjectWithEveryField) {
  SetLogFormat(LogFormat::kJson);
  ScopedLogContext ctx("job42", "req \"7\"", kTraceparent);
  EXPECT_EQ(
      FormatLogLineForTest(LogLevel::kError, "T", "bad \\ thing"),
      "{\"time\":\"T\",\"level\":\"error\",\"component\":\"collector/job\",\"job_id\":\"job42\","
      "\"request_id\":\"req \\\"7\\\"\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
      "\"msg\":\"bad \\\\ thing\"}");
}

TEST_F(LoggingTest, MultiLineLibpqErrorsAreFoldedIntoOneLine) {
  const std::string pq =
      "ERROR:  relation \"x\" does not exist\nLINE 1: SELECT * FROM x\n              ^\n";
  std::string text = FormatLogLineForTest(LogLevel::kError, "T", pq);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  EXPECT_NE(text.find("does not exist | LINE 1: SELECT * FROM x |"), std::string::npos) << text;
  SetLogFormat(LogFormat::kJson);
  std::string json = FormatLogLineForTest(LogLevel::kError, "T",
                                          "a\r\nb\x01"
                                          "c");
  EXPECT_NE(json.find("\"msg\":\"a | b\\u0001c\""), std::string::npos) << json;
}

TEST_F(LoggingTest, InvalidUtf8NeverBreaksAJsonLine) {
  SetLogFormat(LogFormat::kJson);
  std::string json = FormatLogLineForTest(LogLevel::kInfo, "T", std::string("x\xff\xc3(y", 5));
  EXPECT_NE(json.find("\"msg\":\"x\\ufffd\\ufffd(y\""), std::string::npos) << json;
  SetLogFormat(LogFormat::kText);
  std::string text = FormatLogLineForTest(LogLevel::kInfo, "T", std::string("x\xff", 2));
  EXPECT_NE(text.find("x\\xff"), std::string::npos) << text;
}

TEST_F(LoggingTest, TraceIdComesOnlyFromAWellFormedTraceparent) {
  EXPECT_EQ(TraceIdFromTraceparent(kTraceparent), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(TraceIdFromTraceparent("garbage"), "");
  EXPECT_EQ(TraceIdFromTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), "");
  EXPECT_EQ(TraceIdFromTraceparent("00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01"), "");
}

TEST_F(LoggingTest, ConfigureLoggingAcceptsDocumentedValuesOnly) {
  EXPECT_TRUE(ConfigureLogging("json", "warning").ok());
  EXPECT_EQ(CurrentLogFormat(), LogFormat::kJson);
  EXPECT_EQ(MinLogLevel(), LogLevel::kWarning);
  EXPECT_TRUE(ConfigureLogging("", "").ok());
  EXPECT_EQ(CurrentLogFormat(), LogFormat::kJson);
  EXPECT_FALSE(ConfigureLogging("xml", "").ok());
  EXPECT_FALSE(ConfigureLogging("", "loud").ok());
  EXPECT_TRUE(ConfigureLogging("text", "info").ok());
  EXPECT_EQ(MinLogLevel(), LogLevel::kInfo);
}

}  // namespace
}  // namespace etl
