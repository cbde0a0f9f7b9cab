#include "collector_service/job.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "collector_service/job_spec.h"
#include "collector_service/pagination.h"
#include "common/grpc_status.h"
#include "common/lease.h"
#include "common/logging.h"
#include "common/names.h"

namespace etl {
namespace {

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

}  // namespace

Job::Job(std::string job_id, v1::JobSpec spec, TraceContext trace, JobEnv env,
         int64_t created_at_unix_ms, bool resumed)
    : id_(std::move(job_id)),
      spec_(std::move(spec)),
      trace_(std::move(trace)),
      env_(env),
      created_at_ms_(created_at_unix_ms),
      resumed_(resumed),
      writer_(env_.writer, id_, trace_, env_.counters,
              WriterClientOptions{env_.writer_rpc_timeout, env_.max_reconnect_backoff,
                                  env_.lease_epoch}),
      fetcher_(id_, &spec_, trace_, env_.fetcher, env_.counters,
               PageFetcherOptions{env_.max_message_bytes, env_.max_response_bytes,
                                  env_.writer_max_message_bytes},
               &stop_,
               PageFetcher::Hooks{[this](absl::Duration d) { return WaitUnlessStopping(d); },
                                  [this](const std::string& message) {
                                    progress_.AddRetry();
                                    SetMessage(message);
                                  }}) {
  table_name_ = RawTableName(spec_.cliente_id(), spec_.rota()).value_or("");
  env_.counters->jobs_pending.fetch_add(1);
}

Job::~Job() {
  Shutdown();
  Join();
}

void Job::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Job::Cancel() {
  cancelled_.store(true);
  stop_.store(true);
  env_.slots->Wake();
  absl::MutexLock l(&mu_);  // Wakes waits on mu_ that test stop_.
  message_ = "cancel requested";
}

void Job::Shutdown() {
  shutting_down_.store(true);
  stop_.store(true);
  env_.slots->Wake();
  writer_.Shutdown();
  absl::MutexLock l(&mu_);
}

void Job::LoseLease(const std::string& why) {
  if (lease_lost_.exchange(true)) return;
  LogWarning("job ", id_, ": lease lost (", why, "); stopping here without recording anything");
  stop_.store(true);
  env_.slots->Wake();
  writer_.Shutdown();
  absl::MutexLock l(&mu_);
  if (write_ctx_ != nullptr) write_ctx_->TryCancel();
  message_ = absl::StrCat("lease lost: ", why);
}

void Job::Join() {
  if (thread_.joinable()) thread_.join();
}

bool Job::done() const {
  absl::MutexLock l(&mu_);
  return done_;
}

bool Job::WaitDone(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
}

bool Job::WaitUnlessStopping(absl::Duration d) {
  absl::MutexLock l(&mu_);
  auto stop = [this] { return stop_.load(); };
  return !mu_.AwaitWithTimeout(absl::Condition(&stop), d);
}

void Job::SetMessage(const std::string& message) {
  absl::MutexLock l(&mu_);
  message_ = message;
}

void Job::SetFatal(const std::string& error) {
  LogError("job ", id_, " failed: ", error);
  absl::MutexLock l(&mu_);
  if (error_.empty()) error_ = error;
  message_ = error;
}

bool Job::HasFatal() const {
  absl::MutexLock l(&mu_);
  return !error_.empty();
}

void Job::PersistState(v1::JobState state, const std::string& error) {
  if (lease_lost()) return;
  absl::Status s = writer_.UpdateState(state, error);
  if (IsLeaseLost(s)) {
    LoseLease(std::string(s.message()));
    return;
  }
  if (!s.ok()) {
    LogError("could not record state ", v1::JobState_Name(state), " of job ", id_, ": ",
             s.ToString());
  }
}

void Job::Run() {
  // The collector claims another job as soon as a slot frees.
  absl::Cleanup notify = [this] {
    if (env_.on_finished) env_.on_finished();
  };
  SetThreadComponent("collector/job");
  ScopedLogContext log_context(id_, trace_.request_id, trace_.traceparent);
  if (!env_.slots->Acquire(&stop_)) {
    env_.counters->jobs_pending.fetch_sub(1);
    if (cancelled_.load() && !lease_lost()) Finalize();
    absl::MutexLock l(&mu_);
    done_ = done_ || cancelled_.load() || lease_lost();
    return;
  }
  env_.counters->jobs_pending.fetch_sub(1);
  env_.counters->jobs_running.fetch_add(1);
  {
    absl::MutexLock l(&mu_);
    state_ = v1::RUNNING;
    started_ms_ = NowMs();
    message_ = resumed_ ? "resumed from the writer's ledger" : "running";
  }
  LogInfo("job ", id_, " RUNNING (", resumed_ ? "resumed" : "started",
          "): ", StyleName(spec_.pagination().style()), " pagination of ", spec_.url(), " into ",
          table_name_);
  PersistState(v1::RUNNING, "");

  bool ok = true;
  auto credential = ResolveJobCredential(spec_, env_.credentials);
  if (!credential.ok()) {
    SetFatal(std::string(credential.status().message()));
    ok = false;
  } else {
    fetcher_.SetCredential(*std::move(credential));
  }
  absl::Duration backoff = absl::Milliseconds(100);
  while (ok && !stopping()) {
    RunOutcome outcome = RunOnce();
    if (outcome == RunOutcome::kDone) break;
    if (HasFatal()) break;
    env_.counters->writer_reconnects.fetch_add(1);
    LogWarning("job ", id_, ": write stream to the writer broke; resuming from its ledger in ",
               absl::FormatDuration(backoff));
    SetMessage("writer connection lost; reconnecting");
    if (!WaitUnlessStopping(backoff)) break;
    backoff = std::min(backoff * 2, env_.max_reconnect_backoff);
  }
  env_.counters->jobs_running.fetch_sub(1);
  env_.slots->Release();
  if (lease_lost()) {
    // Another collector may run the job now: its state there is not this process's to write.
    absl::MutexLock l(&mu_);
    done_ = true;
    return;
  }
  if (shutting_down_.load() && !cancelled_.load()) {
    LogInfo("job ", id_, " left unfinished for a later resume (collector shutting down)");
    absl::MutexLock l(&mu_);
    done_ = true;
    return;
  }
  Finalize();
}

Job::RunOutcome Job::RunOnce() {
  // Writer counters first, then the ledger: the live committed count is ledger + counter delta.
  progress_.ClearWriterBase();
  if (auto counters = writer_.GetCounters(); counters.ok()) {
    progress_.SetWriterBase(counters->records_committed(), counters->pages_committed(),
                            counters->records_rejected());
  }
  v1::JobLedger ledger;
  absl::Status s = writer_.GetLedger(&ledger);
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kNotFound) {
      SetFatal(absl::StrCat("the writer does not know this job: ", s.message()));
      return RunOutcome::kDone;
    }
    return RunOutcome::kStreamBroken;
  }
  const v1::JobRecord& record = ledger.job();
  if (record.pages_total() > 0) progress_.RaisePagesTotal(record.pages_total());
  if (record.records_total() > 0) progress_.RaiseRecordsTotal(record.records_total());
  int64_t committed_records = 0;
  for (const auto& p : ledger.pages()) committed_records += p.records();
  progress_.StartRun(ledger.pages_size(), std::max(committed_records, record.records_committed()),
                     record.records_rejected());
  std::vector<v1::CommittedPage> committed(ledger.pages().begin(), ledger.pages().end());
  ledger.Clear();

  auto ctx = std::make_unique<grpc::ClientContext>();
  SetWriteContext(ctx.get());
  v1::WriteSummary summary;
  std::unique_ptr<grpc::ClientWriterInterface<v1::RecordBatch>> stream =
      writer_.OpenWrite(ctx.get(), &summary);

  PageWindow window(spec_.fetch_concurrency() + env_.extra_window_pages, env_.max_buffered_bytes,
                    env_.counters, &progress_);
  PageProducer producer(
      id_, &spec_, &fetcher_, &progress_, PaginationOptions{env_.max_consecutive_failed_pages},
      &stop_,
      PageProducer::Hooks{[this](const std::string& error) { SetFatal(error); },
                          [this](const std::string& note) {
                            absl::MutexLock l(&mu_);
                            stop_note_ = note;
                          },
                          [this](const std::string& message) { SetMessage(message); },
                          [this](int64_t pages_total, int64_t records_total) {
                            writer_.UpdateTotals(pages_total, records_total).IgnoreError();
                          }});
  const LogContext log_context = CurrentLogContext();
  std::thread producer_thread([&] {
    SetThreadComponent("collector/fetch");
    ScopedLogContext log_scope(log_context);
    producer.Produce(&window, committed);
  });

  bool broken = false;
  std::optional<RunOutcome> ended;  // Set when a bounded stream's close ends the run.
  int64_t stream_bytes = 0;
  absl::Time stream_opened = absl::Now();
  FetchedPage page;
  while (window.TakeNext(&page)) {
    if (stopping()) break;
    if (!page.ok) {
      if (!page.cancelled) RecordFailure(page);
      continue;
    }
    int64_t page_bytes = 0;
    if (!SendPage(stream.get(), &page, &page_bytes)) {
      broken = true;
      break;
    }
    {
      absl::MutexLock l(&mu_);
      // A page that failed in an earlier run and now went through is no longer failed.
      failed_pages_.erase(std::remove_if(failed_pages_.begin(), failed_pages_.end(),
                                         [&](const v1::FailedPage& f) {
                                           return f.page_number() == page.page_number;
                                         }),
                          failed_pages_.end());
    }
    stream_bytes += page_bytes;
    if (stream_bytes >= env_.max_stream_bytes ||
        absl::Now() - stream_opened >= env_.max_stream_duration) {
      // Half-close, wait until the writer acknowledged every page of it, open the next one.
      ended = CloseStream(stream.get(), summary);
      if (ended.has_value()) break;
      env_.counters->writer_streams_rotated.fetch_add(1);
      stream.reset();  // Before its context goes.
      SetWriteContext(nullptr);
      ctx = std::make_unique<grpc::ClientContext>();
      SetWriteContext(ctx.get());
      summary.Clear();
      stream = writer_.OpenWrite(ctx.get(), &summary);
      stream_bytes = 0;
      stream_opened = absl::Now();
    }
  }
  window.Abort();
  producer_thread.join();
  progress_.SetBuffered(0);
  page = FetchedPage();

  if (ended.has_value()) {
    SetWriteContext(nullptr);
    return *ended;
  }
  if (broken) {
    grpc::Status st = stream->Finish();
    SetWriteContext(nullptr);
    LogWarning("job ", id_, ": write stream failed: ", st.error_message());
    if (IsLeaseLost(FromGrpcStatus(st))) LoseLease(st.error_message());
    return stopping() ? RunOutcome::kDone : RunOutcome::kStreamBroken;
  }
  RunOutcome outcome = CloseStream(stream.get(), summary).value_or(RunOutcome::kDone);
  SetWriteContext(nullptr);
  return outcome;
}

void Job::SetWriteContext(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  write_ctx_ = ctx;
  // Lost while the stream was being opened: cancel it at once.
  if (ctx != nullptr && lease_lost()) ctx->TryCancel();
}

std::optional<Job::RunOutcome> Job::CloseStream(
    grpc::ClientWriterInterface<v1::RecordBatch>* stream, const v1::WriteSummary& summary) {
  stream->WritesDone();
  grpc::Status st = stream->Finish();
  if (!st.ok()) {
    LogWarning("job ", id_, ": write stream ended with ", st.error_message());
    if (IsLeaseLost(FromGrpcStatus(st))) {
      LoseLease(st.error_message());
      return RunOutcome::kDone;
    }
    if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      SetFatal(absl::StrCat("the writer refused the job's data: ", st.error_message()));
      return RunOutcome::kDone;
    }
    return stopping() ? RunOutcome::kDone : RunOutcome::kStreamBroken;
  }
  LogInfo("job ", id_, ": stream committed: ", summary.records_committed(), " records in ",
          summary.pages_committed(), " pages (", summary.pages_skipped(),
          " pages already committed, ", summary.records_rejected(), " records dead-lettered)");
  return std::nullopt;
}

bool Job::SendPage(grpc::ClientWriterInterface<v1::RecordBatch>* stream, FetchedPage* page,
                   int64_t* sent_bytes) {
  for (v1::RecordBatch& batch : page->batches) {
    batch.set_next_page_token(page->next_token);
    batch.set_lease_epoch(env_.lease_epoch);
    int64_t bytes = 0;
    for (const std::string& r : batch.records()) bytes += int64_t(r.size());
    if (!stream->Write(batch)) return false;
    env_.counters->batches_sent.fetch_add(1);
    env_.counters->bytes_sent.fetch_add(bytes);
    *sent_bytes += bytes;
    batch = v1::RecordBatch();  // Written (serialised by gRPC): release its records now.
  }
  progress_.PageSent(page->records);
  env_.counters->pages_sent.fetch_add(1);
  return true;
}

void Job::RecordFailure(const FetchedPage& page) {
  v1::FailedPage fp;
  fp.set_page_number(page.page_number);
  fp.set_page_token(page.token);
  fp.set_error(Redact(page.error, fetcher_.redact()));
  fp.set_attempts(page.attempts);
  absl::Status s = writer_.RecordPageFailure(fp);
  if (IsLeaseLost(s)) LoseLease(std::string(s.message()));
  if (!s.ok()) {
    LogError("could not record the failure of page ", page.page_number, ": ", s.ToString());
  }
  absl::MutexLock l(&mu_);
  for (auto& existing : failed_pages_) {
    if (existing.page_number() == fp.page_number()) {
      existing = fp;
      return;
    }
  }
  failed_pages_.push_back(fp);
  message_ = absl::StrCat("page ", page.page_number, " failed: ", fp.error());
}

void Job::Finalize() {
  v1::JobState state;
  std::string error;
  {
    absl::MutexLock l(&mu_);
    if (cancelled_.load()) {
      state = v1::CANCELLED;
      error = "cancelled by request";
    } else if (!error_.empty()) {
      state = v1::FAILED;
      error = error_;
    } else if (!failed_pages_.empty()) {
      state = v1::PARTIAL;
      std::vector<std::string> numbers;
      for (const auto& f : failed_pages_) numbers.push_back(absl::StrCat(f.page_number()));
      error = absl::StrCat(failed_pages_.size(),
                           " page(s) failed after all retries: ", absl::StrJoin(numbers, ", "));
      if (!stop_note_.empty()) absl::StrAppend(&error, "; ", stop_note_);
    } else {
      state = v1::SUCCEEDED;
    }
  }
  PersistState(state, error);
  // Final figures from the ledger (they include earlier runs of a resumed job).
  absl::StatusOr<v1::JobRecord> r = writer_.GetJobRecord();
  if (r.ok() && (r->pages_committed() > 0 || r->records_committed() > 0)) {
    progress_.SetCommitted(r->pages_committed(), r->records_committed(), r->records_rejected());
  }
  using JobEnd = CollectorCounters::JobEnd;
  JobEnd end = JobEnd::kCancelled;
  switch (state) {
    case v1::SUCCEEDED:
      env_.counters->jobs_succeeded.fetch_add(1);
      end = JobEnd::kSucceeded;
      break;
    case v1::PARTIAL:
      env_.counters->jobs_partial.fetch_add(1);
      end = JobEnd::kPartial;
      break;
    case v1::FAILED:
      env_.counters->jobs_failed.fetch_add(1);
      end = JobEnd::kFailed;
      break;
    default:
      env_.counters->jobs_cancelled.fetch_add(1);
      break;
  }
  int64_t started_ms;
  {
    absl::MutexLock l(&mu_);
    started_ms = started_ms_ > 0 ? started_ms_ : created_at_ms_;
  }
  env_.counters->ObserveJobEnd(end, double(std::max<int64_t>(0, NowMs() - started_ms)) / 1000.0);
  LogInfo("job ", id_, " ended ", v1::JobState_Name(state), error.empty() ? "" : ": ", error, " (",
          progress_.records_committed(), " records committed)");
  absl::MutexLock l(&mu_);
  state_ = state;
  if (state != v1::FAILED && state != v1::CANCELLED) error_ = error;
  if (state == v1::CANCELLED) error_ = error;
  message_ = error.empty() ? "finished" : error;
  finished_ms_ = NowMs();
  done_ = true;
}

void Job::UpdateWriterCounters(const v1::JobCounters& c) {
  if (done()) return;
  progress_.UpdateWriterCounters(c);
}

v1::JobProgress Job::Progress() const {
  JobProgressTracker::JobStatus status;
  {
    absl::MutexLock l(&mu_);
    status.state = state_;
    status.done = done_;
    status.pages_failed = int64_t(failed_pages_.size());
    status.message = message_;
    status.created_ms = created_at_ms_;
    status.started_ms = started_ms_;
    status.finished_ms = finished_ms_;
  }
  return progress_.Report(id_, status);
}

v1::Job Job::Snapshot() const {
  v1::Job job;
  job.set_job_id(id_);
  *job.mutable_spec() = spec_;
  *job.mutable_progress() = Progress();
  job.set_table_name(table_name_);
  job.set_created_at_unix_ms(created_at_ms_);
  absl::MutexLock l(&mu_);
  job.set_state(state_);
  job.set_error(error_);
  for (const auto& f : failed_pages_) *job.add_failed_pages() = f;
  job.set_finished_at_unix_ms(finished_ms_);
  return job;
}

}  // namespace etl
