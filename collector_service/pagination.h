// PageProducer: walks a job's pages in its pagination style and feeds them to a PageWindow.
//
// Indexed styles (PAGE, OFFSET with a page size) fetch one page at a time until the total is known
// (total pages, or total count / page size), then fetch the rest with fetch_concurrency worker
// threads, of which an AdaptiveConcurrency lets as many fetch at once as the API and the writer
// sustain. Chain styles (CURSOR, LINK, NEXT_URL, OFFSET without a page size) follow each page's
// next token one page at a time. Committed pages from the ledger are skipped; sequential styles
// continue after the contiguous committed prefix.
//
// Loop guards: never more than max_pages pages; a chain token seen before fails the job (a page
// pointing to itself ends it); indexed styles without a known total give up after
// max_consecutive_failed_pages failures in a row; a failed first page fails the job.
//
// Thread-safety: one Produce() call at a time per producer; it may start worker threads itself.
#ifndef ETL_COLLECTOR_SERVICE_PAGINATION_H_
#define ETL_COLLECTOR_SERVICE_PAGINATION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collector_service/job_progress.h"
#include "collector_service/page_fetcher.h"
#include "collector_service/page_window.h"
#include "etl.pb.h"

namespace etl {

struct PaginationOptions {
  // PAGE/OFFSET without a known total give up after this many failed pages in a row.
  int max_consecutive_failed_pages = 5;
  // Fetch workers adapt how many pages they fetch at once within [1, fetch_concurrency]
  // (fetch_concurrency.h) unless the spec sets fixed_fetch_concurrency or this is false.
  bool adaptive_fetch_concurrency = true;
};

class PageProducer {
 public:
  struct Hooks {
    // The job fails with this error (required).
    std::function<void(const std::string&)> fatal;
    // Why a sequential job stopped early (it ends PARTIAL). Null = nothing.
    std::function<void(const std::string&)> stop_note;
    // A status message for the job. Null = nothing.
    std::function<void(const std::string&)> message;
    // The page or record total changed (to persist it). Null = nothing.
    std::function<void(int64_t pages_total, int64_t records_total)> totals_changed;
  };

  // Everything pointed to outlives the producer. `spec` must be validated with defaults applied.
  PageProducer(std::string job_id, const v1::JobSpec* spec, PageFetcher* fetcher,
               JobProgressTracker* progress, PaginationOptions options,
               const std::atomic<bool>* stop, Hooks hooks);

  // True when the spec's style follows next tokens rather than page indexes.
  static bool IsChainStyle(const v1::JobSpec& spec);

  // Runs the producer of the spec's style; always ends with window->FinishProducing().
  void Produce(PageWindow* window, const std::vector<v1::CommittedPage>& committed);
  void ProduceIndexed(PageWindow* window, const std::vector<v1::CommittedPage>& committed);
  void ProduceChain(PageWindow* window, const std::vector<v1::CommittedPage>& committed);

  // The token (page number or offset) of the 0-based page `n` of an indexed style.
  std::string IndexedToken(int64_t n) const;

 private:
  bool stopping() const { return stop_->load(); }
  void Fatal(const std::string& error);

  const std::string job_id_;
  const v1::JobSpec* const spec_;
  PageFetcher* const fetcher_;
  JobProgressTracker* const progress_;
  const PaginationOptions options_;
  // Records per page the API really returns (OFFSET tokens advance by it): the requested page
  // size until the first page is shorter while a record total is known. Set before fetch workers
  // start, read-only afterwards.
  int64_t effective_page_size_ = 0;
  const std::atomic<bool>* const stop_;
  const Hooks hooks_;
  std::atomic<bool> fatal_{false};
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_PAGINATION_H_
