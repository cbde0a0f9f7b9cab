// Job: the lifecycle of one collection job, from its spec to its final state.
//
// A job runs on its own thread. It waits for a JobSlots slot (PENDING), then runs: a PageProducer
// (pagination.h: one thread, or fetch_concurrency worker threads when the page count is known)
// fetches pages through a PageFetcher (page_fetcher.h) into a PageWindow (page_window.h); the job
// thread takes them in page order and writes them to one client-streaming Write call to the
// writer, one write in flight. When the writer pushes back, Write blocks, the window fills up and
// the producers wait: at most window_pages pages per job are in memory.
//
// Everything durable lives in the writer's ledger (WriterClient, writer_client.h): a run starts by
// reading it (GetJobLedger) and skipping committed pages; sequential styles continue from the last
// committed page's next_page_token. A broken Write stream (writer restarted) just ends the run:
// the job reconnects with backoff and starts another run from the ledger, so pages sent but not
// committed are fetched and sent again (the writer skips duplicates). Restarting the collector
// resumes the same way. Live figures, rate and ETA: JobProgressTracker (job_progress.h).
//
// Every job ends. A writer error is classified once (ClassifyWriterStatus): a permanent one on the
// Write stream ends the job FAILED at once; a transient one restarts the stream, at most
// max_restarts_without_progress times in a row without a new committed page, then FAILED with the
// last error. A watchdog thread per running job fails a job that made no progress (no page
// fetched, none committed) for max_stall, cancelling its blocked calls; it also cancels the Write
// stream of a cancelled job that did not stop within cancel_grace (a hung writer), and
// AbortWriterCalls does the same for every call on collector shutdown.
//
// Thread-safety: public methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_JOB_H_
#define ETL_COLLECTOR_SERVICE_JOB_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "collector_service/credentials.h"
#include "collector_service/http_fetcher.h"
#include "collector_service/job_progress.h"
#include "collector_service/job_slots.h"
#include "collector_service/ledger_intents.h"
#include "collector_service/page_fetcher.h"
#include "collector_service/page_window.h"
#include "collector_service/trace_context.h"
#include "collector_service/writer_client.h"
#include "etl.grpc.pb.h"
#include "etl.pb.h"

namespace etl {

// What a job needs from the collector. Everything pointed to outlives the job.
struct JobEnv {
  v1::WriterService::StubInterface* writer = nullptr;
  HttpFetcher* fetcher = nullptr;
  const CredentialStore* credentials = nullptr;  // Operator credentials; null = none declared.
  CollectorCounters* counters = nullptr;
  JobSlots* slots = nullptr;
  FetchSlots* fetch_slots = nullptr;       // Collector-wide fetches in flight; null = no limit.
  bool adaptive_fetch_concurrency = true;  // Adapt within [1, fetch_concurrency] (pagination.h).
  size_t max_message_bytes = size_t(1) << 20;     // Record bytes per RecordBatch before chunking.
  size_t max_response_bytes = size_t(256) << 20;  // Larger API responses fail the attempt.
  size_t writer_max_message_bytes = size_t(64) << 20;  // The writer's limit (page_fetcher.h).
  int extra_window_pages = 1;                          // Window = fetch_concurrency + this.
  // The window is bounded by bytes too: pages past the next one to send wait while the pages held
  // (fetched, being fetched at the largest page size seen, being sent) reach this.
  size_t max_buffered_bytes = size_t(16) << 20;
  int64_t max_stream_bytes = int64_t(64) << 20;             // Record bytes per Write stream ...
  absl::Duration max_stream_duration = absl::Seconds(60);   // ... and its longest life.
  absl::Duration writer_rpc_timeout = absl::Seconds(30);    // Deadline of each ledger call.
  absl::Duration max_reconnect_backoff = absl::Seconds(5);  // Longest wait between reconnects.
  int max_consecutive_failed_pages = 5;  // PAGE/OFFSET without a known total give up after this.
  // Write-stream restarts in a row that commit no new page before the job ends FAILED.
  int max_restarts_without_progress = 8;
  // A RUNNING job with no page fetched or committed for this long ends FAILED.
  absl::Duration max_stall = absl::Seconds(600);
  // A cancelled job's Write stream gets this long to end by itself, then is cancelled.
  absl::Duration cancel_grace = absl::Seconds(5);
  // Durable ledger writes (job states, failed pages); required.
  LedgerIntents* intents = nullptr;
  // How long a job that reached its final state waits for the ledger to record it before it
  // counts as done (the state stays queued, and GetJob says so, past this).
  absl::Duration final_state_wait = absl::Seconds(10);
  // The job's lease epoch (ClaimedJob.lease_epoch): sent with every RecordBatch and ledger write,
  // so the writer refuses them once another collector took the job over. 0 = no lease.
  int64_t lease_epoch = 0;
  std::function<void()> on_finished;  // Called once the job's thread is done; may be empty.
};

class Job {
 public:
  // `spec` must be validated and have its defaults applied.
  Job(std::string job_id, v1::JobSpec spec, TraceContext trace, JobEnv env,
      int64_t created_at_unix_ms, bool resumed);
  ~Job();  // Stops (as Shutdown) and joins.
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  void Start();
  // Stop fetching; what was sent is committed; the job ends CANCELLED.
  void Cancel();
  // Collector shutting down: stop like Cancel but leave the job unfinished in the ledger
  // (resumable). What was sent may still be committed (drain) until AbortWriterCalls.
  void Shutdown();
  // Ends the drain: TryCancel of every open writer call (Write stream included); later calls fail
  // at once. The job thread then ends promptly whatever the writer or PostgreSQL do.
  void AbortWriterCalls();
  // The job's lease is gone (another collector may run it now): stop at once, cancel the open
  // Write stream, and write nothing more to the ledger.
  void LoseLease(const std::string& why);
  bool lease_lost() const { return lease_lost_.load(); }
  void Join();

  const std::string& id() const { return id_; }
  bool done() const;
  // Waits until the job reached a final state (true) or `timeout` passed (false).
  bool WaitDone(absl::Duration timeout) const;

  // The job's local view; Job.ledger_write_pending while a state or failed page of it is not yet
  // in the writer's ledger.
  v1::Job Snapshot() const;
  v1::JobProgress Progress() const;

  // Live commit counters from the writer's GetStatus (cumulative per writer process).
  void UpdateWriterCounters(const v1::JobCounters& counters);

  // Largest number of fetched pages held at once (window + the one being sent); for tests.
  int64_t max_pages_buffered() const { return progress_.max_buffered(); }

 private:
  enum class RunOutcome { kDone, kStreamBroken };

  void Run();
  RunOutcome RunOnce();
  // How a run ends after its Write stream failed with `status` (classified, counted).
  RunOutcome OnStreamError(const grpc::Status& status);
  // A page was fetched or committed: the stall clock restarts.
  void NoteProgress();
  // The watchdog of a running job (stall bound, cancel grace); ends when run_over_.
  void Watchdog();
  // Writes the page's batches; adds their record bytes to *sent_bytes.
  bool SendPage(grpc::ClientWriterInterface<v1::RecordBatch>* stream, FetchedPage* page,
                int64_t* sent_bytes);
  // Half-closes the stream and waits for its summary (every page committed). nullopt = all
  // acknowledged, the run may go on; otherwise how the run ends.
  std::optional<RunOutcome> CloseStream(grpc::ClientWriterInterface<v1::RecordBatch>* stream,
                                        const v1::WriteSummary& summary);
  void RecordFailure(const FetchedPage& page);
  void Finalize();
  void SetFatal(const std::string& error);
  bool HasFatal() const;
  void SetMessage(const std::string& message);
  void PersistState(v1::JobState state, const std::string& error);
  // Sleeps up to `d`; false when the job is stopping.
  bool WaitUnlessStopping(absl::Duration d);
  bool stopping() const { return stop_.load(); }

  const std::string id_;
  const v1::JobSpec spec_;
  const TraceContext trace_;
  const JobEnv env_;
  const int64_t created_at_ms_;
  const bool resumed_;
  std::string table_name_;
  std::thread thread_;

  std::atomic<bool> stop_{false};  // Cancel or Shutdown: stop fetching (read by curl).
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> lease_lost_{false};

  // Job thread only: the restart bound.
  int restarts_without_progress_ = 0;
  int64_t ledger_pages_seen_ = -1;
  std::string last_stream_error_;

  JobProgressTracker progress_;
  WriterClient writer_;
  PageFetcher fetcher_;

  mutable absl::Mutex mu_;
  v1::JobState state_ ABSL_GUARDED_BY(mu_) = v1::PENDING;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::string error_ ABSL_GUARDED_BY(mu_);      // Fatal error (job FAILED).
  std::string stop_note_ ABSL_GUARDED_BY(mu_);  // Why a sequential job stopped early.
  std::string message_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::FailedPage> failed_pages_ ABSL_GUARDED_BY(mu_);
  int64_t started_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t finished_ms_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_) = absl::Now();
  absl::Time cancel_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int64_t writer_pages_seen_ ABSL_GUARDED_BY(mu_) = -1;  // Writer's pages_committed counter.
  bool run_over_ ABSL_GUARDED_BY(mu_) = false;           // Ends the watchdog.
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_H_
