// AdaptiveConcurrency: how many pages one job fetches at once, adapted to the API (AIMD).
//
// The limit starts at `initial` and moves within [1, max]: it grows by one after `limit`
// successful answers in a row whose latency is normal (one more page in flight per round of
// pages), as long as the job's writer has room (a fetch worker that found the page window full
// holds the growth back: more fetching would only fill memory). It halves when the API pushes back:
// HTTP 429 or 503, a transport error or timeout, or a smoothed latency above latency_factor times
// the baseline (the lowest latency seen, relaxed slowly so a permanently slower API becomes the new
// normal). It halves at most once per round trip: answers to requests sent before the last
// decrease do not decrease it again. Growing back to the limit that was pushed back takes several
// rounds per step (a probe), so an API that caps concurrency is rarely asked for more than it
// allows. Not adaptive: the limit stays at max.
//
// Time comes from a clock seam (as in JobProgressTracker) so tests drive it.
//
// Thread-safety: all methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_FETCH_CONCURRENCY_H_
#define ETL_COLLECTOR_SERVICE_FETCH_CONCURRENCY_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace etl {

struct AdaptiveConcurrencyOptions {
  int max = 4;                  // Upper bound: the job's fetch_concurrency.
  bool adaptive = true;         // False: the limit stays at max.
  int initial = 1;              // First limit when adaptive (clamped to [1, max]).
  double latency_factor = 2.0;  // Smoothed latency above this x the baseline ...
  // ... and above the baseline + this = back off. Milliseconds of jitter (a local API, a busy
  // machine) are no sign of an overloaded API; 429/503 are.
  absl::Duration latency_slack = absl::Milliseconds(25);
};

class AdaptiveConcurrency {
 public:
  using Clock = std::function<absl::Time()>;

  // `clock` null = absl::Now.
  explicit AdaptiveConcurrency(AdaptiveConcurrencyOptions options, Clock clock = nullptr);
  AdaptiveConcurrency(const AdaptiveConcurrency&) = delete;
  AdaptiveConcurrency& operator=(const AdaptiveConcurrency&) = delete;

  absl::Time Now() const { return clock_(); }

  // Blocks until fewer than limit() fetches are in flight (true) or *stop is set (false). A waiter
  // is woken by Release(), so stopping needs one fetch in flight to finish (each one does: it sees
  // the stop flag).
  bool Acquire(const std::atomic<bool>* stop);
  // REQUIRES: a successful Acquire.
  void Release();

  // One HTTP attempt's answer: `http_status` 0 = transport error or timeout; `started` = Now()
  // when the request was sent. The latency is Now() - started.
  void OnResponse(int http_status, absl::Time started);
  // A fetch worker found the job's page window full (the writer is the bound): do not grow.
  void OnWriterFull();

  int limit() const;
  // Most fetches in flight at once so far.
  int max_in_flight_seen() const;
  int increases() const;
  int decreases() const;

 private:
  void DecreaseLocked(absl::Time started) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AdaptiveConcurrencyOptions options_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  int limit_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_seen_ ABSL_GUARDED_BY(mu_) = 0;
  int credit_ ABSL_GUARDED_BY(mu_) = 0;                // Normal answers since the last change.
  double baseline_seconds_ ABSL_GUARDED_BY(mu_) = -1;  // Lowest latency, relaxed; -1 = none yet.
  double smoothed_seconds_ ABSL_GUARDED_BY(mu_) = -1;  // EWMA of latencies; -1 = none yet.
  absl::Time last_decrease_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int pushback_limit_ ABSL_GUARDED_BY(mu_) = 0;  // The limit at the last decrease; 0 = none.
  int increases_ ABSL_GUARDED_BY(mu_) = 0;
  int decreases_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_FETCH_CONCURRENCY_H_
