// LedgerStore: the job ledger in PostgreSQL (etl_jobs, etl_pages), as the collector sees it through
// the writer's ledger RPCs: register a job (idempotent), update its state, record failed pages,
// read the committed pages (the resume point), list jobs, and the jobs' leases (claim, renew,
// release, cancel requests). Writes that change a job carry its lease epoch and are fenced.
//
// Thread-safe: each call borrows a connection from a small pool (no lock is held during I/O). A
// pooled connection the server closed meanwhile (PostgreSQL restarted) is noticed on use: the pool
// is emptied and the call runs once more on a new connection, so callers never see the restart.
#ifndef ETL_WRITER_SERVICE_LEDGER_STORE_H_
#define ETL_WRITER_SERVICE_LEDGER_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "etl.pb.h"
#include "writer_service/pg_conn.h"

namespace etl {

class LedgerStore {
 public:
  struct Options {
    std::string conninfo;             // libpq connection string; "" = libpq's environment.
    size_t max_idle_connections = 4;  // Connections kept open between calls.
  };
  explicit LedgerStore(Options options) : options_(std::move(options)) {}
  LedgerStore(const LedgerStore&) = delete;
  LedgerStore& operator=(const LedgerStore&) = delete;

  // INVALID_ARGUMENT for a missing job id or invalid cliente_id/rota. Returns the stored job (the
  // existing one when job_id is already registered).
  absl::StatusOr<v1::JobRecord> RegisterJob(const v1::RegisterJobRequest& req);
  // NOT_FOUND for an unknown job.
  absl::StatusOr<v1::JobRecord> UpdateJob(const v1::UpdateJobRequest& req);
  // Records a page that could not be fetched; a committed page is never turned back into failed.
  absl::Status RecordPageFailure(const v1::PageFailure& req);
  absl::StatusOr<v1::JobLedger> GetJobLedger(const std::string& job_id);
  absl::StatusOr<v1::ListJobRecordsResponse> ListJobRecords(const v1::ListJobRecordsRequest& req);

  // Leases (proto: ClaimJobsRequest). Expiry uses the database clock. Claims lock rows with
  // FOR UPDATE SKIP LOCKED, so concurrent claimers never take the same job; each claim bumps the
  // job's fencing epoch.
  absl::StatusOr<v1::ClaimJobsResponse> ClaimJobs(const v1::ClaimJobsRequest& req);
  absl::StatusOr<v1::RenewLeasesResponse> RenewLeases(const v1::RenewLeasesRequest& req);
  absl::StatusOr<v1::ReleaseLeasesResponse> ReleaseLeases(const v1::ReleaseLeasesRequest& req);
  // FAILED_PRECONDITION once the job ended; NOT_FOUND for an unknown job.
  absl::StatusOr<v1::JobRecord> RequestCancel(const std::string& job_id);
  // OK when a write carrying lease `epoch` may change the job now (lease_fence.h).
  absl::Status CheckLease(const std::string& job_id, int64_t epoch);

 private:
  // `*reused`: the connection comes from the pool (it may be stale).
  absl::StatusOr<std::unique_ptr<PgConnection>> Acquire(bool* reused = nullptr);
  // Runs `fn` on a connection; once more on a new one when the server closed the connection (stale
  // in the pool, or lost during the call).
  absl::Status Run(const std::function<absl::Status(PgConnection*)>& fn);
  void Release(std::unique_ptr<PgConnection> conn);
  // Loads jobs matching `where` (SQL over etl_jobs j, parameters $1...) with their page summaries.
  absl::StatusOr<std::vector<v1::JobRecord>> LoadJobs(PgConnection* conn, const std::string& where,
                                                      const std::vector<PgParam>& params,
                                                      int limit);

  const Options options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  bool schema_ready_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_LEDGER_STORE_H_
