// The unit of work of the writer: one complete page of one job, as it travels from a Write stream
// through the queue to a commit.
//
// Thread-safety: a QueuedPage is owned by one thread at a time (stream, queue, writer thread).
#ifndef ETL_WRITER_SERVICE_PAGE_H_
#define ETL_WRITER_SERVICE_PAGE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "etl.pb.h"

namespace etl {

// What happened to one page in a commit.
struct PageResult {
  enum class Kind { kCommitted, kSkipped, kFailed };
  Kind kind = Kind::kFailed;
  int64_t records_committed = 0;  // Rows written into the raw table.
  int64_t records_rejected = 0;   // Rows written into etl_dead_letters instead.
  int64_t records_skipped = 0;    // Records of a page that was already in the ledger.
  int64_t bytes_committed = 0;
  // kCommitted: true on exactly one page per owner per transaction, so an owner counts the
  // transactions that committed its pages by counting these.
  bool first_in_batch_for_owner = false;
  bool content_differs = false;  // kSkipped: the committed page had other records.
  absl::Status error;            // kFailed: why the page was not committed.
};

// Receives the outcome of each page it queued. Called from a writer thread, exactly once per page.
// REQUIRES: the owner outlives all of its queued pages.
class PageOwner {
 public:
  virtual ~PageOwner() = default;
  virtual void OnPageDone(const PageResult& result) = 0;
};

struct QueuedPage {
  std::string table;  // Validated dados_raw_cliente_{cliente_id}_{rota}.
  std::string job_id;
  int64_t page_number = 0;
  std::string page_token;
  std::string next_page_token;
  int64_t lease_epoch = 0;  // The sender's lease epoch (RecordBatch.lease_epoch), fenced at commit.
  // The page's messages as received (moved, not copied): records live in chunks[i].records().
  std::vector<v1::RecordBatch> chunks;
  int64_t records = 0;         // Total records over all chunks.
  int64_t bytes = 0;           // Total record bytes over all chunks (what the queue bound counts).
  PageOwner* owner = nullptr;  // May be null (tests, tools).
  absl::Time enqueued_at;      // Set by the queue.

  // Calls f(record, natural_key_or_null) for every record in order.
  template <typename F>
  void ForEachRecord(F f) const {
    ForEachRecordWithRejection([&](absl::string_view record, const std::string* key,
                                   const std::string*) { f(record, key); });
  }

  // Calls f(record, natural_key_or_null, collector_rejection_or_null) for every record in order.
  template <typename F>
  void ForEachRecordWithRejection(F f) const {
    for (const v1::RecordBatch& c : chunks) {
      bool keys = c.natural_keys_size() == c.records_size();
      bool rejections = c.rejections_size() == c.records_size();
      for (int i = 0; i < c.records_size(); ++i) {
        f(absl::string_view(c.records(i)), keys ? &c.natural_keys(i) : nullptr,
          rejections && !c.rejections(i).empty() ? &c.rejections(i) : nullptr);
      }
    }
  }
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_PAGE_H_
