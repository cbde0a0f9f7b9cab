// The writer's tables: idempotent migrations of the ledger (etl_jobs, etl_pages, etl_dead_letters)
// and the DDL of the raw tables dados_raw_cliente_{cliente_id}_{rota}.
//
// All DDL runs in its own transaction under one advisory transaction lock, so any number of writers
// and jobs can create the same tables concurrently.
#ifndef ETL_WRITER_SERVICE_PG_SCHEMA_H_
#define ETL_WRITER_SERVICE_PG_SCHEMA_H_

#include <string>

#include "absl/status/status.h"
#include "writer_service/pg_conn.h"

namespace etl {

// Runs `ddl` in its own transaction under the DDL advisory lock.
absl::Status RunDdl(PgConnection* conn, const std::string& ddl);

// Takes the DDL advisory lock for the rest of the current transaction. REQUIRES: inside BEGIN.
absl::Status TakeDdlLock(PgConnection* conn);

// Creates the ledger tables if missing (etl_jobs, etl_pages, etl_dead_letters, etl_cursors,
// etl_table_swaps).
absl::Status EnsureLedgerSchema(PgConnection* conn);

// Page tokens (cursors, URLs) are opaque bytes. etl_pages keeps a readable copy in page_token /
// next_page_token (invalid UTF-8 and NUL replaced by U+FFFD) and, only when that copy is not exact,
// the exact bytes in page_token_raw / next_page_token_raw (bytea). These build the parameters.
PgParam TokenText(const std::string& token);
PgParam TokenRaw(const std::string& token);  // NULL when TokenText is exact.
// Reads a token back: `text` column, and `raw_hex` = encode(*_raw, 'hex') (NULL when exact).
std::string TokenFromColumns(const PgResult& res, int row, int text_col, int raw_hex_col);

// CREATE TABLE IF NOT EXISTS statement of a raw table. REQUIRES: `table` is a validated name.
std::string RawTableDdl(const std::string& table);

// Creates the raw table `table` if missing. REQUIRES: `table` came from RawTableName().
absl::Status EnsureRawTable(PgConnection* conn, const std::string& table);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_PG_SCHEMA_H_
