// LedgerIntents: the collector's durable intents, ledger writes that must reach the writer even
// when it (or its PostgreSQL) is down for a long time: a job's state (RUNNING and every final
// state, CANCELLED included) and its failed pages.
//
// A write is queued in memory and retried in one background thread with capped exponential
// backoff until the writer accepts it, a permanent error says it never will (NOT_FOUND,
// INVALID_ARGUMENT, FAILED_PRECONDITION, ...: logged and counted as abandoned), or it has waited
// longer than `give_up_after` (nothing retries forever). Per job, a later state supersedes an
// earlier one not yet written, a page failure replaces an earlier one of the same page, and every
// queued page failure is written before the job's state (a failed page is in the ledger before
// the PARTIAL state that names it). Memory is bounded: at most one state per job and at most
// `max_pending_pages` page failures over all jobs; past that cap a page failure is refused with
// RESOURCE_EXHAUSTED and counted (the job's final state still names the page in its error).
//
// Shutdown flushes with a bounded deadline; what is still queued then is logged and counted as
// abandoned (a job that was cancelled answered UNAVAILABLE to CancelJob in that case, so the
// client knows to cancel again).
//
// Thread-safety: all methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_LEDGER_INTENTS_H_
#define ETL_COLLECTOR_SERVICE_LEDGER_INTENTS_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "etl.grpc.pb.h"
#include "etl.pb.h"

namespace etl {

struct LedgerIntentsOptions {
  absl::Duration initial_backoff = absl::Milliseconds(200);  // Wait after a job's first failure.
  absl::Duration max_backoff = absl::Seconds(30);  // Cap of the doubling wait between attempts.
  absl::Duration rpc_timeout = absl::Seconds(10);  // Deadline of each ledger call.
  absl::Duration give_up_after = absl::Hours(24);  // An intent older than this is abandoned.
  size_t max_pending_pages = 100000;  // Page failures queued over all jobs (memory bound).
};

class LedgerIntents {
 public:
  // `stub` and `counters` outlive this object. Starts the background thread.
  LedgerIntents(v1::WriterService::StubInterface* stub, CollectorCounters* counters,
                LedgerIntentsOptions options);
  ~LedgerIntents();  // Shutdown(zero deadline).
  LedgerIntents(const LedgerIntents&) = delete;
  LedgerIntents& operator=(const LedgerIntents&) = delete;

  // Queues the job's state; it replaces a state of the same job not yet written. With
  // `register_first` the job is registered (idempotent on its id) before the state is written, so
  // that a registration still in flight cannot land after the state and undo it; NOT_FOUND then
  // counts as written (its request_id belongs to another job: this one never exists).
  // `lease_epoch` fences the write (the job's lease when it was queued; 0 = none).
  void PersistState(const std::string& job_id, v1::JobState state, const std::string& error,
                    const v1::RegisterJobRequest* register_first = nullptr,
                    int64_t lease_epoch = 0);
  // Queues a failed page (written before the job's queued state). RESOURCE_EXHAUSTED when
  // max_pending_pages are queued already (counted in ledger_intents_abandoned).
  absl::Status RecordFailure(const std::string& job_id, const v1::FailedPage& page,
                             int64_t lease_epoch = 0);

  // True while a write of `job_id` is queued.
  bool Pending(const std::string& job_id) const;
  // Waits until nothing of `job_id` is queued (true) or `timeout` passed (false).
  bool WaitDurable(const std::string& job_id, absl::Duration timeout) const;
  // Queued writes over all jobs (states + page failures).
  int64_t pending() const;

  // Tries everything queued at once (the writer is back) until `deadline`, then stops the thread.
  // What is still queued is abandoned (logged, counted). Later calls queue nothing.
  void Shutdown(absl::Duration flush_deadline);

 private:
  struct QueuedState {
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    std::string error;
    std::optional<v1::RegisterJobRequest> register_first;
    uint64_t seq = 0;  // Which version was written (a newer one may arrive meanwhile).
    int64_t lease_epoch = 0;
  };
  struct QueuedPage {
    v1::FailedPage page;
    uint64_t seq = 0;
    int64_t lease_epoch = 0;
  };
  struct JobIntents {
    std::deque<QueuedPage> pages;  // Oldest first; one per page number.
    std::optional<QueuedState> state;
    absl::Time first_queued;  // Oldest unwritten intent (for give_up_after).
    absl::Time next_attempt;  // Not before this.
    absl::Duration backoff = absl::ZeroDuration();
    int64_t failures = 0;  // Failed attempts in a row (for logging).
  };
  // One write taken from a job's queue: its first page failure, else its state.
  struct Work {
    std::string job_id;
    std::optional<v1::FailedPage> page;
    std::optional<QueuedState> state;
    uint64_t seq = 0;  // Of what is sent.
    int64_t lease_epoch = 0;
  };

  void Loop();
  // The next write due now, if any; else when one will be due (absl::InfiniteFuture: none).
  std::optional<Work> TakeDue(absl::Time now, absl::Time* next_due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  grpc::Status Send(const Work& w);
  void Done(const Work& w, const grpc::Status& s) ABSL_LOCKS_EXCLUDED(mu_);
  void Abandon(const std::string& job_id, JobIntents* j, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauge() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  v1::WriterService::StubInterface* const stub_;
  CollectorCounters* const counters_;
  const LedgerIntentsOptions options_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::map<std::string, JobIntents> jobs_ ABSL_GUARDED_BY(mu_);
  size_t pages_ ABSL_GUARDED_BY(mu_) = 0;  // Page failures queued over all jobs.
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // Shutdown done: nothing is queued any more.
  int64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;  // Bumped when something new is queued.
};

// Whether a failed ledger call may succeed later (the writer or PostgreSQL down or overloaded).
bool IsTransientLedgerError(grpc::StatusCode code);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_LEDGER_INTENTS_H_
