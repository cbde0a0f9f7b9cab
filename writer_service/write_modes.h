// Write modes of a job (JobSpec.write_mode) as the writer applies them:
//   APPEND  - records are COPYed into the raw table (every record a new row);
//   MERGE   - records are COPYed into a per-connection temporary staging table, then one
//             INSERT ... SELECT DISTINCT ON (natural_key) ... ON CONFLICT (natural_key) DO UPDATE
//             per table and batch moves them into the raw table, in the transaction of the pages'
//             ledger rows. Within one batch the last occurrence of a key wins (position order). The
//             raw table gets a unique index on natural_key (created under the DDL advisory lock);
//   REPLACE - records go to a fresh table named after the job; when the job SUCCEEDS,
//   SwapInReplaceTable
//             renames it over the raw table in one transaction (readers see the old table until
//             then).
// Incremental jobs also carry their cursor (JobSpec.incremental) here: the sink advances the mark.
//
// JobWriteConfigs are read from etl_jobs.spec (the spec registered by the collector); a job the
// ledger does not know is written in APPEND mode.
//
// Thread-safety: WriteModeCache is thread-compatible (one per sink); the free functions are
// thread-safe given distinct connections.
#ifndef ETL_WRITER_SERVICE_WRITE_MODES_H_
#define ETL_WRITER_SERVICE_WRITE_MODES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etl.pb.h"
#include "writer_service/pg_conn.h"

namespace etl {

// MERGE when id_path is set, else APPEND, unless the spec names a mode.
v1::WriteMode ResolveWriteMode(const v1::JobSpec& spec);

// The fresh table a REPLACE job loads into: "etl_new_<16 hex digits of the job id's hash>".
std::string ReplaceTableName(const std::string& job_id);

// What the sink needs to know about one job.
struct JobWriteConfig {
  v1::WriteMode mode = v1::APPEND;  // Resolved: never UNSPECIFIED.
  std::string table;                // Raw table the job's rows end up in.
  std::string load_table;  // Table the records are written to now (REPLACE: the fresh one).
  std::string cliente_id;  // For the cursor key.
  std::string rota;
  std::string cursor_path;  // "" = not incremental.
  v1::CursorType cursor_type = v1::CURSOR_TYPE_UNSPECIFIED;
};

// Reads a job's spec from etl_jobs. A job not registered there is APPEND into `table`.
absl::StatusOr<JobWriteConfig> LoadJobWriteConfig(PgConnection* conn, const std::string& job_id,
                                                  const std::string& table);

// Per-connection state of the write modes: configs of recent jobs, tables made ready, the staging
// table. Reset() after a reconnect.
class WriteModeCache {
 public:
  // The job's config, loaded on first use.
  absl::StatusOr<const JobWriteConfig*> ForJob(PgConnection* conn, const std::string& job_id,
                                               const std::string& table);
  // Creates the load table (and, for MERGE, the unique index on natural_key) if missing.
  absl::Status EnsureTables(PgConnection* conn, const JobWriteConfig& config);
  // Creates the temporary staging table of this connection if missing.
  absl::Status EnsureStage(PgConnection* conn);
  // Forget cached DDL (a table was dropped under us) or everything (new connection).
  void ForgetTables() { ready_tables_.clear(); }
  void Reset();

 private:
  absl::flat_hash_map<std::string, std::unique_ptr<JobWriteConfig>> jobs_;
  absl::flat_hash_set<std::string> ready_tables_;
  bool stage_ready_ = false;
};

// Temporary staging table of MERGE batches (per connection, emptied at commit).
inline constexpr char kMergeStageTable[] = "etl_merge_stage";
// COPY target of MERGE batches: the staging table's columns in COPY order.
std::string MergeStageCopySql();
// Moves the staging table's rows into `table`; the latest position per key wins. `keys_unique`: the
// caller knows no key repeats among the staged rows (no sort needed).
std::string MergeFromStageSql(const std::string& table, bool keys_unique);
// Empties the staging table (it is emptied at commit anyway; needed before a second table).
std::string ClearStageSql();

// REPLACE: swaps the job's fresh table in for its raw table, in one transaction under the DDL lock,
// once per job (recorded in etl_table_swaps, so a repeated call is a no-op). A job that loaded no
// record swaps in an empty table. NOT_FOUND for a job unknown to the ledger; OK without doing
// anything for a job that is not REPLACE.
absl::Status SwapInReplaceTable(PgConnection* conn, const std::string& job_id);

// Dead letters, newest last, of one job ("" = all) with id > after_id.
absl::StatusOr<std::vector<v1::DeadLetter>> ListDeadLetters(PgConnection* conn,
                                                            const v1::ListDeadLettersRequest& req);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_WRITE_MODES_H_
