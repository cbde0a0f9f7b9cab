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

// Creates the ledger tables if missing.
absl::Status EnsureLedgerSchema(PgConnection* conn);

// Creates the raw table `table` if missing. REQUIRES: `table` came from RawTableName().
absl::Status EnsureRawTable(PgConnection* conn, const std::string& table);

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_PG_SCHEMA_H_
