#include "writer_service/ledger_store.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/lease.h"
#include "common/logging.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "writer_service/copy_text.h"
#include "writer_service/lease_fence.h"
#include "writer_service/pg_schema.h"

namespace etl {
namespace {

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::PARTIAL || s == v1::FAILED || s == v1::CANCELLED;
}

absl::Status ValidateJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is empty");
  if (job_id.size() > 200) return absl::InvalidArgumentError("job_id is longer than 200 bytes");
  if (job_id.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("job_id contains a NUL character");
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(const std::string& id) {
  if (id.size() > 128) return absl::InvalidArgumentError("request_id is longer than 128 bytes");
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != ':' &&
        c != '-') {
      return absl::InvalidArgumentError("request_id may hold only [A-Za-z0-9._:-]");
    }
  }
  return absl::OkStatus();
}

std::string StripNul(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '\0'), s.end());
  return s;
}

// Creation time in ms: listings are newest first by it (then job id), and so are their page tokens.
constexpr const char* kCreatedMs = "(extract(epoch from j.created_at) * 1000)::bigint";

constexpr const char* kJobColumns =
    "j.job_id, j.spec::text, j.state, j.error, j.pages_total, j.records_total, "
    "(extract(epoch from j.created_at) * 1000)::bigint, "
    "(extract(epoch from j.updated_at) * 1000)::bigint, "
    "coalesce((extract(epoch from j.finished_at) * 1000)::bigint, 0), "
    "(SELECT count(*) FROM etl_pages p WHERE p.job_id = j.job_id AND p.state = 'committed'), "
    "(SELECT coalesce(sum(records), 0) FROM etl_pages p WHERE p.job_id = j.job_id AND p.state = "
    "'committed'), "
    "(SELECT coalesce(sum(rejected), 0) FROM etl_pages p WHERE p.job_id = j.job_id AND p.state = "
    "'committed'), "
    "j.owner, coalesce((extract(epoch from j.lease_expires_at) * 1000)::bigint, 0), "
    "j.lease_epoch, "
    "(j.owner <> '' AND j.lease_expires_at IS NOT NULL AND j.lease_expires_at > now())::int, "
    "j.cancel_requested::int, encode(j.lease_progress, 'hex')";

// Claimable: unfinished, no cancel pending, and nobody holds a live lease.
constexpr const char* kClaimable =
    "j.state IN ('PENDING', 'RUNNING') AND NOT j.cancel_requested AND "
    "(j.owner = '' OR j.lease_expires_at IS NULL OR j.lease_expires_at <= now())";

// The fencing condition of a ledger write carrying lease epoch $<n>: the ledger holds no newer
// epoch; epoch 0 (no lease) only while nobody holds a live lease.
std::string FenceCondition(int n) {
  return absl::StrCat("(CASE WHEN $", n, "::bigint > 0 THEN lease_epoch <= $", n,
                      "::bigint ELSE (owner = '' OR lease_expires_at IS NULL OR "
                      "lease_expires_at <= now()) END)");
}

std::string LeaseSecondsParam(double seconds) {
  if (!(seconds > 0)) seconds = 10;
  return absl::StrCat(std::min(seconds, 86400.0));
}

// A lease call's owner: 1 to 200 bytes without NUL.
absl::Status ValidateOwner(const std::string& owner) {
  if (owner.empty() || owner.size() > 200 || owner.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("owner must be 1 to 200 bytes without NUL");
  }
  return absl::OkStatus();
}

// The leases of a renewal or release, validated and in job id order (rows of several jobs are
// locked in that order everywhere, see lease_fence.h).
absl::StatusOr<std::vector<const v1::HeldLease*>> SortedLeases(
    const google::protobuf::RepeatedPtrField<v1::HeldLease>& held) {
  if (held.size() > 10000) return absl::InvalidArgumentError("more than 10000 leases in one call");
  std::vector<const v1::HeldLease*> leases;
  for (const v1::HeldLease& l : held) {
    RETURN_IF_ERROR(ValidateJobId(l.job_id()));
    leases.push_back(&l);
  }
  std::sort(leases.begin(), leases.end(), [](const v1::HeldLease* a, const v1::HeldLease* b) {
    return a->job_id() < b->job_id();
  });
  return leases;
}

// Runs `fn` in a transaction (rolled back on error).
absl::Status InTransaction(PgConnection* conn, const std::function<absl::Status()>& fn) {
  RETURN_IF_ERROR(conn->Exec("BEGIN"));
  absl::Status s = fn();
  if (s.ok()) s = conn->Exec("COMMIT");
  if (!s.ok() && conn->healthy()) conn->Exec("ROLLBACK").IgnoreError();
  return s;
}

// Why a fenced write matched no row: NOT_FOUND, or the lease moved on.
absl::Status FenceRefusal(PgConnection* conn, const std::string& job_id, int64_t epoch) {
  ASSIGN_OR_RETURN(PgResult res,
                   conn->Query("SELECT lease_epoch, owner FROM etl_jobs WHERE job_id = $1",
                               {PgParam::Text(job_id)}));
  if (res.rows() == 0) return absl::NotFoundError(absl::StrCat("no job ", job_id));
  if (epoch > 0) {
    return LeaseLostError(absl::StrCat("job ", job_id, " is at lease epoch ", res.GetInt(0, 0),
                                       ", this write carries epoch ", epoch,
                                       " (another collector took the job over)"));
  }
  return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is leased by collector ",
                                                    LossyUtf8(res.Get(0, 1)),
                                                    "; only its owner may change it"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgConnection>> LedgerStore::Acquire(bool* reused) {
  bool need_schema;
  if (reused != nullptr) *reused = false;
  {
    absl::MutexLock l(&mu_);
    while (!idle_.empty()) {
      std::unique_ptr<PgConnection> c = std::move(idle_.back());
      idle_.pop_back();
      if (c->healthy()) {
        if (reused != nullptr) *reused = true;
        return c;
      }
    }
    need_schema = !schema_ready_;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c,
                   PgConnection::Connect(options_.conninfo, "etl-writer-ledger"));
  if (need_schema) {
    RETURN_IF_ERROR(EnsureLedgerSchema(c.get()));
    absl::MutexLock l(&mu_);
    schema_ready_ = true;
  }
  return c;
}

void LedgerStore::Release(std::unique_ptr<PgConnection> conn) {
  if (conn == nullptr || !conn->healthy()) return;
  absl::MutexLock l(&mu_);
  if (idle_.size() < options_.max_idle_connections) idle_.push_back(std::move(conn));
}

absl::Status LedgerStore::Run(const std::function<absl::Status(PgConnection*)>& fn) {
  bool reused = false;
  absl::Status s;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, Acquire(&reused));
    s = fn(c.get());
    // A connection the server closed: stale in the pool, or lost during the call (restart).
    bool stale = !s.ok() && !c->healthy();
    Release(std::move(c));
    if (!stale) return s;
  }
  // The server closed the connection (e.g. PostgreSQL restarted): the other idle ones are gone
  // too. Every ledger call is idempotent, so it runs once more on a new connection.
  LogInfo("ledger connection closed by the server (", s.message(), "); reconnecting",
          reused ? " (it was idle in the pool)" : "");
  {
    absl::MutexLock l(&mu_);
    idle_.clear();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, Acquire());
  s = fn(c.get());
  Release(std::move(c));
  return s;
}

absl::StatusOr<std::vector<v1::JobRecord>> LedgerStore::LoadJobs(PgConnection* conn,
                                                                 const std::string& where,
                                                                 const std::vector<PgParam>& params,
                                                                 int limit) {
  ASSIGN_OR_RETURN(
      PgResult res,
      conn->Query(absl::StrCat("SELECT ", kJobColumns, " FROM etl_jobs j WHERE ", where,
                               " ORDER BY ", kCreatedMs, " DESC, j.job_id DESC LIMIT ", limit),
                  params));
  std::vector<v1::JobRecord> jobs(static_cast<size_t>(res.rows()));
  for (int r = 0; r < res.rows(); ++r) {
    v1::JobRecord& j = jobs[static_cast<size_t>(r)];
    j.set_job_id(res.Get(r, 0));
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    (void)google::protobuf::util::JsonStringToMessage(res.Get(r, 1), j.mutable_spec(), opts);
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    v1::JobState_Parse(res.Get(r, 2), &state);
    j.set_state(state);
    j.set_error(res.Get(r, 3));
    j.set_pages_total(res.GetInt(r, 4));
    j.set_records_total(res.GetInt(r, 5));
    j.set_created_at_unix_ms(res.GetInt(r, 6));
    j.set_updated_at_unix_ms(res.GetInt(r, 7));
    j.set_finished_at_unix_ms(res.GetInt(r, 8));
    j.set_pages_committed(res.GetInt(r, 9));
    j.set_records_committed(res.GetInt(r, 10));
    j.set_records_rejected(res.GetInt(r, 11));
    j.set_owner(res.Get(r, 12));
    j.set_lease_expires_at_unix_ms(res.GetInt(r, 13));
    j.set_lease_epoch(res.GetInt(r, 14));
    j.set_lease_held(res.GetInt(r, 15) != 0);
    j.set_cancel_requested(res.GetInt(r, 16) != 0);
    if (!res.IsNull(r, 17)) {
      (void)j.mutable_progress()->ParseFromString(absl::HexStringToBytes(res.Get(r, 17)));
    }
    ASSIGN_OR_RETURN(PgResult failed,
                     conn->Query("SELECT page_number, page_token, error, attempts, "
                                 "encode(page_token_raw, 'hex') FROM etl_pages "
                                 "WHERE job_id = $1 AND state = 'failed' ORDER BY page_number",
                                 {PgParam::Text(j.job_id())}));
    for (int f = 0; f < failed.rows(); ++f) {
      v1::FailedPage* fp = j.add_failed_pages();
      fp->set_page_number(failed.GetInt(f, 0));
      fp->set_page_token(TokenFromColumns(failed, f, 1, 4));
      fp->set_error(failed.Get(f, 2));
      fp->set_attempts(static_cast<int32_t>(failed.GetInt(f, 3)));
    }
  }
  return jobs;
}

absl::StatusOr<v1::JobRecord> LedgerStore::RegisterJob(const v1::RegisterJobRequest& req) {
  RETURN_IF_ERROR(ValidateJobId(req.job_id()));
  ASSIGN_OR_RETURN(std::string table, RawTableName(req.spec().cliente_id(), req.spec().rota()));
  std::string spec_json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(req.spec(), &spec_json, opts).ok()) {
    return absl::InvalidArgumentError("spec cannot be encoded as JSON");
  }
  RETURN_IF_ERROR(ValidateRequestId(req.request_id()));
  v1::JobRecord out;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    if (!req.request_id().empty()) {
      // An id older than the 24-hour window belongs to nobody any more.
      RETURN_IF_ERROR(conn->Query("UPDATE etl_jobs SET request_id = NULL WHERE request_id = $1 "
                                  "AND created_at < now() - interval '24 hours'",
                                  {PgParam::Text(req.request_id())})
                          .status());
    }
    // No conflict target: a job_id or a request_id already taken both mean "registered already";
    // a concurrent insert of the same request_id waits for the other's commit, then does nothing.
    RETURN_IF_ERROR(
        conn->Query("INSERT INTO etl_jobs (job_id, cliente_id, rota, table_name, spec, "
                    "state, request_id) VALUES ($1, $2, $3, $4, $5::jsonb, 'PENDING', "
                    "NULLIF($6, '')) ON CONFLICT DO NOTHING",
                    {PgParam::Text(req.job_id()), PgParam::Text(req.spec().cliente_id()),
                     PgParam::Text(req.spec().rota()), PgParam::Text(table),
                     PgParam::Text(StripNul(spec_json)), PgParam::Text(req.request_id())})
            .status());
    std::vector<v1::JobRecord> jobs;
    if (!req.request_id().empty()) {
      ASSIGN_OR_RETURN(jobs,
                       LoadJobs(conn, "j.request_id = $1", {PgParam::Text(req.request_id())}, 1));
    }
    if (jobs.empty()) {
      ASSIGN_OR_RETURN(jobs, LoadJobs(conn, "j.job_id = $1", {PgParam::Text(req.job_id())}, 1));
    }
    if (jobs.empty()) return absl::InternalError("registered job vanished");
    out = std::move(jobs[0]);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<v1::JobRecord> LedgerStore::UpdateJob(const v1::UpdateJobRequest& req) {
  RETURN_IF_ERROR(ValidateJobId(req.job_id()));
  std::string state =
      req.state() == v1::JOB_STATE_UNSPECIFIED ? "" : v1::JobState_Name(req.state());
  // Terminal states stamp finished_at; going back to PENDING/RUNNING (a re-run) clears it and the
  // error.
  std::string finished = req.state() == v1::JOB_STATE_UNSPECIFIED ? "finished_at"
                         : IsTerminal(req.state())                ? "now()"
                                                                  : "NULL";
  // $3 is always referenced (with its type) so PostgreSQL can type every parameter: a non-empty
  // error replaces the stored one; an empty one keeps it, or clears it on a re-run.
  std::string error = (req.state() != v1::JOB_STATE_UNSPECIFIED && !IsTerminal(req.state()))
                          ? "COALESCE(NULLIF($3::text, ''), '')"
                          : "COALESCE(NULLIF($3::text, ''), error)";
  // A final state ends the lease (the job is never claimed again); PENDING is a re-run: nobody
  // owns it until a collector claims it, and an old cancel request no longer applies.
  std::string lease;
  if (IsTerminal(req.state())) {
    lease = "owner = '', lease_expires_at = NULL, ";
  } else if (req.state() == v1::PENDING) {
    lease =
        "owner = '', lease_expires_at = NULL, cancel_requested = false, lease_progress = NULL, ";
  }
  v1::JobRecord out;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    ASSIGN_OR_RETURN(
        PgResult res,
        conn->Query(
            absl::StrCat(
                "UPDATE etl_jobs SET state = CASE WHEN $2::text = '' THEN state ELSE $2::text END, "
                "error = ",
                error, ", ",
                "pages_total = CASE WHEN $4::bigint > 0 THEN $4::bigint ELSE pages_total END, "
                "records_total = CASE WHEN $5::bigint > 0 THEN $5::bigint ELSE records_total END, "
                "finished_at = ",
                finished, ", ", lease,
                "updated_at = now() "
                "WHERE job_id = $1 AND ",
                FenceCondition(6), " RETURNING job_id"),
            {PgParam::Text(req.job_id()), PgParam::Text(state),
             PgParam::Text(StripNul(req.error())), PgParam::Text(absl::StrCat(req.pages_total())),
             PgParam::Text(absl::StrCat(req.records_total())),
             PgParam::Text(absl::StrCat(req.lease_epoch()))}));
    if (res.rows() == 0) return FenceRefusal(conn, req.job_id(), req.lease_epoch());
    ASSIGN_OR_RETURN(auto jobs, LoadJobs(conn, "j.job_id = $1", {PgParam::Text(req.job_id())}, 1));
    if (jobs.empty()) return absl::NotFoundError(absl::StrCat("no job ", req.job_id()));
    out = std::move(jobs[0]);
    return absl::OkStatus();
  }));
  return out;
}

absl::Status LedgerStore::RecordPageFailure(const v1::PageFailure& req) {
  RETURN_IF_ERROR(ValidateJobId(req.job_id()));
  if (req.page().page_number() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_number ", req.page().page_number(), " is negative"));
  }
  return Run([&](PgConnection* conn) {
    return InTransaction(conn, [&]() -> absl::Status {
      RETURN_IF_ERROR(CheckLeaseLocked(conn, req.job_id(), req.lease_epoch()));
      return conn
          ->Query(
              "INSERT INTO etl_pages (job_id, page_number, state, page_token, error, attempts, "
              "page_token_raw) VALUES ($1, $2::bigint, 'failed', $3, $4, $5::integer, $6::bytea) "
              "ON CONFLICT (job_id, page_number) DO UPDATE SET state = 'failed', "
              "page_token = EXCLUDED.page_token, page_token_raw = EXCLUDED.page_token_raw, "
              "error = EXCLUDED.error, attempts = EXCLUDED.attempts, updated_at = now() "
              "WHERE etl_pages.state <> 'committed'",
              {PgParam::Text(req.job_id()), PgParam::Text(absl::StrCat(req.page().page_number())),
               TokenText(req.page().page_token()), PgParam::Text(LossyUtf8(req.page().error())),
               PgParam::Text(absl::StrCat(req.page().attempts())),
               TokenRaw(req.page().page_token())})
          .status();
    });
  });
}

absl::StatusOr<v1::JobLedger> LedgerStore::GetJobLedger(const std::string& job_id) {
  RETURN_IF_ERROR(ValidateJobId(job_id));
  v1::JobLedger ledger;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    ledger.Clear();
    ASSIGN_OR_RETURN(auto jobs, LoadJobs(conn, "j.job_id = $1", {PgParam::Text(job_id)}, 1));
    if (jobs.empty()) return absl::NotFoundError(absl::StrCat("no job ", job_id));
    *ledger.mutable_job() = std::move(jobs[0]);
    ASSIGN_OR_RETURN(PgResult res,
                     conn->Query("SELECT page_number, page_token, next_page_token, records, "
                                 "encode(page_token_raw, 'hex'), "
                                 "encode(next_page_token_raw, 'hex') "
                                 "FROM etl_pages WHERE job_id = $1 AND state = 'committed' "
                                 "ORDER BY page_number",
                                 {PgParam::Text(job_id)}));
    for (int r = 0; r < res.rows(); ++r) {
      v1::CommittedPage* p = ledger.add_pages();
      p->set_page_number(res.GetInt(r, 0));
      p->set_page_token(TokenFromColumns(res, r, 1, 4));
      p->set_next_page_token(TokenFromColumns(res, r, 2, 5));
      p->set_records(res.GetInt(r, 3));
    }
    return absl::OkStatus();
  }));
  return ledger;
}

absl::StatusOr<v1::ListJobRecordsResponse> LedgerStore::ListJobRecords(
    const v1::ListJobRecordsRequest& req) {
  std::string where = "true";
  std::vector<PgParam> params;
  auto param = [&params](std::string v) {
    params.push_back(PgParam::Text(StripNul(std::move(v))));
    return absl::StrCat("$", params.size());
  };
  if (req.unfinished_only()) where = "j.state IN ('PENDING', 'RUNNING')";
  if (!req.job_id().empty()) absl::StrAppend(&where, " AND j.job_id = ", param(req.job_id()));
  if (!req.cliente_id().empty())
    absl::StrAppend(&where, " AND j.cliente_id = ", param(req.cliente_id()));
  if (!req.rota().empty()) absl::StrAppend(&where, " AND j.rota = ", param(req.rota()));
  if (req.states_size() > 0) {
    std::vector<std::string> names;
    for (int st : req.states()) names.push_back(v1::JobState_Name(static_cast<v1::JobState>(st)));
    absl::StrAppend(&where, " AND j.state = ANY(",
                    param(absl::StrCat("{", absl::StrJoin(names, ","), "}")), "::text[])");
  }
  if (!req.page_token().empty()) {
    // "<created_at in ms>:<job id>" of the last job of the previous page, base64 (web-safe).
    std::string token;
    int64_t ms = 0;
    size_t colon = std::string::npos;
    if (absl::WebSafeBase64Unescape(req.page_token(), &token)) colon = token.find(':');
    if (colon == std::string::npos || !absl::SimpleAtoi(token.substr(0, colon), &ms)) {
      return absl::InvalidArgumentError("page_token is not one this service returned");
    }
    std::string after_ms = param(absl::StrCat(ms));
    std::string after_id = param(token.substr(colon + 1));
    absl::StrAppend(&where, " AND (", kCreatedMs, ", j.job_id) < (", after_ms, "::bigint, ",
                    after_id, ")");
  }
  int limit = req.limit() <= 0 ? 100 : std::min(req.limit(), 10000);
  v1::ListJobRecordsResponse resp;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    resp.Clear();
    ASSIGN_OR_RETURN(auto jobs, LoadJobs(conn, where, params, limit + 1));
    if (jobs.size() > static_cast<size_t>(limit)) {
      jobs.resize(static_cast<size_t>(limit));
      resp.set_next_page_token(absl::WebSafeBase64Escape(
          absl::StrCat(jobs.back().created_at_unix_ms(), ":", jobs.back().job_id())));
    }
    for (auto& j : jobs) *resp.add_jobs() = std::move(j);
    return absl::OkStatus();
  }));
  return resp;
}

absl::StatusOr<v1::ClaimJobsResponse> LedgerStore::ClaimJobs(const v1::ClaimJobsRequest& req) {
  RETURN_IF_ERROR(ValidateOwner(req.owner()));
  v1::ClaimJobsResponse resp;
  if (req.max_jobs() <= 0) return resp;
  std::vector<PgParam> params = {PgParam::Text(req.owner()),
                                 PgParam::Text(LeaseSecondsParam(req.lease_seconds())),
                                 PgParam::Text(absl::StrCat(std::min(req.max_jobs(), 1000)))};
  // Optional restriction to given jobs: its SQL (parameters from $<first>) and parameters.
  std::vector<std::string> only_ids;
  if (!req.job_id().empty()) only_ids.push_back(req.job_id());
  for (const std::string& id : req.job_ids()) only_ids.push_back(id);
  if (only_ids.size() > 1000) return absl::InvalidArgumentError("more than 1,000 job_ids");
  std::vector<PgParam> only_params;
  for (const std::string& id : only_ids) {
    RETURN_IF_ERROR(ValidateJobId(id));
    only_params.push_back(PgParam::Text(id));
  }
  auto only_sql = [&](size_t first) {
    if (only_ids.empty()) return std::string();
    std::string list;
    for (size_t i = 0; i < only_ids.size(); ++i) {
      absl::StrAppend(&list, i == 0 ? "" : ", ", "$", first + i);
    }
    return absl::StrCat(" AND j.job_id IN (", list, ")");
  };
  const std::string only = only_sql(4);
  params.insert(params.end(), only_params.begin(), only_params.end());
  // Candidates in a fair order: interrupted (RUNNING) jobs first, then round-robin over clientes
  // counting the jobs each one already has running (a cliente's next job waits behind the jobs of
  // clientes with fewer running), oldest first within a round.
  // The outer query locks them in that order, skipping rows another claimer holds, and re-checks
  // that they are still claimable once locked; each claim bumps the fencing epoch.
  const std::string sql = absl::StrCat(
      "WITH active AS (SELECT cliente_id, count(*) AS n FROM etl_jobs "
      "WHERE state IN ('PENDING', 'RUNNING') AND owner <> '' AND lease_expires_at > now() "
      "GROUP BY cliente_id), "
      "ranked AS (SELECT j.job_id, j.created_at, (j.state = 'RUNNING') AS interrupted, "
      "coalesce(a.n, 0) + row_number() OVER (PARTITION BY j.cliente_id "
      "ORDER BY j.created_at, j.job_id) AS round "
      "FROM etl_jobs j LEFT JOIN active a ON a.cliente_id = j.cliente_id WHERE ",
      kClaimable, only,
      "), picked AS (SELECT j.job_id FROM etl_jobs j JOIN ranked r ON r.job_id = j.job_id "
      "WHERE ",
      kClaimable,
      " ORDER BY r.interrupted DESC, r.round, r.created_at, r.job_id "
      "LIMIT $3::int FOR UPDATE OF j SKIP LOCKED) "
      "UPDATE etl_jobs j SET owner = $1, "
      "lease_expires_at = now() + $2::double precision * interval '1 second', "
      "lease_epoch = j.lease_epoch + 1, lease_progress = NULL, updated_at = now() "
      "FROM picked WHERE j.job_id = picked.job_id RETURNING j.job_id, j.lease_epoch");
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    resp.Clear();
    return InTransaction(conn, [&]() -> absl::Status {
      // Cancel requests nobody will act on (no live owner) end their jobs now; the epoch moves on
      // so a paused former owner cannot write any more.
      RETURN_IF_ERROR(
          conn->Query(
                  absl::StrCat("UPDATE etl_jobs j SET state = 'CANCELLED', error = 'cancelled by "
                               "request', finished_at = now(), updated_at = now(), owner = '', "
                               "lease_expires_at = NULL, lease_epoch = j.lease_epoch + 1 "
                               "WHERE j.cancel_requested AND j.state IN ('PENDING', 'RUNNING') AND "
                               "(j.owner = '' OR j.lease_expires_at IS NULL OR "
                               "j.lease_expires_at <= now())",
                               only_sql(1)),
                  only_params)
              .status());
      ASSIGN_OR_RETURN(PgResult res, conn->Query(sql, params));
      std::vector<std::pair<std::string, int64_t>> claimed;
      for (int r = 0; r < res.rows(); ++r) claimed.emplace_back(res.Get(r, 0), res.GetInt(r, 1));
      std::sort(claimed.begin(), claimed.end());
      for (const auto& [id, epoch] : claimed) {
        ASSIGN_OR_RETURN(auto jobs, LoadJobs(conn, "j.job_id = $1", {PgParam::Text(id)}, 1));
        if (jobs.empty()) continue;
        v1::ClaimedJob* c = resp.add_jobs();
        *c->mutable_job() = std::move(jobs[0]);
        c->set_lease_epoch(epoch);
      }
      return absl::OkStatus();
    });
  }));
  return resp;
}

absl::StatusOr<v1::RenewLeasesResponse> LedgerStore::RenewLeases(
    const v1::RenewLeasesRequest& req) {
  RETURN_IF_ERROR(ValidateOwner(req.owner()));
  ASSIGN_OR_RETURN(std::vector<const v1::HeldLease*> leases, SortedLeases(req.leases()));
  const std::string seconds = LeaseSecondsParam(req.lease_seconds());
  v1::RenewLeasesResponse resp;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    resp.Clear();
    return InTransaction(conn, [&]() -> absl::Status {
      for (const v1::HeldLease* l : leases) {
        std::string progress;
        if (l->has_progress()) l->progress().SerializeToString(&progress);
        ASSIGN_OR_RETURN(
            PgResult res,
            conn->Query("UPDATE etl_jobs SET lease_expires_at = now() + $4::double precision * "
                        "interval '1 second', lease_progress = COALESCE($5::bytea, "
                        "lease_progress) WHERE job_id = $1 AND owner = $2 AND "
                        "lease_epoch = $3::bigint AND state IN ('PENDING', 'RUNNING') "
                        "RETURNING cancel_requested::int",
                        {PgParam::Text(l->job_id()), PgParam::Text(req.owner()),
                         PgParam::Text(absl::StrCat(l->lease_epoch())), PgParam::Text(seconds),
                         progress.empty() ? PgParam::Null() : PgParam::Bytes(progress)}));
        if (res.rows() == 0) {
          // The owner's own final state (written under this epoch) is no lost lease.
          ASSIGN_OR_RETURN(PgResult ended,
                           conn->Query("SELECT 1 FROM etl_jobs WHERE job_id = $1 AND "
                                       "lease_epoch = $2::bigint AND state NOT IN "
                                       "('PENDING', 'RUNNING')",
                                       {PgParam::Text(l->job_id()),
                                        PgParam::Text(absl::StrCat(l->lease_epoch()))}));
          if (ended.rows() > 0) {
            resp.add_ended(l->job_id());
          } else {
            resp.add_lost(l->job_id());
          }
          continue;
        }
        resp.add_held(l->job_id());
        if (res.GetInt(0, 0) != 0) resp.add_cancel_requested(l->job_id());
      }
      return absl::OkStatus();
    });
  }));
  return resp;
}

absl::StatusOr<v1::ReleaseLeasesResponse> LedgerStore::ReleaseLeases(
    const v1::ReleaseLeasesRequest& req) {
  RETURN_IF_ERROR(ValidateOwner(req.owner()));
  ASSIGN_OR_RETURN(std::vector<const v1::HeldLease*> leases, SortedLeases(req.leases()));
  v1::ReleaseLeasesResponse resp;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    resp.Clear();
    return InTransaction(conn, [&]() -> absl::Status {
      int released = 0;
      for (const v1::HeldLease* l : leases) {
        // The epoch stays: the releasing collector stopped writing, and the next claim bumps it.
        ASSIGN_OR_RETURN(PgResult res,
                         conn->Query("UPDATE etl_jobs SET owner = '', lease_expires_at = NULL, "
                                     "updated_at = now() WHERE job_id = $1 AND owner = $2 AND "
                                     "lease_epoch = $3::bigint RETURNING job_id",
                                     {PgParam::Text(l->job_id()), PgParam::Text(req.owner()),
                                      PgParam::Text(absl::StrCat(l->lease_epoch()))}));
        released += res.rows();
      }
      resp.set_released(released);
      return absl::OkStatus();
    });
  }));
  return resp;
}

absl::StatusOr<v1::JobRecord> LedgerStore::RequestCancel(const std::string& job_id) {
  RETURN_IF_ERROR(ValidateJobId(job_id));
  v1::JobRecord out;
  RETURN_IF_ERROR(Run([&](PgConnection* conn) -> absl::Status {
    // Without a live owner the job ends CANCELLED now (and the epoch moves on, fencing a paused
    // former owner); with one, the flag reaches it with its next renewal.
    ASSIGN_OR_RETURN(
        PgResult res,
        conn->Query("UPDATE etl_jobs SET cancel_requested = true, updated_at = now(), "
                    "state = CASE WHEN owner = '' OR lease_expires_at IS NULL OR "
                    "lease_expires_at <= now() THEN 'CANCELLED' ELSE state END, "
                    "error = CASE WHEN owner = '' OR lease_expires_at IS NULL OR "
                    "lease_expires_at <= now() THEN 'cancelled by request' ELSE error END, "
                    "finished_at = CASE WHEN owner = '' OR lease_expires_at IS NULL OR "
                    "lease_expires_at <= now() THEN now() ELSE finished_at END, "
                    "lease_epoch = CASE WHEN owner = '' OR lease_expires_at IS NULL OR "
                    "lease_expires_at <= now() THEN lease_epoch + 1 ELSE lease_epoch END, "
                    "lease_expires_at = CASE WHEN owner = '' OR lease_expires_at IS NULL OR "
                    "lease_expires_at <= now() THEN NULL ELSE lease_expires_at END, "
                    "owner = CASE WHEN owner = '' OR lease_expires_at IS NULL OR "
                    "lease_expires_at <= now() THEN '' ELSE owner END "
                    "WHERE job_id = $1 AND state IN ('PENDING', 'RUNNING') RETURNING job_id",
                    {PgParam::Text(job_id)}));
    ASSIGN_OR_RETURN(auto jobs, LoadJobs(conn, "j.job_id = $1", {PgParam::Text(job_id)}, 1));
    if (jobs.empty()) return absl::NotFoundError(absl::StrCat("no job ", job_id));
    if (res.rows() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " already ended ", v1::JobState_Name(jobs[0].state())));
    }
    out = std::move(jobs[0]);
    return absl::OkStatus();
  }));
  return out;
}

absl::Status LedgerStore::CheckLease(const std::string& job_id, int64_t epoch) {
  RETURN_IF_ERROR(ValidateJobId(job_id));
  return Run([&](PgConnection* conn) {
    return InTransaction(conn, [&] { return CheckLeaseLocked(conn, job_id, epoch); });
  });
}

}  // namespace etl
