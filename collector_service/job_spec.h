// JobSpec validation and defaults.
//
// StartJob refuses a bad spec with INVALID_ARGUMENT before anything runs, so every check that can
// be made without contacting the API lives here. WithDefaults() turns proto3 zero values into the
// documented defaults once, so the rest of the collector never re-derives them.
//
// Thread-safe (pure functions).
#ifndef ETL_COLLECTOR_SERVICE_JOB_SPEC_H_
#define ETL_COLLECTOR_SERVICE_JOB_SPEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "collector_service/credentials.h"
#include "etl.pb.h"

namespace etl {

inline constexpr int64_t kDefaultMaxPages = 1000000;
inline constexpr int kMaxFetchConcurrency = 64;
inline constexpr int kMaxAttemptsLimit = 100;

// INVALID_ARGUMENT with a message naming the field when `spec` cannot run.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// A copy of `spec` with every zero value replaced by its documented default.
// `default_fetch_concurrency` is the server's --fetch_concurrency.
v1::JobSpec WithDefaults(const v1::JobSpec& spec, int default_fetch_concurrency = 4);

// Checks "YYYY-MM-DD" and that it is a real calendar date.
absl::Status ValidateDate(absl::string_view field, absl::string_view date);

// Formats a valid "YYYY-MM-DD" date with a strftime format (e.g. "%d/%m/%Y").
absl::StatusOr<std::string> FormatDate(absl::string_view date, const std::string& format);

// The credential named by `auth` (environment variable or file, trailing newline stripped).
// FAILED_PRECONDITION when it is missing or empty; the message names the source, never the value.
absl::StatusOr<std::string> ReadSecret(const v1::Auth& auth);

// Who may supply the job's secret: INVALID_ARGUMENT when the spec names secret paths (auth) and
// `allow_spec_secret_paths` is false, names a credential unknown to `store` (null = no credentials
// file) or one not bound to the url's host. Reads no secret.
absl::Status CheckJobCredential(const v1::JobSpec& spec, const CredentialStore* store,
                                bool allow_spec_secret_paths);

// What the job's requests carry: the named credential (resolved by `store`, bound to its hosts) or
// the spec's own auth (its secret read from the collector's environment or file, unbound); empty
// when the job has neither. FAILED_PRECONDITION when the secret is missing, INVALID_ARGUMENT when
// the credential is unknown or not allowed for the url's host.
absl::StatusOr<ResolvedCredential> ResolveJobCredential(const v1::JobSpec& spec,
                                                        const CredentialStore* store);

// "PAGE", "CURSOR", ...
std::string StyleName(v1::PaginationStyle style);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_SPEC_H_
