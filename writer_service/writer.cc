#include "writer_service/writer.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"

namespace etl {

// Commit rate over the last kWindow seconds, from one-second buckets.
class Writer::RateMeter {
 public:
  void Add(int64_t n, absl::Time now) {
    absl::MutexLock l(&mu_);
    int64_t sec = absl::ToUnixSeconds(now);
    Bucket& b = buckets_[static_cast<size_t>(sec % kWindow)];
    if (b.second != sec) b = Bucket{0, sec};
    b.first += n;
  }
  double Rate(absl::Time now, absl::Time started) const {
    absl::MutexLock l(&mu_);
    int64_t sec = absl::ToUnixSeconds(now);
    int64_t total = 0;
    for (const Bucket& b : buckets_) {
      if (b.second > sec - kWindow && b.second <= sec) total += b.first;
    }
    // Over the window, or over the uptime when shorter (the current second counts in part).
    double span =
        std::min<double>(kWindow - 1 + absl::ToDoubleSeconds(now - absl::FromUnixSeconds(sec)),
                         absl::ToDoubleSeconds(now - started));
    return span > 0.05 ? static_cast<double>(total) / span : 0.0;
  }

 private:
  static constexpr int64_t kWindow = 10;
  using Bucket = std::pair<int64_t, int64_t>;  // (records, unix second)
  mutable absl::Mutex mu_;
  Bucket buckets_[kWindow] ABSL_GUARDED_BY(mu_) = {};
};

namespace {

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

std::string NewBatchPrefix() {
  std::random_device rd;
  return absl::StrFormat("%d-%08x%08x", getpid(), rd(), rd());
}

}  // namespace

Writer::Writer(WriterOptions options, RecordSinkFactory sink_factory)
    : options_(options),
      sink_factory_(std::move(sink_factory)),
      batch_prefix_(NewBatchPrefix()),
      started_at_(absl::Now()),
      queue_(WriteQueue::Options{options.queue_records, options.queue_bytes}),
      rate_(std::make_unique<RateMeter>()) {}

Writer::~Writer() { Stop(absl::ZeroDuration()); }

void Writer::Start() {
  absl::MutexLock l(&mu_);
  if (!threads_.empty() || stopped_) return;
  for (int i = 0; i < std::max(1, options_.writer_threads); ++i) {
    ++threads_running_;
    threads_.emplace_back([this, i] { ThreadMain(i); });
  }
  if (options_.health_check_interval > absl::ZeroDuration()) {
    health_thread_ = std::thread([this] { HealthCheckMain(); });
  }
}

void Writer::HealthCheckMain() {
  SetThreadComponent("writer/health");
  std::unique_ptr<RecordSink> sink;
  const int64_t interval_ms = absl::ToInt64Milliseconds(options_.health_check_interval);
  while (true) {
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopped_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), options_.health_check_interval)) return;
    }
    // Commits (or connects) within the interval already prove the database answers.
    if (db_ok_.load() && NowMs() - last_db_ok_ms_.load() < interval_ms) continue;
    if (sink == nullptr) sink = sink_factory_();
    absl::Status s = sink->Ping(std::max(absl::Seconds(1), 2 * options_.health_check_interval));
    if (s.ok()) {
      last_db_ok_ms_.store(NowMs());
      SetDbOk(true);
      continue;
    }
    counters_.health_checks_failed.fetch_add(1);
    SetLastError(std::string(s.message()));
    if (db_ok_.load()) LogWarning("PostgreSQL health check failed: ", s.message());
    SetDbOk(false);
  }
}

void Writer::SetServingListener(std::function<void(bool)> listener) {
  absl::MutexLock l(&mu_);
  serving_listener_ = std::move(listener);
}

bool Writer::serving() const { return db_ok_.load() && !draining_.load(); }

void Writer::UpdateServing() {
  std::function<void(bool)> listener;
  bool now = serving();
  {
    absl::MutexLock l(&mu_);
    if (now == last_serving_) return;
    last_serving_ = now;
    listener = serving_listener_;
  }
  LogInfo("serving: ", now ? "yes" : "no");
  if (listener) listener(now);
}

void Writer::SetDbOk(bool ok) {
  if (ok) last_db_ok_ms_.store(NowMs());
  if (db_ok_.exchange(ok) != ok) UpdateServing();
}

void Writer::SetLastError(const std::string& e) {
  absl::MutexLock l(&mu_);
  last_error_ = e;
}

bool Writer::StreamStarted() {
  if (draining_.load()) {
    counters_.streams_refused.fetch_add(1);
    return false;
  }
  counters_.streams_active.fetch_add(1);
  counters_.streams_total.fetch_add(1);
  return true;
}

void Writer::StreamEnded(bool ok) {
  counters_.streams_active.fetch_sub(1);
  if (!ok) counters_.streams_failed.fetch_add(1);
}

void Writer::NoteReceived(const QueuedPage& page) {
  counters_.records_received.fetch_add(page.records);
  counters_.bytes_received.fetch_add(page.bytes);
  counters_.pages_received.fetch_add(1);
  absl::MutexLock l(&jobs_mu_);
  JobEntry& e = jobs_[page.job_id];
  e.counters.set_job_id(page.job_id);
  e.counters.set_records_received(e.counters.records_received() + page.records);
  e.touched = ++jobs_clock_;
  if (jobs_.size() > options_.max_jobs_tracked) {
    auto oldest = jobs_.begin();
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      if (it->second.touched < oldest->second.touched) oldest = it;
    }
    jobs_.erase(oldest);
  }
}

void Writer::BeginDrain() {
  if (draining_.exchange(true)) return;
  LogInfo("draining: refusing new streams, committing what is queued");
  UpdateServing();
  queue_.BeginDrain();
}

void Writer::Stop(absl::Duration timeout) {
  std::vector<std::thread> threads;
  std::thread health;
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    stopped_ = true;
    threads.swap(threads_);
    health = std::move(health_thread_);
  }
  draining_.store(true);
  UpdateServing();
  queue_.BeginDrain();
  queue_.Close();  // Threads commit what is left, then get an empty batch and exit.
  {
    // Give the threads `timeout` to commit; then make their retry loops give up.
    absl::MutexLock l(&mu_);
    auto all_done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return threads_running_ == 0; };
    mu_.AwaitWithTimeout(absl::Condition(&all_done), timeout);
    hard_stop_ = true;
  }
  for (std::thread& t : threads) t.join();
  if (health.joinable()) health.join();
  LogInfo(absl::StrFormat(
      "writer threads: %.1f s waiting for pages, %.1f s preparing, %.1f s in COPY, %.1f s in "
      "COMMIT; %d transactions",
      counters_.wait_pages_us.load() / 1e6, counters_.prepare_us.load() / 1e6,
      counters_.copy_us.load() / 1e6, counters_.commit_us.load() / 1e6,
      counters_.batches_committed.load()));
  // Anything still queued (no thread ever ran) is reported failed so its streams can finish.
  while (true) {
    auto rest = queue_.PopBatch(INT64_MAX, INT64_MAX, absl::ZeroDuration());
    if (rest.empty()) break;
    FailPages(rest, absl::UnavailableError("writer stopped before the page was committed"));
  }
}

bool Writer::Backoff(absl::Duration d) {
  absl::MutexLock l(&mu_);
  auto stop = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return hard_stop_; };
  mu_.AwaitWithTimeout(absl::Condition(&stop), d);
  return !hard_stop_;
}

void Writer::ThreadMain(int index) {
  SetThreadComponent(absl::StrCat("writer/commit-", index));
  std::unique_ptr<RecordSink> sink = sink_factory_();
  bool connected = false;
  // Connect before the first batch so health reports SERVING as soon as PostgreSQL is reachable.
  for (int attempt = 0; !connected; ++attempt) {
    absl::Status s = sink->Connect();
    if (s.ok()) {
      connected = true;
      SetDbOk(true);
      break;
    }
    SetDbOk(false);
    SetLastError(std::string(s.message()));
    LogWarning("PostgreSQL not reachable (", s.message(), "); retrying");
    absl::Duration d =
        std::min(options_.max_backoff, options_.initial_backoff * (1 << std::min(attempt, 16)));
    if (!Backoff(d)) break;
    if (queue_.depth().pages == 0 && draining_.load()) {
      absl::MutexLock l(&mu_);
      if (stopped_) break;
    }
  }
  SinkPhaseTimes seen = sink->phase_times();
  while (true) {
    const absl::Time wait_started = absl::Now();
    std::vector<std::unique_ptr<QueuedPage>> batch =
        queue_.PopBatch(options_.batch_records, options_.batch_bytes, options_.flush_interval);
    counters_.wait_pages_us.fetch_add(absl::ToInt64Microseconds(absl::Now() - wait_started));
    if (batch.empty()) break;
    CommitWithRetry(sink.get(), &connected, std::move(batch));
    const SinkPhaseTimes now = sink->phase_times();
    counters_.prepare_us.fetch_add(absl::ToInt64Microseconds(now.prepare - seen.prepare));
    counters_.copy_us.fetch_add(absl::ToInt64Microseconds(now.copy - seen.copy));
    counters_.commit_us.fetch_add(absl::ToInt64Microseconds(now.commit - seen.commit));
    seen = now;
  }
  LogDebug("writer thread done");
  absl::MutexLock l(&mu_);
  --threads_running_;
}

void Writer::CommitWithRetry(RecordSink* sink, bool* connected,
                             std::vector<std::unique_ptr<QueuedPage>> batch) {
  std::vector<const QueuedPage*> pages;
  pages.reserve(batch.size());
  for (const auto& p : batch) pages.push_back(p.get());
  const std::string batch_id = absl::StrCat(batch_prefix_, "-", batch_seq_.fetch_add(1));
  int transient_failures = 0;
  const absl::Time first_try = absl::Now();
  while (true) {
    absl::Status status;
    if (!*connected) {
      status = sink->Connect();
      if (status.ok()) {
        *connected = true;
        counters_.reconnects.fetch_add(1);
        LogInfo("reconnected to PostgreSQL");
      }
    }
    if (*connected) {
      const absl::Time commit_start = absl::Now();
      absl::StatusOr<std::vector<PageResult>> results = sink->CommitPages(pages, batch_id);
      if (results.ok()) {
        counters_.commit_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - commit_start));
        SetDbOk(true);
        ApplyResults(batch, *results);
        return;
      }
      status = results.status();
    }
    SetLastError(std::string(status.message()));
    int attempt = 0;
    if (absl::IsUnavailable(status)) {
      *connected = false;
      SetDbOk(false);
      attempt = ++transient_failures;
      if (absl::Now() - first_try >= options_.max_unavailable) {
        FailPages(batch,
                  absl::UnavailableError(absl::StrCat(
                      "PostgreSQL unavailable for ", absl::FormatDuration(options_.max_unavailable),
                      ": ", status.message())));
        return;
      }
      LogWarning("commit retry ", attempt, ": PostgreSQL unavailable (", status.message(),
                 "); keeping ", batch.size(), " pages");
    } else if (absl::IsAborted(status) || absl::IsNotFound(status)) {
      attempt = ++transient_failures;
      if (attempt >= options_.max_commit_attempts) {
        FailPages(batch, status);
        return;
      }
      LogWarning("commit retry ", attempt, "/", options_.max_commit_attempts - 1, " of ",
                 batch.size(), " pages: ", status.message());
    } else {
      // Permanent: retrying the same transaction would fail the same way.
      FailPages(batch, status);
      return;
    }
    counters_.commit_retries.fetch_add(1);
    absl::Duration d =
        std::min(options_.max_backoff, options_.initial_backoff * (1 << std::min(attempt - 1, 16)));
    if (!Backoff(d)) {
      FailPages(batch, absl::UnavailableError(absl::StrCat(
                           "writer stopped before the page was committed: ", status.message())));
      return;
    }
  }
}

void Writer::FailPages(std::vector<std::unique_ptr<QueuedPage>>& batch, const absl::Status& error) {
  for (auto& p : batch) {
    counters_.pages_failed.fetch_add(1);
    PageResult r;
    r.kind = PageResult::Kind::kFailed;
    r.error = error;
    if (p->owner != nullptr) p->owner->OnPageDone(r);
  }
  LogError("gave up on ", batch.size(), " pages: ", error.message());
}

void Writer::ApplyResults(std::vector<std::unique_ptr<QueuedPage>>& batch,
                          const std::vector<PageResult>& results) {
  int64_t committed = 0;
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  for (size_t i = 0; i < batch.size(); ++i) {
    const QueuedPage& p = *batch[i];
    if (results[i].kind != PageResult::Kind::kCommitted || p.chunks.empty()) continue;
    const int64_t fetched_us = p.chunks.front().fetched_at_unix_micros();
    if (fetched_us <= 0) continue;
    counters_.record_latency_seconds.Observe(
        double(std::max<int64_t>(0, now_us - fetched_us)) / 1e6,
        results[i].records_committed + results[i].records_rejected);
  }
  {
    absl::MutexLock l(&jobs_mu_);
    for (size_t i = 0; i < batch.size(); ++i) {
      const PageResult& r = results[i];
      auto it = jobs_.find(batch[i]->job_id);
      v1::JobCounters* jc = it == jobs_.end() ? nullptr : &it->second.counters;
      if (r.kind == PageResult::Kind::kFailed) {
        counters_.pages_failed.fetch_add(1);
        LogError("job ", batch[i]->job_id, " page ", batch[i]->page_number,
                 " not committed: ", r.error.message());
      } else if (r.kind == PageResult::Kind::kCommitted) {
        counters_.pages_committed.fetch_add(1);
        counters_.records_committed.fetch_add(r.records_committed);
        counters_.records_rejected.fetch_add(r.records_rejected);
        counters_.bytes_committed.fetch_add(r.bytes_committed);
        committed += r.records_committed;
        if (jc != nullptr) {
          jc->set_pages_committed(jc->pages_committed() + 1);
          jc->set_records_committed(jc->records_committed() + r.records_committed);
          jc->set_records_rejected(jc->records_rejected() + r.records_rejected);
        }
        if (r.records_rejected > 0) {
          LogWarning("job ", batch[i]->job_id, " page ", batch[i]->page_number, ": ",
                     r.records_rejected, " records sent to etl_dead_letters");
        }
      } else {
        counters_.pages_skipped.fetch_add(1);
        counters_.records_skipped.fetch_add(r.records_skipped);
        if (jc != nullptr) jc->set_pages_skipped(jc->pages_skipped() + 1);
        if (r.content_differs) {
          counters_.pages_resent_different.fetch_add(1);
          LogWarning("job ", batch[i]->job_id, " page ", batch[i]->page_number,
                     " was re-sent with other content than the committed page; skipped");
        }
      }
    }
  }
  counters_.batches_committed.fetch_add(1);
  rate_->Add(committed, absl::Now());
  // Owners (streams) count the transactions that committed their pages: mark the first committed
  // page of each owner in this batch.
  std::vector<const PageOwner*> owners_seen;
  for (size_t i = 0; i < batch.size(); ++i) {
    PageOwner* owner = batch[i]->owner;
    if (owner == nullptr) continue;
    PageResult r = results[i];
    if (r.kind == PageResult::Kind::kCommitted &&
        std::find(owners_seen.begin(), owners_seen.end(), owner) == owners_seen.end()) {
      owners_seen.push_back(owner);
      r.first_in_batch_for_owner = true;
    }
    owner->OnPageDone(r);
  }
}

v1::WriterStatus Writer::Status() const {
  v1::WriterStatus s;
  const WriterCounters& c = counters_;
  s.set_serving(serving());
  s.set_streams_active(c.streams_active.load());
  s.set_streams_total(c.streams_total.load());
  s.set_records_received(c.records_received.load());
  s.set_records_committed(c.records_committed.load());
  s.set_records_rejected(c.records_rejected.load());
  s.set_records_skipped(c.records_skipped.load());
  s.set_pages_committed(c.pages_committed.load());
  s.set_pages_skipped(c.pages_skipped.load());
  s.set_batches_committed(c.batches_committed.load());
  s.set_bytes_received(c.bytes_received.load());
  s.set_bytes_committed(c.bytes_committed.load());
  s.set_commit_retries(c.commit_retries.load());
  s.set_pages_resent_different(c.pages_resent_different.load());
  s.set_pages_failed(c.pages_failed.load());
  WriteQueue::Depth d = queue_.depth();
  s.set_records_queued(d.records);
  s.set_queue_depth_records(d.records);
  s.set_queue_depth_bytes(d.bytes);
  s.set_queue_capacity_records(queue_.options().max_records);
  s.set_queue_capacity_bytes(queue_.options().max_bytes);
  absl::Time now = absl::Now();
  s.set_commit_rate_records_per_second(rate_->Rate(now, started_at_));
  s.set_uptime_seconds(absl::ToInt64Seconds(now - started_at_));
  {
    absl::MutexLock l(&mu_);
    s.set_last_error(last_error_);
  }
  {
    absl::MutexLock l(&jobs_mu_);
    for (const auto& [id, e] : jobs_) *s.add_jobs() = e.counters;
  }
  return s;
}

}  // namespace etl
