#include "collector_service/job_reruns.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/job_modes.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace etl {

absl::Status ResolveIncrementalStart(v1::WriterService::StubInterface* writer,
                                     absl::Duration timeout, v1::JobSpec* spec) {
  const v1::Incremental& inc = spec->incremental();
  if (inc.cursor_path().empty()) return absl::OkStatus();
  std::string mark;
  if (!inc.full_refresh()) {
    // Pages of one job commit out of order when fetched in parallel, so the mark of a job that did
    // not finish may lie beyond a page it never loaded: that job must be completed first.
    v1::ListJobRecordsRequest jobs_req;
    jobs_req.set_cliente_id(spec->cliente_id());
    jobs_req.set_rota(spec->rota());
    jobs_req.set_limit(50);
    v1::ListJobRecordsResponse jobs;
    grpc::ClientContext jobs_ctx;
    jobs_ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::Status js = writer->ListJobRecords(&jobs_ctx, jobs_req, &jobs);
    if (!js.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot read the earlier runs from the writer: ", js.error_message()));
    }
    for (const v1::JobRecord& r : jobs.jobs()) {  // Newest first.
      if (r.spec().incremental().cursor_path() != inc.cursor_path()) continue;
      bool unfinished_with_data =
          (r.state() == v1::PARTIAL || r.state() == v1::FAILED || r.state() == v1::CANCELLED) &&
          r.pages_committed() > 0;
      if (unfinished_with_data) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the previous incremental run ", r.job_id(), " of ", spec->cliente_id(), "/",
            spec->rota(), " ended ", v1::JobState_Name(r.state()),
            " after committing part of its data, so its mark may lie past pages it never loaded: "
            "complete it first (etlctl retry ",
            r.job_id(), ") or reload with full_refresh"));
      }
      break;
    }
    v1::ListCursorsRequest req;
    req.set_cliente_id(spec->cliente_id());
    req.set_rota(spec->rota());
    v1::ListCursorsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::Status s = writer->ListCursors(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot read the incremental mark from the writer: ", s.error_message()));
    }
    for (const v1::Cursor& c : resp.cursors()) {
      if (c.cursor_path() == inc.cursor_path() && c.cursor_type() == inc.cursor_type())
        mark = c.value();
    }
  }
  std::string start;
  if (!mark.empty()) {
    ASSIGN_OR_RETURN(start, CursorStartValue(inc.cursor_type(), mark, inc.lookback_seconds()));
  } else {
    start = inc.initial_value();
  }
  LogInfo("incremental ", spec->cliente_id(), "/", spec->rota(), " ", inc.cursor_path(), ": ",
          inc.full_refresh() ? "full refresh"
          : mark.empty()     ? "no stored mark"
                             : "stored mark " + mark,
          start.empty() ? "; no lower bound" : "; starting from " + start);
  return ApplyIncrementalStart(spec, start);
}

v1::ListJobRecordsRequest ToListJobRecordsRequest(const v1::ListJobsRequest& request) {
  v1::ListJobRecordsRequest req;
  req.set_unfinished_only(request.unfinished_only());
  req.set_limit(request.limit() > 0 ? std::min(request.limit(), 10000) : 100);
  req.set_cliente_id(request.cliente_id());
  req.set_rota(request.rota());
  for (int s : request.states()) req.add_states(static_cast<v1::JobState>(s));
  req.set_page_token(request.page_token());
  return req;
}

bool MatchesListFilters(const v1::ListJobsRequest& request, const v1::Job& job) {
  if (!request.cliente_id().empty() && job.spec().cliente_id() != request.cliente_id())
    return false;
  if (!request.rota().empty() && job.spec().rota() != request.rota()) return false;
  if (request.states_size() > 0 && std::find(request.states().begin(), request.states().end(),
                                             job.state()) == request.states().end()) {
    return false;
  }
  if (request.unfinished_only() && job.state() != v1::PENDING && job.state() != v1::RUNNING)
    return false;
  return true;
}

}  // namespace etl
