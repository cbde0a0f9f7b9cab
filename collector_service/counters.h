// All counters of the collector in one struct of atomics, snapshotted by the metrics endpoint.
//
// Thread-safe: relaxed atomic increments from any thread.
#ifndef ETL_COLLECTOR_SERVICE_COUNTERS_H_
#define ETL_COLLECTOR_SERVICE_COUNTERS_H_

#include <atomic>
#include <cstdint>

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
  std::atomic<int64_t> writer_rpc_errors{0};  // Failed ledger/status calls to the writer.
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COUNTERS_H_
