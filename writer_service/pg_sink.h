// PgRecordSink: commits batches of pages into PostgreSQL with COPY, exactly once per page.
//
// One transaction per batch:
//   1. upsert the pages' ledger rows (etl_pages) ... WHERE state <> 'committed' RETURNING: pages
//   not
//      returned were committed before and are skipped;
//   2. COPY the records of the new pages (text format) into their raw tables;
//   3. dead-letter the records PostgreSQL cannot store (pre-checked here: invalid UTF-8, NUL, a
//      natural key that is not valid UTF-8; or found by retrying the COPY of a failing page in
//      halves under savepoints when PostgreSQL reports a data error or a constraint violation,
//      SQLSTATE classes 22/23/54), so good neighbours still commit; a page hit by any other
//      permanent error (e.g. a user trigger raising) is refused alone (ledger row 'failed'), and
//      the other pages of the batch commit;
//   4. advance the incremental marks of the records committed (etl_cursors);
//   5. COMMIT.
// Pages of job ids not in etl_jobs are refused (FAILED_PRECONDITION). A skipped page whose content
// digest differs from the committed one is reported (PageResult::content_differs).
// Write modes (write_modes.h): MERGE pages are COPYed into a temporary staging table and merged
// into the raw table by natural key; REPLACE pages go to the job's fresh table.
// Raw tables are created on first use (cached per sink).
//
// Thread-compatible: one writer thread per sink (it owns one connection).
#ifndef ETL_WRITER_SERVICE_PG_SINK_H_
#define ETL_WRITER_SERVICE_PG_SINK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "writer_service/cursor_store.h"
#include "writer_service/pg_conn.h"
#include "writer_service/record_sink.h"
#include "writer_service/write_modes.h"

namespace etl {

class PgRecordSink : public RecordSink {
 public:
  struct Options {
    std::string conninfo;               // libpq connection string; "" = libpq's environment.
    size_t copy_chunk_bytes = 1 << 20;  // COPY data is sent in pieces of about this size.
  };

  explicit PgRecordSink(Options options) : options_(std::move(options)) {}

  absl::Status Connect() override;
  absl::Status Ping(absl::Duration timeout) override;
  absl::StatusOr<std::vector<PageResult>> CommitPages(const std::vector<const QueuedPage*>& pages,
                                                      const std::string& batch_id) override;

  // Backend pid of the current connection (0 if none): lets tests terminate it.
  int BackendPidForTest() const { return conn_ ? conn_->backend_pid() : 0; }

 private:
  struct DeadLetter;
  struct Work;
  absl::Status CommitInTransaction(Work& w, const std::string& batch_id);
  absl::Status CopyRecords(const std::string& table, Work& w,
                           const std::vector<size_t>& page_indexes);
  absl::Status CopyIsolating(const std::string& table, Work& w, size_t page_index,
                             std::vector<uint32_t> records);
  absl::Status CheckJobsRegistered(Work& w);
  // Fails the pages whose lease epoch is outdated (lease_fence.h). REQUIRES: inside BEGIN.
  absl::Status RefuseStaleLeases(Work& w);
  absl::Status CompareSkippedDigests(Work& w, const std::vector<size_t>& candidates);
  absl::Status AdvanceCursors(Work& w);
  absl::Status CopySubset(const std::string& table, Work& w, size_t page_index,
                          const std::vector<uint32_t>& records);

  const Options options_;
  std::unique_ptr<PgConnection> conn_;
  absl::flat_hash_set<std::string> known_tables_;
  absl::flat_hash_set<std::string> known_jobs_;  // Registered job ids seen (bounded).
  WriteModeCache modes_;              // Write mode per job; tables and staging made ready.
  CursorExtractor cursor_extractor_;  // Incremental jobs: reads each record's cursor value.
  std::string buffer_;                // Reused COPY buffer: no per-batch allocation once warm.
  std::string last_failed_batch_id_;  // Batch whose COMMIT outcome is unknown.
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_PG_SINK_H_
