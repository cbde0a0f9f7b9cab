// JobSlots: admission of jobs to the fetch phase. At most max_running jobs hold a slot at once;
// the others wait (PENDING) until a slot frees up or their abort flag is set.
//
// Thread-safety: all methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_JOB_SLOTS_H_
#define ETL_COLLECTOR_SERVICE_JOB_SLOTS_H_

#include <atomic>

#include "absl/synchronization/mutex.h"

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

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_JOB_SLOTS_H_
