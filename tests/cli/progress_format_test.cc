#include "cli/progress_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace etl::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(FormatCountTest, GroupsThousands) {
  EXPECT_EQ(FormatCount(0), "0");
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatCount(1000), "1,000");
  EXPECT_EQ(FormatCount(100000), "100,000");
  EXPECT_EQ(FormatCount(1234567), "1,234,567");
  EXPECT_EQ(FormatCount(-1234), "-1,234");
  EXPECT_EQ(FormatCount(std::numeric_limits<int64_t>::min()), "-9,223,372,036,854,775,808");
}

TEST(FormatDurationTest, PicksUnitsByMagnitude) {
  EXPECT_EQ(FormatDuration(0.44), "0.4s");
  EXPECT_EQ(FormatDuration(42), "42s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(7380), "2h03m");
  EXPECT_EQ(FormatDuration(3 * 86400 + 4 * 3600), "3d04h");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::quiet_NaN()), "?");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::infinity()), "?");
}

TEST(FormatRateTest, RoundsAndGroups) {
  EXPECT_EQ(FormatRate(2.25), "2.2/s");
  EXPECT_EQ(FormatRate(12345.6), "12,346/s");
  EXPECT_EQ(FormatRate(-5), "?/s");
}

TEST(FormatTimestampTest, PrintsUtc) {
  EXPECT_EQ(FormatTimestamp(0), "-");
  EXPECT_EQ(FormatTimestamp(1700000000123), "2023-11-14 22:13:20Z");
}

etl::v1::JobProgress Running() {
  etl::v1::JobProgress p;
  p.set_state(etl::v1::RUNNING);
  p.set_records_committed(45000);
  p.set_records_fetched(47000);
  p.set_records_total(100000);
  p.set_pages_committed(45);
  p.set_pages_total(100);
  p.set_records_per_second(12345);
  p.set_eta_seconds(4.45);
  p.set_elapsed_seconds(3.6);
  p.set_retries(2);
  p.set_pages_failed(1);
  return p;
}

TEST(FormatProgressLineTest, ShowsRecordsPagesRateEtaRetriesAndFailures) {
  std::string line = FormatProgressLine(Running());
  EXPECT_THAT(line, HasSubstr("RUNNING"));
  EXPECT_THAT(line, HasSubstr("45,000/100,000 records (45.0%)"));
  EXPECT_THAT(line, HasSubstr("+2,000 in flight"));
  EXPECT_THAT(line, HasSubstr("pages 45/100"));
  EXPECT_THAT(line, HasSubstr("12,345/s"));
  EXPECT_THAT(line, HasSubstr("ETA 4.5s"));
  EXPECT_THAT(line, HasSubstr("elapsed 3.6s"));
  EXPECT_THAT(line, HasSubstr("retries 2"));
  EXPECT_THAT(line, HasSubstr("failed pages 1"));
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(FormatProgressLineTest, UnknownTotalsAndEtaAreShownAsUnknown) {
  etl::v1::JobProgress p = Running();
  p.set_records_total(0);
  p.set_pages_total(0);
  p.set_eta_seconds(-1);
  std::string line = FormatProgressLine(p);
  EXPECT_THAT(line, HasSubstr("45,000 records +2,000 in flight |"));
  EXPECT_THAT(line, Not(HasSubstr("%")));
  EXPECT_THAT(line, HasSubstr("pages 45 |"));
  EXPECT_THAT(line, HasSubstr("ETA ?"));
}

TEST(FormatProgressLineTest, PercentFromPagesWhenRecordTotalUnknown) {
  etl::v1::JobProgress p = Running();
  p.set_records_total(0);
  p.set_pages_committed(25);
  EXPECT_THAT(FormatProgressLine(p), HasSubstr("(25.0%)"));
}

TEST(FormatProgressLineTest, FinishedJobHasNoEta) {
  etl::v1::JobProgress p = Running();
  p.set_state(etl::v1::SUCCEEDED);
  EXPECT_THAT(FormatProgressLine(p), Not(HasSubstr("ETA")));
}

TEST(FormatJobOutcomeTest, PartialListsFailedPagesAndReason) {
  etl::v1::Job job;
  job.set_job_id("j1");
  job.set_state(etl::v1::PARTIAL);
  job.set_table_name("dados_raw_cliente_2151_pedidos");
  job.set_error("1 page failed");
  *job.mutable_progress() = Running();
  auto* f = job.add_failed_pages();
  f->set_page_number(3);
  f->set_page_token("4");
  f->set_attempts(3);
  f->set_error("HTTP 500 after 3 attempts");
  std::string s = FormatJobOutcome(job);
  EXPECT_THAT(s, HasSubstr("job j1 PARTIAL: 45,000 records"));
  EXPECT_THAT(s, HasSubstr("into dados_raw_cliente_2151_pedidos"));
  EXPECT_THAT(s, HasSubstr("reason: 1 page failed"));
  EXPECT_THAT(s, HasSubstr("page 3 [4] after 3 attempt(s): HTTP 500 after 3 attempts"));
}

TEST(ExitCodeForStateTest, OnlySucceededIsZero) {
  EXPECT_EQ(ExitCodeForState(etl::v1::SUCCEEDED), 0);
  EXPECT_EQ(ExitCodeForState(etl::v1::PARTIAL), 2);
  EXPECT_EQ(ExitCodeForState(etl::v1::FAILED), 1);
  EXPECT_EQ(ExitCodeForState(etl::v1::CANCELLED), 1);
  EXPECT_TRUE(IsTerminal(etl::v1::CANCELLED));
  EXPECT_FALSE(IsTerminal(etl::v1::RUNNING));
}

}  // namespace
}  // namespace etl::cli
