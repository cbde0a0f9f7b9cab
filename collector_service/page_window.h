// FetchedPage and PageWindow: the pages of a job between its producers and its sender.
//
// PageWindow orders pages by slot (the order in which they must be sent). A producer may start
// fetching slot s only when s < next slot to send + capacity and the bytes held (pages ready, the
// page being sent, pages being fetched counted at the largest page size seen) stay under
// max_bytes. The next slot to send is always admitted, so the sender never waits on the byte bound
// and a page larger than max_bytes still goes through. That, plus one write in flight, bounds the
// memory of a job.
//
// Thread-safety: PageWindow's methods may be called from any thread (producers and one sender).
#ifndef ETL_COLLECTOR_SERVICE_PAGE_WINDOW_H_
#define ETL_COLLECTOR_SERVICE_PAGE_WINDOW_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "collector_service/counters.h"
#include "collector_service/job_progress.h"
#include "common/json_page.h"
#include "etl.pb.h"

namespace etl {

// One page as fetched: its records, already cut into the messages that carry them, or why it
// failed.
struct FetchedPage {
  int64_t page_number = 0;
  std::string token;       // What was requested.
  std::string next_token;  // What comes next ("" = last page).
  bool ok = false;
  bool auth_failed = false;
  bool cancelled = false;
  std::string error;
  int attempts = 0;
  // The RecordBatch messages of the page (chunked at max_message_bytes; next_page_token is set
  // when sent). The response body is freed as soon as these are built, so a buffered page costs
  // its records once, not body + copies.
  std::vector<v1::RecordBatch> batches;
  int64_t records = 0;
  size_t bytes = 0;  // Memory held by the batches (approximate), for the window's byte bound.
  ParsedPage
      parsed;  // Pagination values only: records and natural_keys are dropped after batching.
  // Pagination values from the response.
  std::string link_next;  // LINK: target of rel="next".
  std::string request_url;
};

class PageWindow {
 public:
  // `counters` and `progress` (pages buffered) outlive the window.
  PageWindow(int64_t capacity, size_t max_bytes, CollectorCounters* counters,
             JobProgressTracker* progress)
      : capacity_(capacity), max_bytes_(max_bytes), counters_(counters), progress_(progress) {}

  // Blocks until `slot` may be fetched (true) or the window was aborted (false). `waited`
  // (optional) is set to whether the window was full at first (the sender is the bound).
  bool WaitForRoom(int64_t slot, bool* waited = nullptr);
  // Hands over the page of `slot` (admitted by WaitForRoom).
  void Put(int64_t slot, FetchedPage page);
  // No slot at or past `total_slots` will be Put.
  void FinishProducing(int64_t total_slots);
  // The next page in slot order; false when all are taken or the window was aborted.
  bool TakeNext(FetchedPage* out);
  // Drops the pages held and wakes every waiter.
  void Abort();

 private:
  absl::Mutex mu_;
  const int64_t capacity_;
  const size_t max_bytes_;
  CollectorCounters* const counters_;
  JobProgressTracker* const progress_;
  std::map<int64_t, FetchedPage> ready_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> fetching_ ABSL_GUARDED_BY(mu_);  // Slots admitted and not yet Put.
  size_t ready_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t sending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t largest_page_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_take_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t end_ ABSL_GUARDED_BY(mu_) = -1;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_PAGE_WINDOW_H_
