// The collector's /metrics page: exact integers, histograms, and promtool's strict check.
#include <string>

#include "collector_service/counters.h"
#include "gtest/gtest.h"
#include "tests/testing/promtool.h"

namespace etl {
namespace {

TEST(CollectorMetricsTest, LargeCountersPrintExactlyAndThePagePassesPromtool) {
  CollectorCounters c;
  c.bytes_fetched = 17864200;
  c.records_fetched = 1234567891234;
  c.CountHttpResponse(200);
  c.CountHttpResponse(200);
  c.CountHttpResponse(503);
  c.CountHttpResponse(0);
  c.CountHttpResponse(1000);  // out of range: counted as "no valid response"
  c.ObserveFetch(CollectorCounters::FetchOutcome::kOk, 0.02);
  c.ObserveFetch(CollectorCounters::FetchOutcome::kHttpError, 0.5);
  c.ObserveJobEnd(CollectorCounters::JobEnd::kSucceeded, 42);
  const std::string text = RenderCollectorMetrics(c, nullptr);
  EXPECT_NE(text.find("etl_collector_bytes_fetched_total 17864200\n"), std::string::npos) << text;
  EXPECT_NE(text.find("etl_collector_records_fetched_total 1234567891234\n"), std::string::npos);
  EXPECT_NE(text.find("etl_collector_http_responses_total{code=\"200\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("etl_collector_http_responses_total{code=\"503\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("etl_collector_http_responses_total{code=\"0\"} 2\n"), std::string::npos);
  EXPECT_NE(
      text.find(
          "etl_collector_page_fetch_duration_seconds_bucket{outcome=\"ok\",le=\"0.025\"} 1\n"),
      std::string::npos);
  EXPECT_NE(
      text.find("etl_collector_page_fetch_duration_seconds_count{outcome=\"http_error\"} 1\n"),
      std::string::npos);
  EXPECT_NE(text.find("etl_collector_job_duration_seconds_sum{state=\"SUCCEEDED\"} 42\n"),
            std::string::npos);
  EXPECT_NE(text.find("etl_collector_build_info{version=\""), std::string::npos);
  EXPECT_NE(text.find("process_start_time_seconds "), std::string::npos);
  EXPECT_EQ(text.find("e+"), std::string::npos);
  EXPECT_EQ(text.find("job_id"), std::string::npos);
  testing::ExpectPromtoolAccepts(text);
}

}  // namespace
}  // namespace etl
