// PageFetcher: fetches one page of a job: builds the request URL (query parameters, date filter,
// pagination parameters) and the auth, GETs it through an HttpFetcher with bounded retries and
// backoff (Retry-After honoured), parses the JSON, and cuts the records into RecordBatch chunks of
// at most max_message_bytes record bytes.
//
// Errors are recorded in the returned FetchedPage: transient ones (transport, 408/429/5xx) are
// retried up to the spec's max_attempts, permanent ones (other statuses, unparsable bodies) fail
// the page at once, 401/403 mark it auth_failed. Error texts never contain the credential.
//
// Each HTTP attempt holds a slot of the collector's FetchSlots (when given) from the request until
// the records are cut into messages; never during a retry's backoff.
//
// Thread-safety: Fetch(), RequestUrl() and BuildBatches() may be called from several producer
// threads at once (each with its own parser); SetCredential() only before any of them.
#ifndef ETL_COLLECTOR_SERVICE_PAGE_FETCHER_H_
#define ETL_COLLECTOR_SERVICE_PAGE_FETCHER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "collector_service/credentials.h"
#include "collector_service/fetch_concurrency.h"
#include "collector_service/http_fetcher.h"
#include "collector_service/job_slots.h"
#include "collector_service/page_window.h"
#include "collector_service/trace_context.h"
#include "common/json_page.h"
#include "etl.pb.h"

namespace etl {

// Delay before retry number `retry` (1, 2, ...): scale * (2^retry + 0.5) seconds, or the server's
// Retry-After when given (>= 0), both capped at max_backoff_seconds.
double BackoffSeconds(const v1::RetryPolicy& policy, int retry, double retry_after_seconds = -1);

struct PageFetcherOptions {
  size_t max_message_bytes = size_t(1) << 20;     // Record bytes per RecordBatch before chunking.
  size_t max_response_bytes = size_t(256) << 20;  // Larger API responses fail the attempt.
  // The writer's largest accepted message (its --max_message_bytes; the collector's
  // --writer_max_message_bytes must equal it). A record that cannot fit with its key and tokens
  // is sent as a short prefix with a rejection: it goes to the dead letters with the reason.
  size_t writer_max_message_bytes = size_t(64) << 20;
  // The collector-wide limit on fetches in flight and its parse buffers; null = no limit, each
  // parser uses its own buffers.
  FetchSlots* fetch_slots = nullptr;
};

// A rejected record travels as its first this many bytes (kept in the dead letter).
inline constexpr size_t kRejectedRecordPrefixBytes = 4096;
// Room in a writer message for everything but one record: framing, job id, table, chunk fields.
inline constexpr size_t kMessageOverheadBytes = 4096;

class PageFetcher {
 public:
  struct Hooks {
    // Waits up to the given delay before a retry; false when the job is stopping. Null = sleep
    // unless `stop` is set.
    std::function<bool(absl::Duration)> wait;
    // A page is about to be retried (a status message for the job). Null = nothing.
    std::function<void(const std::string&)> on_retry;
  };

  // Everything pointed to outlives the fetcher. `spec` must be validated with defaults applied.
  PageFetcher(std::string job_id, const v1::JobSpec* spec, TraceContext trace, HttpFetcher* http,
              CollectorCounters* counters, PageFetcherOptions options,
              const std::atomic<bool>* stop, Hooks hooks);

  // The job's credential (never logged; removed from every error text). Its headers, basic auth and
  // query parameter go only to its hosts (when bound) and never across a redirect to another
  // origin.
  void SetCredential(ResolvedCredential credential);
  // The query parameter carrying the credential ("" = none): kept out of stored next-page tokens.
  const std::string& credential_query_param() const { return credential_.query_param; }
  // The strings removed from error texts.
  const std::vector<std::string>& redact() const { return redact_; }

  // The URL requesting the page of `token` (without an API key passed in the query).
  absl::StatusOr<std::string> RequestUrl(const std::string& token) const;

  // Fetches, parses and batches one page with the spec's retry policy. `concurrency` (optional) is
  // told the outcome and latency of every attempt.
  FetchedPage Fetch(int64_t page_number, const std::string& token, JsonPageParser* parser,
                    AdaptiveConcurrency* concurrency = nullptr);

  // Moves the page's records (views into the response body) into its RecordBatch messages.
  void BuildBatches(FetchedPage* page) const;

  // Why a record must go to the dead letters instead of the table ("" = it is sent as is):
  // `extra_bytes` is what travels with it in the same message (its key and the page's tokens).
  std::string RecordRejection(absl::string_view record, size_t extra_bytes) const;

 private:
  bool stopping() const { return stop_->load(); }

  const std::string job_id_;
  const v1::JobSpec* const spec_;
  const TraceContext trace_;
  HttpFetcher* const http_;
  CollectorCounters* const counters_;
  const PageFetcherOptions options_;
  const std::atomic<bool>* const stop_;
  const Hooks hooks_;
  ResolvedCredential credential_;
  std::vector<std::string> redact_;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_PAGE_FETCHER_H_
