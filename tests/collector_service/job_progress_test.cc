// Unit tests of JobProgressTracker: committed figures, rate and ETA with a fake clock.
#include "collector_service/job_progress.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "absl/time/time.h"

namespace etl {
namespace {

class FakeClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

v1::JobCounters Committed(int64_t records, int64_t pages) {
  v1::JobCounters c;
  c.set_records_committed(records);
  c.set_pages_committed(pages);
  return c;
}

TEST(JobProgressTest, RateAndEtaFollowTheClock) {
  FakeClock clock;
  JobProgressTracker tracker([&clock] { return clock.Now(); });
  tracker.StartRun(0, 0, 0);
  tracker.SetWriterBase(0, 0, 0);
  tracker.RaiseRecordsTotal(1000);
  JobProgressTracker::JobStatus status;
  status.state = v1::RUNNING;
  status.created_ms = absl::ToUnixMillis(clock.Now());
  status.started_ms = status.created_ms;

  v1::JobProgress p = tracker.Report("j", status);
  EXPECT_EQ(p.records_committed(), 0);
  EXPECT_EQ(p.eta_seconds(), -1);  // No rate yet.

  clock.Advance(absl::Seconds(2));
  tracker.UpdateWriterCounters(Committed(200, 2));
  p = tracker.Report("j", status);
  EXPECT_EQ(p.records_committed(), 200);
  EXPECT_EQ(p.pages_committed(), 2);
  EXPECT_DOUBLE_EQ(p.elapsed_seconds(), 2.0);
  EXPECT_DOUBLE_EQ(p.records_per_second(), 100.0);
  EXPECT_DOUBLE_EQ(p.eta_seconds(), 8.0);  // 800 records left at 100/s.

  // Samples older than 10 s drop out: the rate is the recent one.
  clock.Advance(absl::Seconds(10));
  tracker.UpdateWriterCounters(Committed(400, 4));
  p = tracker.Report("j", status);
  clock.Advance(absl::Seconds(2));
  tracker.UpdateWriterCounters(Committed(500, 5));
  p = tracker.Report("j", status);
  EXPECT_DOUBLE_EQ(p.records_per_second(), 50.0);  // (500 - 400) / 2 s.
  EXPECT_DOUBLE_EQ(p.eta_seconds(), 10.0);

  status.done = true;
  status.finished_ms = absl::ToUnixMillis(clock.Now());
  p = tracker.Report("j", status);
  EXPECT_EQ(p.eta_seconds(), 0);
}

TEST(JobProgressTest, EtaFromPagesWhenTheRecordTotalIsUnknown) {
  FakeClock clock;
  JobProgressTracker tracker([&clock] { return clock.Now(); });
  tracker.StartRun(0, 0, 0);
  tracker.SetWriterBase(0, 0, 0);
  tracker.SetPagesTotal(10);
  JobProgressTracker::JobStatus status;
  status.state = v1::RUNNING;
  status.started_ms = absl::ToUnixMillis(clock.Now());
  tracker.Report("j", status);
  clock.Advance(absl::Seconds(4));
  tracker.UpdateWriterCounters(Committed(40, 2));  // 20 records per page, 10/s.
  v1::JobProgress p = tracker.Report("j", status);
  EXPECT_DOUBLE_EQ(p.records_per_second(), 10.0);
  EXPECT_DOUBLE_EQ(p.eta_seconds(), 16.0);  // 8 pages * 20 records / 10 per s.
}

TEST(JobProgressTest, WriterCountersAddToTheLedgerBaseAndNeverGoBack) {
  JobProgressTracker tracker;
  tracker.StartRun(3, 300, 1);                      // From the ledger.
  tracker.UpdateWriterCounters(Committed(999, 9));  // Writer base unknown: ignored.
  JobProgressTracker::JobStatus status;
  EXPECT_EQ(tracker.Report("j", status).records_committed(), 300);
  tracker.SetWriterBase(1000, 10, 0);  // The writer had counted other runs already.
  tracker.UpdateWriterCounters(Committed(1050, 11));
  v1::JobProgress p = tracker.Report("j", status);
  EXPECT_EQ(p.records_committed(), 350);
  EXPECT_EQ(p.pages_committed(), 4);
  tracker.UpdateWriterCounters(Committed(1020, 10));  // An older reading.
  EXPECT_EQ(tracker.Report("j", status).records_committed(), 350);
  tracker.PageSent(60);
  EXPECT_EQ(tracker.Report("j", status).records_fetched(), 360);
}

}  // namespace
}  // namespace etl
