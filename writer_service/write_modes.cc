#include "writer_service/write_modes.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "writer_service/pg_schema.h"

namespace etl {
namespace {

// FNV-1a: stable across processes and builds (table names derived from it must not change).
uint64_t StableHash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string OldTableName(const std::string& job_id) {
  return absl::StrFormat("etl_old_%016x", StableHash(job_id));
}

// Name of the unique index on natural_key, within PostgreSQL's 63 bytes.
std::string MergeIndexName(const std::string& table) {
  std::string name = table + "_nkey";
  if (name.size() <= kMaxIdentifierBytes) return name;
  return absl::StrFormat("etl_nkey_%016x", StableHash(table));
}

absl::StatusOr<v1::JobSpec> ParseSpec(const std::string& json) {
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &spec, opts).ok()) {
    return absl::InternalError("stored job spec cannot be read");
  }
  return spec;
}

}  // namespace

v1::WriteMode ResolveWriteMode(const v1::JobSpec& spec) {
  if (spec.write_mode() != v1::WRITE_MODE_UNSPECIFIED) return spec.write_mode();
  return spec.id_path().empty() ? v1::APPEND : v1::MERGE;
}

std::string ReplaceTableName(const std::string& job_id) {
  return absl::StrFormat("etl_new_%016x", StableHash(job_id));
}

absl::StatusOr<JobWriteConfig> LoadJobWriteConfig(PgConnection* conn, const std::string& job_id,
                                                  const std::string& table) {
  JobWriteConfig c;
  c.table = table;
  c.load_table = table;
  ASSIGN_OR_RETURN(
      PgResult res,
      conn->Query("SELECT spec::text, cliente_id, rota FROM etl_jobs WHERE job_id = $1",
                  {PgParam::Text(job_id)}));
  if (res.rows() == 0) return c;
  ASSIGN_OR_RETURN(v1::JobSpec spec, ParseSpec(res.Get(0, 0)));
  c.mode = ResolveWriteMode(spec);
  c.cliente_id = res.Get(0, 1);
  c.rota = res.Get(0, 2);
  if (c.mode == v1::REPLACE) c.load_table = ReplaceTableName(job_id);
  if (!spec.incremental().cursor_path().empty()) {
    c.cursor_path = spec.incremental().cursor_path();
    c.cursor_type = spec.incremental().cursor_type();
  }
  return c;
}

absl::StatusOr<const JobWriteConfig*> WriteModeCache::ForJob(PgConnection* conn,
                                                             const std::string& job_id,
                                                             const std::string& table) {
  auto it = jobs_.find(job_id);
  if (it != jobs_.end() && it->second->table == table) return it->second.get();
  ASSIGN_OR_RETURN(JobWriteConfig c, LoadJobWriteConfig(conn, job_id, table));
  if (jobs_.size() >= 1000) jobs_.clear();  // Bounded: configs are cheap to reload.
  auto& slot = jobs_[job_id];
  slot = std::make_unique<JobWriteConfig>(std::move(c));
  return slot.get();
}

absl::Status WriteModeCache::EnsureTables(PgConnection* conn, const JobWriteConfig& config) {
  std::string key = absl::StrCat(config.load_table, config.mode == v1::MERGE ? "/merge" : "");
  if (ready_tables_.contains(key)) return absl::OkStatus();
  RETURN_IF_ERROR(EnsureRawTable(conn, config.load_table));
  if (config.mode == v1::MERGE) {
    absl::Status s =
        RunDdl(conn, absl::StrCat("CREATE UNIQUE INDEX IF NOT EXISTS ",
                                  QuoteIdentifier(MergeIndexName(config.load_table)), " ON ",
                                  QuoteIdentifier(config.load_table), " (natural_key)"));
    if (!s.ok() && conn->sqlstate() == "23505") {
      return absl::FailedPreconditionError(absl::StrCat(
          "merge mode needs one row per natural_key, but ", config.load_table,
          " already holds duplicate keys (loaded in append mode): remove them or load it once in "
          "replace mode"));
    }
    RETURN_IF_ERROR(s);
  }
  ready_tables_.insert(key);
  return absl::OkStatus();
}

absl::Status WriteModeCache::EnsureStage(PgConnection* conn) {
  if (stage_ready_) return absl::OkStatus();
  RETURN_IF_ERROR(conn->Exec(
      absl::StrCat("CREATE TEMP TABLE IF NOT EXISTS ", kMergeStageTable,
                   " (payload jsonb NOT NULL, natural_key text NOT NULL, job_id text NOT NULL, "
                   "page_number bigint NOT NULL, ord bigint NOT NULL) ON COMMIT DELETE ROWS")));
  stage_ready_ = true;
  return absl::OkStatus();
}

void WriteModeCache::Reset() {
  jobs_.clear();
  ready_tables_.clear();
  stage_ready_ = false;
}

std::string MergeStageCopySql() {
  return absl::StrCat("COPY pg_temp.", kMergeStageTable,
                      " (payload, natural_key, job_id, page_number, ord) FROM STDIN");
}

std::string MergeFromStageSql(const std::string& table, bool keys_unique) {
  // PostgreSQL refuses to update one row twice in one INSERT ... ON CONFLICT: with repeated keys,
  // keep the last occurrence of each (the greatest position); without, skip the sort.
  return absl::StrCat(
      "INSERT INTO ", QuoteIdentifier(table),
      " (payload, natural_key, job_id, page_number) SELECT ",
      keys_unique ? "" : "DISTINCT ON (natural_key) ",
      "payload, natural_key, job_id, page_number FROM pg_temp.", kMergeStageTable,
      keys_unique ? "" : " ORDER BY natural_key, ord DESC",
      " ON CONFLICT (natural_key) DO UPDATE SET payload = EXCLUDED.payload, "
      "job_id = EXCLUDED.job_id, page_number = EXCLUDED.page_number, collected_at = now()");
}

std::string ClearStageSql() { return absl::StrCat("TRUNCATE pg_temp.", kMergeStageTable); }

absl::Status SwapInReplaceTable(PgConnection* conn, const std::string& job_id) {
  RETURN_IF_ERROR(conn->Exec("BEGIN"));
  auto body = [&]() -> absl::Status {
    // A reader holding the old table for long must not stall the job's end forever: the swap
    // gives up after a while and the caller's UpdateJob is retried.
    RETURN_IF_ERROR(conn->Exec("SET LOCAL lock_timeout = '30s'"));
    RETURN_IF_ERROR(TakeDdlLock(conn));
    ASSIGN_OR_RETURN(PgResult job,
                     conn->Query("SELECT spec::text, table_name FROM etl_jobs WHERE job_id = $1",
                                 {PgParam::Text(job_id)}));
    if (job.rows() == 0) return absl::NotFoundError(absl::StrCat("no job ", job_id));
    ASSIGN_OR_RETURN(v1::JobSpec spec, ParseSpec(job.Get(0, 0)));
    if (ResolveWriteMode(spec) != v1::REPLACE) return absl::OkStatus();
    ASSIGN_OR_RETURN(PgResult done, conn->Query("SELECT 1 FROM etl_table_swaps WHERE job_id = $1",
                                                {PgParam::Text(job_id)}));
    if (done.rows() > 0) return absl::OkStatus();
    const std::string table = job.Get(0, 1);
    const std::string fresh = ReplaceTableName(job_id);
    const std::string old = OldTableName(job_id);
    RETURN_IF_ERROR(conn->Exec(RawTableDdl(fresh)));
    RETURN_IF_ERROR(conn->Exec(
        absl::StrCat("DROP TABLE IF EXISTS ", QuoteIdentifier(old), "; ALTER TABLE IF EXISTS ",
                     QuoteIdentifier(table), " RENAME TO ", QuoteIdentifier(old), "; ALTER TABLE ",
                     QuoteIdentifier(fresh), " RENAME TO ", QuoteIdentifier(table),
                     "; DROP TABLE IF EXISTS ", QuoteIdentifier(old))));
    return conn
        ->Query("INSERT INTO etl_table_swaps (job_id, table_name) VALUES ($1, $2)",
                {PgParam::Text(job_id), PgParam::Text(table)})
        .status();
  };
  absl::Status s = body();
  if (s.ok()) s = conn->Exec("COMMIT");
  if (!s.ok()) {
    const bool busy = conn->sqlstate() == "55P03";  // lock_not_available
    conn->Exec("ROLLBACK").IgnoreError();
    if (busy) {
      return absl::UnavailableError(absl::StrCat("cannot swap in the new table of job ", job_id,
                                                 " yet: readers hold the old one"));
    }
  }
  return s;
}

absl::StatusOr<std::vector<v1::DeadLetter>> ListDeadLetters(PgConnection* conn,
                                                            const v1::ListDeadLettersRequest& req) {
  int limit = req.limit() <= 0 ? 100 : std::min(req.limit(), 10000);
  ASSIGN_OR_RETURN(
      PgResult res,
      conn->Query(
          "SELECT id, job_id, page_number, record_index, table_name, translate(encode(raw, "
          "'base64'), E'\\n', ''), "
          "coalesce(natural_key, ''), reason, (extract(epoch from created_at) * 1000)::bigint "
          "FROM etl_dead_letters WHERE ($1 = '' OR job_id = $1) AND id > $2::bigint "
          "ORDER BY id LIMIT $3::integer",
          {PgParam::Text(req.job_id()), PgParam::Text(absl::StrCat(req.after_id())),
           PgParam::Text(absl::StrCat(limit))}));
  std::vector<v1::DeadLetter> out;
  for (int r = 0; r < res.rows(); ++r) {
    v1::DeadLetter d;
    d.set_id(res.GetInt(r, 0));
    d.set_job_id(res.Get(r, 1));
    d.set_page_number(res.GetInt(r, 2));
    d.set_record_index(static_cast<int32_t>(res.GetInt(r, 3)));
    d.set_table_name(res.Get(r, 4));
    std::string raw;
    if (!absl::Base64Unescape(res.Get(r, 5), &raw))
      return absl::InternalError("bad base64 from PostgreSQL");
    d.set_raw(std::move(raw));
    d.set_natural_key(res.Get(r, 6));
    d.set_reason(res.Get(r, 7));
    d.set_created_at_unix_ms(res.GetInt(r, 8));
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace etl
