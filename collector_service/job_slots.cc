#include "collector_service/job_slots.h"

namespace etl {

bool JobSlots::Acquire(const std::atomic<bool>* abort) {
  absl::MutexLock l(&mu_);
  auto ready = [this, abort]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ < max_ || abort->load(); };
  mu_.Await(absl::Condition(&ready));
  if (abort->load()) return false;
  ++running_;
  return true;
}

void JobSlots::Release() {
  absl::MutexLock l(&mu_);
  --running_;
}

void JobSlots::Wake() { absl::MutexLock l(&mu_); }

}  // namespace etl
