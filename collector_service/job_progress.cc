#include "collector_service/job_progress.h"

#include <algorithm>

namespace etl {

JobProgressTracker::JobProgressTracker(Clock clock)
    : clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })) {}

void JobProgressTracker::RaiseTo(std::atomic<int64_t>* value, int64_t to) {
  int64_t prev = value->load();
  while (to > prev && !value->compare_exchange_weak(prev, to)) {
  }
}

void JobProgressTracker::StartRun(int64_t pages_committed, int64_t records_committed,
                                  int64_t records_rejected) {
  base_pages_.store(pages_committed);
  base_records_.store(records_committed);
  base_rejected_.store(records_rejected);
  live_pages_committed_.store(pages_committed);
  live_records_committed_.store(records_committed);
  live_rejected_.store(records_rejected);
  pages_sent_run_.store(0);
  records_sent_run_.store(0);
}

void JobProgressTracker::SetWriterBase(int64_t records, int64_t pages, int64_t rejected) {
  writer_base_pages_.store(pages);
  writer_base_rejected_.store(rejected);
  writer_base_records_.store(records);
}

void JobProgressTracker::UpdateWriterCounters(const v1::JobCounters& c) {
  int64_t base = writer_base_records_.load();
  if (base < 0) return;
  int64_t records = base_records_.load() + std::max<int64_t>(0, c.records_committed() - base);
  int64_t pages =
      base_pages_.load() + std::max<int64_t>(0, c.pages_committed() - writer_base_pages_.load());
  int64_t rejected = base_rejected_.load() +
                     std::max<int64_t>(0, c.records_rejected() - writer_base_rejected_.load());
  live_records_committed_.store(std::max(live_records_committed_.load(), records));
  live_pages_committed_.store(std::max(live_pages_committed_.load(), pages));
  live_rejected_.store(std::max(live_rejected_.load(), rejected));
}

void JobProgressTracker::SetCommitted(int64_t pages, int64_t records, int64_t rejected) {
  live_pages_committed_.store(pages);
  live_records_committed_.store(records);
  live_rejected_.store(rejected);
}

void JobProgressTracker::PageSent(int64_t records) {
  pages_sent_run_.fetch_add(1);
  records_sent_run_.fetch_add(records);
}

void JobProgressTracker::RaisePagesTotal(int64_t total) { RaiseTo(&pages_total_, total); }

void JobProgressTracker::RaiseRecordsTotal(int64_t total) { RaiseTo(&records_total_, total); }

void JobProgressTracker::SetBuffered(int64_t pages) {
  buffered_.store(pages);
  RaiseTo(&max_buffered_, pages);
}

v1::JobProgress JobProgressTracker::Report(const std::string& job_id,
                                           const JobStatus& status) const {
  v1::JobProgress p;
  p.set_job_id(job_id);
  p.set_state(status.state);
  const int64_t committed = live_records_committed_.load();
  p.set_pages_committed(live_pages_committed_.load());
  p.set_pages_done(std::max(base_pages_.load() + pages_sent_run_.load(), p.pages_committed()));
  p.set_pages_failed(status.pages_failed);
  p.set_pages_total(pages_total_.load());
  p.set_records_total(records_total_.load());
  p.set_records_fetched(std::max(base_records_.load() + records_sent_run_.load(), committed));
  p.set_records_committed(committed);
  p.set_records_rejected(live_rejected_.load());
  p.set_retries(retries_.load());
  p.set_message(status.message);
  const absl::Time now = clock_();
  const int64_t start = status.started_ms > 0 ? status.started_ms : status.created_ms;
  const int64_t end = status.finished_ms > 0 ? status.finished_ms : absl::ToUnixMillis(now);
  p.set_elapsed_seconds(double(std::max<int64_t>(0, end - start)) / 1000.0);
  double rate = 0;
  {
    // Commit rate over the last ~10 s.
    absl::MutexLock l(&mu_);
    rate_samples_.emplace_back(now, committed);
    while (rate_samples_.size() > 2 && now - rate_samples_.front().first > absl::Seconds(10)) {
      rate_samples_.pop_front();
    }
    if (rate_samples_.size() >= 2) {
      double dt = absl::ToDoubleSeconds(rate_samples_.back().first - rate_samples_.front().first);
      if (dt >= 0.5) {
        rate = double(rate_samples_.back().second - rate_samples_.front().second) / dt;
      }
    }
  }
  if (rate <= 0 && p.elapsed_seconds() > 0 && !status.done) {
    rate = double(committed - base_records_.load()) / p.elapsed_seconds();
  }
  p.set_records_per_second(std::max(0.0, rate));
  double eta = -1;
  if (status.done) {
    eta = 0;
  } else if (rate > 0) {
    if (p.records_total() > 0) {
      eta = double(std::max<int64_t>(0, p.records_total() - committed)) / rate;
    } else if (p.pages_total() > 0 && p.pages_committed() > 0) {
      double per_page = double(committed) / double(p.pages_committed());
      eta = double(std::max<int64_t>(0, p.pages_total() - p.pages_committed())) * per_page / rate;
    }
  }
  p.set_eta_seconds(eta);
  return p;
}

}  // namespace etl
