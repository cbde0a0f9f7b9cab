// TaskRunner: a few threads running queued tasks, so blocking database calls of unary RPCs never
// run on gRPC's callback threads.
//
// Thread-safe. The destructor runs the tasks already queued, then joins.
#ifndef ETL_WRITER_SERVICE_TASK_RUNNER_H_
#define ETL_WRITER_SERVICE_TASK_RUNNER_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace etl {

class TaskRunner {
 public:
  TaskRunner(int threads, size_t max_pending, std::string component);
  ~TaskRunner();
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // False (task not run) when max_pending tasks are already waiting or the runner is stopping.
  bool Schedule(std::function<void()> task);

 private:
  void Loop();
  const size_t max_pending_;
  const std::string component_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_TASK_RUNNER_H_
