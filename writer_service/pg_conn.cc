#include "writer_service/pg_conn.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace etl {
namespace {

absl::StatusCode CodeForSqlState(absl::string_view state) {
  if (state.empty())
    return absl::StatusCode::kUnavailable;  // No server answer: connection trouble.
  absl::string_view cls = state.substr(0, 2);
  // Transient: the connection or the server (shutdown, out of resources, system error).
  if (cls == "08" || cls == "53" || cls == "58" || state == "57P01" || state == "57P02" ||
      state == "57P03") {
    return absl::StatusCode::kUnavailable;
  }
  // Transient on the same connection: serialization failure, deadlock, lock or statement timeout.
  if (state == "40001" || state == "40P01" || state == "55P03" || state == "57014") {
    return absl::StatusCode::kAborted;
  }
  // The values are at fault: data exceptions, integrity constraint violations, program limits.
  if (cls == "22" || cls == "23" || cls == "54") return absl::StatusCode::kInvalidArgument;
  if (state == "42P01") return absl::StatusCode::kNotFound;
  return absl::StatusCode::kInternal;  // Permanent (e.g. permissions, a trigger raising).
}

std::string Trimmed(const char* msg) {
  return std::string(absl::StripTrailingAsciiWhitespace(msg == nullptr ? "" : msg));
}

}  // namespace

PgResult::PgResult(pg_result* r) : res_(r) {}
PgResult::PgResult(PgResult&& o) noexcept : res_(o.res_) { o.res_ = nullptr; }
PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (res_ != nullptr) PQclear(res_);
    res_ = o.res_;
    o.res_ = nullptr;
  }
  return *this;
}
PgResult::~PgResult() {
  if (res_ != nullptr) PQclear(res_);
}
int PgResult::rows() const { return res_ == nullptr ? 0 : PQntuples(res_); }
bool PgResult::IsNull(int row, int col) const { return PQgetisnull(res_, row, col) != 0; }
std::string PgResult::Get(int row, int col) const {
  return std::string(PQgetvalue(res_, row, col), PQgetlength(res_, row, col));
}
int64_t PgResult::GetInt(int row, int col) const {
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::string_view(PQgetvalue(res_, row, col)), &v)) return 0;
  return v;
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::Connect(const std::string& conninfo,
                                                                    absl::string_view application,
                                                                    int connect_timeout_s) {
  // Pass the application name as a separate keyword so conninfo (which may hold a password) is
  // never copied into messages.
  std::string app(application);
  std::string timeout = absl::StrCat(connect_timeout_s);
  const char* keys[] = {"dbname", "application_name",
                        connect_timeout_s > 0 ? "connect_timeout" : nullptr, nullptr};
  const char* values[] = {conninfo.c_str(), app.c_str(), timeout.c_str(), nullptr};
  pg_conn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (c == nullptr) return absl::ResourceExhaustedError("libpq could not allocate a connection");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = Trimmed(PQerrorMessage(c));
    PQfinish(c);
    return absl::UnavailableError(absl::StrCat("cannot connect to PostgreSQL: ", msg));
  }
  // Server notices ("relation ... already exists, skipping") are expected: keep them off stderr.
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<PgConnection>(new PgConnection(c));
}

PgConnection::~PgConnection() { PQfinish(conn_); }

bool PgConnection::healthy() const { return PQstatus(conn_) == CONNECTION_OK; }
int PgConnection::backend_pid() const { return PQbackendPID(conn_); }

absl::Status PgConnection::ConnectionError(absl::string_view what) {
  sqlstate_.clear();
  return absl::UnavailableError(absl::StrCat(what, ": ", Trimmed(PQerrorMessage(conn_))));
}

absl::Status PgConnection::ResultStatus(pg_result* r, absl::string_view what) {
  if (r == nullptr) return ConnectionError(what);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN) {
    sqlstate_.clear();
    return absl::OkStatus();
  }
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  sqlstate_ = state == nullptr ? "" : state;
  absl::StatusCode code = CodeForSqlState(sqlstate_);
  if (!healthy()) code = absl::StatusCode::kUnavailable;
  std::string msg = Trimmed(PQresultErrorMessage(r));
  if (msg.empty()) msg = Trimmed(PQerrorMessage(conn_));
  return absl::Status(code, absl::StrCat(what, ": ", msg, sqlstate_.empty() ? "" : " (SQLSTATE ",
                                         sqlstate_, sqlstate_.empty() ? "" : ")"));
}

absl::Status PgConnection::Exec(const std::string& sql) {
  pg_result* r = PQexec(conn_, sql.c_str());
  absl::Status s = ResultStatus(r, "statement failed");
  if (r != nullptr) PQclear(r);
  return s;
}

absl::Status PgConnection::ExecWithTimeout(const std::string& sql, absl::Duration timeout) {
  if (PQsendQuery(conn_, sql.c_str()) != 1) return ConnectionError("statement failed");
  const absl::Time deadline = absl::Now() + timeout;
  while (PQisBusy(conn_) != 0) {
    int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) {
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL did not answer within ", absl::FormatDuration(timeout)));
    }
    pollfd p{PQsocket(conn_), POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    if (r < 0 && errno != EINTR) return ConnectionError("statement failed");
    if (r > 0 && PQconsumeInput(conn_) != 1) return ConnectionError("statement failed");
  }
  absl::Status result;
  while (pg_result* r = PQgetResult(conn_)) {
    absl::Status s = ResultStatus(r, "statement failed");
    if (result.ok()) result = s;
    PQclear(r);
  }
  return result;
}

absl::StatusOr<PgResult> PgConnection::Query(const std::string& sql,
                                             const std::vector<PgParam>& params) {
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].is_null ? nullptr : params[i].value.data();
    lengths[i] = static_cast<int>(params[i].value.size());
    formats[i] = params[i].binary ? 1 : 0;
  }
  pg_result* r = PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr,
                              values.data(), lengths.data(), formats.data(), 0);
  absl::Status s = ResultStatus(r, "query failed");
  if (!s.ok()) {
    if (r != nullptr) PQclear(r);
    return s;
  }
  return PgResult(r);
}

absl::Status PgConnection::CopyBegin(const std::string& copy_sql) {
  pg_result* r = PQexec(conn_, copy_sql.c_str());
  absl::Status s = ResultStatus(r, "COPY failed");
  if (s.ok() && PQresultStatus(r) != PGRES_COPY_IN) s = absl::InternalError("COPY did not start");
  if (r != nullptr) PQclear(r);
  return s;
}

absl::Status PgConnection::CopyPut(absl::string_view data) {
  if (data.empty()) return absl::OkStatus();
  if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1) {
    return ConnectionError("COPY data failed");
  }
  return absl::OkStatus();
}

absl::Status PgConnection::CopyEnd() {
  if (PQputCopyEnd(conn_, nullptr) != 1) return ConnectionError("COPY end failed");
  absl::Status result = absl::OkStatus();
  bool first = true;
  while (pg_result* r = PQgetResult(conn_)) {
    absl::Status s = ResultStatus(r, "COPY failed");
    if (first && !s.ok()) result = s;
    first = first && s.ok();
    PQclear(r);
  }
  if (result.ok() && !healthy()) return ConnectionError("COPY failed");
  return result;
}

}  // namespace etl
