#include "collector_service/ledger_intents.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace etl {

bool IsTransientLedgerError(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:        // Writer or PostgreSQL down.
    case grpc::StatusCode::DEADLINE_EXCEEDED:  // Writer hung (SIGSTOP, locked table).
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:  // The call's connection went away mid-call.
    case grpc::StatusCode::INTERNAL:   // A writer killed mid-call can answer these.
    case grpc::StatusCode::UNKNOWN:
      return true;
    default:  // NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED, ...
      return false;
  }
}

LedgerIntents::LedgerIntents(v1::WriterService::StubInterface* stub, CollectorCounters* counters,
                             LedgerIntentsOptions options)
    : stub_(stub), counters_(counters), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

LedgerIntents::~LedgerIntents() { Shutdown(absl::ZeroDuration()); }

void LedgerIntents::PersistState(const std::string& job_id, v1::JobState state,
                                 const std::string& error,
                                 const v1::RegisterJobRequest* register_first,
                                 int64_t lease_epoch) {
  absl::MutexLock l(&mu_);
  if (closed_) {
    LogError("job ", job_id, ": state ", v1::JobState_Name(state),
             " not recorded: the collector is shutting down");
    counters_->ledger_intents_abandoned.fetch_add(1);
    return;
  }
  auto [it, fresh] = jobs_.try_emplace(job_id);
  JobIntents& j = it->second;
  if (fresh) j.first_queued = j.next_attempt = absl::Now();
  j.state = QueuedState{state, error, std::nullopt, ++seq_, lease_epoch};
  if (register_first != nullptr) j.state->register_first = *register_first;
  ++wakeups_;
  UpdateGauge();
}

absl::Status LedgerIntents::RecordFailure(const std::string& job_id, const v1::FailedPage& page,
                                          int64_t lease_epoch) {
  absl::MutexLock l(&mu_);
  if (closed_) {
    counters_->ledger_intents_abandoned.fetch_add(1);
    return absl::UnavailableError("the collector is shutting down");
  }
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) {
    for (QueuedPage& q : it->second.pages) {
      if (q.page.page_number() == page.page_number()) {
        q = QueuedPage{page, ++seq_,
                       lease_epoch};  // The latest failure of the page replaces the earlier one.
        ++wakeups_;
        return absl::OkStatus();
      }
    }
  }
  if (pages_ >= options_.max_pending_pages) {
    counters_->ledger_intents_abandoned.fetch_add(1);
    return absl::ResourceExhaustedError(
        absl::StrCat(pages_, " page failures are already waiting for the writer's ledger (cap ",
                     options_.max_pending_pages, "); page ", page.page_number(), " of job ", job_id,
                     " is named in the job's final state only"));
  }
  bool fresh = it == jobs_.end();
  if (fresh) it = jobs_.try_emplace(job_id).first;
  JobIntents& j = it->second;
  if (fresh) j.first_queued = j.next_attempt = absl::Now();
  j.pages.push_back(QueuedPage{page, ++seq_, lease_epoch});
  ++pages_;
  ++wakeups_;
  UpdateGauge();
  return absl::OkStatus();
}

bool LedgerIntents::Pending(const std::string& job_id) const {
  absl::MutexLock l(&mu_);
  return jobs_.count(job_id) > 0;
}

bool LedgerIntents::WaitDurable(const std::string& job_id, absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto durable = [this, &job_id]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return jobs_.count(job_id) == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&durable), timeout);
}

int64_t LedgerIntents::pending() const {
  absl::MutexLock l(&mu_);
  int64_t n = int64_t(pages_);
  for (const auto& [id, j] : jobs_) n += j.state.has_value() ? 1 : 0;
  return n;
}

void LedgerIntents::UpdateGauge() {
  int64_t n = int64_t(pages_);
  for (const auto& [id, j] : jobs_) n += j.state.has_value() ? 1 : 0;
  counters_->ledger_intents_pending.store(n);
}

void LedgerIntents::Shutdown(absl::Duration flush_deadline) {
  {
    absl::MutexLock l(&mu_);
    if (closed_) return;
    closed_ = true;  // Nothing new is queued from now on.
    // The writer may be back: try every job now, then with the usual backoff.
    const absl::Time now = absl::Now();
    for (auto& [id, j] : jobs_) {
      j.next_attempt = now;
      j.backoff = absl::ZeroDuration();
    }
    ++wakeups_;
    auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return jobs_.empty(); };
    if (!jobs_.empty()) {
      LogInfo("flushing ", jobs_.size(), " job(s) of ledger intents (at most ",
              absl::FormatDuration(flush_deadline), ")");
    }
    mu_.AwaitWithTimeout(absl::Condition(&empty), flush_deadline);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock l(&mu_);
  for (auto& [id, j] : jobs_) Abandon(id, &j, "the collector shut down before the writer took it");
  jobs_.clear();
  pages_ = 0;
  UpdateGauge();
}

void LedgerIntents::Abandon(const std::string& job_id, JobIntents* j, const std::string& why) {
  for (const QueuedPage& q : j->pages) {
    LogError("job ", job_id, ": failure of page ", q.page.page_number(),
             " not recorded in the ledger: ", why);
    counters_->ledger_intents_abandoned.fetch_add(1);
  }
  if (j->state.has_value()) {
    LogError("job ", job_id, ": state ", v1::JobState_Name(j->state->state),
             " not recorded in the ledger: ", why);
    counters_->ledger_intents_abandoned.fetch_add(1);
  }
}

std::optional<LedgerIntents::Work> LedgerIntents::TakeDue(absl::Time now, absl::Time* next_due) {
  *next_due = absl::InfiniteFuture();
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    JobIntents& j = it->second;
    if (now - j.first_queued > options_.give_up_after) {
      Abandon(it->first, &j,
              absl::StrCat("the writer did not take it within ",
                           absl::FormatDuration(options_.give_up_after)));
      pages_ -= j.pages.size();
      it = jobs_.erase(it);
      UpdateGauge();
      continue;
    }
    if (j.next_attempt > now) {
      *next_due = std::min(*next_due, j.next_attempt);
      ++it;
      continue;
    }
    Work w;
    w.job_id = it->first;
    if (!j.pages.empty()) {
      w.page = j.pages.front().page;
      w.seq = j.pages.front().seq;
      w.lease_epoch = j.pages.front().lease_epoch;
    } else {
      w.state = *j.state;
      w.seq = j.state->seq;
      w.lease_epoch = j.state->lease_epoch;
    }
    return w;
  }
  return std::nullopt;
}

grpc::Status LedgerIntents::Send(const Work& w) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  if (w.page.has_value()) {
    v1::PageFailure req;
    req.set_job_id(w.job_id);
    *req.mutable_page() = *w.page;
    req.set_lease_epoch(w.lease_epoch);
    v1::PageFailureAck ack;
    return stub_->RecordPageFailure(&ctx, req, &ack);
  }
  if (w.state->register_first.has_value()) {
    v1::JobRecord registered;
    grpc::Status s = stub_->RegisterJob(&ctx, *w.state->register_first, &registered);
    if (!s.ok()) return s;
  }
  grpc::ClientContext update_ctx;
  update_ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::UpdateJobRequest req;
  req.set_job_id(w.job_id);
  req.set_state(w.state->state);
  req.set_error(w.state->error);
  req.set_lease_epoch(w.lease_epoch);
  v1::JobRecord record;
  return stub_->UpdateJob(&update_ctx, req, &record);
}

void LedgerIntents::Done(const Work& w, const grpc::Status& s) {
  const std::string what = w.page.has_value()
                               ? absl::StrCat("failure of page ", w.page->page_number())
                               : absl::StrCat("state ", v1::JobState_Name(w.state->state));
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(w.job_id);
  if (it == jobs_.end()) return;
  JobIntents& j = it->second;
  const absl::Time now = absl::Now();
  const bool absent_ok = w.state.has_value() && w.state->register_first.has_value() &&
                         s.error_code() == grpc::StatusCode::NOT_FOUND;
  if (s.ok() || absent_ok || !IsTransientLedgerError(s.error_code())) {
    if (s.ok() || absent_ok) {
      counters_->ledger_intents_written.fetch_add(1);
      if (j.failures > 0) {
        LogInfo("job ", w.job_id, ": ", what, " recorded in the ledger after ", j.failures,
                " failed attempt(s)");
      }
    } else {
      LogError("job ", w.job_id, ": ", what,
               " cannot be recorded in the ledger (permanent: ", s.error_message(), ")");
      counters_->ledger_intents_abandoned.fetch_add(1);
    }
    // Only the version that was sent leaves the queue; a newer one replacing it is sent next.
    if (w.page.has_value() && !j.pages.empty() && j.pages.front().seq == w.seq) {
      j.pages.pop_front();
      --pages_;
    }
    if (w.state.has_value() && j.state.has_value() && j.state->seq == w.seq) j.state.reset();
    j.failures = 0;
    j.backoff = absl::ZeroDuration();
    j.next_attempt = now;
    j.first_queued = now;
    if (j.pages.empty() && !j.state.has_value()) jobs_.erase(it);
    UpdateGauge();
    return;
  }
  counters_->ledger_intent_retries.fetch_add(1);
  ++j.failures;
  j.backoff = j.backoff == absl::ZeroDuration() ? options_.initial_backoff
                                                : std::min(j.backoff * 2, options_.max_backoff);
  j.next_attempt = now + j.backoff;
  if (j.failures == 1 || j.failures % 10 == 0) {
    LogWarning("job ", w.job_id, ": ", what, " not yet recorded in the ledger (", s.error_message(),
               "; attempt ", j.failures, "); retrying in ", absl::FormatDuration(j.backoff));
  }
}

void LedgerIntents::Loop() {
  SetThreadComponent("collector/intents");
  while (true) {
    std::optional<Work> w;
    {
      absl::MutexLock l(&mu_);
      while (true) {
        if (stop_) return;
        absl::Time next_due;
        w = TakeDue(absl::Now(), &next_due);
        if (w.has_value()) break;
        const int64_t seen = wakeups_;
        auto woken = [this, seen]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || wakeups_ != seen; };
        mu_.AwaitWithDeadline(absl::Condition(&woken), next_due);
      }
    }
    Done(*w, Send(*w));
  }
}

}  // namespace etl
