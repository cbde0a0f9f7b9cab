#include "collector_service/writer_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace etl {
namespace {

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::PARTIAL || s == v1::FAILED || s == v1::CANCELLED;
}

}  // namespace

bool IsLeaseLost(const grpc::Status& status) {
  return IsLeaseLost(absl::StatusCode::kFailedPrecondition, status.error_message()) &&
         status.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
}

WriterErrorClass ClassifyWriterStatus(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
      return WriterErrorClass::kTransient;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // gRPC's own message limit ("Received/Sent message larger than max"): the same message
      // would be refused again. Anything else is the writer shedding load for a moment.
      return absl::StrContains(status.error_message(), "larger than max")
                 ? WriterErrorClass::kPermanent
                 : WriterErrorClass::kTransient;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return IsLeaseLost(status) ? WriterErrorClass::kLeaseLost : WriterErrorClass::kPermanent;
    default:  // INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, OUT_OF_RANGE, ...
      return WriterErrorClass::kPermanent;
  }
}

WriterErrorClass ClassifyWriterStatus(const absl::Status& status) {
  // absl and gRPC share the canonical code numbers.
  return ClassifyWriterStatus(
      grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message())));
}

std::string DescribeWriterStatus(const grpc::Status& status) {
  return absl::StrCat(GrpcCodeName(status.error_code()), ": ", status.error_message());
}

WriterClient::WriterClient(v1::WriterService::StubInterface* stub, std::string job_id,
                           TraceContext trace, CollectorCounters* counters,
                           WriterClientOptions options)
    : stub_(stub),
      job_id_(std::move(job_id)),
      trace_(std::move(trace)),
      counters_(counters),
      options_(options) {}

void WriterClient::Shutdown() {
  absl::MutexLock l(&mu_);
  shutting_down_ = true;
}

bool WriterClient::shutting_down() const {
  absl::MutexLock l(&mu_);
  return shutting_down_;
}

void WriterClient::CancelWriteStream() {
  absl::MutexLock l(&mu_);
  if (write_ctx_ == nullptr) return;
  write_ctx_->TryCancel();
  counters_->writer_calls_cancelled.fetch_add(1);
}

void WriterClient::AbortCalls() {
  absl::MutexLock l(&mu_);
  aborted_ = true;
  shutting_down_ = true;
  for (grpc::ClientContext* ctx : open_calls_) ctx->TryCancel();
  if (write_ctx_ != nullptr) write_ctx_->TryCancel();
  counters_->writer_calls_cancelled.fetch_add(int64_t(open_calls_.size()) +
                                              (write_ctx_ != nullptr ? 1 : 0));
}

bool WriterClient::Enter(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  if (aborted_) return false;
  open_calls_.insert(ctx);
  return true;
}

void WriterClient::Leave(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  open_calls_.erase(ctx);
}

void WriterClient::PrepareContext(grpc::ClientContext* ctx, bool with_deadline) const {
  if (!trace_.traceparent.empty()) ctx->AddMetadata("traceparent", trace_.traceparent);
  if (!trace_.request_id.empty()) ctx->AddMetadata("x-request-id", trace_.request_id);
  if (with_deadline) ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
}

absl::Status WriterClient::Call(const char* what, const Rpc& call, int max_attempts) {
  absl::Duration delay = absl::Milliseconds(200);
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    PrepareContext(&ctx, true);
    if (!Enter(&ctx)) {
      return absl::CancelledError(absl::StrCat("writer ", what, " not sent: collector stopping"));
    }
    grpc::Status s = call(&ctx);
    Leave(&ctx);
    if (s.ok()) return absl::OkStatus();
    counters_->writer_rpc_errors.fetch_add(1);
    if (ClassifyWriterStatus(s) != WriterErrorClass::kTransient ||
        (max_attempts > 0 && attempt >= max_attempts)) {
      return FromGrpcStatus(s);
    }
    LogWarning("writer ", what, " failed (", s.error_message(), "); retrying in ",
               absl::FormatDuration(delay));
    bool stop;
    {
      absl::MutexLock l(&mu_);
      if (max_attempts <= 0 && shutting_down_) return FromGrpcStatus(s);
      // Even a cancelled job must record its final state, so this wait ignores cancellation.
      mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), delay);
      stop = shutting_down_;
      if (aborted_) return FromGrpcStatus(s);
    }
    if (stop && max_attempts <= 0) return FromGrpcStatus(s);
    delay = std::min(delay * 2, options_.max_backoff);
  }
}

absl::Status WriterClient::UpdateState(v1::JobState state, const std::string& error) {
  v1::UpdateJobRequest req;
  req.set_job_id(job_id_);
  req.set_state(state);
  req.set_error(error);
  req.set_lease_epoch(options_.lease_epoch);
  v1::JobRecord resp;
  return Call(
      "UpdateJob", [&](grpc::ClientContext* ctx) { return stub_->UpdateJob(ctx, req, &resp); },
      IsTerminal(state) ? 20 : 5);
}

absl::Status WriterClient::UpdateTotals(int64_t pages_total, int64_t records_total) {
  v1::UpdateJobRequest req;
  req.set_job_id(job_id_);
  req.set_pages_total(pages_total);
  req.set_records_total(records_total);
  req.set_lease_epoch(options_.lease_epoch);
  v1::JobRecord resp;
  return Call(
      "UpdateJob", [&](grpc::ClientContext* ctx) { return stub_->UpdateJob(ctx, req, &resp); }, 3);
}

absl::Status WriterClient::GetLedger(v1::JobLedger* ledger) {
  v1::JobRef ref;
  ref.set_job_id(job_id_);
  return Call(
      "GetJobLedger",
      [&](grpc::ClientContext* ctx) { return stub_->GetJobLedger(ctx, ref, ledger); }, 3);
}

absl::Status WriterClient::RecordPageFailure(const v1::FailedPage& page) {
  v1::PageFailure req;
  req.set_job_id(job_id_);
  *req.mutable_page() = page;
  req.set_lease_epoch(options_.lease_epoch);
  v1::PageFailureAck ack;
  return Call(
      "RecordPageFailure",
      [&](grpc::ClientContext* ctx) { return stub_->RecordPageFailure(ctx, req, &ack); }, 5);
}

absl::StatusOr<v1::JobRecord> WriterClient::GetJobRecord() {
  v1::ListJobRecordsRequest req;
  req.set_job_id(job_id_);
  req.set_limit(1);
  v1::ListJobRecordsResponse resp;
  absl::Status s = Call(
      "ListJobRecords",
      [&](grpc::ClientContext* ctx) { return stub_->ListJobRecords(ctx, req, &resp); }, 3);
  if (!s.ok()) return s;
  if (resp.jobs_size() != 1 || resp.jobs(0).job_id() != job_id_) {
    return absl::NotFoundError(absl::StrCat("the writer has no record of job ", job_id_));
  }
  return resp.jobs(0);
}

absl::StatusOr<v1::JobCounters> WriterClient::GetCounters() {
  v1::WriterStatus status;
  grpc::ClientContext ctx;
  PrepareContext(&ctx, true);
  if (!Enter(&ctx)) return absl::CancelledError("writer GetStatus not sent: collector stopping");
  grpc::Status s = stub_->GetStatus(&ctx, v1::GetStatusRequest(), &status);
  Leave(&ctx);
  if (!s.ok()) return FromGrpcStatus(s);
  v1::JobCounters counters;
  for (const auto& c : status.jobs()) {
    if (c.job_id() == job_id_) counters = c;
  }
  return counters;
}

std::unique_ptr<grpc::ClientWriterInterface<v1::RecordBatch>> WriterClient::OpenWrite(
    grpc::ClientContext* ctx, v1::WriteSummary* summary) {
  PrepareContext(ctx, false);
  {
    absl::MutexLock l(&mu_);
    write_ctx_ = ctx;
    // Cancelled before the call starts: it ends at once instead of waiting on a hung writer.
    if (aborted_) ctx->TryCancel();
  }
  return stub_->Write(ctx, summary);
}

void WriterClient::ReleaseWrite(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  if (write_ctx_ == ctx) write_ctx_ = nullptr;
}

}  // namespace etl
