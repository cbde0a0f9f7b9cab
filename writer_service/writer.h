// Writer: the engine of writer_service, independent of gRPC. It owns the bounded WriteQueue, the
// writer threads that commit whole pages in batches through a RecordSink, the counters, and the
// serving state (PostgreSQL reachable and not draining).
//
// Producers (Write streams) push complete pages into queue(); each page's owner hears the outcome
// of its page from a writer thread after the commit. Every error is transient or permanent:
//   - connection lost / server down (UNAVAILABLE): retried with exponential backoff for up to
//     max_unavailable (serving = false meanwhile; the queue is kept), then the pages fail;
//   - serialization failure, deadlock, lock timeout, table dropped (ABORTED, NOT_FOUND): retried
//     up to max_commit_attempts, then the pages fail;
//   - anything else is permanent: the pages fail at once (the sink already isolated bad records and
//     pages, so only what the error concerns fails). Failed pages are counted, logged and reported
//     to their streams; nothing is retried forever.
// An idle writer checks PostgreSQL every health_check_interval on a connection of its own, so
// serving() turns false while the database is down even without traffic.
//
// Thread-safe.
#ifndef ETL_WRITER_SERVICE_WRITER_H_
#define ETL_WRITER_SERVICE_WRITER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "etl.pb.h"
#include "writer_service/page.h"
#include "writer_service/record_sink.h"
#include "writer_service/write_queue.h"

namespace etl {

struct WriterOptions {
  int64_t queue_records = 100000;  // Queue bound in records (whole pages; see WriteQueue).
  int64_t queue_bytes = 6 << 20;   // Queue bound in record bytes (>= threads x batch_bytes).
  int64_t batch_records = 20000;   // A transaction holds at most this many records ...
  int64_t batch_bytes = 2 << 20;   // ... and this many record bytes (whole pages; >= 1 page).
  absl::Duration flush_interval = absl::Milliseconds(200);  // A partial batch waits at most this.
  int writer_threads = 3;       // Connections committing in parallel: the others COPY while
                                // one waits for its commit to reach disk.
  int max_commit_attempts = 5;  // For transient errors other than a lost connection.
  absl::Duration max_unavailable = absl::Minutes(10);  // A batch waits this long for PostgreSQL.
  // Idle check of PostgreSQL (0 = off); an answer slower than max(1 s, 2 intervals) fails it.
  absl::Duration health_check_interval = absl::Seconds(2);
  absl::Duration initial_backoff = absl::Milliseconds(100);  // Doubles per retry ...
  absl::Duration max_backoff = absl::Seconds(5);             // ... up to this.
  size_t max_jobs_tracked = 1000;  // Per-job counters kept for this many recent jobs.
};

// Every counter of the writer (conventions #8). Snapshotted by GetStatus and /metrics.
struct WriterCounters {
  Histogram commit_seconds{LatencyBuckets()};  // Each successful transaction (COPY + commit).
  Histogram record_latency_seconds{LatencyBuckets()};  // Per record: collector fetch -> commit.
  std::atomic<int64_t> streams_active{0};
  std::atomic<int64_t> streams_total{0};
  std::atomic<int64_t> streams_refused{0};
  std::atomic<int64_t> streams_failed{0};
  std::atomic<int64_t> records_received{0};
  std::atomic<int64_t> bytes_received{0};
  std::atomic<int64_t> pages_received{0};
  std::atomic<int64_t> records_committed{0};
  std::atomic<int64_t> bytes_committed{0};
  std::atomic<int64_t> records_rejected{0};
  std::atomic<int64_t> records_skipped{0};
  std::atomic<int64_t> pages_committed{0};
  std::atomic<int64_t> pages_skipped{0};
  std::atomic<int64_t> pages_failed{0};
  std::atomic<int64_t> batches_committed{0};
  std::atomic<int64_t> commit_retries{0};
  std::atomic<int64_t> reconnects{0};
  std::atomic<int64_t> pages_resent_different{0};  // Skipped re-sent pages with other content.
  std::atomic<int64_t> health_checks_failed{0};
  // Where the writer threads' time goes (microseconds, summed over threads).
  std::atomic<int64_t> wait_pages_us{0};  // Waiting for a batch in the queue.
  std::atomic<int64_t> prepare_us{0};     // Checks and ledger rows (SinkPhaseTimes::prepare).
  std::atomic<int64_t> copy_us{0};        // COPY of the records.
  std::atomic<int64_t> commit_us{0};      // COMMIT (durable WAL flush).
};

class Writer {
 public:
  Writer(WriterOptions options, RecordSinkFactory sink_factory);
  ~Writer();  // Stop(absl::ZeroDuration()) if still running.
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Starts the writer threads (they connect in the background; serving() turns true once
  // connected).
  void Start();

  // Called by the service when serving() changes, from the thread that changed it, no lock held.
  void SetServingListener(std::function<void(bool)> listener);
  bool serving() const;
  bool draining() const { return draining_.load(); }

  WriteQueue& queue() { return queue_; }
  WriterCounters& counters() { return counters_; }

  // A stream starts: false when draining (the stream must be refused).
  bool StreamStarted();
  void StreamEnded(bool ok);
  // A complete page was received (before it is queued): counts it, globally and per job.
  void NoteReceived(const QueuedPage& page);

  // Stop accepting: serving() turns false, the queue admits parked pages and flushes at once.
  void BeginDrain();
  // Commits what is queued, then stops the threads. Pages not committed within `timeout` (e.g.
  // PostgreSQL down) are reported failed to their owners. Idempotent.
  void Stop(absl::Duration timeout);

  v1::WriterStatus Status() const;
  std::string RenderMetrics() const;

 private:
  class RateMeter;
  void ThreadMain(int index);
  void HealthCheckMain();
  void CommitWithRetry(RecordSink* sink, bool* connected,
                       std::vector<std::unique_ptr<QueuedPage>> batch);
  void FailPages(std::vector<std::unique_ptr<QueuedPage>>& batch, const absl::Status& error);
  void ApplyResults(std::vector<std::unique_ptr<QueuedPage>>& batch,
                    const std::vector<PageResult>& results);
  // Waits `d` or until a hard stop; returns false on hard stop.
  bool Backoff(absl::Duration d);
  void SetDbOk(bool ok);
  void SetLastError(const std::string& e);
  void UpdateServing();

  const WriterOptions options_;
  const RecordSinkFactory sink_factory_;
  const std::string batch_prefix_;
  const absl::Time started_at_;
  WriteQueue queue_;
  WriterCounters counters_;
  std::unique_ptr<RateMeter> rate_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> db_ok_{false};
  std::atomic<uint64_t> batch_seq_{0};
  std::atomic<int64_t> last_db_ok_ms_{0};  // Unix ms of the last successful commit or check.

  mutable absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::thread health_thread_ ABSL_GUARDED_BY(mu_);
  bool hard_stop_ ABSL_GUARDED_BY(mu_) = false;
  int threads_running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool last_serving_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> serving_listener_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);

  struct JobEntry {
    v1::JobCounters counters;
    uint64_t touched = 0;
  };
  mutable absl::Mutex jobs_mu_;
  std::map<std::string, JobEntry> jobs_ ABSL_GUARDED_BY(jobs_mu_);
  uint64_t jobs_clock_ ABSL_GUARDED_BY(jobs_mu_) = 0;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_WRITER_H_
