#include "collector_service/job.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "collector_service/job_spec.h"
#include "common/grpc_status.h"
#include "common/json_page.h"
#include "common/logging.h"
#include "common/names.h"

namespace etl {

double BackoffSeconds(const v1::RetryPolicy& policy, int retry, double retry_after_seconds) {
  double cap = policy.max_backoff_seconds() > 0 ? policy.max_backoff_seconds() : 60;
  double delay = retry_after_seconds >= 0
                     ? retry_after_seconds
                     : policy.backoff_scale() * (std::pow(2.0, std::min(retry, 62)) + 0.5);
  return std::min(delay, cap);
}

bool JobSlots::Acquire(const std::atomic<bool>* abort) {
  absl::MutexLock l(&mu_);
  auto ready = [this, abort]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ < max_ || abort->load(); };
  mu_.Await(absl::Condition(&ready));
  if (abort->load()) return false;
  ++running_;
  return true;
}

void JobSlots::Release() {
  absl::MutexLock l(&mu_);
  --running_;
}

void JobSlots::Wake() { absl::MutexLock l(&mu_); }

namespace {

// Pages at least this large free the JSON parser's buffers once parsed (see FetchPage).
constexpr size_t kReleaseParserBuffersAbove = size_t(1) << 20;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::PARTIAL || s == v1::FAILED || s == v1::CANCELLED;
}

bool IsChainStyle(const v1::JobSpec& spec) {
  switch (spec.pagination().style()) {
    case v1::PAGE: return false;
    case v1::OFFSET: return spec.pagination().page_size() <= 0;
    default: return true;
  }
}

}  // namespace

// One page as fetched: its records, already cut into the messages that carry them, or why it failed.
struct Job::FetchedPage {
  int64_t page_number = 0;
  std::string token;       // What was requested.
  std::string next_token;  // What comes next ("" = last page).
  bool ok = false;
  bool auth_failed = false;
  bool cancelled = false;
  std::string error;
  int attempts = 0;
  // The RecordBatch messages of the page (chunked at max_message_bytes; next_page_token is set when
  // sent). The response body is freed as soon as these are built, so a buffered page costs its
  // records once, not body + copies.
  std::vector<v1::RecordBatch> batches;
  int64_t records = 0;
  size_t bytes = 0;   // Memory held by the batches (approximate), for the window's byte bound.
  ParsedPage parsed;  // Pagination values only: records and natural_keys are dropped after batching.
  // Pagination values from the response.
  std::string link_next;  // LINK: target of rel="next".
  std::string request_url;
};

// Pages in flight between the producers and the sender, ordered by slot (the order in which pages
// must be sent). A producer may start fetching slot s only when s < next slot to send + capacity
// and the bytes held (pages ready, the page being sent, pages being fetched counted at the largest
// page size seen) stay under max_bytes. The next slot to send is always admitted, so the sender
// never waits on the byte bound and a page larger than max_bytes still goes through. That, plus one
// write in flight, bounds the memory of a job.
class Job::PageWindow {
 public:
  PageWindow(int64_t capacity, size_t max_bytes, Job* job) : capacity_(capacity), max_bytes_(max_bytes), job_(job) {}

  bool WaitForRoom(int64_t slot) {
    absl::MutexLock l(&mu_);
    auto room = [this, slot]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (aborted_ || slot <= next_take_) return true;
      if (slot >= next_take_ + capacity_) return false;
      size_t fetching = 0;
      for (int64_t s : fetching_) {
        if (s != slot && s >= next_take_) fetching += largest_page_;
      }
      return ready_bytes_ + sending_bytes_ + fetching + largest_page_ <= max_bytes_;
    };
    mu_.Await(absl::Condition(&room));
    if (!aborted_) fetching_.insert(slot);
    return !aborted_;
  }

  void Put(int64_t slot, FetchedPage page) {
    absl::MutexLock l(&mu_);
    fetching_.erase(slot);
    if (aborted_) return;
    largest_page_ = std::max(largest_page_, page.bytes);
    ready_bytes_ += page.bytes;
    ready_.emplace(slot, std::move(page));
    int64_t n = int64_t(ready_.size()) + 1;  // + the page being sent.
    job_->env_.counters->pages_buffered.fetch_add(1);
    job_->buffered_.store(n);
    int64_t prev = job_->max_buffered_.load();
    while (n > prev && !job_->max_buffered_.compare_exchange_weak(prev, n)) {
    }
  }

  void FinishProducing(int64_t total_slots) {
    absl::MutexLock l(&mu_);
    end_ = total_slots;
  }

  // The next page in slot order; false when all are taken or the window was aborted.
  bool TakeNext(FetchedPage* out) {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return aborted_ || ready_.count(next_take_) > 0 || (end_ >= 0 && next_take_ >= end_);
    };
    mu_.Await(absl::Condition(&ready));
    if (aborted_) return false;
    auto it = ready_.find(next_take_);
    if (it == ready_.end()) return false;
    *out = std::move(it->second);
    ready_.erase(it);
    ready_bytes_ -= out->bytes;
    sending_bytes_ = out->bytes;  // The previous page (if any) was sent and released.
    job_->env_.counters->pages_buffered.fetch_sub(1);
    ++next_take_;
    return true;
  }

  void Abort() {
    absl::MutexLock l(&mu_);
    aborted_ = true;
    job_->env_.counters->pages_buffered.fetch_sub(int64_t(ready_.size()));
    ready_.clear();
    ready_bytes_ = 0;
  }

 private:
  absl::Mutex mu_;
  const int64_t capacity_;
  const size_t max_bytes_;
  Job* const job_;
  std::map<int64_t, FetchedPage> ready_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> fetching_ ABSL_GUARDED_BY(mu_);  // Slots admitted and not yet Put.
  size_t ready_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t sending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t largest_page_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_take_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t end_ ABSL_GUARDED_BY(mu_) = -1;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

Job::Job(std::string job_id, v1::JobSpec spec, TraceContext trace, JobEnv env, int64_t created_at_unix_ms,
         bool resumed)
    : id_(std::move(job_id)),
      spec_(std::move(spec)),
      trace_(std::move(trace)),
      env_(env),
      created_at_ms_(created_at_unix_ms),
      resumed_(resumed) {
  table_name_ = RawTableName(spec_.cliente_id(), spec_.rota()).value_or("");
  env_.counters->jobs_pending.fetch_add(1);
}

Job::~Job() {
  Shutdown();
  Join();
}

void Job::Start() { thread_ = std::thread([this] { Run(); }); }

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
  absl::MutexLock l(&mu_);
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

void Job::PrepareContext(grpc::ClientContext* ctx, bool with_deadline) const {
  if (!trace_.traceparent.empty()) ctx->AddMetadata("traceparent", trace_.traceparent);
  if (!trace_.request_id.empty()) ctx->AddMetadata("x-request-id", trace_.request_id);
  if (with_deadline) ctx->set_deadline(absl::ToChronoTime(absl::Now() + env_.writer_rpc_timeout));
}

absl::Status Job::WriterCall(const char* what, const std::function<grpc::Status(grpc::ClientContext*)>& call,
                             int max_attempts) {
  absl::Duration delay = absl::Milliseconds(200);
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    PrepareContext(&ctx, true);
    grpc::Status s = call(&ctx);
    if (s.ok()) return absl::OkStatus();
    env_.counters->writer_rpc_errors.fetch_add(1);
    bool retriable = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                     s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                     s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                     s.error_code() == grpc::StatusCode::ABORTED;
    if (!retriable || (max_attempts > 0 && attempt >= max_attempts)) return FromGrpcStatus(s);
    LogWarning("writer ", what, " failed (", s.error_message(), "); retrying in ", absl::FormatDuration(delay));
    if (max_attempts <= 0 && shutting_down_.load()) return FromGrpcStatus(s);
    // Even a cancelled job must record its final state, so this wait ignores cancellation.
    {
      absl::MutexLock l(&mu_);
      auto shutdown = [this] { return shutting_down_.load(); };
      mu_.AwaitWithTimeout(absl::Condition(&shutdown), delay);
    }
    if (shutting_down_.load() && max_attempts <= 0) return FromGrpcStatus(s);
    delay = std::min(delay * 2, env_.max_reconnect_backoff);
  }
}

void Job::PersistState(v1::JobState state, const std::string& error) {
  v1::UpdateJobRequest req;
  req.set_job_id(id_);
  req.set_state(state);
  req.set_error(error);
  v1::JobRecord resp;
  absl::Status s = WriterCall(
      "UpdateJob", [&](grpc::ClientContext* ctx) { return env_.writer->UpdateJob(ctx, req, &resp); },
      IsTerminal(state) ? 20 : 5);
  if (!s.ok()) LogError("could not record state ", v1::JobState_Name(state), " of job ", id_, ": ", s.ToString());
}

void Job::Run() {
  SetThreadComponent(absl::StrCat("collector/job-", id_.substr(0, 8)));
  if (!env_.slots->Acquire(&stop_)) {
    env_.counters->jobs_pending.fetch_sub(1);
    if (cancelled_.load()) Finalize();
    absl::MutexLock l(&mu_);
    done_ = done_ || cancelled_.load();
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
  LogInfo("job ", id_, resumed_ ? " resumed" : " started", ": ", StyleName(spec_.pagination().style()),
          " pagination of ", spec_.url(), " into ", table_name_);
  PersistState(v1::RUNNING, "");

  bool ok = true;
  if (spec_.auth().type() != v1::AUTH_NONE) {
    auto secret = ReadSecret(spec_.auth());
    if (!secret.ok()) {
      SetFatal(std::string(secret.status().message()));
      ok = false;
    } else {
      secret_ = *secret;
      redact_ = {secret_};
      if (spec_.auth().type() == v1::BASIC) redact_.push_back(absl::StrCat(spec_.auth().username(), ":", secret_));
    }
  }
  absl::Duration backoff = absl::Milliseconds(100);
  while (ok && !stopping()) {
    RunOutcome outcome = RunOnce();
    if (outcome == RunOutcome::kDone) break;
    {
      absl::MutexLock l(&mu_);
      if (!error_.empty()) break;
    }
    env_.counters->writer_reconnects.fetch_add(1);
    LogWarning("job ", id_, ": write stream to the writer broke; resuming from its ledger in ",
               absl::FormatDuration(backoff));
    SetMessage("writer connection lost; reconnecting");
    if (!WaitUnlessStopping(backoff)) break;
    backoff = std::min(backoff * 2, env_.max_reconnect_backoff);
  }
  env_.counters->jobs_running.fetch_sub(1);
  env_.slots->Release();
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
  {
    v1::WriterStatus status;
    grpc::ClientContext ctx;
    PrepareContext(&ctx, true);
    writer_base_records_.store(-1);
    if (env_.writer->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok()) {
      int64_t r = 0, p = 0, j = 0;
      for (const auto& c : status.jobs()) {
        if (c.job_id() == id_) {
          r = c.records_committed();
          p = c.pages_committed();
          j = c.records_rejected();
        }
      }
      writer_base_pages_.store(p);
      writer_base_rejected_.store(j);
      writer_base_records_.store(r);
    }
  }
  v1::JobRef ref;
  ref.set_job_id(id_);
  v1::JobLedger ledger;
  absl::Status s = WriterCall(
      "GetJobLedger", [&](grpc::ClientContext* ctx) { return env_.writer->GetJobLedger(ctx, ref, &ledger); }, 3);
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kNotFound) {
      SetFatal(absl::StrCat("the writer does not know this job: ", s.message()));
      return RunOutcome::kDone;
    }
    return RunOutcome::kStreamBroken;
  }
  const v1::JobRecord& record = ledger.job();
  if (record.pages_total() > 0) pages_total_.store(std::max(pages_total_.load(), record.pages_total()));
  if (record.records_total() > 0) records_total_.store(std::max(records_total_.load(), record.records_total()));
  int64_t committed_records = 0;
  for (const auto& p : ledger.pages()) committed_records += p.records();
  base_pages_.store(ledger.pages_size());
  base_records_.store(std::max(committed_records, record.records_committed()));
  base_rejected_.store(record.records_rejected());
  live_pages_committed_.store(base_pages_.load());
  live_records_committed_.store(base_records_.load());
  live_rejected_.store(base_rejected_.load());
  pages_sent_run_.store(0);
  records_sent_run_.store(0);
  std::vector<v1::CommittedPage> committed(ledger.pages().begin(), ledger.pages().end());
  ledger.Clear();

  auto ctx = std::make_unique<grpc::ClientContext>();
  PrepareContext(ctx.get(), false);
  v1::WriteSummary summary;
  std::unique_ptr<grpc::ClientWriterInterface<v1::RecordBatch>> stream = env_.writer->Write(ctx.get(), &summary);

  PageWindow window(spec_.fetch_concurrency() + env_.extra_window_pages, env_.max_buffered_bytes, this);
  std::thread producer([&] {
    SetThreadComponent(absl::StrCat("collector/job-", id_.substr(0, 8), "/fetch"));
    if (IsChainStyle(spec_)) {
      ProduceChain(&window, committed);
    } else {
      ProduceIndexed(&window, committed);
    }
  });

  bool broken = false;
  FetchedPage page;
  while (window.TakeNext(&page)) {
    if (stopping()) break;
    if (!page.ok) {
      if (!page.cancelled) RecordFailure(page);
      continue;
    }
    if (!SendPage(stream.get(), &page)) {
      broken = true;
      break;
    }
    absl::MutexLock l(&mu_);
    // A page that failed in an earlier run and now went through is no longer failed.
    failed_pages_.erase(std::remove_if(failed_pages_.begin(), failed_pages_.end(),
                                       [&](const v1::FailedPage& f) { return f.page_number() == page.page_number; }),
                        failed_pages_.end());
  }
  window.Abort();
  producer.join();
  buffered_.store(0);
  page = FetchedPage();

  if (broken) {
    grpc::Status st = stream->Finish();
    LogWarning("job ", id_, ": write stream failed: ", st.error_message());
    return stopping() ? RunOutcome::kDone : RunOutcome::kStreamBroken;
  }
  stream->WritesDone();
  grpc::Status st = stream->Finish();
  if (!st.ok()) {
    LogWarning("job ", id_, ": write stream ended with ", st.error_message());
    if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      SetFatal(absl::StrCat("the writer refused the job's data: ", st.error_message()));
      return RunOutcome::kDone;
    }
    return stopping() ? RunOutcome::kDone : RunOutcome::kStreamBroken;
  }
  LogInfo("job ", id_, ": stream committed: ", summary.records_committed(), " records in ",
          summary.pages_committed(), " pages (", summary.pages_skipped(), " pages already committed, ",
          summary.records_rejected(), " records dead-lettered)");
  return RunOutcome::kDone;
}

std::string Job::IndexedToken(int64_t n) const {
  const v1::Pagination& p = spec_.pagination();
  if (p.style() == v1::PAGE) return absl::StrCat(p.start_page() + n);
  return absl::StrCat(p.start_page() + n * p.page_size());
}

void Job::ProduceIndexed(PageWindow* window, const std::vector<v1::CommittedPage>& committed_pages) {
  const v1::Pagination& p = spec_.pagination();
  absl::flat_hash_map<int64_t, const v1::CommittedPage*> committed;
  for (const auto& c : committed_pages) committed[c.page_number()] = &c;
  auto parser = JsonPageParser::Create({p.records_path(), spec_.id_path(), "", "", p.total_pages_path(),
                                        p.total_count_path()});
  if (!parser.ok()) {
    SetFatal(std::string(parser.status().message()));
    window->FinishProducing(0);
    return;
  }
  int64_t slot = 0;
  int64_t n = 0;
  int consecutive_failures = 0;
  bool finished = false;

  auto learn_totals = [&](const ParsedPage& parsed) {
    int64_t total = 0;
    if (auto tp = JsonScalarToInt(parsed.total_pages); tp.has_value() && !p.total_pages_path().empty()) {
      total = *tp;
    }
    if (auto tc = JsonScalarToInt(parsed.total_count); tc.has_value() && !p.total_count_path().empty()) {
      if (*tc > records_total_.load()) records_total_.store(*tc);
      if (p.page_size() > 0 && total == 0) {
        int64_t remaining = p.style() == v1::OFFSET ? std::max<int64_t>(0, *tc - p.start_page()) : *tc;
        total = (remaining + p.page_size() - 1) / p.page_size();
        if (total == 0) total = 1;  // The (empty) first page itself.
      }
    }
    if (total > 0 && total != pages_total_.load()) {
      pages_total_.store(total);
      v1::UpdateJobRequest req;
      req.set_job_id(id_);
      req.set_pages_total(total);
      req.set_records_total(records_total_.load());
      v1::JobRecord resp;
      WriterCall("UpdateJob", [&](grpc::ClientContext* ctx) { return env_.writer->UpdateJob(ctx, req, &resp); }, 3)
          .IgnoreError();
    }
  };

  // Phase 1: one page at a time until the total is known (or the end is found).
  while (!stopping() && pages_total_.load() <= 0) {
    if (n >= p.max_pages()) {
      SetFatal(absl::StrCat("loop guard: more than max_pages=", p.max_pages(), " pages; stopping"));
      finished = true;
      break;
    }
    if (auto it = committed.find(n); it != committed.end()) {
      if (it->second->next_page_token().empty()) {
        finished = true;
        break;
      }
      ++n;
      continue;
    }
    if (!window->WaitForRoom(slot)) break;
    FetchedPage page = FetchPage(n, IndexedToken(n), parser->get());
    if (page.cancelled) break;
    if (page.auth_failed) {
      SetFatal(page.error);
      finished = true;
      break;
    }
    bool last = false;
    if (page.ok) {
      consecutive_failures = 0;
      learn_totals(page.parsed);
      int64_t records = page.records;
      int64_t total = pages_total_.load();
      last = records == 0 || (p.page_size() > 0 && records < p.page_size()) || (total > 0 && n + 1 >= total);
      if (p.style() == v1::OFFSET && records_total_.load() > 0 &&
          p.start_page() + n * p.page_size() + records >= records_total_.load()) {
        last = true;
      }
      page.next_token = last ? "" : IndexedToken(n + 1);
    } else {
      ++consecutive_failures;
      page.next_token = IndexedToken(n + 1);
    }
    bool failed = !page.ok;
    std::string error = page.error;
    window->Put(slot++, std::move(page));
    if (failed && n == 0) {
      SetFatal(absl::StrCat("the first page failed: ", error));
      finished = true;
      break;
    }
    if (failed && consecutive_failures >= env_.max_consecutive_failed_pages) {
      SetFatal(absl::StrCat(consecutive_failures, " consecutive pages failed (last: ", error,
                            "); the end of the data cannot be found"));
      finished = true;
      break;
    }
    ++n;
    if (last) {
      finished = true;
      break;
    }
  }

  // Phase 2: the page count is known: fetch the rest in parallel, send in order.
  if (!finished && !stopping() && pages_total_.load() > 0) {
    const int64_t total = pages_total_.load();
    if (total > p.max_pages()) {
      SetFatal(absl::StrCat("loop guard: the API reports ", total, " pages, more than max_pages=", p.max_pages()));
    } else {
      std::vector<int64_t> todo;
      for (int64_t i = n; i < total; ++i) {
        if (!committed.count(i)) todo.push_back(i);
      }
      absl::Mutex claim_mu;
      size_t next_index = 0;
      bool fatal = false;
      const int64_t first_slot = slot;
      auto worker = [&] {
        SetThreadComponent(absl::StrCat("collector/job-", id_.substr(0, 8), "/fetch"));
        auto worker_parser = JsonPageParser::Create({p.records_path(), spec_.id_path(), "", "", "", ""});
        while (!stopping()) {
          size_t index;
          {
            absl::MutexLock l(&claim_mu);
            if (fatal || next_index >= todo.size()) return;
            index = next_index++;
          }
          int64_t my_slot = first_slot + int64_t(index);
          if (!window->WaitForRoom(my_slot)) return;
          int64_t page_number = todo[index];
          FetchedPage page = FetchPage(page_number, IndexedToken(page_number), worker_parser->get());
          if (page.auth_failed) {
            SetFatal(page.error);
            absl::MutexLock l(&claim_mu);
            fatal = true;
          }
          page.next_token = page_number + 1 >= total ? "" : IndexedToken(page_number + 1);
          window->Put(my_slot, std::move(page));
        }
      };
      int workers = int(std::min<int64_t>(spec_.fetch_concurrency(), int64_t(todo.size())));
      std::vector<std::thread> threads;
      for (int i = 0; i < workers; ++i) threads.emplace_back(worker);
      for (auto& t : threads) t.join();
      absl::MutexLock l(&claim_mu);
      slot = first_slot + int64_t(next_index);
    }
  }
  window->FinishProducing(slot);
}

void Job::ProduceChain(PageWindow* window, const std::vector<v1::CommittedPage>& committed) {
  const v1::Pagination& p = spec_.pagination();
  const v1::PaginationStyle style = p.style();
  auto parser = JsonPageParser::Create({p.records_path(), spec_.id_path(),
                                        style == v1::CURSOR ? p.cursor_path() : "",
                                        style == v1::NEXT_URL ? p.next_url_path() : "", "", p.total_count_path()});
  if (!parser.ok()) {
    SetFatal(std::string(parser.status().message()));
    window->FinishProducing(0);
    return;
  }
  // Tokens already requested: a next token equal to one of them means the API loops.
  absl::flat_hash_map<size_t, int64_t> seen;
  int64_t n = 0;
  std::string token;
  if (style == v1::LINK || style == v1::NEXT_URL) {
    auto first = RequestUrl("");
    token = first.ok() ? *first : spec_.url();
  } else if (style == v1::OFFSET) {
    token = absl::StrCat(p.start_page());
  }
  // Sequential: continue after the contiguous prefix of committed pages (ascending), from the last
  // one's stored next-page token. Writer threads commit concurrently, so after a crash a later page
  // may be committed while an earlier one is not: resuming after the highest page would skip the gap.
  // Pages past the gap are fetched again and skipped by the writer's ledger; only the prefix's tokens
  // count for the loop guard, since those later tokens will legitimately be requested again.
  bool all_fetched = false;
  for (const auto& c : committed) {
    if (c.page_number() != n) break;
    seen[absl::HashOf(c.page_token())] = c.page_number();
    n = c.page_number() + 1;
    token = c.next_page_token();
    all_fetched = token.empty();
  }
  int64_t slot = 0;
  if (all_fetched) {
    window->FinishProducing(0);  // The last page is committed: nothing left to fetch.
    return;
  }
  while (!stopping()) {
    if (n >= p.max_pages()) {
      SetFatal(absl::StrCat("loop guard: more than max_pages=", p.max_pages(), " pages; stopping"));
      break;
    }
    if (!window->WaitForRoom(slot)) break;
    FetchedPage page = FetchPage(n, token, parser->get());
    if (page.cancelled) break;
    if (page.auth_failed) {
      SetFatal(page.error);
      break;
    }
    if (!page.ok) {
      std::string error = page.error;
      window->Put(slot++, std::move(page));
      if (n == 0) {
        SetFatal(absl::StrCat("the first page failed: ", error));
      } else {
        absl::MutexLock l(&mu_);
        stop_note_ = absl::StrCat("stopped at page ", n, ": ", StyleName(style),
                                  " pagination cannot continue past a failed page");
      }
      break;
    }
    std::string next;
    const ParsedPage& parsed = page.parsed;
    switch (style) {
      case v1::CURSOR:
        if (parsed.cursor.present()) next = parsed.cursor.text;
        break;
      case v1::LINK:
      case v1::NEXT_URL: {
        std::string ref = style == v1::LINK ? page.link_next
                                            : (parsed.next_url.kind == JsonScalar::Kind::kString ? parsed.next_url.text : "");
        if (!ref.empty()) {
          auto resolved = ResolveUrl(page.request_url, ref);
          if (!resolved.ok()) {
            SetFatal(absl::StrCat("page ", n, ": ", Redact(std::string(resolved.status().message()), redact_)));
            break;
          }
          next = spec_.auth().type() == v1::API_KEY && !spec_.auth().query_param().empty()
                     ? RemoveQueryParam(*resolved, spec_.auth().query_param())
                     : *resolved;
        }
        break;
      }
      case v1::OFFSET: {
        int64_t offset = 0;
        absl::SimpleAtoi(token, &offset);
        int64_t records = page.records;
        auto total = JsonScalarToInt(parsed.total_count);
        if (total.has_value() && *total > records_total_.load()) records_total_.store(*total);
        bool last = records == 0 || (total.has_value() && offset + records >= *total);
        if (!last) next = absl::StrCat(offset + records);
        break;
      }
      default:
        break;
    }
    {
      absl::MutexLock l(&mu_);
      if (!error_.empty()) break;
    }
    bool loop = false;
    if (!next.empty()) {
      if (next == token) {
        SetMessage(absl::StrCat("page ", n, " pointed to itself as the next page; treating it as the last"));
        LogWarning("page ", n, ": the API returned the same ", style == v1::CURSOR ? "cursor" : "URL",
                   " again; treating it as the last page");
        next.clear();
      } else if (auto it = seen.find(absl::HashOf(next)); it != seen.end()) {
        loop = true;
        SetFatal(absl::StrCat("loop guard: page ", n, " points back to page ", it->second,
                              " (repeated ", style == v1::CURSOR ? "cursor" : "next URL", "); stopping"));
        next.clear();
      }
    }
    seen[absl::HashOf(token)] = n;
    page.next_token = next;
    window->Put(slot++, std::move(page));
    if (next.empty() || loop) break;
    ++n;
    token = std::move(next);
  }
  window->FinishProducing(slot);
}

absl::StatusOr<std::string> Job::RequestUrl(const std::string& token) const {
  const v1::Pagination& p = spec_.pagination();
  std::vector<std::pair<std::string, std::string>> params;
  const v1::PaginationStyle style = p.style();
  const bool url_token = (style == v1::LINK || style == v1::NEXT_URL) && !token.empty();
  std::string base = spec_.url();
  if (!url_token) {
    for (const auto& kv : spec_.query_params()) params.emplace_back(kv.key(), kv.value());
    const v1::DateFilter& d = spec_.date_filter();
    if (!d.start_date().empty()) {
      auto v = FormatDate(d.start_date(), d.format());
      if (!v.ok()) return v.status();
      params.emplace_back(d.start_param(), *v);
    }
    if (!d.end_date().empty()) {
      auto v = FormatDate(d.end_date(), d.format());
      if (!v.ok()) return v.status();
      params.emplace_back(d.end_param(), *v);
    }
    switch (style) {
      case v1::PAGE:
        params.emplace_back(p.page_param(), token);
        if (p.page_size() > 0) params.emplace_back(p.size_param(), absl::StrCat(p.page_size()));
        break;
      case v1::OFFSET:
        params.emplace_back(p.offset_param(), token);
        if (p.page_size() > 0) params.emplace_back(p.limit_param(), absl::StrCat(p.page_size()));
        break;
      case v1::CURSOR:
        if (!token.empty()) params.emplace_back(p.cursor_param(), token);
        break;
      default:
        break;
    }
  } else {
    base = token;
  }
  return AppendQueryParams(base, params);
}

Job::FetchedPage Job::FetchPage(int64_t page_number, const std::string& token, JsonPageParser* parser) {
  FetchedPage page;
  page.page_number = page_number;
  page.token = token;
  const v1::RetryPolicy& retry = spec_.retry();
  auto url = RequestUrl(token);
  if (!url.ok()) {
    page.error = absl::StrCat("cannot build the request URL: ", url.status().message());
    return page;
  }
  page.request_url = *url;
  HttpRequest req;
  req.url = *url;
  const v1::Auth& auth = spec_.auth();
  if (auth.type() == v1::API_KEY && !auth.query_param().empty()) {
    auto with_key = AppendQueryParams(*url, {{auth.query_param(), secret_}});
    if (with_key.ok()) req.url = *with_key;
  }
  req.headers.emplace_back("Accept", "application/json");
  for (const auto& kv : spec_.headers()) req.headers.emplace_back(kv.key(), kv.value());
  if (auth.type() == v1::BEARER) req.headers.emplace_back("Authorization", absl::StrCat("Bearer ", secret_));
  if (auth.type() == v1::API_KEY && auth.query_param().empty()) req.headers.emplace_back(auth.header_name(), secret_);
  if (auth.type() == v1::BASIC) {
    req.basic_username = auth.username();
    req.basic_password = secret_;
  }
  if (!trace_.traceparent.empty()) req.headers.emplace_back("traceparent", trace_.traceparent);
  if (!trace_.request_id.empty()) req.headers.emplace_back("X-Request-Id", trace_.request_id);
  req.timeout_seconds = spec_.timeout_seconds();
  req.connect_timeout_seconds = spec_.connect_timeout_seconds();
  req.max_response_bytes = env_.max_response_bytes;
  req.cancelled = &stop_;

  for (int attempt = 1; attempt <= retry.max_attempts(); ++attempt) {
    page.attempts = attempt;
    if (stopping()) {
      page.cancelled = true;
      page.error = "cancelled";
      return page;
    }
    env_.counters->http_requests.fetch_add(1);
    std::string reason;
    bool retriable = true;
    double retry_after = -1;
    absl::StatusOr<HttpResponse> resp = env_.fetcher->Fetch(req);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kCancelled || stopping()) {
        page.cancelled = true;
        page.error = "cancelled";
        return page;
      }
      reason = Redact(std::string(resp.status().message()), redact_);
      retriable = resp.status().code() == absl::StatusCode::kUnavailable ||
                  resp.status().code() == absl::StatusCode::kDeadlineExceeded;
    } else if (resp->status == 401 || resp->status == 403) {
      page.auth_failed = true;
      page.error = absl::StrCat("HTTP ", resp->status, resp->status == 401 ? " Unauthorized" : " Forbidden",
                                " from the API at page ", page_number,
                                ": authentication failed; check the job's auth settings and credential");
      env_.counters->http_errors.fetch_add(1);
      return page;
    } else if (resp->status < 200 || resp->status > 299) {
      reason = absl::StrCat("HTTP ", resp->status);
      retriable = resp->status == 408 || resp->status == 429 || resp->status >= 500;
      if (retriable) retry_after = ParseRetryAfter(resp->Header("retry-after"), absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    } else {
      env_.counters->bytes_fetched.fetch_add(int64_t(resp->body.size()));
      std::string body = std::move(resp->body);
      absl::StatusOr<ParsedPage> parsed = parser->Parse(&body);
      if (parsed.ok()) {
        page.parsed = std::move(*parsed);
        // The parsed page only points into the body, never into the parser: after a large page
        // free the parser's buffers (sized ~5x the body) before the records are copied out, and
        // the body once they are, rather than while the page waits and the next one is fetched.
        if (body.size() >= kReleaseParserBuffersAbove) parser->ReleaseBuffers();
        BuildBatches(&page);
        std::string().swap(body);
        if (spec_.pagination().style() == v1::LINK) page.link_next = FindNextLink(resp->HeaderValues("link"));
        if (page.parsed.used_utf8_fallback) {
          env_.counters->pages_utf8_fallback.fetch_add(1);
          LogWarning("page ", page_number, ": body is not valid UTF-8; records extracted by the fallback scanner");
        }
        page.ok = true;
        page.error.clear();
        env_.counters->pages_fetched.fetch_add(1);
        env_.counters->records_fetched.fetch_add(page.records);
        return page;
      }
      reason = std::string(parsed.status().message());
    }
    env_.counters->http_errors.fetch_add(1);
    page.error = attempt > 1 ? absl::StrCat(reason, " after ", attempt, " attempts") : reason;
    if (!retriable || attempt >= retry.max_attempts()) break;
    double delay = BackoffSeconds(retry, attempt, retry_after);
    env_.counters->http_retries.fetch_add(1);
    retries_.fetch_add(1);
    LogWarning("page ", page_number, " attempt ", attempt, "/", retry.max_attempts(), " failed: ", reason,
               "; retrying in ", absl::StrFormat("%.2f", delay), "s",
               retry_after >= 0 ? " (Retry-After)" : "");
    SetMessage(absl::StrCat("retrying page ", page_number, ": ", reason));
    if (!WaitUnlessStopping(absl::Seconds(delay))) {
      page.cancelled = true;
      return page;
    }
  }
  env_.counters->pages_failed.fetch_add(1);
  LogWarning("page ", page_number, " failed: ", page.error);
  return page;
}

void Job::BuildBatches(FetchedPage* page) const {
  std::vector<absl::string_view>& records = page->parsed.records;
  std::vector<std::string>& keys = page->parsed.natural_keys;
  const bool with_keys = !keys.empty() && keys.size() == records.size();
  // Per record: the string object and its heap block header, besides the bytes.
  constexpr size_t kPerRecordOverhead = sizeof(std::string) + 16;
  auto start_batch = [&] {
    v1::RecordBatch& batch = page->batches.emplace_back();
    batch.set_job_id(id_);
    batch.set_cliente_id(spec_.cliente_id());
    batch.set_rota(spec_.rota());
    batch.set_page_number(page->page_number);
    batch.set_page_token(page->token);
    batch.set_chunk_index(int32_t(page->batches.size() - 1));
    return &batch;
  };
  page->batches.clear();
  v1::RecordBatch* batch = start_batch();
  size_t chunk_bytes = 0;
  page->bytes = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (chunk_bytes > 0 && chunk_bytes + records[i].size() > env_.max_message_bytes) {
      batch = start_batch();
      chunk_bytes = 0;
    }
    page->bytes += records[i].size() + kPerRecordOverhead + (with_keys ? keys[i].size() + kPerRecordOverhead : 0);
    chunk_bytes += records[i].size();
    batch->add_records(std::string(records[i]));
    if (with_keys) batch->add_natural_keys(std::move(keys[i]));
  }
  batch->set_last_chunk(true);
  page->records = int64_t(records.size());
  // The views point into the body the caller frees next.
  std::vector<absl::string_view>().swap(records);
  std::vector<std::string>().swap(keys);
}

bool Job::SendPage(grpc::ClientWriterInterface<v1::RecordBatch>* stream, FetchedPage* page) {
  for (v1::RecordBatch& batch : page->batches) {
    batch.set_next_page_token(page->next_token);
    int64_t bytes = 0;
    for (const std::string& r : batch.records()) bytes += int64_t(r.size());
    if (!stream->Write(batch)) return false;
    env_.counters->batches_sent.fetch_add(1);
    env_.counters->bytes_sent.fetch_add(bytes);
    batch = v1::RecordBatch();  // Written (serialised by gRPC): release its records now.
  }
  pages_sent_run_.fetch_add(1);
  records_sent_run_.fetch_add(page->records);
  env_.counters->pages_sent.fetch_add(1);
  return true;
}

void Job::RecordFailure(const FetchedPage& page) {
  v1::PageFailure req;
  req.set_job_id(id_);
  v1::FailedPage* fp = req.mutable_page();
  fp->set_page_number(page.page_number);
  fp->set_page_token(page.token);
  fp->set_error(Redact(page.error, redact_));
  fp->set_attempts(page.attempts);
  v1::PageFailureAck ack;
  absl::Status s = WriterCall(
      "RecordPageFailure", [&](grpc::ClientContext* ctx) { return env_.writer->RecordPageFailure(ctx, req, &ack); },
      5);
  if (!s.ok()) LogError("could not record the failure of page ", page.page_number, ": ", s.ToString());
  absl::MutexLock l(&mu_);
  for (auto& existing : failed_pages_) {
    if (existing.page_number() == fp->page_number()) {
      existing = *fp;
      return;
    }
  }
  failed_pages_.push_back(*fp);
  message_ = absl::StrCat("page ", page.page_number, " failed: ", fp->error());
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
      error = absl::StrCat(failed_pages_.size(), " page(s) failed after all retries: ", absl::StrJoin(numbers, ", "));
      if (!stop_note_.empty()) absl::StrAppend(&error, "; ", stop_note_);
    } else {
      state = v1::SUCCEEDED;
    }
  }
  PersistState(state, error);
  // Final figures from the ledger (they include earlier runs of a resumed job).
  v1::ListJobRecordsRequest req;
  req.set_job_id(id_);
  req.set_limit(1);
  v1::ListJobRecordsResponse resp;
  absl::Status s = WriterCall(
      "ListJobRecords", [&](grpc::ClientContext* ctx) { return env_.writer->ListJobRecords(ctx, req, &resp); }, 3);
  if (s.ok() && resp.jobs_size() == 1 && resp.jobs(0).job_id() == id_) {
    const v1::JobRecord& r = resp.jobs(0);
    if (r.pages_committed() > 0 || r.records_committed() > 0) {
      live_pages_committed_.store(r.pages_committed());
      live_records_committed_.store(r.records_committed());
      live_rejected_.store(r.records_rejected());
    }
  }
  switch (state) {
    case v1::SUCCEEDED: env_.counters->jobs_succeeded.fetch_add(1); break;
    case v1::PARTIAL: env_.counters->jobs_partial.fetch_add(1); break;
    case v1::FAILED: env_.counters->jobs_failed.fetch_add(1); break;
    default: env_.counters->jobs_cancelled.fetch_add(1); break;
  }
  LogInfo("job ", id_, " ended ", v1::JobState_Name(state), error.empty() ? "" : ": ", error, " (",
          live_records_committed_.load(), " records committed)");
  absl::MutexLock l(&mu_);
  state_ = state;
  if (state != v1::FAILED && state != v1::CANCELLED) error_ = error;
  if (state == v1::CANCELLED) error_ = error;
  message_ = error.empty() ? "finished" : error;
  finished_ms_ = NowMs();
  done_ = true;
}

void Job::UpdateWriterCounters(const v1::JobCounters& c) {
  int64_t base = writer_base_records_.load();
  if (base < 0) return;
  int64_t records = base_records_.load() + std::max<int64_t>(0, c.records_committed() - base);
  int64_t pages = base_pages_.load() + std::max<int64_t>(0, c.pages_committed() - writer_base_pages_.load());
  int64_t rejected = base_rejected_.load() + std::max<int64_t>(0, c.records_rejected() - writer_base_rejected_.load());
  if (done()) return;
  live_records_committed_.store(std::max(live_records_committed_.load(), records));
  live_pages_committed_.store(std::max(live_pages_committed_.load(), pages));
  live_rejected_.store(std::max(live_rejected_.load(), rejected));
}

v1::JobProgress Job::Progress() const {
  v1::JobProgress p;
  p.set_job_id(id_);
  absl::MutexLock l(&mu_);
  p.set_state(state_);
  const int64_t committed = live_records_committed_.load();
  p.set_pages_committed(live_pages_committed_.load());
  p.set_pages_done(std::max(base_pages_.load() + pages_sent_run_.load(), p.pages_committed()));
  p.set_pages_failed(int64_t(failed_pages_.size()));
  p.set_pages_total(pages_total_.load());
  p.set_records_total(records_total_.load());
  p.set_records_fetched(std::max(base_records_.load() + records_sent_run_.load(), committed));
  p.set_records_committed(committed);
  p.set_records_rejected(live_rejected_.load());
  p.set_retries(retries_.load());
  p.set_message(message_);
  const absl::Time now = absl::Now();
  const int64_t start = started_ms_ > 0 ? started_ms_ : created_at_ms_;
  const int64_t end = finished_ms_ > 0 ? finished_ms_ : absl::ToUnixMillis(now);
  p.set_elapsed_seconds(double(std::max<int64_t>(0, end - start)) / 1000.0);
  // Commit rate over the last ~10 s.
  rate_samples_.emplace_back(now, committed);
  while (rate_samples_.size() > 2 && now - rate_samples_.front().first > absl::Seconds(10)) rate_samples_.pop_front();
  double rate = 0;
  if (rate_samples_.size() >= 2) {
    double dt = absl::ToDoubleSeconds(rate_samples_.back().first - rate_samples_.front().first);
    if (dt >= 0.5) rate = double(rate_samples_.back().second - rate_samples_.front().second) / dt;
  }
  if (rate <= 0 && p.elapsed_seconds() > 0 && !done_) rate = double(committed - base_records_.load()) / p.elapsed_seconds();
  p.set_records_per_second(std::max(0.0, rate));
  double eta = -1;
  if (done_) {
    eta = 0;
  } else if (rate > 0) {
    if (p.records_total() > 0) {
      eta = double(std::max<int64_t>(0, p.records_total() - committed)) / rate;
    } else if (p.pages_total() > 0 && p.pages_committed() > 0) {
      double per_page = double(committed) / double(p.pages_committed());
      eta = double(std::max<int64_t>(0, p.pages_total() - p.pages_committed())) * per_page / rate;
    }
  }
  p.set_eta_seconds(eta);
  return p;
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
