#include "collector_service/collector_service.h"

#include <memory>
#include <string>
#include <utility>

#include "common/grpc_status.h"

namespace etl {

namespace {

TraceContext TraceFrom(const grpc::ServerContext* ctx) {
  TraceContext t;
  const auto& md = ctx->client_metadata();
  if (auto it = md.find("traceparent"); it != md.end())
    t.traceparent = std::string(it->second.data(), it->second.size());
  if (auto it = md.find("x-request-id"); it != md.end())
    t.request_id = std::string(it->second.data(), it->second.size());
  // Header values end up in outgoing requests: drop anything that could split a header.
  for (std::string* v : {&t.traceparent, &t.request_id}) {
    if (v->find_first_of("\r\n") != std::string::npos || v->size() > 256) v->clear();
  }
  return t;
}

// The unary RPCs all answer the same way: the result on success, else the status mapped to gRPC.
template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

bool IsTerminalState(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::PARTIAL || s == v1::FAILED || s == v1::CANCELLED;
}

}  // namespace

grpc::Status CollectorServiceImpl::StartJob(grpc::ServerContext* ctx, const v1::JobSpec* spec,
                                            v1::Job* job) {
  return Reply(collector_->StartJob(*spec, TraceFrom(ctx)), job);
}

grpc::Status CollectorServiceImpl::GetJob(grpc::ServerContext*, const v1::JobRef* ref,
                                          v1::Job* job) {
  return Reply(collector_->GetJob(ref->job_id()), job);
}

grpc::Status CollectorServiceImpl::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* req,
                                            v1::ListJobsResponse* resp) {
  return Reply(collector_->ListJobs(*req), resp);
}

grpc::Status CollectorServiceImpl::CancelJob(grpc::ServerContext*, const v1::JobRef* ref,
                                             v1::Job* job) {
  return Reply(collector_->CancelJob(ref->job_id()), job);
}

grpc::Status CollectorServiceImpl::RetryJob(grpc::ServerContext* ctx, const v1::JobRef* ref,
                                            v1::Job* job) {
  return Reply(collector_->RetryJob(ref->job_id(), TraceFrom(ctx)), job);
}

grpc::Status CollectorServiceImpl::WatchJob(grpc::ServerContext* ctx, const v1::JobRef* ref,
                                            grpc::ServerWriter<v1::JobProgress>* writer) {
  // Follows the job until it ends: live while it runs here, else from the ledger (the progress
  // its owner publishes every heartbeat), switching as the job moves between replicas.
  constexpr int kMaxLedgerFailures = 30;  // About 30 s without the writer: give up.
  bool written = false;
  int failures = 0;
  while (!ctx->IsCancelled()) {
    if (std::shared_ptr<Job> job = collector_->FindJob(ref->job_id())) {
      bool done = job->WaitDone(absl::ZeroDuration());
      if (job->lease_lost()) continue;  // Another replica runs it now: follow the ledger.
      if (!writer->Write(job->Progress())) return grpc::Status::OK;
      written = true;
      if (done) return grpc::Status::OK;
      job->WaitDone(absl::Seconds(1));
      continue;
    }
    absl::StatusOr<v1::Job> remote = collector_->GetJob(ref->job_id());
    if (!remote.ok()) {
      if (!written || absl::IsNotFound(remote.status()) || ++failures >= kMaxLedgerFailures) {
        return ToGrpcStatus(remote.status());
      }
    } else {
      failures = 0;
      if (!writer->Write(remote->progress())) return grpc::Status::OK;
      written = true;
      if (IsTerminalState(remote->state())) return grpc::Status::OK;
    }
    if (!collector_->WaitUnlessShutdown(absl::Seconds(1))) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the collector is shutting down");
    }
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
}

}  // namespace etl
