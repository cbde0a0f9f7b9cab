// Unit tests of AdaptiveConcurrency (AIMD of a job's parallel fetches, driven by a fake clock) and
// of FetchSlots (the collector-wide limit on fetches in flight and its pooled parse buffers) under
// PageFetcher with a FakeHttpFetcher.
#include "collector_service/fetch_concurrency.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "collector_service/job_slots.h"
#include "collector_service/job_spec.h"
#include "collector_service/page_fetcher.h"
#include "tests/collector_service/fake_http_fetcher.h"

namespace etl {
namespace {

using ::etl::testing::FakeHttpFetcher;
using ::etl::testing::Reply;

// A clock that moves only when told.
class FakeClock {
 public:
  absl::Time Now() const {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }
  AdaptiveConcurrency::Clock AsClock() {
    return [this] { return Now(); };
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1700000000);
};

// One answer with `status` that took `latency` on the fake clock.
void Answer(AdaptiveConcurrency* c, FakeClock* clock, int status, absl::Duration latency) {
  absl::Time started = c->Now();
  clock->Advance(latency);
  c->OnResponse(status, started);
}

TEST(AdaptiveConcurrencyTest, StartsAtOneAndGrowsByOnePerRoundOfFastAnswersUpToMax) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, true}, clock.AsClock());
  EXPECT_EQ(c.limit(), 1);
  Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 2);  // A round at 1 is one answer.
  Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 2);
  Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 3);  // A round at 2 is two answers.
  for (int i = 0; i < 100; ++i) Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 4);  // Never above max.
  EXPECT_EQ(c.decreases(), 0);
}

TEST(AdaptiveConcurrencyTest, HalvesOnTooManyRequestsOncePerRoundTripAndNeverBelowOne) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{8, true}, clock.AsClock());
  for (int i = 0; i < 100; ++i) Answer(&c, &clock, 200, absl::Milliseconds(10));
  ASSERT_EQ(c.limit(), 8);
  // Eight requests in flight, all sent before the API pushed back: one halving, not eight.
  absl::Time sent = c.Now();
  clock.Advance(absl::Milliseconds(10));
  for (int i = 0; i < 8; ++i) c.OnResponse(429, sent);
  EXPECT_EQ(c.limit(), 4);
  // A request sent after that decrease and refused again halves again.
  Answer(&c, &clock, 503, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 2);
  Answer(&c, &clock, 0, absl::Milliseconds(10));  // Transport error or timeout.
  EXPECT_EQ(c.limit(), 1);
  Answer(&c, &clock, 429, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 1);
  EXPECT_EQ(c.decreases(), 3);
}

TEST(AdaptiveConcurrencyTest, OtherErrorsNeitherGrowNorShrink) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, true}, clock.AsClock());
  for (int status : {404, 500, 502, 301}) Answer(&c, &clock, status, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 1);
  EXPECT_EQ(c.decreases(), 0);
}

TEST(AdaptiveConcurrencyTest, BacksOffWhenLatencyRises) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{8, true}, clock.AsClock());
  for (int i = 0; i < 40; ++i) Answer(&c, &clock, 200, absl::Milliseconds(20));
  ASSERT_EQ(c.limit(), 8);
  // The API slows down to five times its normal latency: a few answers later the limit halved.
  for (int i = 0; i < 4; ++i) Answer(&c, &clock, 200, absl::Milliseconds(100));
  EXPECT_LE(c.limit(), 4);
  EXPECT_GE(c.decreases(), 1);
  // One slow answer among fast ones is not a trend.
  AdaptiveConcurrency d(AdaptiveConcurrencyOptions{8, true}, clock.AsClock());
  for (int i = 0; i < 40; ++i) Answer(&d, &clock, 200, absl::Milliseconds(20));
  Answer(&d, &clock, 200, absl::Milliseconds(50));
  EXPECT_EQ(d.limit(), 8);
  EXPECT_EQ(d.decreases(), 0);
}

TEST(AdaptiveConcurrencyTest, MillisecondsOfJitterOnAFastApiAreNoReasonToBackOff) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, true}, clock.AsClock());
  for (int i = 0; i < 20; ++i) Answer(&c, &clock, 200, absl::Milliseconds(1));
  ASSERT_EQ(c.limit(), 4);
  // A busy machine: answers take 5 to 15 times as long, still a few milliseconds.
  for (int i = 0; i < 50; ++i) Answer(&c, &clock, 200, absl::Milliseconds(5 + i % 10));
  EXPECT_EQ(c.limit(), 4);
  EXPECT_EQ(c.decreases(), 0);
}

TEST(AdaptiveConcurrencyTest, APermanentlySlowerApiBecomesTheNewNormal) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, true}, clock.AsClock());
  for (int i = 0; i < 20; ++i) Answer(&c, &clock, 200, absl::Milliseconds(10));
  for (int i = 0; i < 400; ++i) Answer(&c, &clock, 200, absl::Milliseconds(100));
  EXPECT_EQ(c.limit(), 4);  // Grew back once the baseline followed.
}

TEST(AdaptiveConcurrencyTest, AFullWriterHoldsGrowthBack) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, true}, clock.AsClock());
  Answer(&c, &clock, 200, absl::Milliseconds(10));
  ASSERT_EQ(c.limit(), 2);
  for (int i = 0; i < 20; ++i) {
    Answer(&c, &clock, 200, absl::Milliseconds(10));
    c.OnWriterFull();
  }
  EXPECT_EQ(c.limit(), 2);
}

TEST(AdaptiveConcurrencyTest, GrowsBackToALimitThatWasRefusedOnlySlowly) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{8, true}, clock.AsClock());
  for (int i = 0; i < 3; ++i) Answer(&c, &clock, 200, absl::Milliseconds(10));
  ASSERT_EQ(c.limit(), 3);
  Answer(&c, &clock, 429, absl::Milliseconds(10));
  ASSERT_EQ(c.limit(), 1);
  Answer(&c, &clock, 200, absl::Milliseconds(10));
  ASSERT_EQ(c.limit(), 2);
  // Back to 3 (refused before) takes 8 rounds of 2 answers, not one.
  for (int i = 0; i < 15; ++i) Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 2);
  Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 3);
  // Past it, growth is one round per step again.
  for (int i = 0; i < 3; ++i) Answer(&c, &clock, 200, absl::Milliseconds(10));
  EXPECT_EQ(c.limit(), 4);
}

TEST(AdaptiveConcurrencyTest, FixedStaysAtMax) {
  FakeClock clock;
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, false}, clock.AsClock());
  EXPECT_EQ(c.limit(), 4);
  Answer(&c, &clock, 429, absl::Milliseconds(10));
  Answer(&c, &clock, 200, absl::Seconds(10));
  EXPECT_EQ(c.limit(), 4);
}

TEST(AdaptiveConcurrencyTest, AcquireAdmitsNoMoreThanTheLimitAndStopsOnTheFlag) {
  AdaptiveConcurrency c(AdaptiveConcurrencyOptions{4, true});
  ASSERT_EQ(c.limit(), 1);
  std::atomic<bool> stop{false};
  constexpr int kThreads = 4;
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 50; ++k) {
        ASSERT_TRUE(c.Acquire(&stop));
        c.Release();
      }
      done.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(done.load(), kThreads);
  EXPECT_EQ(c.max_in_flight_seen(), 1);
  stop.store(true);
  ASSERT_TRUE(c.limit() == 1);
  std::atomic<bool> no_stop{false};
  ASSERT_TRUE(c.Acquire(&no_stop));
  EXPECT_FALSE(c.Acquire(&stop));  // Full, but stopping: returns at once.
  c.Release();
}

// ---- FetchSlots ----

v1::JobSpec PageSpec() {
  v1::JobSpec spec;
  spec.set_url("http://api.test/items");
  spec.set_cliente_id("acme");
  spec.set_rota("items");
  spec.mutable_pagination()->set_style(v1::PAGE);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_retry()->set_max_attempts(3);
  spec.mutable_retry()->set_backoff_scale(0.01);
  return WithDefaults(spec, 2);
}

std::string PageBody(int records) {
  std::string body = R"({"data":[)";
  for (int i = 0; i < records; ++i) {
    absl::StrAppend(&body, i ? "," : "", R"({"id":)", i, R"(,"name":"x\u00e9y"})");
  }
  return body + "]}";
}

TEST(FetchSlotsTest, FetchesOfAllJobsShareTheLimitOnFetchesInFlight) {
  // The API holds each request until a third one is in flight at once (or 200 ms pass): with a
  // limit of 2 that never happens, without it six fetchers would reach it at once.
  absl::Mutex mu;
  int in_flight = 0;
  int max_seen = 0;
  FakeHttpFetcher http([&](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
    absl::MutexLock l(&mu);
    max_seen = std::max(max_seen, ++in_flight);
    auto third = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return in_flight >= 3; };
    mu.AwaitWithTimeout(absl::Condition(&third), absl::Milliseconds(200));
    --in_flight;
    return Reply(200, PageBody(20));
  });
  FetchSlots slots(2, 1);
  const v1::JobSpec spec = PageSpec();
  CollectorCounters counters;
  std::atomic<bool> stop{false};
  PageFetcherOptions options;
  options.fetch_slots = &slots;
  // Three jobs with two fetch workers each.
  std::vector<std::unique_ptr<PageFetcher>> fetchers;
  for (int j = 0; j < 3; ++j) {
    fetchers.push_back(std::make_unique<PageFetcher>(absl::StrCat("job-", j), &spec, TraceContext{},
                                                     &http, &counters, options, &stop,
                                                     PageFetcher::Hooks{}));
  }
  std::atomic<int> ok_pages{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 6; ++w) {
    workers.emplace_back([&, w] {
      auto parser = JsonPageParser::Create({"/data", "", "", "", "", ""});
      ASSERT_TRUE(parser.ok());
      for (int n = 0; n < 2; ++n) {
        FetchedPage page = fetchers[size_t(w % 3)]->Fetch(n, absl::StrCat(n), parser->get());
        if (page.ok && page.records == 20) ok_pages.fetch_add(1);
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(ok_pages.load(), 12);
  EXPECT_EQ(max_seen, 2);
  EXPECT_EQ(slots.max_in_flight_seen(), 2);
}

TEST(FetchSlotsTest, AWaitingFetchStopsWhenItsJobStops) {
  FetchSlots slots(1, 1);
  std::atomic<bool> other_job{false};
  std::atomic<bool> stop{false};
  ASSERT_TRUE(slots.Acquire(&other_job));
  std::thread waiter([&] { EXPECT_FALSE(slots.Acquire(&stop)); });
  stop.store(true);
  slots.Wake();
  waiter.join();
  slots.Release();
  EXPECT_TRUE(slots.Acquire(&other_job));
  slots.Release();
}

TEST(FetchSlotsTest, PooledParseBuffersStillCatchTruncatedAndInvalidPages) {
  FetchSlots slots(2, 1);
  const v1::JobSpec spec = PageSpec();
  CollectorCounters counters;
  std::atomic<bool> stop{false};
  int calls = 0;
  FakeHttpFetcher http([&](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
    ++calls;
    if (calls == 1) return Reply(200, R"({"data":[{"id":1},{"id":)");  // Truncated: retried.
    if (calls == 2) return Reply(200, "{\"data\":[{\"id\":\"\xff\"},{\"id\":2}]}");
    return Reply(200, PageBody(3));
  });
  PageFetcherOptions options;
  options.fetch_slots = &slots;
  PageFetcher fetcher("job-1", &spec, TraceContext{}, &http, &counters, options, &stop,
                      PageFetcher::Hooks{[](absl::Duration) { return true; }, nullptr});
  auto parser = JsonPageParser::Create({"/data", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = fetcher.Fetch(0, "1", parser->get());
  ASSERT_TRUE(page.ok) << page.error;
  EXPECT_EQ(page.attempts, 2);                  // The truncated body was an error, then retried.
  EXPECT_TRUE(page.parsed.used_utf8_fallback);  // Invalid UTF-8 still noticed.
  EXPECT_EQ(page.records, 2);
  page = fetcher.Fetch(1, "2", parser->get());
  ASSERT_TRUE(page.ok) << page.error;
  EXPECT_EQ(page.records, 3);
  EXPECT_EQ(slots.max_in_flight_seen(), 1);
}

}  // namespace
}  // namespace etl
