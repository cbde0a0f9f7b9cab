#include "collector_service/page_window.h"

#include <algorithm>
#include <utility>

namespace etl {

bool PageWindow::WaitForRoom(int64_t slot, bool* waited) {
  absl::MutexLock l(&mu_);
  auto room = [this, slot]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (aborted_ || slot <= next_take_) return true;
    if (slot >= next_take_ + capacity_) return false;
    size_t fetching = 0;
    for (int64_t s : fetching_) {
      if (s != slot && s >= next_take_) fetching += largest_page_;
    }
    return ready_bytes_ + sending_bytes_ + fetching + largest_page_ <= max_bytes_;
  };
  if (waited != nullptr) *waited = !room();
  mu_.Await(absl::Condition(&room));
  if (!aborted_) fetching_.insert(slot);
  return !aborted_;
}

void PageWindow::Put(int64_t slot, FetchedPage page) {
  absl::MutexLock l(&mu_);
  fetching_.erase(slot);
  if (aborted_) return;
  largest_page_ = std::max(largest_page_, page.bytes);
  ready_bytes_ += page.bytes;
  ready_.emplace(slot, std::move(page));
  counters_->pages_buffered.fetch_add(1);
  progress_->SetBuffered(int64_t(ready_.size()) + 1);  // + the page being sent.
}

void PageWindow::FinishProducing(int64_t total_slots) {
  absl::MutexLock l(&mu_);
  end_ = total_slots;
}

bool PageWindow::TakeNext(FetchedPage* out) {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return aborted_ || ready_.count(next_take_) > 0 || (end_ >= 0 && next_take_ >= end_);
  };
  mu_.Await(absl::Condition(&ready));
  if (aborted_) return false;
  auto it = ready_.find(next_take_);
  if (it == ready_.end()) return false;
  *out = std::move(it->second);
  ready_.erase(it);
  ready_bytes_ -= out->bytes;
  sending_bytes_ = out->bytes;  // The previous page (if any) was sent and released.
  counters_->pages_buffered.fetch_sub(1);
  ++next_take_;
  return true;
}

void PageWindow::Abort() {
  absl::MutexLock l(&mu_);
  aborted_ = true;
  counters_->pages_buffered.fetch_sub(int64_t(ready_.size()));
  ready_.clear();
  ready_bytes_ = 0;
}

}  // namespace etl
