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
                                  env_.writer_max_message_bytes, env_.fetch_slots},
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
  if (env_.fetch_slots) env_.fetch_slots->Wake();
  absl::MutexLock l(&mu_);  // Wakes waits on mu_ that test stop_.
  message_ = "cancel requested";
  // Past this, the watchdog cancels the Write stream: a hung writer cannot hold the cancel.
  cancel_deadline_ = std::min(cancel_deadline_, absl::Now() + env_.cancel_grace);
}

void Job::Shutdown() {
  shutting_down_.store(true);
  stop_.store(true);
  env_.slots->Wake();
  if (env_.fetch_slots) env_.fetch_slots->Wake();
  writer_.Shutdown();
  absl::MutexLock l(&mu_);
}

void Job::AbortWriterCalls() { writer_.AbortCalls(); }

void Job::NoteProgress() {
  absl::MutexLock l(&mu_);
  last_progress_ = absl::Now();
}

void Job::Watchdog() {
  SetThreadComponent("collector/watchdog");
  const absl::Duration tick =
      std::max(absl::Milliseconds(50),
               std::min(absl::Seconds(1), std::min(env_.max_stall, env_.cancel_grace) / 8));
  absl::MutexLock l(&mu_);
  while (!run_over_) {
    mu_.AwaitWithTimeout(absl::Condition(&run_over_), tick);
    if (run_over_) break;
    const absl::Time now = absl::Now();
    bool cancel_stream = now >= cancel_deadline_;
    bool stalled = !stop_.load() && now - last_progress_ > env_.max_stall;
    if (!cancel_stream && !stalled) continue;
    mu_.Unlock();  // No lock across the calls below (TryCancel, logging).
    if (stalled) {
      SetFatal(absl::StrCat("no progress for ", absl::FormatDuration(env_.max_stall),
                            " (no page fetched or committed; bound set by "
                            "--max-stall-seconds); the writer or the API is stuck"));
      stop_.store(true);
      env_.counters->jobs_stalled.fetch_add(1);
    }
    // Repeated each tick: a stream opened after the first cancel is ended too.
    writer_.CancelWriteStream();
    mu_.Lock();
  }
}

void Job::LoseLease(const std::string& why) {
  if (lease_lost_.exchange(true)) return;
  LogWarning("job ", id_, ": lease lost (", why, "); stopping here without recording anything");
  stop_.store(true);
  env_.slots->Wake();
  AbortWriterCalls();  // The open Write stream and any ledger call end now.
  SetMessage(absl::StrCat("lease lost: ", why));
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
  // Another collector may run the job now: its state there is not this process's to write.
  if (lease_lost()) return;
  // Queued and retried in the background until the ledger has it (ledger_intents.h), fenced by
  // the job's lease epoch.
  env_.intents->PersistState(id_, state, error, /*register_first=*/nullptr, env_.lease_epoch);
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
    last_progress_ = absl::Now();
    run_over_ = false;
    message_ = resumed_ ? "resumed from the writer's ledger" : "running";
  }
  std::thread watchdog([this] {
    ScopedLogContext log_scope(id_, trace_.request_id, trace_.traceparent);
    Watchdog();
  });
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
    LogWarning("job ", id_, ": write stream to the writer broke (", restarts_without_progress_,
               " restart(s) without progress); resuming from its ledger in ",
               absl::FormatDuration(backoff));
    SetMessage("writer connection lost; reconnecting");
    if (!WaitUnlessStopping(backoff)) break;
    backoff = std::min(backoff * 2, env_.max_reconnect_backoff);
  }
  {
    absl::MutexLock l(&mu_);
    run_over_ = true;
  }
  watchdog.join();
  env_.counters->jobs_running.fetch_sub(1);
  env_.slots->Release();
  if (lease_lost_.load()) {
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
    if (stopping()) return RunOutcome::kDone;
    switch (ClassifyWriterStatus(s)) {
      case WriterErrorClass::kLeaseLost:
        LoseLease(std::string(s.message()));
        return RunOutcome::kDone;
      case WriterErrorClass::kPermanent:
        SetFatal(s.code() == absl::StatusCode::kNotFound
                     ? absl::StrCat("the writer does not know this job: ", s.message())
                     : absl::StrCat("the writer refused to read the job's ledger: ", s.ToString()));
        return RunOutcome::kDone;
      case WriterErrorClass::kTransient:
        // Not a stream restart: an unreachable writer is bounded by the stall watchdog.
        return RunOutcome::kStreamBroken;
    }
  }
  // The restart bound: a run whose ledger holds no page more than the last one's follows a run
  // whose stream broke without committing anything.
  if (ledger.pages_size() > ledger_pages_seen_) {
    if (ledger_pages_seen_ >= 0) NoteProgress();
    ledger_pages_seen_ = ledger.pages_size();
    restarts_without_progress_ = 0;
  } else if (restarts_without_progress_ > env_.max_restarts_without_progress) {
    SetFatal(absl::StrCat(restarts_without_progress_,
                          " Write-stream restarts in a row committed no new page (bound set by "
                          "--max-restarts-without-progress); last error: ",
                          last_stream_error_));
    return RunOutcome::kDone;
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
  v1::WriteSummary summary;
  std::unique_ptr<grpc::ClientWriterInterface<v1::RecordBatch>> stream =
      writer_.OpenWrite(ctx.get(), &summary);
  // Whatever way the run ends, the context is unknown to CancelWriteStream before it goes.
  struct ReleaseOnExit {
    WriterClient* writer;
    std::unique_ptr<grpc::ClientContext>* ctx;
    ~ReleaseOnExit() { writer->ReleaseWrite(ctx->get()); }
  } release_on_exit{&writer_, &ctx};

  PageWindow window(spec_.fetch_concurrency() + env_.extra_window_pages, env_.max_buffered_bytes,
                    env_.counters, &progress_);
  PageProducer producer(
      id_, &spec_, &fetcher_, &progress_,
      PaginationOptions{env_.max_consecutive_failed_pages, env_.adaptive_fetch_concurrency}, &stop_,
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
    NoteProgress();  // A page fetched (or given up after its attempts).
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
      writer_.ReleaseWrite(ctx.get());
      ctx = std::make_unique<grpc::ClientContext>();
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
    return *ended;
  }
  if (broken) {
    grpc::Status st = stream->Finish();
    LogWarning("job ", id_, ": write stream failed: ", DescribeWriterStatus(st));
    return OnStreamError(st);
  }
  RunOutcome outcome = CloseStream(stream.get(), summary).value_or(RunOutcome::kDone);
  return outcome;
}

Job::RunOutcome Job::OnStreamError(const grpc::Status& status) {
  if (stopping()) return RunOutcome::kDone;  // Cancel, shutdown or stall: nothing to retry.
  switch (ClassifyWriterStatus(status)) {
    case WriterErrorClass::kLeaseLost:
      LoseLease(status.error_message());
      return RunOutcome::kDone;
    case WriterErrorClass::kPermanent:
      SetFatal(absl::StrCat("the writer refused the job's data (permanent, not retried): ",
                            DescribeWriterStatus(status)));
      return RunOutcome::kDone;
    case WriterErrorClass::kTransient:
      break;
  }
  ++restarts_without_progress_;
  last_stream_error_ = DescribeWriterStatus(status);
  return RunOutcome::kStreamBroken;
}

std::optional<Job::RunOutcome> Job::CloseStream(
    grpc::ClientWriterInterface<v1::RecordBatch>* stream, const v1::WriteSummary& summary) {
  stream->WritesDone();
  grpc::Status st = stream->Finish();
  if (!st.ok()) {
    LogWarning("job ", id_, ": write stream ended with ", DescribeWriterStatus(st));
    return OnStreamError(st);
  }
  if (summary.pages_committed() > 0) NoteProgress();
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
  // Queued before the job's final state, so the ledger lists it before PARTIAL names it.
  if (lease_lost()) return;
  absl::Status s = env_.intents->RecordFailure(id_, fp, env_.lease_epoch);
  if (!s.ok()) {
    LogError("could not queue the failure of page ", page.page_number, ": ", s.ToString());
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
  {
    // The final state shows once the ledger has it (or after final_state_wait, with
    // ledger_write_pending): until then another replica answering from the ledger would still say
    // RUNNING, so a client that saw the end here and asks elsewhere must not be told otherwise.
    absl::MutexLock l(&mu_);
    message_ = absl::StrCat("finishing: recording ", v1::JobState_Name(state), " in the ledger");
  }
  PersistState(state, error);
  if (env_.intents->WaitDurable(id_, env_.final_state_wait)) {
    // Final figures from the ledger (they include earlier runs of a resumed job).
    absl::StatusOr<v1::JobRecord> r = writer_.GetJobRecord();
    if (r.ok() && (r->pages_committed() > 0 || r->records_committed() > 0)) {
      progress_.SetCommitted(r->pages_committed(), r->records_committed(), r->records_rejected());
    }
  } else {
    LogWarning("job ", id_, " ended ", v1::JobState_Name(state),
               "; the writer's ledger has not recorded it yet (retrying in the background)");
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
  {
    absl::MutexLock l(&mu_);
    // The writer committed pages of this job since the last poll: progress.
    if (writer_pages_seen_ >= 0 && c.pages_committed() > writer_pages_seen_) {
      last_progress_ = absl::Now();
    }
    writer_pages_seen_ = c.pages_committed();
  }
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
  if (env_.intents->Pending(id_)) {
    job.set_ledger_write_pending(true);
    job.mutable_progress()->set_message(
        absl::StrCat(job.progress().message(),
                     " (not yet recorded in the writer's ledger; retrying in the background)"));
  }
  return job;
}

}  // namespace etl
