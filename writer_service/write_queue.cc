#include "writer_service/write_queue.h"

#include <utility>

namespace etl {

WriteQueue::WriteQueue(Options options) : options_(options) {}

bool WriteQueue::FitsLocked(int64_t records, int64_t bytes) const {
  if (draining_ || pages_.empty()) return true;
  return records_ + records <= options_.max_records && bytes_ + bytes <= options_.max_bytes;
}

void WriteQueue::AddLocked(std::unique_ptr<QueuedPage> page) {
  page->enqueued_at = absl::Now();
  records_ += page->records;
  bytes_ += page->bytes;
  pages_.push_back(std::move(page));
}

std::vector<std::function<void()>> WriteQueue::TakeWaitersLocked() {
  std::vector<std::function<void()>> w;
  w.swap(waiters_);
  return w;
}

void WriteQueue::RunAll(std::vector<std::function<void()>> callbacks) {
  for (auto& cb : callbacks) cb();
}

WriteQueue::Admission WriteQueue::PushOrPark(std::unique_ptr<QueuedPage>* page,
                                             std::function<void()> on_room) {
  absl::MutexLock l(&mu_);
  if (closed_) return Admission::kClosed;
  if (!FitsLocked((*page)->records, (*page)->bytes)) {
    waiters_.push_back(std::move(on_room));
    return Admission::kParked;
  }
  AddLocked(std::move(*page));
  return Admission::kAdmitted;
}

WriteQueue::Admission WriteQueue::HasRoomOrPark(int64_t records, int64_t bytes,
                                                std::function<void()> on_room) {
  absl::MutexLock l(&mu_);
  if (closed_) return Admission::kClosed;
  if (FitsLocked(records, bytes)) return Admission::kAdmitted;
  waiters_.push_back(std::move(on_room));
  return Admission::kParked;
}

void WriteQueue::AddPartial(int64_t bytes) {
  absl::MutexLock l(&mu_);
  partial_bytes_ += bytes;
}

WriteQueue::Admission WriteQueue::PushAssembledOrPark(const void* holder,
                                                      std::unique_ptr<QueuedPage>* page,
                                                      std::function<void()> on_room) {
  absl::MutexLock l(&mu_);
  if (closed_) return Admission::kClosed;
  // The page's bytes are already counted in partial_bytes_.
  const bool fits = draining_ || pages_.empty() ||
                    (records_ + (*page)->records <= options_.max_records &&
                     bytes_ + partial_bytes_ <= options_.max_bytes);
  if (!fits) {
    waiters_.push_back(std::move(on_room));
    return Admission::kParked;
  }
  partial_bytes_ -= (*page)->bytes;
  if (oversize_holder_ == holder) oversize_holder_ = nullptr;
  AddLocked(std::move(*page));
  return Admission::kAdmitted;
}

void WriteQueue::ReleasePartial(const void* holder, int64_t bytes) {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock l(&mu_);
    partial_bytes_ -= bytes;
    if (oversize_holder_ == holder) oversize_holder_ = nullptr;
    wake = TakeWaitersLocked();
  }
  RunAll(std::move(wake));
}

WriteQueue::Admission WriteQueue::ReadRoomOrPark(const void* holder, int64_t own_partial,
                                                 std::function<void()> on_room) {
  absl::MutexLock l(&mu_);
  if (closed_) return Admission::kClosed;
  if (draining_ || oversize_holder_ == holder) return Admission::kAdmitted;
  if (records_ < options_.max_records && bytes_ + partial_bytes_ < options_.max_bytes) {
    return Admission::kAdmitted;
  }
  if (pages_.empty() && oversize_holder_ == nullptr && own_partial > 0) {
    oversize_holder_ = holder;  // Nothing to commit frees room: let one page complete.
    return Admission::kAdmitted;
  }
  waiters_.push_back(std::move(on_room));
  return Admission::kParked;
}

bool WriteQueue::Push(std::unique_ptr<QueuedPage> page) {
  absl::MutexLock l(&mu_);
  const int64_t r = page->records, b = page->bytes;
  auto can_push = [this, r, b]()
                      ABSL_NO_THREAD_SAFETY_ANALYSIS { return closed_ || FitsLocked(r, b); };
  ++blocked_pushers_;
  mu_.Await(absl::Condition(&can_push));
  --blocked_pushers_;
  if (closed_) return false;
  AddLocked(std::move(page));
  return true;
}

bool WriteQueue::PushForce(std::unique_ptr<QueuedPage> page) {
  absl::MutexLock l(&mu_);
  if (closed_) return false;
  AddLocked(std::move(page));
  return true;
}

std::vector<std::unique_ptr<QueuedPage>> WriteQueue::PopBatch(int64_t max_records,
                                                              int64_t max_bytes,
                                                              absl::Duration flush_interval) {
  std::vector<std::unique_ptr<QueuedPage>> batch;
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock l(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (closed_ || draining_ || flush_requested_) return !pages_.empty() || closed_;
      // A producer waiting for room means the queue is full: waiting for more cannot fill the
      // batch further, it would only stall the sender until flush_interval.
      if (!pages_.empty() && (!waiters_.empty() || blocked_pushers_ > 0)) return true;
      return records_ >= max_records || bytes_ >= max_bytes;
    };
    while (true) {
      if (ready()) break;
      if (!pages_.empty() && absl::Now() >= pages_.front()->enqueued_at + flush_interval) break;
      absl::Time deadline =
          pages_.empty() ? absl::InfiniteFuture() : pages_.front()->enqueued_at + flush_interval;
      // Wake on any change of the state ready() reads, then re-evaluate (the deadline too).
      const int64_t seen_records = records_;
      const size_t seen_pages = pages_.size();
      const bool seen_closed = closed_, seen_draining = draining_, seen_flush = flush_requested_;
      const size_t seen_waiters = waiters_.size();
      const int seen_blocked = blocked_pushers_;
      auto changed = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return records_ != seen_records || pages_.size() != seen_pages || closed_ != seen_closed ||
               draining_ != seen_draining || flush_requested_ != seen_flush ||
               waiters_.size() != seen_waiters || blocked_pushers_ != seen_blocked;
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
    }
    flush_requested_ = false;
    int64_t r = 0, b = 0;
    while (!pages_.empty()) {
      QueuedPage& p = *pages_.front();
      if (!batch.empty() && (r + p.records > max_records || b + p.bytes > max_bytes)) break;
      r += p.records;
      b += p.bytes;
      batch.push_back(std::move(pages_.front()));
      pages_.pop_front();
    }
    records_ -= r;
    bytes_ -= b;
    if (!batch.empty()) wake = TakeWaitersLocked();
  }
  RunAll(std::move(wake));
  return batch;
}

void WriteQueue::RequestFlush() {
  absl::MutexLock l(&mu_);
  flush_requested_ = true;
}

void WriteQueue::BeginDrain() {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock l(&mu_);
    draining_ = true;
    wake = TakeWaitersLocked();
  }
  RunAll(std::move(wake));
}

void WriteQueue::Close() {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock l(&mu_);
    closed_ = true;
    wake = TakeWaitersLocked();  // Their next attempt returns false.
  }
  RunAll(std::move(wake));
}

WriteQueue::Depth WriteQueue::depth() const {
  absl::MutexLock l(&mu_);
  return Depth{records_, bytes_, static_cast<int64_t>(pages_.size()),
               static_cast<int64_t>(waiters_.size()), partial_bytes_};
}

}  // namespace etl
