// RecordSink: where the writer threads commit batches of pages. The seam between the queue/batching
// logic (tested with a fake) and PostgreSQL (PgRecordSink, tested against a real server).
//
// Thread-compatible: each writer thread owns its own sink.
#ifndef ETL_WRITER_SERVICE_RECORD_SINK_H_
#define ETL_WRITER_SERVICE_RECORD_SINK_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "writer_service/page.h"

namespace etl {

// Time one sink spent in each phase of its transactions since it was made.
struct SinkPhaseTimes {
  absl::Duration prepare;  // Checks, digests, ledger rows, dead letters: all but the two below.
  absl::Duration copy;     // COPY of the records (escaping, sending, PostgreSQL parsing them).
  absl::Duration commit;   // COMMIT: PostgreSQL making the transaction durable (WAL flush).
};

class RecordSink {
 public:
  virtual ~RecordSink() = default;

  // Makes the sink usable (connect, create the ledger tables). Called again after UNAVAILABLE.
  virtual absl::Status Connect() = 0;

  // Checks that the database answers (reconnecting if needed). Used by an idle writer's health
  // check on a sink of its own. UNAVAILABLE when it does not, or not within about `timeout` (a
  // hung server).
  virtual absl::Status Ping(absl::Duration timeout) = 0;

  // Commits whole pages in ONE transaction, each page with its ledger row; pages already committed
  // are skipped; records the database refuses go to the dead-letter table. Returns one result per
  // page, in order. `batch_id` is the same on every attempt of the same batch, so a retry after an
  // unknown COMMIT outcome recognises its own pages.
  // A page refused on its own (permanent error, unregistered job) is a kFailed result; the other
  // pages commit. Errors: UNAVAILABLE = connection lost, retry the same batch after Connect();
  // ABORTED / NOT_FOUND = transient, retry the batch; anything else = permanent for this batch.
  virtual absl::StatusOr<std::vector<PageResult>> CommitPages(
      const std::vector<const QueuedPage*>& pages, const std::string& batch_id) = 0;

  // Cumulative phase times of CommitPages (zero when the sink does not measure them).
  virtual SinkPhaseTimes phase_times() const { return {}; }
};

using RecordSinkFactory = std::function<std::unique_ptr<RecordSink>()>;

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_RECORD_SINK_H_
