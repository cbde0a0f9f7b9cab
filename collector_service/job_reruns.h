// What the collector does for jobs that run again: the incremental start of a new job (the stored
// high-water mark from the writer, minus the lookback, or the initial value), and the writer-side
// form of a ListJobs request (filters and page token pass through to the ledger).
//
// Thread-safety: free functions; the stub is thread-safe.
#ifndef ETL_COLLECTOR_SERVICE_JOB_RERUNS_H_
#define ETL_COLLECTOR_SERVICE_JOB_RERUNS_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "etl.grpc.pb.h"

namespace etl {

// For a spec with incremental.cursor_path: reads the mark of (cliente_id, rota, cursor_path) from
// the writer (unless incremental.full_refresh), and applies the start value (ApplyIncrementalStart)
// so every request of the job, and any resume or retry of it, asks the API for data from there.
// FAILED_PRECONDITION while the latest earlier run with the same cursor ended PARTIAL, FAILED or
// CANCELLED after committing pages (its mark may lie past pages it never loaded: retry it first).
// UNAVAILABLE when the writer cannot be asked. A spec without incremental is left unchanged.
absl::Status ResolveIncrementalStart(v1::WriterService::StubInterface* writer,
                                     absl::Duration timeout, v1::JobSpec* spec);

// The ledger query of a ListJobs request (limit 0 = 100, at most 10,000).
v1::ListJobRecordsRequest ToListJobRecordsRequest(const v1::ListJobsRequest& request);

// True when `job` passes the filters of `request` (used for jobs known only to this collector).
bool MatchesListFilters(const v1::ListJobsRequest& request, const v1::Job& job);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_RERUNS_H_
