// Job: one collection job, from its spec to its final state.
//
// A job runs on its own thread. A producer (one thread, or fetch_concurrency worker threads when
// the page count is known) fetches pages with retries into a small ordered window; the job thread
// takes them in page order and writes them to one client-streaming Write call to the writer, one
// write in flight. When the writer pushes back, Write blocks, the window fills up and the producers
// wait: at most window_pages pages per job are in memory.
//
// Everything durable lives in the writer's ledger: a run starts by reading it (GetJobLedger) and
// skipping committed pages; sequential styles continue from the last committed page's
// next_page_token. A broken Write stream (writer restarted) just ends the run: the job reconnects
// with backoff and starts another run from the ledger, so pages sent but not committed are fetched
// and sent again (the writer skips duplicates). Restarting the collector resumes the same way.
//
// Thread-safety: public methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_JOB_H_
#define ETL_COLLECTOR_SERVICE_JOB_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "collector_service/http_fetcher.h"
#include "etl.grpc.pb.h"
#include "etl.pb.h"

namespace etl {

// Delay before retry number `retry` (1, 2, ...): scale * (2^retry + 0.5) seconds, or the server's
// Retry-After when given (>= 0), both capped at max_backoff_seconds.
double BackoffSeconds(const v1::RetryPolicy& policy, int retry, double retry_after_seconds = -1);

// Trace headers taken from StartJob's gRPC metadata, forwarded to the API and the writer.
struct TraceContext {
  std::string traceparent;
  std::string request_id;
};

// Limits the number of jobs fetching at once; the others wait in PENDING.
class JobSlots {
 public:
  explicit JobSlots(int max_running) : max_(max_running < 1 ? 1 : max_running) {}
  // Blocks until a slot is free (true) or *abort becomes true (false).
  bool Acquire(const std::atomic<bool>* abort);
  void Release();
  // Re-evaluates waiters (call after setting an abort flag).
  void Wake();

 private:
  absl::Mutex mu_;
  const int max_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

// What a job needs from the collector. Everything pointed to outlives the job.
struct JobEnv {
  v1::WriterService::StubInterface* writer = nullptr;
  HttpFetcher* fetcher = nullptr;
  CollectorCounters* counters = nullptr;
  JobSlots* slots = nullptr;
  size_t max_message_bytes = size_t(1) << 20;     // Record bytes per RecordBatch before chunking.
  size_t max_response_bytes = size_t(256) << 20;  // Larger API responses fail the attempt.
  int extra_window_pages = 2;                      // Window = fetch_concurrency + this.
  // The window is bounded by bytes too: pages past the next one to send wait while the pages held
  // (fetched, being fetched at the largest page size seen, being sent) reach this.
  size_t max_buffered_bytes = size_t(16) << 20;
  absl::Duration writer_rpc_timeout = absl::Seconds(30);
  absl::Duration max_reconnect_backoff = absl::Seconds(5);
  int max_consecutive_failed_pages = 5;  // PAGE/OFFSET without a known total give up after this many.
};

class Job {
 public:
  // `spec` must be validated and have its defaults applied.
  Job(std::string job_id, v1::JobSpec spec, TraceContext trace, JobEnv env, int64_t created_at_unix_ms,
      bool resumed);
  ~Job();  // Stops (as Shutdown) and joins.
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  void Start();
  // Stop fetching; what was sent is committed; the job ends CANCELLED.
  void Cancel();
  // Collector shutting down: stop like Cancel but leave the job unfinished in the ledger (resumable).
  void Shutdown();
  void Join();

  const std::string& id() const { return id_; }
  bool done() const;
  // Waits until the job reached a final state (true) or `timeout` passed (false).
  bool WaitDone(absl::Duration timeout) const;

  v1::Job Snapshot() const;
  v1::JobProgress Progress() const;

  // Live commit counters from the writer's GetStatus (cumulative per writer process).
  void UpdateWriterCounters(const v1::JobCounters& counters);

  // Largest number of fetched pages held at once (window + the one being sent); for tests.
  int64_t max_pages_buffered() const { return max_buffered_.load(); }

 private:
  struct FetchedPage;
  class PageWindow;
  enum class RunOutcome { kDone, kStreamBroken };

  void Run();
  RunOutcome RunOnce();
  void ProduceIndexed(PageWindow* window, const std::vector<v1::CommittedPage>& committed);
  void ProduceChain(PageWindow* window, const std::vector<v1::CommittedPage>& committed);
  FetchedPage FetchPage(int64_t page_number, const std::string& token, class JsonPageParser* parser);
  absl::StatusOr<std::string> RequestUrl(const std::string& token) const;
  // Moves the page's records (views into the response body) into its RecordBatch messages.
  void BuildBatches(FetchedPage* page) const;
  bool SendPage(grpc::ClientWriterInterface<v1::RecordBatch>* stream, FetchedPage* page);
  void RecordFailure(const FetchedPage& page);
  void Finalize();
  void SetFatal(const std::string& error);
  void SetMessage(const std::string& message);
  void PersistState(v1::JobState state, const std::string& error);
  absl::Status WriterCall(const char* what, const std::function<grpc::Status(grpc::ClientContext*)>& call,
                          int max_attempts);
  void PrepareContext(grpc::ClientContext* ctx, bool with_deadline) const;
  // Sleeps up to `d`; false when the job is stopping.
  bool WaitUnlessStopping(absl::Duration d);
  bool stopping() const { return stop_.load(); }
  int64_t TokenToPage(const std::string& token) const;
  std::string IndexedToken(int64_t page_number) const;

  const std::string id_;
  const v1::JobSpec spec_;
  const TraceContext trace_;
  const JobEnv env_;
  const int64_t created_at_ms_;
  const bool resumed_;
  std::string table_name_;
  std::string secret_;                 // Set once at run start; never logged.
  std::vector<std::string> redact_;    // Strings removed from every error text.
  std::thread thread_;

  std::atomic<bool> stop_{false};       // Cancel or Shutdown: stop fetching (read by curl).
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> shutting_down_{false};

  // Live progress (this process).
  std::atomic<int64_t> pages_sent_run_{0};
  std::atomic<int64_t> records_sent_run_{0};
  std::atomic<int64_t> base_pages_{0};     // Ledger figures at the start of the current run.
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
  v1::JobState state_ ABSL_GUARDED_BY(mu_) = v1::PENDING;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::string error_ ABSL_GUARDED_BY(mu_);       // Fatal error (job FAILED).
  std::string stop_note_ ABSL_GUARDED_BY(mu_);   // Why a sequential job stopped early.
  std::string message_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::FailedPage> failed_pages_ ABSL_GUARDED_BY(mu_);
  int64_t started_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t finished_ms_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::deque<std::pair<absl::Time, int64_t>> rate_samples_ ABSL_GUARDED_BY(mu_);

};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_H_
