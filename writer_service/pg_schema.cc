#include "writer_service/pg_schema.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "writer_service/copy_text.h"

namespace etl {
namespace {

// Key of the advisory lock that serializes all of the writer's DDL ("ETLDDL" in ASCII).
constexpr const char* kDdlLock = "SELECT pg_advisory_xact_lock(76989560669260)";

}  // namespace

absl::Status RunDdl(PgConnection* conn, const std::string& ddl) {
  RETURN_IF_ERROR(conn->Exec("BEGIN"));
  absl::Status s = conn->Exec(kDdlLock);
  if (s.ok()) s = conn->Exec(ddl);
  if (s.ok()) s = conn->Exec("COMMIT");
  if (!s.ok()) conn->Exec("ROLLBACK").IgnoreError();
  return s;
}

absl::Status TakeDdlLock(PgConnection* conn) { return conn->Exec(kDdlLock); }

absl::Status EnsureLedgerSchema(PgConnection* conn) {
  return RunDdl(conn, R"sql(
CREATE TABLE IF NOT EXISTS etl_jobs (
  job_id        text PRIMARY KEY,
  cliente_id    text NOT NULL,
  rota          text NOT NULL,
  table_name    text NOT NULL,
  spec          jsonb NOT NULL,
  state         text NOT NULL DEFAULT 'PENDING',
  error         text NOT NULL DEFAULT '',
  pages_total   bigint NOT NULL DEFAULT 0,
  records_total bigint NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE INDEX IF NOT EXISTS etl_jobs_state_idx ON etl_jobs (state);
CREATE TABLE IF NOT EXISTS etl_pages (
  job_id          text NOT NULL,
  page_number     bigint NOT NULL,
  state           text NOT NULL CHECK (state IN ('committed', 'failed')),
  page_token      text NOT NULL DEFAULT '',
  next_page_token text NOT NULL DEFAULT '',
  records         bigint NOT NULL DEFAULT 0,
  rejected        bigint NOT NULL DEFAULT 0,
  error           text NOT NULL DEFAULT '',
  attempts        integer NOT NULL DEFAULT 0,
  batch_id        text,
  committed_at    timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, page_number)
);
CREATE TABLE IF NOT EXISTS etl_dead_letters (
  id           bigserial PRIMARY KEY,
  job_id       text NOT NULL,
  page_number  bigint NOT NULL,
  record_index integer NOT NULL,
  table_name   text NOT NULL,
  raw          bytea NOT NULL,
  raw_text     text NOT NULL,
  natural_key  text,
  reason       text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
-- Exact token bytes when the text copy is not exact; a digest of each committed page's records.
-- (Checked first: ALTER TABLE would take an exclusive lock on every start.)
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'etl_pages'::regclass
                 AND attname = 'content_digest' AND NOT attisdropped) THEN
    ALTER TABLE etl_pages ADD COLUMN IF NOT EXISTS page_token_raw bytea,
                          ADD COLUMN IF NOT EXISTS next_page_token_raw bytea,
                          ADD COLUMN IF NOT EXISTS content_digest text;
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS etl_dead_letters_job_idx ON etl_dead_letters (job_id, page_number);
CREATE TABLE IF NOT EXISTS etl_cursors (
  cliente_id  text NOT NULL,
  rota        text NOT NULL,
  cursor_path text NOT NULL,
  cursor_type text NOT NULL,
  value       text NOT NULL,
  sort_key    numeric NOT NULL,
  job_id      text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (cliente_id, rota, cursor_path)
);
-- Leases: the collector that runs the job (owner), until when (database clock), the fencing epoch
-- every claim bumps, a pending cancel request and the progress the owner publishes.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'etl_jobs'::regclass
                 AND attname = 'lease_progress' AND NOT attisdropped) THEN
    ALTER TABLE etl_jobs ADD COLUMN IF NOT EXISTS owner text NOT NULL DEFAULT '',
                         ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
                         ADD COLUMN IF NOT EXISTS lease_epoch bigint NOT NULL DEFAULT 0,
                         ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false,
                         ADD COLUMN IF NOT EXISTS lease_progress bytea;
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS etl_table_swaps (
  job_id     text PRIMARY KEY,
  table_name text NOT NULL,
  swapped_at timestamptz NOT NULL DEFAULT now()
);
-- StartJob's idempotency key: one job per request_id (ids older than 24 h are cleared lazily, when
-- the same id comes again).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'etl_jobs'::regclass
                 AND attname = 'request_id' AND NOT attisdropped) THEN
    ALTER TABLE etl_jobs ADD COLUMN IF NOT EXISTS request_id text;
  END IF;
END $$;
CREATE UNIQUE INDEX IF NOT EXISTS etl_jobs_request_id_idx ON etl_jobs (request_id)
  WHERE request_id IS NOT NULL;
)sql");
}

PgParam TokenText(const std::string& token) { return PgParam::Text(LossyUtf8(token)); }

PgParam TokenRaw(const std::string& token) {
  if (IsValidUtf8(token) && token.find('\0') == std::string::npos) return PgParam::Null();
  return PgParam::Bytes(token);
}

std::string TokenFromColumns(const PgResult& res, int row, int text_col, int raw_hex_col) {
  if (res.IsNull(row, raw_hex_col)) return res.Get(row, text_col);
  return absl::HexStringToBytes(res.Get(row, raw_hex_col));
}

std::string RawTableDdl(const std::string& table) {
  // The writer loads a table over several connections at once: each one takes ids from the
  // sequence 1,000 at a time instead of locking it for every row (with one id per call, parallel
  // COPYs spend a fifth of their CPU contending for the sequence's page). Ids stay unique and
  // increase within a connection; as with any sequence under concurrent writers they are not
  // commit order, and ids a connection cached but did not use are skipped.
  return absl::StrCat("CREATE TABLE IF NOT EXISTS ", QuoteIdentifier(table), R"sql( (
  id           bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1000) PRIMARY KEY,
  payload      jsonb NOT NULL,
  natural_key  text,
  job_id       text NOT NULL,
  page_number  bigint NOT NULL,
  collected_at timestamptz NOT NULL DEFAULT now()
))sql");
}

absl::Status EnsureRawTable(PgConnection* conn, const std::string& table) {
  return RunDdl(conn, RawTableDdl(table));
}

}  // namespace etl
