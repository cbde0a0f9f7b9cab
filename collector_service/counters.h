// All counters of the collector in one struct of atomics, snapshotted by the metrics endpoint, and
// its latency histograms. RenderCollectorMetrics() is the collector's /metrics page.
//
// Thread-safe: relaxed atomic increments and Histogram::Observe from any thread.
#ifndef ETL_COLLECTOR_SERVICE_COUNTERS_H_
#define ETL_COLLECTOR_SERVICE_COUNTERS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "common/metrics.h"

namespace etl {

struct CollectorCounters {
  std::atomic<int64_t> jobs_started{0};  // StartJob accepted.
  std::atomic<int64_t> jobs_resumed{0};  // Unfinished jobs picked up from the writer's ledger.
  std::atomic<int64_t> jobs_pending{0};  // Waiting for a --max_concurrent_jobs slot.
  std::atomic<int64_t> jobs_running{0};
  std::atomic<int64_t> jobs_succeeded{0};
  std::atomic<int64_t> jobs_partial{0};
  std::atomic<int64_t> jobs_failed{0};
  std::atomic<int64_t> jobs_cancelled{0};
  std::atomic<int64_t> http_requests{0};  // Every attempt, retries included.
  std::atomic<int64_t> http_retries{0};   // Attempts after the first one of a page.
  std::atomic<int64_t> http_errors{0};    // Attempts that failed (transport, status or body).
  std::atomic<int64_t> bytes_fetched{0};  // Response body bytes (after decompression).
  std::atomic<int64_t> pages_fetched{0};  // Pages fetched and parsed successfully.
  std::atomic<int64_t> pages_failed{0};   // Pages given up after all attempts.
  std::atomic<int64_t> pages_utf8_fallback{
      0};  // Pages parsed by the invalid-UTF-8 fallback scanner.
  std::atomic<int64_t> records_fetched{0};
  std::atomic<int64_t> pages_sent{0};         // Pages handed to a writer stream.
  std::atomic<int64_t> batches_sent{0};       // RecordBatch messages (chunks) written.
  std::atomic<int64_t> bytes_sent{0};         // Record bytes written to the writer.
  std::atomic<int64_t> pages_buffered{0};     // Fetched pages waiting to be sent, all jobs (gauge).
  std::atomic<int64_t> writer_reconnects{0};  // Write streams re-opened after a break.
  std::atomic<int64_t> writer_streams_rotated{0};  // Streams closed at their byte/time bound.
  std::atomic<int64_t> writer_rpc_errors{0};       // Failed ledger/status calls to the writer.
  std::atomic<int64_t> jobs_stalled{0};            // Jobs failed by --max-stall-seconds.
  std::atomic<int64_t> writer_calls_cancelled{0};  // Write streams/calls ended by TryCancel.

  // Durable ledger writes (ledger_intents.h).
  std::atomic<int64_t> ledger_intents_pending{0};    // Queued now (gauge).
  std::atomic<int64_t> ledger_intents_written{0};    // Taken by the writer.
  std::atomic<int64_t> ledger_intent_retries{0};     // Attempts that failed.
  std::atomic<int64_t> ledger_intents_abandoned{0};  // Permanent error, cap, age or shutdown.

  // API responses by HTTP status code (index = code; 0 = no response: connection error, timeout).
  std::array<std::atomic<int64_t>, 600> http_responses{};
  void CountHttpResponse(int code) {
    http_responses[code > 0 && code < 600 ? code : 0].fetch_add(1);
  }

  // Duration of each HTTP attempt for a page, by outcome.
  enum class FetchOutcome { kOk = 0, kHttpError, kTransportError, kInvalidBody, kCount };
  std::array<Histogram, size_t(FetchOutcome::kCount)> page_fetch_seconds{
      Histogram(LatencyBuckets()), Histogram(LatencyBuckets()), Histogram(LatencyBuckets()),
      Histogram(LatencyBuckets())};
  void ObserveFetch(FetchOutcome outcome, double seconds) {
    page_fetch_seconds[size_t(outcome)].Observe(seconds);
  }

  // Duration of each job from its start to its final state, by that state.
  enum class JobEnd { kSucceeded = 0, kPartial, kFailed, kCancelled, kCount };
  std::array<Histogram, size_t(JobEnd::kCount)> job_duration_seconds{
      Histogram(JobDurationBuckets()), Histogram(JobDurationBuckets()),
      Histogram(JobDurationBuckets()), Histogram(JobDurationBuckets())};
  void ObserveJobEnd(JobEnd end, double seconds) {
    job_duration_seconds[size_t(end)].Observe(seconds);
  }
};

// The collector's /metrics page from its counters, plus the dashboard's families when it runs
// (`dashboard` may be null).
class DashboardServer;
std::string RenderCollectorMetrics(const CollectorCounters& counters,
                                   const DashboardServer* dashboard);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COUNTERS_H_
