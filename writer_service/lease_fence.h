// Lease fencing in the writer: a job's data and ledger writes commit only while they carry the
// job's current lease epoch (etl_jobs.lease_epoch, bumped by every claim).
//
// The check runs inside the writing transaction and locks the job rows FOR SHARE until it ends:
// a claim (an UPDATE of the row) waits for the transaction, and a transaction that starts after
// the claim sees the new epoch. So a collector that paused past its lease and resumed can never
// commit once another one took the job over.
//
// Free functions on a caller's connection: thread-compatible.
#ifndef ETL_WRITER_SERVICE_LEASE_FENCE_H_
#define ETL_WRITER_SERVICE_LEASE_FENCE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "writer_service/pg_conn.h"

namespace etl {

// OK when a write carrying `epoch` may change job `job_id`: the ledger holds no newer epoch, and
// epoch 0 (a writer without a lease) only while no collector holds a live lease. Otherwise
// FAILED_PRECONDITION (LeaseLostError when epoch > 0); NOT_FOUND for an unknown job.
// REQUIRES: inside a transaction (the row stays locked FOR SHARE until it ends).
absl::Status CheckLeaseLocked(PgConnection* conn, const std::string& job_id, int64_t epoch);

// The batch form for the page commit path, one statement for all jobs: for each (job id, epoch),
// OK or the refusal. Unknown jobs are OK here (registration is checked elsewhere).
// REQUIRES: inside a transaction.
absl::StatusOr<std::vector<absl::Status>> CheckLeasesLocked(
    PgConnection* conn, const std::vector<std::pair<absl::string_view, int64_t>>& writes);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_LEASE_FENCE_H_
