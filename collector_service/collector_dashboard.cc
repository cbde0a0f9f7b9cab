#include "collector_service/collector_dashboard.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collector_service/collector.h"
#include "common/grpc_status.h"

namespace etl {
namespace {

void WithDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

}  // namespace

CollectorDashboardBackend::CollectorDashboardBackend(Collector* collector,
                                                     std::shared_ptr<grpc::Channel> writer_channel)
    : collector_(collector), writer_(v1::WriterService::NewStub(std::move(writer_channel))) {}

absl::StatusOr<std::vector<v1::Job>> CollectorDashboardBackend::ListJobs(int limit) {
  v1::ListJobsRequest req;
  req.set_limit(limit);
  absl::StatusOr<v1::ListJobsResponse> resp = collector_->ListJobs(req);
  if (!resp.ok()) return resp.status();
  return std::vector<v1::Job>(resp->jobs().begin(), resp->jobs().end());
}

absl::StatusOr<v1::Job> CollectorDashboardBackend::GetJob(const std::string& job_id) {
  return collector_->GetJob(job_id);
}

absl::StatusOr<v1::Job> CollectorDashboardBackend::CancelJob(const std::string& job_id) {
  return collector_->CancelJob(job_id);
}

absl::StatusOr<v1::Job> CollectorDashboardBackend::RetryJob(const std::string& job_id) {
  // The same path as the RetryJob RPC: the job re-runs under its own id from the ledger, so pages
  // already committed are never fetched again.
  TraceContext trace;
  trace.request_id = absl::StrCat("dashboard-retry-", job_id);
  return collector_->RetryJob(job_id, trace);
}

absl::StatusOr<v1::WriterStatus> CollectorDashboardBackend::WriterStatus() {
  v1::WriterStatus status;
  grpc::ClientContext ctx;
  WithDeadline(&ctx, absl::Seconds(5));
  grpc::Status s = writer_->GetStatus(&ctx, v1::GetStatusRequest(), &status);
  if (!s.ok()) return FromGrpcStatus(s);
  return status;
}

absl::StatusOr<std::vector<int64_t>> CollectorDashboardBackend::CommittedPages(
    const std::string& job_id) {
  v1::JobRef ref;
  ref.set_job_id(job_id);
  v1::JobLedger ledger;
  grpc::ClientContext ctx;
  WithDeadline(&ctx, absl::Seconds(10));
  grpc::Status s = writer_->GetJobLedger(&ctx, ref, &ledger);
  if (!s.ok()) return FromGrpcStatus(s);
  std::vector<int64_t> pages;
  pages.reserve(ledger.pages_size());
  for (const auto& p : ledger.pages()) pages.push_back(p.page_number());
  return pages;
}

}  // namespace etl
