#include "collector_service/fetch_concurrency.h"

#include <algorithm>
#include <utility>

namespace etl {
namespace {

// Each normal answer lets the baseline drift up by this factor, so a latency that stays higher
// becomes the baseline after a few dozen answers instead of holding the limit at 1 for ever.
constexpr double kBaselineRelax = 1.02;
// Weight of the newest latency in the smoothed latency (one slow answer alone is not a trend).
constexpr double kSmoothing = 0.25;
// Growing back to the limit where the API last pushed back takes this many rounds instead of one:
// an API that caps concurrency at N then sees N + 1 rarely, not every few pages.
constexpr int kProbeRounds = 8;

}  // namespace

AdaptiveConcurrency::AdaptiveConcurrency(AdaptiveConcurrencyOptions options, Clock clock)
    : options_([&] {
        options.max = std::max(1, options.max);
        options.initial = std::clamp(options.initial, 1, options.max);
        return options;
      }()),
      clock_(clock ? std::move(clock) : [] { return absl::Now(); }),
      limit_(options_.adaptive ? options_.initial : options_.max) {}

bool AdaptiveConcurrency::Acquire(const std::atomic<bool>* stop) {
  absl::MutexLock l(&mu_);
  auto ready = [this, stop]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ < limit_ || stop->load();
  };
  mu_.Await(absl::Condition(&ready));
  if (stop->load()) return false;
  ++in_flight_;
  max_in_flight_seen_ = std::max(max_in_flight_seen_, in_flight_);
  return true;
}

void AdaptiveConcurrency::Release() {
  absl::MutexLock l(&mu_);
  --in_flight_;
}

void AdaptiveConcurrency::OnResponse(int http_status, absl::Time started) {
  const absl::Time now = clock_();
  absl::MutexLock l(&mu_);
  if (!options_.adaptive) return;
  if (http_status == 0 || http_status == 429 || http_status == 503) {
    DecreaseLocked(started);
    return;
  }
  if (http_status < 200 || http_status > 299) return;  // Neither pressure nor a normal answer.
  const double latency = std::max(0.0, absl::ToDoubleSeconds(now - started));
  baseline_seconds_ =
      baseline_seconds_ < 0 ? latency : std::min(latency, baseline_seconds_ * kBaselineRelax);
  smoothed_seconds_ =
      smoothed_seconds_ < 0 ? latency : (1 - kSmoothing) * smoothed_seconds_ + kSmoothing * latency;
  const double threshold =
      std::max(options_.latency_factor * baseline_seconds_,
               baseline_seconds_ + absl::ToDoubleSeconds(options_.latency_slack));
  if (smoothed_seconds_ > threshold) {
    DecreaseLocked(started);
    return;
  }
  const int rounds = limit_ + 1 == pushback_limit_ ? kProbeRounds : 1;
  if (++credit_ >= limit_ * rounds && limit_ < options_.max) {
    ++limit_;
    ++increases_;
    credit_ = 0;
  }
}

void AdaptiveConcurrency::DecreaseLocked(absl::Time started) {
  credit_ = 0;
  // One decrease per round trip: this request was sent before the last decrease took effect.
  if (started < last_decrease_) return;
  last_decrease_ = clock_();
  pushback_limit_ = limit_;
  if (limit_ > 1) {
    limit_ = std::max(1, limit_ / 2);
    ++decreases_;
  }
  // The latency that led here is not the new normal.
  smoothed_seconds_ = baseline_seconds_;
}

void AdaptiveConcurrency::OnWriterFull() {
  absl::MutexLock l(&mu_);
  credit_ = 0;
}

int AdaptiveConcurrency::limit() const {
  absl::MutexLock l(&mu_);
  return limit_;
}

int AdaptiveConcurrency::max_in_flight_seen() const {
  absl::MutexLock l(&mu_);
  return max_in_flight_seen_;
}

int AdaptiveConcurrency::increases() const {
  absl::MutexLock l(&mu_);
  return increases_;
}

int AdaptiveConcurrency::decreases() const {
  absl::MutexLock l(&mu_);
  return decreases_;
}

}  // namespace etl
