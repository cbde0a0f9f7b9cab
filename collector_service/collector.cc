#include "collector_service/collector.h"

#include <algorithm>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collector_service/job_reruns.h"
#include "collector_service/job_spec.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/metrics_server.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace etl {
namespace {

std::string NewJobId() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng = nullptr;
  absl::MutexLock l(&mu);
  if (rng == nullptr) {
    std::random_device rd;
    rng = new std::mt19937_64((uint64_t(rd()) << 32) ^ rd() ^
                              uint64_t(absl::ToUnixNanos(absl::Now())));
  }
  return absl::StrFormat("%016x%016x", (*rng)(), (*rng)());
}

// The error of a job whose registration the client was not told about (see StartJob).
constexpr char kRegistrationNotConfirmed[] =
    "registration not confirmed to the client; a StartJob with the same request_id starts it";

bool ValidRequestId(const std::string& id) {
  if (id.size() > 128) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != ':' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::PARTIAL || s == v1::FAILED || s == v1::CANCELLED;
}

v1::Job JobFromRecord(const v1::JobRecord& r) {
  v1::Job job;
  job.set_job_id(r.job_id());
  *job.mutable_spec() = r.spec();
  job.set_state(r.state());
  job.set_error(r.error());
  for (const auto& f : r.failed_pages()) *job.add_failed_pages() = f;
  job.set_table_name(RawTableName(r.spec().cliente_id(), r.spec().rota()).value_or(""));
  job.set_created_at_unix_ms(r.created_at_unix_ms());
  job.set_finished_at_unix_ms(r.finished_at_unix_ms());
  v1::JobProgress* p = job.mutable_progress();
  p->set_job_id(r.job_id());
  p->set_state(r.state());
  p->set_pages_done(r.pages_committed());
  p->set_pages_committed(r.pages_committed());
  p->set_pages_failed(r.failed_pages_size());
  p->set_pages_total(r.pages_total());
  p->set_records_total(r.records_total());
  p->set_records_fetched(r.records_committed() + r.records_rejected());
  p->set_records_committed(r.records_committed());
  p->set_records_rejected(r.records_rejected());
  p->set_eta_seconds(IsTerminal(r.state()) ? 0 : -1);
  int64_t end =
      r.finished_at_unix_ms() > 0 ? r.finished_at_unix_ms() : absl::ToUnixMillis(absl::Now());
  p->set_elapsed_seconds(double(std::max<int64_t>(0, end - r.created_at_unix_ms())) / 1000.0);
  p->set_message(r.error());
  return job;
}

void PrepareWriterContext(grpc::ClientContext* ctx, absl::Duration timeout) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

Collector::Collector(CollectorOptions options, std::shared_ptr<grpc::Channel> writer_channel,
                     std::unique_ptr<HttpFetcher> fetcher)
    : options_(std::move(options)),
      channel_(std::move(writer_channel)),
      writer_(v1::WriterService::NewStub(channel_)),
      fetcher_(fetcher ? std::move(fetcher) : std::make_unique<CurlHttpFetcher>(options_.fetcher)),
      intents_(std::make_unique<LedgerIntents>(writer_.get(), &counters_, options_.intents)),
      slots_(options_.max_concurrent_jobs),
      fetch_slots_(options_.max_fetches_in_flight,
                   options_.max_parses_in_flight > 0
                       ? options_.max_parses_in_flight
                       : int(std::max(1u, std::thread::hardware_concurrency()))) {}

Collector::~Collector() { Shutdown(); }

void Collector::Start() {
  poll_thread_ = std::thread([this] { PollLoop(); });
  if (options_.resume_unfinished) resume_thread_ = std::thread([this] { ResumeLoop(); });
}

JobEnv Collector::MakeEnv() {
  JobEnv env;
  env.writer = writer_.get();
  env.fetcher = fetcher_.get();
  env.credentials = options_.credentials.get();
  env.counters = &counters_;
  env.slots = &slots_;
  env.fetch_slots = &fetch_slots_;
  env.adaptive_fetch_concurrency = options_.adaptive_fetch_concurrency;
  env.max_message_bytes = options_.max_message_bytes;
  env.max_response_bytes = options_.max_response_bytes;
  env.writer_max_message_bytes = options_.writer_max_message_bytes;
  env.max_buffered_bytes = options_.max_buffered_bytes;
  env.max_stream_bytes = options_.max_stream_bytes;
  env.max_stream_duration = options_.max_stream_duration;
  env.max_restarts_without_progress = options_.max_restarts_without_progress;
  env.max_stall = options_.max_stall;
  env.cancel_grace = options_.cancel_grace;
  env.intents = intents_.get();
  env.final_state_wait = options_.final_state_wait;
  return env;
}

std::shared_ptr<Job> Collector::AddJob(const std::string& id, const v1::JobSpec& spec,
                                       const TraceContext& trace, int64_t created_ms,
                                       bool resumed) {
  if (auto existing = FindJob(id)) return existing;
  auto job = std::make_shared<Job>(id, spec, trace, MakeEnv(), created_ms, resumed);
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) return nullptr;
    if (jobs_.count(id)) return jobs_[id];
    jobs_[id] = job;
    // Keep the most recent finished jobs only.
    if (jobs_.size() > 2000) {
      for (auto it = jobs_.begin(); it != jobs_.end() && jobs_.size() > 1000;) {
        it = it->second->done() ? jobs_.erase(it) : std::next(it);
      }
    }
  }
  job->Start();
  return job;
}

absl::StatusOr<v1::Job> Collector::StartJob(const v1::JobSpec& in, const TraceContext& trace) {
  // Refused before anything reaches the ledger: the client's retry on another replica then
  // loads the data once.
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) {
      return absl::UnavailableError("the collector is shutting down; the job was not registered");
    }
  }
  absl::Status valid = ValidateJobSpec(in);
  if (!valid.ok()) return valid;
  if (!ValidRequestId(in.request_id())) {
    return absl::InvalidArgumentError("request_id: at most 128 bytes of [A-Za-z0-9._:-]");
  }
  v1::JobSpec spec = WithDefaults(in, options_.fetch_concurrency);
  absl::Status allowed =
      CheckJobCredential(spec, options_.credentials.get(), options_.allow_spec_secret_paths);
  if (!allowed.ok()) return allowed;
  // The secret must be readable now (FAILED_PRECONDITION), not at the first page.
  auto credential = ResolveJobCredential(spec, options_.credentials.get());
  if (!credential.ok()) return credential.status();
  if (counters_.jobs_pending.load() >= options_.max_pending_jobs) {
    return absl::ResourceExhaustedError(
        absl::StrCat(options_.max_pending_jobs, " jobs are already waiting to run; retry later"));
  }
  // The incremental start is fixed now and stored with the job, so a resume or a retry asks the
  // API for the same data.
  RETURN_IF_ERROR(ResolveIncrementalStart(writer_.get(), absl::Seconds(10), &spec));
  const std::string id = NewJobId();
  v1::RegisterJobRequest req;
  req.set_job_id(id);
  *req.mutable_spec() = spec;
  req.set_request_id(spec.request_id());
  v1::JobRecord record;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, options_.register_timeout);
  if (!trace.traceparent.empty()) ctx.AddMetadata("traceparent", trace.traceparent);
  if (!trace.request_id.empty()) ctx.AddMetadata("x-request-id", trace.request_id);
  grpc::Status s = writer_->RegisterJob(&ctx, req, &record);
  if (!s.ok()) {
    counters_.writer_rpc_errors.fetch_add(1);
    if (IsTransientLedgerError(s.error_code())) {
      // The ledger may have taken the job although the answer was lost, or may still take it
      // (the call is in flight). The client is told it was not started, so it must never run:
      // it is registered (idempotent) and ended FAILED, retried until durable; the late call
      // then finds it registered. A retry with the same request_id starts it after all.
      intents_->PersistState(id, v1::FAILED, kRegistrationNotConfirmed, &req);
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot register the job with the writer at ", options_.writer_address, ": ",
        s.error_message(),
        spec.request_id().empty() ? "" : "; retry with the same request_id (it runs once)"));
  }
  if (record.job_id() != id) return ExistingJob(record, trace);
  int64_t created = record.created_at_unix_ms() > 0 ? record.created_at_unix_ms()
                                                    : absl::ToUnixMillis(absl::Now());
  TraceContext job_trace = trace;
  if (job_trace.request_id.empty()) job_trace.request_id = id;
  std::shared_ptr<Job> job = AddJob(id, spec, job_trace, created, false);
  if (job == nullptr) {
    // Shutdown began after the ledger took the job: it stays PENDING there and a collector that
    // resumes unfinished jobs runs it. Answering UNAVAILABLE now would make the client start it
    // a second time.
    LogInfo("job ", id, " PENDING: registered while shutting down; left to the next collector");
    v1::JobRecord pending = record;
    pending.set_job_id(id);
    *pending.mutable_spec() = spec;
    pending.set_state(v1::PENDING);
    pending.set_created_at_unix_ms(created);
    return JobFromRecord(pending);
  }
  counters_.jobs_started.fetch_add(1);
  ScopedLogContext log_context(id, job_trace.request_id, job_trace.traceparent);
  LogInfo("job ", id, " PENDING: accepted, ", spec.url(), " -> ", job->Snapshot().table_name());
  return job->Snapshot();
}

absl::StatusOr<v1::Job> Collector::ExistingJob(const v1::JobRecord& record,
                                               const TraceContext& trace) {
  const std::string& id = record.job_id();
  LogInfo("StartJob: request_id ", record.spec().request_id(), " already started job ", id);
  if (auto live = FindJob(id)) return live->Snapshot();
  if (intents_->Pending(id)) {
    return absl::UnavailableError(
        absl::StrCat("job ", id, " of this request_id is settling in the ledger; retry"));
  }
  const bool abandoned =
      record.state() == v1::FAILED && record.error() == kRegistrationNotConfirmed;
  if (record.state() != v1::PENDING && !abandoned) return JobFromRecord(record);
  if (abandoned) {
    // The client asks again for the job it was told had not started: it starts now.
    v1::UpdateJobRequest update;
    update.set_job_id(id);
    update.set_state(v1::PENDING);
    v1::JobRecord updated;
    grpc::ClientContext ctx;
    PrepareWriterContext(&ctx, absl::Seconds(10));
    grpc::Status s = writer_->UpdateJob(&ctx, update, &updated);
    if (!s.ok()) return FromGrpcStatus(s);
  }
  // Registered by a call whose answer was lost (this collector's own, still in flight, is the
  // same Job: AddJob keeps one per id).
  TraceContext job_trace = trace;
  if (job_trace.request_id.empty()) job_trace.request_id = id;
  std::shared_ptr<Job> job = AddJob(id, WithDefaults(record.spec(), options_.fetch_concurrency),
                                    job_trace, record.created_at_unix_ms(), /*resumed=*/false);
  if (job == nullptr) return absl::UnavailableError("the collector is shutting down");
  return job->Snapshot();
}

std::shared_ptr<Job> Collector::FindJob(const std::string& job_id) {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second;
}

absl::StatusOr<v1::Job> Collector::GetJob(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is required");
  if (auto job = FindJob(job_id)) return job->Snapshot();
  ASSIGN_OR_RETURN(v1::JobRecord record, LedgerRecord(job_id));
  return JobFromRecord(record);
}

absl::StatusOr<v1::JobRecord> Collector::LedgerRecord(const std::string& job_id) {
  v1::ListJobRecordsRequest req;
  req.set_job_id(job_id);
  req.set_limit(1);
  v1::ListJobRecordsResponse resp;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, absl::Seconds(10));
  grpc::Status s = writer_->ListJobRecords(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  for (const auto& r : resp.jobs()) {
    if (r.job_id() == job_id) return r;
  }
  return absl::NotFoundError(absl::StrCat("no job ", job_id));
}

absl::StatusOr<v1::ListJobsResponse> Collector::ListJobs(const v1::ListJobsRequest& request) {
  // The ledger answers the query (filters, order, page token); jobs running here show their live
  // progress instead of the ledger's last figures.
  const v1::ListJobRecordsRequest req = ToListJobRecordsRequest(request);
  v1::ListJobRecordsResponse resp;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, absl::Seconds(10));
  grpc::Status s = writer_->ListJobRecords(&ctx, req, &resp);
  v1::ListJobsResponse out;
  if (s.ok()) {
    for (const auto& r : resp.jobs()) {
      v1::Job job = JobFromRecord(r);
      if (auto live = FindJob(r.job_id())) job = live->Snapshot();
      if (request.unfinished_only() && IsTerminal(job.state())) continue;
      *out.add_jobs() = std::move(job);
    }
    out.set_next_page_token(resp.next_page_token());
    return out;
  }
  if (!request.page_token().empty()) return FromGrpcStatus(s);
  LogWarning("ListJobs: writer unavailable (", s.error_message(),
             "); listing this collector's jobs only");
  std::vector<v1::Job> jobs;
  {
    std::vector<std::shared_ptr<Job>> local;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, job] : jobs_) local.push_back(job);
    }
    for (const auto& job : local) {
      v1::Job snap = job->Snapshot();
      if (MatchesListFilters(request, snap)) jobs.push_back(std::move(snap));
    }
  }
  std::sort(jobs.begin(), jobs.end(), [](const v1::Job& a, const v1::Job& b) {
    return a.created_at_unix_ms() != b.created_at_unix_ms()
               ? a.created_at_unix_ms() > b.created_at_unix_ms()
               : a.job_id() > b.job_id();
  });
  for (size_t i = 0; i < jobs.size() && int(i) < req.limit(); ++i) {
    *out.add_jobs() = std::move(jobs[i]);
  }
  return out;
}

absl::StatusOr<v1::Job> Collector::RetryJob(const std::string& job_id, const TraceContext& trace) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is required");
  if (auto live = FindJob(job_id); live != nullptr && !live->done()) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is running"));
  }
  if (intents_->Pending(job_id)) {
    return absl::UnavailableError(
        absl::StrCat("job ", job_id, ": its last state is not yet in the writer's ledger; retry"));
  }
  ASSIGN_OR_RETURN(const v1::JobRecord record, LedgerRecord(job_id));
  switch (record.state()) {
    case v1::PARTIAL:
    case v1::FAILED:
    case v1::CANCELLED:
      break;
    case v1::SUCCEEDED:
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " SUCCEEDED: nothing to retry (run it again instead)"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is ", v1::JobState_Name(record.state()),
                       ": it is running or will be resumed from its ledger by a collector"));
  }
  RETURN_IF_ERROR(ValidateJobSpec(record.spec()));
  // PENDING clears the stored error and end time; the job's run sets RUNNING and its final state.
  v1::UpdateJobRequest update;
  update.set_job_id(job_id);
  update.set_state(v1::PENDING);
  v1::JobRecord updated;
  grpc::ClientContext uctx;
  PrepareWriterContext(&uctx, absl::Seconds(10));
  grpc::Status s = writer_->UpdateJob(&uctx, update, &updated);
  if (!s.ok()) return FromGrpcStatus(s);
  {
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end() && it->second->done()) jobs_.erase(it);
  }
  TraceContext job_trace = trace;
  if (job_trace.request_id.empty()) job_trace.request_id = job_id;
  std::shared_ptr<Job> job = AddJob(job_id, WithDefaults(record.spec(), options_.fetch_concurrency),
                                    job_trace, record.created_at_unix_ms(), /*resumed=*/true);
  if (job == nullptr) return absl::UnavailableError("the collector is shutting down");
  LogInfo("job ", job_id, " retried from ", v1::JobState_Name(record.state()),
          ": fetching the pages not committed");
  return job->Snapshot();
}

absl::StatusOr<v1::Job> Collector::CancelJob(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is required");
  if (auto job = FindJob(job_id)) {
    if (job->done()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", job_id, " already ended ", v1::JobState_Name(job->Snapshot().state())));
    }
    LogInfo("job ", job_id, ": cancel requested");
    job->Cancel();
    // Returns once the job stopped, what it sent is committed and CANCELLED is in the ledger; or
    // soon after the job cancelled its Write stream (cancel_grace) when the writer hangs, then
    // UNAVAILABLE: the job is stopped here and its CANCELLED state is retried in the background,
    // but not yet durable (a collector restart before it lands would resume the job).
    const absl::Time deadline = absl::Now() + options_.cancel_grace + absl::Seconds(1);
    if (job->WaitDone(deadline - absl::Now()) &&
        intents_->WaitDurable(job_id, deadline - absl::Now())) {
      return job->Snapshot();
    }
    return absl::UnavailableError(absl::StrCat(
        "cancel requested; job ", job_id,
        " is stopped here but its CANCELLED state is not yet durable in the writer's ledger "
        "(retrying in the background); retry CancelJob"));
  }
  absl::StatusOr<v1::Job> job = GetJob(job_id);
  if (!job.ok()) return job.status();
  if (IsTerminal(job->state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " already ended ", v1::JobState_Name(job->state())));
  }
  v1::UpdateJobRequest req;
  req.set_job_id(job_id);
  req.set_state(v1::CANCELLED);
  req.set_error("cancelled by request");
  v1::JobRecord record;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, absl::Seconds(10));
  grpc::Status s = writer_->UpdateJob(&ctx, req, &record);
  if (!s.ok()) return FromGrpcStatus(s);
  return JobFromRecord(record);
}

bool Collector::WaitUnlessShutdown(absl::Duration d) {
  absl::MutexLock l(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&shutdown_), d);
}

void Collector::ResumeLoop() {
  SetThreadComponent("collector/resume");
  absl::Duration delay = absl::Milliseconds(200);
  while (true) {
    v1::ListJobRecordsRequest req;
    req.set_unfinished_only(true);
    req.set_limit(10000);
    v1::ListJobRecordsResponse resp;
    grpc::ClientContext ctx;
    PrepareWriterContext(&ctx, absl::Seconds(30));
    {
      absl::MutexLock l(&mu_);
      if (shutdown_) return;
      background_calls_.insert(&ctx);
    }
    grpc::Status s = writer_->ListJobRecords(&ctx, req, &resp);
    {
      absl::MutexLock l(&mu_);
      background_calls_.erase(&ctx);
    }
    if (s.ok()) {
      for (const auto& r : resp.jobs()) {
        // A job that ended here with its final state still queued is not unfinished.
        if (FindJob(r.job_id()) != nullptr || intents_->Pending(r.job_id())) continue;
        absl::Status valid = ValidateJobSpec(r.spec());
        if (!valid.ok()) {
          LogError("cannot resume job ", r.job_id(), ": ", valid.ToString());
          continue;
        }
        LogInfo("resuming unfinished job ", r.job_id(), " (", v1::JobState_Name(r.state()), ")");
        TraceContext trace;
        trace.request_id = r.job_id();
        if (AddJob(r.job_id(), WithDefaults(r.spec(), options_.fetch_concurrency), trace,
                   r.created_at_unix_ms(), true) != nullptr) {
          counters_.jobs_resumed.fetch_add(1);
        }
      }
      return;
    }
    if (ClassifyWriterStatus(s) != WriterErrorClass::kTransient) {
      LogError("cannot list unfinished jobs from the writer (", DescribeWriterStatus(s),
               "); not retried: unfinished jobs resume on the next start");
      return;
    }
    LogWarning("cannot list unfinished jobs from the writer (", s.error_message(),
               "); retrying in ", absl::FormatDuration(delay));
    if (!WaitUnlessShutdown(delay)) return;
    delay = std::min(delay * 2, absl::Seconds(5));
  }
}

void Collector::PollLoop() {
  SetThreadComponent("collector/status");
  while (WaitUnlessShutdown(options_.status_poll_interval)) {
    std::vector<std::shared_ptr<Job>> running;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, job] : jobs_) {
        if (!job->done()) running.push_back(job);
      }
    }
    if (running.empty()) continue;
    v1::WriterStatus status;
    grpc::ClientContext ctx;
    PrepareWriterContext(&ctx, absl::Seconds(5));
    {
      absl::MutexLock l(&mu_);
      if (shutdown_) return;
      background_calls_.insert(&ctx);
    }
    const bool ok = writer_->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok();
    {
      absl::MutexLock l(&mu_);
      background_calls_.erase(&ctx);
    }
    if (!ok) continue;
    for (const auto& c : status.jobs()) {
      for (const auto& job : running) {
        if (job->id() == c.job_id()) job->UpdateWriterCounters(c);
      }
    }
  }
}

void Collector::Shutdown(absl::Time drain_deadline) {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock l(&mu_);
    if (shutdown_ && jobs_.empty() && !poll_thread_.joinable() && !resume_thread_.joinable())
      return;
    shutdown_ = true;
    for (grpc::ClientContext* ctx : background_calls_) ctx->TryCancel();
    for (const auto& [id, job] : jobs_) jobs.push_back(job);
  }
  if (resume_thread_.joinable()) resume_thread_.join();
  for (const auto& job : jobs) job->Shutdown();
  // Drain: streams are half-closed and their pages committed, unless the writer hangs (stopped,
  // table locked, PostgreSQL down): past the deadline every open writer call is cancelled, so the
  // jobs end now, resumable from the ledger.
  for (const auto& job : jobs) {
    if (!job->WaitDone(std::max(absl::ZeroDuration(), drain_deadline - absl::Now()))) {
      LogWarning("job ", job->id(), " did not drain in time; cancelling its writer calls");
      job->AbortWriterCalls();
    }
  }
  for (const auto& job : jobs) job->Join();
  if (poll_thread_.joinable()) poll_thread_.join();
  intents_->Shutdown(options_.intents_flush_deadline);
  // Jobs stopped by shutdown are resumable; a lease held for them is released here (last step).
}

std::string Collector::RenderMetrics() const { return RenderCollectorMetrics(counters_, nullptr); }

}  // namespace etl
