#include "writer_service/task_runner.h"

#include "common/logging.h"

namespace etl {

TaskRunner::TaskRunner(int threads, size_t max_pending, std::string component)
    : max_pending_(max_pending), component_(std::move(component)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

TaskRunner::~TaskRunner() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

bool TaskRunner::Schedule(std::function<void()> task) {
  absl::MutexLock l(&mu_);
  if (stopping_ || tasks_.size() >= max_pending_) return false;
  tasks_.push_back(std::move(task));
  return true;
}

void TaskRunner::Loop() {
  SetThreadComponent(component_);
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopping_ || !tasks_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (tasks_.empty()) return;  // stopping and nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace etl
