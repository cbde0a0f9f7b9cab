#include "collector_service/job_slots.h"

#include <algorithm>

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

FetchSlots::FetchSlots(int max_in_flight, int max_parsers)
    : max_in_flight_(std::max(1, max_in_flight)),
      max_parsers_(std::clamp(max_parsers, 1, std::max(1, max_in_flight))) {}

bool FetchSlots::Acquire(const std::atomic<bool>* abort) {
  absl::MutexLock l(&mu_);
  auto ready = [this, abort]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ < max_in_flight_ || abort->load();
  };
  mu_.Await(absl::Condition(&ready));
  if (abort->load()) return false;
  ++in_flight_;
  max_in_flight_seen_ = std::max(max_in_flight_seen_, in_flight_);
  return true;
}

void FetchSlots::Release() {
  absl::MutexLock l(&mu_);
  --in_flight_;
}

void FetchSlots::Wake() { absl::MutexLock l(&mu_); }

JsonParseBuffers* FetchSlots::AcquireParser() {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !free_parsers_.empty() || int(parsers_.size()) < max_parsers_;
  };
  mu_.Await(absl::Condition(&ready));
  if (free_parsers_.empty()) {
    parsers_.push_back(std::make_unique<JsonParseBuffers>());
    return parsers_.back().get();
  }
  JsonParseBuffers* buffers = free_parsers_.back();
  free_parsers_.pop_back();
  return buffers;
}

void FetchSlots::ReleaseParser(JsonParseBuffers* buffers, bool release_memory) {
  if (release_memory) buffers->Release();  // Outside the lock: only this caller holds it.
  absl::MutexLock l(&mu_);
  free_parsers_.push_back(buffers);
}

int FetchSlots::max_in_flight_seen() const {
  absl::MutexLock l(&mu_);
  return max_in_flight_seen_;
}

}  // namespace etl
