#include "collector_service/collector.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collector_service/job_reruns.h"
#include "collector_service/job_spec.h"
#include "common/grpc_status.h"
#include "common/lease.h"
#include "common/logging.h"
#include "common/metrics_server.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace etl {
namespace {

uint64_t Random64() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng = nullptr;
  absl::MutexLock l(&mu);
  if (rng == nullptr) {
    std::random_device rd;
    rng = new std::mt19937_64((uint64_t(rd()) << 32) ^ rd() ^
                              uint64_t(absl::ToUnixNanos(absl::Now())));
  }
  return (*rng)();
}

std::string NewJobId() { return absl::StrFormat("%016x%016x", Random64(), Random64()); }

// hostname-pid-random: unique per process, readable in the ledger's owner column.
std::string DefaultReplicaId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "collector");
  }
  return absl::StrFormat("%s-%d-%08x", host, static_cast<int>(getpid()),
                         static_cast<uint32_t>(Random64()));
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
  if (r.has_progress() && !IsTerminal(r.state())) {
    // Published by the collector running the job (at its last heartbeat); the committed figures
    // from the ledger may be newer.
    v1::JobProgress published = r.progress();
    published.set_job_id(r.job_id());
    published.set_state(r.state());
    published.set_pages_committed(std::max(published.pages_committed(), r.pages_committed()));
    published.set_records_committed(std::max(published.records_committed(), r.records_committed()));
    published.set_records_rejected(std::max(published.records_rejected(), r.records_rejected()));
    published.set_pages_failed(std::max<int64_t>(published.pages_failed(), r.failed_pages_size()));
    *p = std::move(published);
  }
  if (!IsTerminal(r.state()) && r.cancel_requested()) p->set_message("cancel requested");
  return job;
}

void PrepareWriterContext(grpc::ClientContext* ctx, absl::Duration timeout) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// The options with the replica id settled (so the fetcher can name it to the APIs).
CollectorOptions WithReplicaId(CollectorOptions options) {
  if (options.replica_id.empty()) options.replica_id = DefaultReplicaId();
  if (options.send_replica_header) options.fetcher.replica_id = options.replica_id;
  return options;
}

}  // namespace

Collector::Collector(CollectorOptions options, std::shared_ptr<grpc::Channel> writer_channel,
                     std::unique_ptr<HttpFetcher> fetcher)
    : options_(WithReplicaId(std::move(options))),
      channel_(std::move(writer_channel)),
      writer_(v1::WriterService::NewStub(channel_)),
      fetcher_(fetcher ? std::move(fetcher) : std::make_unique<CurlHttpFetcher>(options_.fetcher)),
      intents_(std::make_unique<LedgerIntents>(writer_.get(), &counters_, options_.intents)),
      slots_(options_.max_concurrent_jobs),
      fetch_slots_(options_.max_fetches_in_flight,
                   options_.max_parses_in_flight > 0
                       ? options_.max_parses_in_flight
                       : int(std::max(1u, std::thread::hardware_concurrency()))),
      replica_id_(options_.replica_id) {}

Collector::~Collector() { Shutdown(); }

void Collector::Start() {
  LogInfo("collector replica ", replica_id_, ": leases of ",
          absl::FormatDuration(options_.lease_duration), ", renewed every ",
          absl::FormatDuration(std::min(options_.lease_renew_interval, absl::Seconds(1))));
  poll_thread_ = std::thread([this] { PollLoop(); });
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
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
  env.on_finished = [this] {
    absl::MutexLock l(&mu_);
    claim_wanted_ = true;
  };
  return env;
}

std::shared_ptr<Job> Collector::AddJob(const std::string& id, const v1::JobSpec& spec,
                                       const TraceContext& trace, int64_t created_ms, bool resumed,
                                       int64_t lease_epoch) {
  JobEnv env = MakeEnv();
  env.lease_epoch = lease_epoch;
  std::shared_ptr<Job> replaced;
  std::shared_ptr<Job> job;
  // Jobs leaving the registry are destroyed after mu_ is released: ~Job joins the job's thread,
  // whose last step (on_finished) takes mu_.
  std::vector<std::shared_ptr<Job>> dropped;
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) return nullptr;
    auto it = jobs_.find(id);
    // An older run of a job claimed again (its lease was lost meanwhile): fenced, it stops.
    if (it != jobs_.end()) {
      if (!it->second->done()) replaced = it->second;
      dropped.push_back(it->second);
    }
    job = std::make_shared<Job>(id, spec, trace, env, created_ms, resumed);
    jobs_[id] = job;
    // Keep the most recent finished jobs only.
    if (jobs_.size() > 2000) {
      for (auto it2 = jobs_.begin(); it2 != jobs_.end() && jobs_.size() > 1000;) {
        if (it2->second->done()) {
          dropped.push_back(std::move(it2->second));
          it2 = jobs_.erase(it2);
        } else {
          ++it2;
        }
      }
    }
  }
  if (replaced != nullptr) replaced->LoseLease("the job was claimed again");
  job->Start();
  return job;
}

int Collector::FreeSlots() const {
  absl::MutexLock l(&mu_);
  int busy = 0;
  for (const auto& [id, job] : jobs_) {
    if (!job->done()) ++busy;
  }
  return std::max(0, options_.max_concurrent_jobs - busy);
}

int Collector::Claim(int max_jobs, const std::string& job_id, const TraceContext* trace) {
  v1::ClaimJobsRequest req;
  req.set_owner(replica_id_);
  req.set_max_jobs(max_jobs);
  req.set_lease_seconds(absl::ToDoubleSeconds(options_.lease_duration));
  req.set_job_id(job_id);
  if (job_id.empty() && !options_.resume_unfinished) {
    absl::MutexLock l(&mu_);
    if (registered_.empty()) return 0;
    for (const auto& [id, t] : registered_) req.add_job_ids(id);
  }
  const absl::Time sent = absl::Now();
  v1::ClaimJobsResponse resp;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, job_id.empty() ? LeaseCallTimeout() : absl::Seconds(5));
  grpc::Status s = writer_->ClaimJobs(&ctx, req, &resp);
  NoteLeaseCall("claim jobs", s);
  if (!s.ok()) return 0;
  int started = 0;
  for (const v1::ClaimedJob& c : resp.jobs()) {
    const v1::JobRecord& r = c.job();
    TraceContext job_trace;
    {
      absl::MutexLock l(&mu_);
      leases_[r.job_id()] = Lease{c.lease_epoch(), sent};
      auto it = registered_.find(r.job_id());
      if (it != registered_.end()) {
        job_trace = it->second;
        registered_.erase(it);
      }
    }
    if (trace != nullptr && r.job_id() == job_id) job_trace = *trace;
    if (job_trace.request_id.empty()) job_trace.request_id = r.job_id();
    ScopedLogContext log_context(r.job_id(), job_trace.request_id, job_trace.traceparent);
    absl::Status valid = ValidateJobSpec(r.spec());
    if (!valid.ok()) {
      // It can never run: recorded as FAILED (under the lease), never claimed again.
      LogError("claimed job ", r.job_id(), " cannot run: ", valid.ToString());
      v1::UpdateJobRequest fail;
      fail.set_job_id(r.job_id());
      fail.set_state(v1::FAILED);
      fail.set_error(absl::StrCat("invalid spec: ", valid.message()));
      fail.set_lease_epoch(c.lease_epoch());
      v1::JobRecord ignored;
      grpc::ClientContext fctx;
      PrepareWriterContext(&fctx, absl::Seconds(10));
      writer_->UpdateJob(&fctx, fail, &ignored);
      absl::MutexLock l(&mu_);
      leases_.erase(r.job_id());
      continue;
    }
    const bool resumed = r.state() == v1::RUNNING;
    LogInfo(resumed ? "resuming" : "claimed", " job ", r.job_id(), " (",
            v1::JobState_Name(r.state()), ", lease epoch ", c.lease_epoch(), ")");
    std::shared_ptr<Job> job =
        AddJob(r.job_id(), WithDefaults(r.spec(), options_.fetch_concurrency), job_trace,
               r.created_at_unix_ms(), resumed, c.lease_epoch());
    if (job == nullptr) continue;  // Shutting down: Shutdown releases the lease.
    ++started;
    if (resumed) counters_.jobs_resumed.fetch_add(1);
  }
  return started;
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
  counters_.jobs_started.fetch_add(1);
  ScopedLogContext log_context(id, job_trace.request_id, job_trace.traceparent);
  LogInfo("job ", id, " PENDING: accepted, ", spec.url(), " -> ",
          RawTableName(spec.cliente_id(), spec.rota()).value_or(""));
  bool shutting_down;
  {
    absl::MutexLock l(&mu_);
    shutting_down = shutdown_;
    if (!shutting_down && !options_.resume_unfinished) registered_[id] = job_trace;
  }
  // The job is PENDING and unowned in the ledger: any replica may claim it. This one does at once
  // when it has a free slot (one more round trip); otherwise the first replica with room does.
  // (Shutdown began after the ledger took the job: it stays PENDING there for another collector;
  // answering UNAVAILABLE now would make the client start it a second time.)
  if (!shutting_down && FreeSlots() > 0 && Claim(1, id, &job_trace) > 0) {
    if (auto job = FindJob(id)) return job->Snapshot();
  }
  v1::JobRecord pending = record;
  pending.set_job_id(id);
  *pending.mutable_spec() = spec;
  pending.set_state(v1::PENDING);
  pending.set_created_at_unix_ms(created);
  return JobFromRecord(pending);
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
  // Leased like any other job: claimed here when a slot is free, else by the first replica with
  // room.
  if (FreeSlots() > 0 && Claim(1, id, &job_trace) > 0) {
    if (auto job = FindJob(id)) return job->Snapshot();
  }
  ASSIGN_OR_RETURN(v1::JobRecord now, LedgerRecord(id));
  return JobFromRecord(now);
}

std::shared_ptr<Job> Collector::FindJob(const std::string& job_id) {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  // A job whose lease was lost is another replica's now: the ledger tells about it.
  if (it == jobs_.end() || it->second->lease_lost()) return nullptr;
  // So may be a job whose lease was not renewed within its duration (this process was paused, or
  // the writer unreachable): until the heartbeat settles it, the ledger answers.
  auto lease = leases_.find(job_id);
  if (lease != leases_.end() && absl::Now() - lease->second.renewed_at >= options_.lease_duration) {
    return nullptr;
  }
  return it->second;
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
  TraceContext job_trace = trace;
  if (job_trace.request_id.empty()) job_trace.request_id = job_id;
  std::shared_ptr<Job> dropped;  // Destroyed after mu_ is released (see AddJob).
  {
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end() && it->second->done()) {
      dropped = std::move(it->second);
      jobs_.erase(it);
    }
    if (!options_.resume_unfinished) registered_[job_id] = job_trace;
  }
  LogInfo("job ", job_id, " retried from ", v1::JobState_Name(record.state()),
          ": fetching the pages not committed");
  // PENDING and unowned again: claimed here when a slot is free, else by any replica.
  if (FreeSlots() > 0 && Claim(1, job_id, &job_trace) > 0) {
    if (auto job = FindJob(job_id)) return job->Snapshot();
  }
  return JobFromRecord(updated);
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
  // Not running here: a ledger request. Without a live owner the job ends CANCELLED at once;
  // otherwise its owner sees the request at its next renewal and cancels it (what it sent is
  // committed). Waits for that, bounded like the local case.
  v1::JobRef ref;
  ref.set_job_id(job_id);
  v1::JobRecord record;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, absl::Seconds(10));
  grpc::Status s = writer_->RequestCancel(&ctx, ref, &record);
  if (!s.ok()) return FromGrpcStatus(s);
  LogInfo("job ", job_id, ": cancel requested through the ledger",
          record.owner().empty() ? "" : absl::StrCat(" (running on ", record.owner(), ")"));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!IsTerminal(record.state()) && absl::Now() < deadline) {
    if (!WaitUnlessShutdown(absl::Milliseconds(200))) break;
    if (auto live = FindJob(job_id)) {  // Claimed here meanwhile (it will not run: cancelled).
      live->Cancel();
      live->WaitDone(deadline - absl::Now());
      return live->Snapshot();
    }
    absl::StatusOr<v1::JobRecord> latest = LedgerRecord(job_id);
    if (latest.ok()) record = *std::move(latest);
  }
  return JobFromRecord(record);
}

bool Collector::WaitUnlessShutdown(absl::Duration d) {
  absl::MutexLock l(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&shutdown_), d);
}

bool Collector::WaitForHeartbeat(absl::Duration d) {
  absl::MutexLock l(&mu_);
  auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutdown_ || claim_wanted_; };
  mu_.AwaitWithTimeout(absl::Condition(&wake), d);
  claim_wanted_ = false;
  return !shutdown_;
}

void Collector::HeartbeatLoop() {
  SetThreadComponent("collector/leases");
  // Progress is published with the renewals: at least once a second.
  const absl::Duration tick =
      std::max(absl::Milliseconds(50), std::min(options_.lease_renew_interval, absl::Seconds(1)));
  do {
    ExpireLeases();
    RenewLeases();
    ExpireLeases();
    int free = FreeSlots();
    if (free > 0) Claim(free, "", nullptr);
    // Wakes at a lease's local expiry too, so a job stops on time while the writer is away.
  } while (WaitForHeartbeat(
      std::max(absl::Milliseconds(10), std::min(tick, EarliestExpiry() - absl::Now()))));
}

absl::Time Collector::EarliestExpiry() const {
  absl::MutexLock l(&mu_);
  absl::Time earliest = absl::InfiniteFuture();
  for (const auto& [id, lease] : leases_) {
    earliest = std::min(earliest, lease.renewed_at + options_.lease_duration);
  }
  return earliest;
}

absl::Duration Collector::LeaseCallTimeout() const {
  // A call that takes longer is no help (the next heartbeat tries again), and none may outlast
  // the earliest lease: its job must stop then.
  absl::Duration d =
      std::clamp(options_.lease_duration / 4, absl::Milliseconds(250), absl::Seconds(5));
  return std::max(absl::Milliseconds(100), std::min(d, EarliestExpiry() - absl::Now()));
}

void Collector::ExpireLeases() {
  // The ledger's expiry is at least lease_duration after the last renewal sent: past that,
  // another replica may have claimed the job, so it stops here.
  std::vector<std::shared_ptr<Job>> expired;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = absl::Now();
    for (const auto& [id, lease] : leases_) {
      if (now - lease.renewed_at < options_.lease_duration) continue;
      auto job = jobs_.find(id);
      if (job != jobs_.end() && !job->second->done()) expired.push_back(job->second);
    }
  }
  for (const auto& job : expired) {
    job->LoseLease(absl::StrCat("not renewed for ", absl::FormatDuration(options_.lease_duration),
                                " (writer unreachable)"));
  }
}

void Collector::RenewLeases() {
  struct Held {
    std::string id;
    std::shared_ptr<Job> job;
    Lease lease;
  };
  std::vector<Held> held;
  // Jobs leaving the registry, destroyed after mu_ is released: ~Job joins the job's thread, whose
  // last step (on_finished) takes mu_.
  std::vector<std::shared_ptr<Job>> dropped;
  {
    absl::MutexLock l(&mu_);
    for (auto it = leases_.begin(); it != leases_.end();) {
      auto job = jobs_.find(it->first);
      // A job that ended here keeps its lease until its final state is in the ledger (which
      // releases it there): otherwise another replica could claim and rerun it meanwhile, and
      // the queued state, fenced by the old epoch, would be refused.
      const bool settling = job != jobs_.end() && job->second->done() &&
                            !job->second->lease_lost() && intents_->Pending(it->first);
      if (job == jobs_.end() || (job->second->done() && !settling)) {
        // Ended here (its final state released the lease in the ledger) or stopped after losing
        // it: nothing to renew. A job that lost its lease leaves the registry: it runs elsewhere.
        if (job != jobs_.end() && job->second->lease_lost()) {
          dropped.push_back(std::move(job->second));
          jobs_.erase(job);
        }
        it = leases_.erase(it);
        continue;
      }
      held.push_back(Held{it->first, job->second, it->second});
      ++it;
    }
  }
  if (held.empty()) return;
  v1::RenewLeasesRequest req;
  req.set_owner(replica_id_);
  req.set_lease_seconds(absl::ToDoubleSeconds(options_.lease_duration));
  for (const Held& h : held) {
    v1::HeldLease* l = req.add_leases();
    l->set_job_id(h.id);
    l->set_lease_epoch(h.lease.epoch);
    *l->mutable_progress() = h.job->Progress();
  }
  const absl::Time sent = absl::Now();
  v1::RenewLeasesResponse resp;
  grpc::ClientContext ctx;
  PrepareWriterContext(&ctx, LeaseCallTimeout());
  grpc::Status s = writer_->RenewLeases(&ctx, req, &resp);
  NoteLeaseCall("renew leases", s);
  if (!s.ok()) return;  // ExpireLeases stops the jobs whose lease ran out meanwhile.
  {
    absl::MutexLock l(&mu_);
    for (const std::string& id : resp.held()) {
      auto it = leases_.find(id);
      if (it != leases_.end()) it->second.renewed_at = sent;
    }
  }
  for (const Held& h : held) {
    if (std::find(resp.lost().begin(), resp.lost().end(), h.id) != resp.lost().end()) {
      // Ended by someone else, or claimed by another replica after it expired.
      if (!h.job->done()) h.job->LoseLease("the ledger no longer gives this collector the lease");
    } else if (std::find(resp.cancel_requested().begin(), resp.cancel_requested().end(), h.id) !=
               resp.cancel_requested().end()) {
      LogInfo("job ", h.id, ": cancel requested through the ledger");
      h.job->Cancel();
    }
  }
}

void Collector::NoteLeaseCall(const char* what, const grpc::Status& s) {
  bool was_failing;
  {
    absl::MutexLock l(&mu_);
    was_failing = lease_calls_failing_;
    lease_calls_failing_ = !s.ok();
  }
  // Logged when the writer stops or starts answering, not on every heartbeat.
  if (!s.ok()) {
    counters_.writer_rpc_errors.fetch_add(1);
    if (!was_failing) LogWarning("cannot ", what, " through the writer: ", s.error_message());
  } else if (was_failing) {
    LogInfo("the writer answers lease calls again");
  }
}

void Collector::ReleaseLeases(absl::Duration timeout) {
  v1::ReleaseLeasesRequest req;
  req.set_owner(replica_id_);
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, lease] : leases_) {
      auto job = jobs_.find(id);
      if (job != jobs_.end() && job->second->lease_lost()) continue;
      v1::HeldLease* h = req.add_leases();
      h->set_job_id(id);
      h->set_lease_epoch(lease.epoch);
    }
    leases_.clear();
  }
  if (req.leases_size() == 0) return;
  v1::ReleaseLeasesResponse resp;
  grpc::ClientContext ctx;
  // Bounded: if the writer does not answer, the leases simply expire.
  PrepareWriterContext(&ctx, timeout);
  grpc::Status s = writer_->ReleaseLeases(&ctx, req, &resp);
  if (!s.ok()) {
    LogWarning("could not release ", req.leases_size(), " lease(s) (", s.error_message(),
               "); other collectors claim the jobs once they expire");
    return;
  }
  LogInfo("released ", resp.released(), " lease(s): other collectors may claim the jobs now");
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
    if (shutdown_ && jobs_.empty() && !poll_thread_.joinable() && !heartbeat_thread_.joinable())
      return;
    shutdown_ = true;
    for (grpc::ClientContext* ctx : background_calls_) ctx->TryCancel();
    for (const auto& [id, job] : jobs_) jobs.push_back(job);
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
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
  // The jobs stopped unfinished: another replica may claim them at once.
  // Within the grace: what is left of it, at least 100 ms and at most 2 s (if the writer does not
  // answer, the leases simply expire).
  ReleaseLeases(std::clamp(drain_deadline + absl::Milliseconds(300) - absl::Now(),
                           absl::Milliseconds(100), absl::Seconds(2)));
  if (poll_thread_.joinable()) poll_thread_.join();
  intents_->Shutdown(options_.intents_flush_deadline);
  // Jobs stopped by shutdown are resumable; a lease held for them is released here (last step).
}

std::string Collector::RenderMetrics() const { return RenderCollectorMetrics(counters_, nullptr); }

}  // namespace etl
