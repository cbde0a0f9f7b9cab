#include "common/metrics.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/promtool.h"

namespace etl {
namespace {

TEST(FormatSampleValueTest, IntegersAreExact) {
  EXPECT_EQ(FormatSampleValue(int64_t{17864200}), "17864200");
  EXPECT_EQ(FormatSampleValue(17864200.0), "17864200");
  EXPECT_EQ(FormatSampleValue(int64_t{9007199254740993}), "9007199254740993");
  EXPECT_EQ(FormatSampleValue(-3.0), "-3");
  EXPECT_EQ(FormatSampleValue(0.0), "0");
}

TEST(FormatSampleValueTest, FractionsRoundTripAndSpecialValuesAreSpelledOut) {
  EXPECT_EQ(FormatSampleValue(0.25), "0.25");
  EXPECT_EQ(FormatSampleValue(0.1), "0.1");
  EXPECT_EQ(FormatSampleValue(1e-06), "1e-06");
  EXPECT_EQ(std::strtod(FormatSampleValue(1.0 / 3).c_str(), nullptr), 1.0 / 3);
  EXPECT_EQ(FormatSampleValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatSampleValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatSampleValue(std::nan("")), "NaN");
}

TEST(EscapeLabelValueTest, EscapesQuotesBackslashNewlineAndInvalidUtf8) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(EscapeLabelValue(std::string("x\xff"
                                         "y",
                                         3)),
            "x\xEF\xBF\xBDy");
  EXPECT_EQ(EscapeLabelValue("ação"), "ação");
}

TEST(HistogramTest, BucketsAreCumulativeAndInclusive) {
  Histogram h({0.1, 1, 10});
  h.Observe(0.1);     // le=0.1 (inclusive)
  h.Observe(0.5, 3);  // le=1
  h.Observe(100);     // +Inf only
  Histogram::Snapshot s = h.Take();
  ASSERT_EQ(s.cumulative.size(), 4u);
  EXPECT_EQ(s.cumulative[0], 1);
  EXPECT_EQ(s.cumulative[1], 4);
  EXPECT_EQ(s.cumulative[2], 4);
  EXPECT_EQ(s.cumulative[3], 5);
  EXPECT_EQ(s.count, 5);
  EXPECT_DOUBLE_EQ(s.sum, 0.1 + 1.5 + 100);
}

TEST(ExpositionWriterTest, RendersHistogramSeriesWithLeLabels) {
  Histogram h({0.5, 2.5});
  h.Observe(1);
  ExpositionWriter w;
  w.Family("etl_test_seconds", "histogram", "Test.");
  w.HistogramSeries("etl_test_seconds", {{"outcome", "ok"}}, h.Take());
  EXPECT_EQ(w.text(),
            "# HELP etl_test_seconds Test.\n# TYPE etl_test_seconds histogram\n"
            "etl_test_seconds_bucket{outcome=\"ok\",le=\"0.5\"} 0\n"
            "etl_test_seconds_bucket{outcome=\"ok\",le=\"2.5\"} 1\n"
            "etl_test_seconds_bucket{outcome=\"ok\",le=\"+Inf\"} 1\n"
            "etl_test_seconds_sum{outcome=\"ok\"} 1\n"
            "etl_test_seconds_count{outcome=\"ok\"} 1\n");
}

TEST(ExpositionWriterTest, WholeExpositionPassesPromtool) {
  Histogram h(LatencyBuckets());
  h.Observe(0.003);
  h.Observe(42, 7);
  ExpositionWriter w;
  w.Counter("etl_test_bytes_total", "Bytes.", 17864200);
  w.Gauge("etl_test_rate_per_second", "Rate.", 1234.5);
  w.Family("etl_test_http_responses_total", "counter", "By code.");
  w.Sample("etl_test_http_responses_total", {{"code", "200"}}, int64_t{5});
  w.Sample("etl_test_http_responses_total", {{"code", "503"}}, int64_t{2});
  w.HistogramFamily("etl_test_duration_seconds", "Durations.", h.Take());
  w.ProcessAndBuildInfo("etl_test");
  const std::string text = w.text();
  EXPECT_NE(text.find("etl_test_bytes_total 17864200\n"), std::string::npos);
  EXPECT_NE(text.find("process_start_time_seconds "), std::string::npos);
  EXPECT_NE(text.find("etl_test_build_info{version=\""), std::string::npos);
  EXPECT_EQ(text.find("e+"), std::string::npos) << text;
  testing::ExpectPromtoolAccepts(text);
}

TEST(ExpositionWriterTest, PromtoolRejectsWhatTheOldFormatPrinted) {
  // The check itself can fail: a counter without _total and a lone sample line are refused.
  if (!testing::PromtoolAvailable())
    GTEST_SKIP() << "promtool not installed (scripts/setup installs it)";
  EXPECT_FALSE(testing::PromtoolCheck("# HELP x y\n# TYPE x counter\nx 1\n").ok());
  EXPECT_FALSE(testing::PromtoolCheck("etl_x_total{ 1\n").ok());
}

}  // namespace
}  // namespace etl
