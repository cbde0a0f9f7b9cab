// Job leases: how the writer tells a collector that it no longer owns a job.
//
// A collector runs a job only while it holds the job's lease in the ledger; every claim bumps the
// job's fencing epoch, and the writer refuses (FAILED_PRECONDITION) data and ledger writes that
// carry an older epoch. The refusal's message starts with kLeaseLostPrefix, so the collector can
// tell "another collector took this job over: stop quietly" from a permanent error of the job.
#ifndef ETL_COMMON_LEASE_H_
#define ETL_COMMON_LEASE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace etl {

inline constexpr absl::string_view kLeaseLostPrefix = "lease lost: ";

// The writer's refusal of a write from an outdated lease.
inline absl::Status LeaseLostError(absl::string_view detail) {
  return absl::FailedPreconditionError(absl::StrCat(kLeaseLostPrefix, detail));
}

inline bool IsLeaseLost(absl::StatusCode code, absl::string_view message) {
  return code == absl::StatusCode::kFailedPrecondition &&
         absl::StrContains(message, kLeaseLostPrefix);
}

inline bool IsLeaseLost(const absl::Status& s) { return IsLeaseLost(s.code(), s.message()); }

}  // namespace etl

#endif  // ETL_COMMON_LEASE_H_
