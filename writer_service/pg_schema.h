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

// CREATE TABLE IF NOT EXISTS statement of a raw table. REQUIRES: `table` is a validated name.
std::string RawTableDdl(const std::string& table);

// Creates the raw table `table` if missing. REQUIRES: `table` came from RawTableName().
absl::Status EnsureRawTable(PgConnection* conn, const std::string& table);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_PG_SCHEMA_H_
