// JobProgressTracker: the live figures of one job (pages and records sent, committed, rejected,
// totals, retries, pages buffered) and the commit rate and ETA derived from them.
//
// Committed figures are the writer's ledger at the start of a run plus the delta of the writer's
// per-process commit counters since then (UpdateWriterCounters). The rate is measured over the
// last ~10 s of Fill() calls; time comes from a clock seam so tests can drive it.
//
// Thread-safety: all methods may be called from any thread (atomics, plus one mutex for the rate
// samples).
#ifndef ETL_COLLECTOR_SERVICE_JOB_PROGRESS_H_
#define ETL_COLLECTOR_SERVICE_JOB_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etl.pb.h"

namespace etl {

class JobProgressTracker {
 public:
  using Clock = std::function<absl::Time()>;

  // The job's state as the lifecycle knows it, folded into each progress report.
  struct JobStatus {
    v1::JobState state = v1::PENDING;
    bool done = false;
    int64_t pages_failed = 0;
    std::string message;
    int64_t created_ms = 0;   // Registration time (unix ms).
    int64_t started_ms = 0;   // Start of the fetch phase; 0 = not started.
    int64_t finished_ms = 0;  // 0 = not finished.
  };

  // `clock` null = absl::Now.
  explicit JobProgressTracker(Clock clock = nullptr);

  absl::Time Now() const { return clock_(); }

  // A run starts from the ledger's figures.
  void StartRun(int64_t pages_committed, int64_t records_committed, int64_t records_rejected);
  // The writer's commit counters for this job at run start; unknown until set (Clear).
  void ClearWriterBase() { writer_base_records_.store(-1); }
  void SetWriterBase(int64_t records, int64_t pages, int64_t rejected);
  // Live counters from the writer's GetStatus (cumulative per writer process).
  void UpdateWriterCounters(const v1::JobCounters& counters);
  // Final figures read back from the ledger.
  void SetCommitted(int64_t pages, int64_t records, int64_t rejected);
  int64_t records_committed() const { return live_records_committed_.load(); }

  void PageSent(int64_t records);
  void AddRetry() { retries_.fetch_add(1); }

  int64_t pages_total() const { return pages_total_.load(); }
  int64_t records_total() const { return records_total_.load(); }
  void SetPagesTotal(int64_t total) { pages_total_.store(total); }
  // Raise to `total` when larger.
  void RaisePagesTotal(int64_t total);
  void RaiseRecordsTotal(int64_t total);

  // Fetched pages held now (window + the one being sent); tracks the maximum.
  void SetBuffered(int64_t pages);
  int64_t max_buffered() const { return max_buffered_.load(); }

  v1::JobProgress Report(const std::string& job_id, const JobStatus& status) const;

 private:
  static void RaiseTo(std::atomic<int64_t>* value, int64_t to);

  const Clock clock_;
  std::atomic<int64_t> pages_sent_run_{0};
  std::atomic<int64_t> records_sent_run_{0};
  std::atomic<int64_t> base_pages_{0};  // Ledger figures at the start of the current run.
  std::atomic<int64_t> base_records_{0};
  std::atomic<int64_t> base_rejected_{0};
  std::atomic<int64_t> writer_base_records_{-1};  // Writer counters at run start (-1 = unknown).
  std::atomic<int64_t> writer_base_pages_{0};
  std::atomic<int64_t> writer_base_rejected_{0};
  std::atomic<int64_t> live_records_committed_{0};
  std::atomic<int64_t> live_pages_committed_{0};
  std::atomic<int64_t> live_rejected_{0};
  std::atomic<int64_t> retries_{0};
  std::atomic<int64_t> pages_total_{0};
  std::atomic<int64_t> records_total_{0};
  std::atomic<int64_t> buffered_{0};
  std::atomic<int64_t> max_buffered_{0};

  mutable absl::Mutex mu_;
  mutable std::deque<std::pair<absl::Time, int64_t>> rate_samples_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_PROGRESS_H_
