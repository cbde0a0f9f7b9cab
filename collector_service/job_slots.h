// JobSlots: admission of jobs to the fetch phase. At most max_running jobs hold a slot at once;
// the others wait (PENDING) until a slot frees up or their abort flag is set.
//
// FetchSlots: the collector-wide bound on page fetches in flight, shared by every job. A fetch
// holds a slot from its HTTP request to its records cut into messages (body, parse, batches), so
// the memory of fetching is bounded by the collector's budget, not by jobs x fetch workers. The
// JSON parses of those fetches borrow their working memory from a pool of at most max_parsers
// buffers (parsing is CPU bound: more than the cores gain nothing), so idle fetch workers keep no
// parser memory. Backpressure is unchanged: a job whose writer stalls waits on its page window
// before it asks for a fetch slot, so it holds none.
//
// Thread-safety: all methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_JOB_SLOTS_H_
#define ETL_COLLECTOR_SERVICE_JOB_SLOTS_H_

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/json_page.h"

namespace etl {

// Limits the number of jobs fetching at once; the others wait in PENDING.
class JobSlots {
 public:
  explicit JobSlots(int max_running) : max_(max_running < 1 ? 1 : max_running) {}
  // Blocks until a slot is free (true) or *abort becomes true (false).
  bool Acquire(const std::atomic<bool>* abort);
  void Release();
  // Re-evaluates waiters (call after setting an abort flag).
  void Wake();

 private:
  absl::Mutex mu_;
  const int max_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

// Limits the page fetches in flight across all jobs and pools their parse buffers.
class FetchSlots {
 public:
  // Values below 1 count as 1; max_parsers above max_in_flight as max_in_flight.
  FetchSlots(int max_in_flight, int max_parsers);
  FetchSlots(const FetchSlots&) = delete;
  FetchSlots& operator=(const FetchSlots&) = delete;

  // Blocks until a fetch may start (true) or *abort becomes true (false).
  bool Acquire(const std::atomic<bool>* abort);
  // REQUIRES: a successful Acquire.
  void Release();
  // Re-evaluates waiters (call after setting an abort flag).
  void Wake();

  // Parse buffers for one parse; blocks until one is free (parses are short and never wait on
  // I/O). Give it back with ReleaseParser.
  JsonParseBuffers* AcquireParser();
  // `release_memory` frees its buffers first (after a large page: they are ~5x its size).
  void ReleaseParser(JsonParseBuffers* buffers, bool release_memory);

  int max_in_flight() const { return max_in_flight_; }
  // Most fetches in flight at once so far (for tests and the bench).
  int max_in_flight_seen() const;

 private:
  mutable absl::Mutex mu_;
  const int max_in_flight_;
  const int max_parsers_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_seen_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<JsonParseBuffers>> parsers_ ABSL_GUARDED_BY(mu_);  // All made.
  std::vector<JsonParseBuffers*> free_parsers_ ABSL_GUARDED_BY(mu_);
};

// A fetch slot held for one scope (or until Release()).
class FetchSlotLease {
 public:
  // `slots` null = no limit (always acquired).
  FetchSlotLease(FetchSlots* slots, const std::atomic<bool>* abort)
      : slots_(slots), held_(slots == nullptr || slots->Acquire(abort)) {}
  ~FetchSlotLease() { Release(); }
  FetchSlotLease(const FetchSlotLease&) = delete;
  FetchSlotLease& operator=(const FetchSlotLease&) = delete;

  // False when the abort flag was set while waiting.
  bool held() const { return held_; }
  void Release() {
    if (held_ && slots_ != nullptr) slots_->Release();
    held_ = false;
  }

 private:
  FetchSlots* const slots_;
  bool held_;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_SLOTS_H_
