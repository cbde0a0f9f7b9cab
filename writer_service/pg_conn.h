// PgConnection: a thin owner of one libpq connection that turns libpq errors into absl::Status.
//
// Error codes (conventions #5): UNAVAILABLE when the connection is gone or the server is shutting
// down or out of resources (SQLSTATE classes 08, 53, 58, 57P01-03: retry on a new connection);
// ABORTED for serialization failures, deadlocks, lock and statement timeouts (40001, 40P01, 55P03,
// 57014: retry the transaction); INVALID_ARGUMENT when the values are at fault (classes 22 data
// exception, 23 integrity constraint violation, 54 program limit); NOT_FOUND for an undefined
// table; INTERNAL (permanent) otherwise. The SQLSTATE of the last error is kept in sqlstate().
//
// Thread-compatible: one thread at a time. Error messages never contain the connection string.
#ifndef ETL_WRITER_SERVICE_PG_CONN_H_
#define ETL_WRITER_SERVICE_PG_CONN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct pg_conn;
struct pg_result;

namespace etl {

// An owned PGresult with convenient accessors.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(pg_result* r);
  PgResult(PgResult&& o) noexcept;
  PgResult& operator=(PgResult&& o) noexcept;
  ~PgResult();

  int rows() const;
  bool IsNull(int row, int col) const;
  std::string Get(int row, int col) const;
  int64_t GetInt(int row, int col) const;

 private:
  pg_result* res_ = nullptr;
};

// One statement parameter: text, or binary bytes (for bytea), or NULL.
struct PgParam {
  std::string value;
  bool is_null = false;
  bool binary = false;
  static PgParam Text(std::string v) { return PgParam{std::move(v), false, false}; }
  static PgParam Bytes(std::string v) { return PgParam{std::move(v), false, true}; }
  static PgParam Null() { return PgParam{"", true, false}; }
};

class PgConnection {
 public:
  // `conninfo` as for PQconnectdb ("" = libpq's environment: PGHOST, PGPORT, ...).
  // `connect_timeout_s` > 0 overrides the connection string's connect_timeout.
  static absl::StatusOr<std::unique_ptr<PgConnection>> Connect(const std::string& conninfo,
                                                               absl::string_view application,
                                                               int connect_timeout_s = 0);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs one or more statements without parameters.
  absl::Status Exec(const std::string& sql);
  // Exec that gives up after `timeout` (UNAVAILABLE; the connection is then unusable): for checks
  // that must answer even when the server hangs.
  absl::Status ExecWithTimeout(const std::string& sql, absl::Duration timeout);
  // Runs one statement with parameters; returns its rows (if any).
  absl::StatusOr<PgResult> Query(const std::string& sql, const std::vector<PgParam>& params = {});

  // COPY ... FROM STDIN: Begin, then Put any number of chunks, then End (returns the COPY's
  // status).
  absl::Status CopyBegin(const std::string& copy_sql);
  absl::Status CopyPut(absl::string_view data);
  absl::Status CopyEnd();

  bool healthy() const;
  int backend_pid() const;
  const std::string& sqlstate() const { return sqlstate_; }

 private:
  explicit PgConnection(pg_conn* conn) : conn_(conn) {}
  absl::Status ResultStatus(pg_result* r, absl::string_view what);
  absl::Status ConnectionError(absl::string_view what);

  pg_conn* conn_;
  std::string sqlstate_;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_PG_CONN_H_
