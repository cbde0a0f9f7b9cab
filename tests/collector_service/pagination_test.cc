// Unit tests of PageWindow, PageProducer (indexed and chain pagination with their loop guards) and
// PageFetcher (retries, give-up, chunking, auth) against a FakeHttpFetcher serving canned pages.
#include "collector_service/pagination.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "collector_service/job_spec.h"
#include "collector_service/page_fetcher.h"
#include "collector_service/page_window.h"
#include "tests/collector_service/fake_http_fetcher.h"

namespace etl {
namespace {

using ::etl::testing::FakeHttpFetcher;
using ::etl::testing::QueryParam;
using ::etl::testing::Reply;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

v1::JobSpec BaseSpec(v1::PaginationStyle style) {
  v1::JobSpec spec;
  spec.set_url("http://api.test/items");
  spec.set_cliente_id("acme");
  spec.set_rota("items");
  spec.mutable_pagination()->set_style(style);
  spec.mutable_retry()->set_max_attempts(3);
  spec.mutable_retry()->set_backoff_scale(0.01);
  return spec;
}

// Wires a PageFetcher and a PageProducer to a fake API; retry waits are recorded, not slept.
class Harness {
 public:
  Harness(v1::JobSpec spec, FakeHttpFetcher::Handler handler,
          PageFetcherOptions options = PageFetcherOptions())
      : spec_(WithDefaults(spec, 2)), http_(std::move(handler)) {
    fetcher_ = std::make_unique<PageFetcher>("job-1", &spec_, TraceContext{"", "req-1"}, &http_,
                                             &counters_, options, &stop_,
                                             PageFetcher::Hooks{[this](absl::Duration d) {
                                                                  absl::MutexLock l(&mu_);
                                                                  waits_.push_back(d);
                                                                  return true;
                                                                },
                                                                nullptr});
    producer_ = std::make_unique<PageProducer>("job-1", &spec_, fetcher_.get(), &progress_,
                                               PaginationOptions(), &stop_,
                                               PageProducer::Hooks{[this](const std::string& e) {
                                                                     absl::MutexLock l(&mu_);
                                                                     fatal_.push_back(e);
                                                                   },
                                                                   [this](const std::string& n) {
                                                                     absl::MutexLock l(&mu_);
                                                                     note_ = n;
                                                                   },
                                                                   nullptr,
                                                                   [this](int64_t pages, int64_t) {
                                                                     absl::MutexLock l(&mu_);
                                                                     totals_.push_back(pages);
                                                                   }});
  }

  // Runs the producer to its end and returns the pages in send order.
  std::vector<FetchedPage> Produce(const std::vector<v1::CommittedPage>& committed = {}) {
    PageWindow window(16, size_t(1) << 30, &counters_, &progress_);
    std::thread t([&] { producer_->Produce(&window, committed); });
    std::vector<FetchedPage> pages;
    FetchedPage page;
    while (window.TakeNext(&page)) pages.push_back(std::move(page));
    t.join();
    return pages;
  }

  PageFetcher& fetcher() { return *fetcher_; }
  FakeHttpFetcher& http() { return http_; }
  CollectorCounters& counters() { return counters_; }
  JobProgressTracker& progress() { return progress_; }
  std::vector<std::string> fatal() {
    absl::MutexLock l(&mu_);
    return fatal_;
  }
  std::string note() {
    absl::MutexLock l(&mu_);
    return note_;
  }
  std::vector<absl::Duration> waits() {
    absl::MutexLock l(&mu_);
    return waits_;
  }
  std::vector<int64_t> totals() {
    absl::MutexLock l(&mu_);
    return totals_;
  }

 private:
  const v1::JobSpec spec_;
  FakeHttpFetcher http_;
  CollectorCounters counters_;
  JobProgressTracker progress_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<PageFetcher> fetcher_;
  std::unique_ptr<PageProducer> producer_;
  absl::Mutex mu_;
  std::vector<std::string> fatal_ ABSL_GUARDED_BY(mu_);
  std::string note_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> waits_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> totals_ ABSL_GUARDED_BY(mu_);
};

std::vector<std::string> Tokens(const std::vector<FetchedPage>& pages) {
  std::vector<std::string> out;
  for (const auto& p : pages) out.push_back(p.token);
  return out;
}

std::vector<std::string> NextTokens(const std::vector<FetchedPage>& pages) {
  std::vector<std::string> out;
  for (const auto& p : pages) out.push_back(p.next_token);
  return out;
}

// ---- PageWindow ----

TEST(PageWindowTest, HandsOutPagesInSlotOrderWhateverTheOrderTheyArrive) {
  CollectorCounters counters;
  JobProgressTracker progress;
  PageWindow window(4, size_t(1) << 20, &counters, &progress);
  for (int64_t slot : {2, 0, 1}) {
    ASSERT_TRUE(window.WaitForRoom(slot));
    FetchedPage p;
    p.page_number = slot;
    window.Put(slot, std::move(p));
  }
  window.FinishProducing(3);
  EXPECT_EQ(counters.pages_buffered.load(), 3);
  std::vector<int64_t> order;
  FetchedPage page;
  while (window.TakeNext(&page)) order.push_back(page.page_number);
  EXPECT_THAT(order, ElementsAre(0, 1, 2));
  EXPECT_EQ(counters.pages_buffered.load(), 0);
  EXPECT_EQ(progress.max_buffered(), 4);  // Three ready + the one being sent.
}

TEST(PageWindowTest, AbortWakesAProducerWaitingForRoom) {
  CollectorCounters counters;
  JobProgressTracker progress;
  PageWindow window(1, size_t(1) << 20, &counters, &progress);
  std::atomic<bool> result{true};
  std::thread producer([&] { result = window.WaitForRoom(5); });  // Past the window: waits.
  window.Abort();
  producer.join();
  EXPECT_FALSE(result.load());
}

// ---- Indexed pagination ----

TEST(PaginationTest, IndexedStopsAtTotalPages) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_pagination()->set_page_size(2);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_pagination()->set_total_pages_path("/meta/total_pages");
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    std::string page = QueryParam(req.url, "page");
    return Reply(200, absl::StrCat(R"({"meta":{"total_pages":3},"data":[{"p":)", page,
                                   R"(,"i":0},{"p":)", page, R"(,"i":1}]})"));
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("1", "2", "3"));
  EXPECT_THAT(NextTokens(pages), ElementsAre("2", "3", ""));
  for (const auto& p : pages) {
    EXPECT_TRUE(p.ok) << p.error;
    EXPECT_EQ(p.records, 2);
  }
  EXPECT_EQ(h.http().urls().size(), 3u);  // Never asked for page 4.
  EXPECT_EQ(h.progress().pages_total(), 3);
  EXPECT_THAT(h.totals(), ElementsAre(3));
  EXPECT_THAT(h.fatal(), IsEmpty());
}

TEST(PaginationTest, IndexedWithoutTotalStopsAtTheFirstShortPage) {
  v1::JobSpec spec = BaseSpec(v1::OFFSET);
  spec.mutable_pagination()->set_page_size(2);
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    std::string offset = QueryParam(req.url, "offset");
    return Reply(200, offset == "4" ? "[1]" : "[1,2]");
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("0", "2", "4"));
  EXPECT_THAT(NextTokens(pages), ElementsAre("2", "4", ""));
  EXPECT_THAT(h.fatal(), IsEmpty());
}

// An API that caps the page size (3) below the requested one (10) while reporting its total:
// the job follows the total, offsets advance by the records really returned.
TEST(PaginationTest, IndexedOffsetFollowsTheTotalWhenTheApiCapsThePageSize) {
  v1::JobSpec spec = BaseSpec(v1::OFFSET);
  spec.mutable_pagination()->set_page_size(10);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_pagination()->set_total_count_path("/total");
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    int offset = std::stoi(QueryParam(req.url, "offset"));
    std::string body = R"({"total":10,"data":[)";
    for (int i = offset; i < std::min(offset + 3, 10); ++i) {
      absl::StrAppend(&body, i == offset ? "" : ",", R"({"i":)", i, "}");
    }
    return Reply(200, body + "]}");
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("0", "3", "6", "9"));
  EXPECT_THAT(NextTokens(pages), ElementsAre("3", "6", "9", ""));
  int64_t records = 0;
  for (const auto& p : pages) {
    EXPECT_TRUE(p.ok) << p.error;
    records += p.records;
  }
  EXPECT_EQ(records, 10);
  EXPECT_EQ(h.progress().pages_total(), 4);
  EXPECT_THAT(h.fatal(), IsEmpty());
}

// PAGE style with a capped page size: the API's own pages are followed to its total.
TEST(PaginationTest, IndexedPageFollowsTheTotalWhenTheApiCapsThePageSize) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_pagination()->set_page_size(10);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_pagination()->set_total_count_path("/total");
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    int page = std::stoi(QueryParam(req.url, "page"));  // 1-based, 4 records per page.
    std::string body = R"({"total":10,"data":[)";
    for (int i = (page - 1) * 4; i < std::min(page * 4, 10); ++i) {
      absl::StrAppend(&body, i == (page - 1) * 4 ? "" : ",", R"({"i":)", i, "}");
    }
    return Reply(200, body + "]}");
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("1", "2", "3"));
  int64_t records = 0;
  for (const auto& p : pages) records += p.records;
  EXPECT_EQ(records, 10);
  EXPECT_THAT(h.fatal(), IsEmpty());
}

// Resuming such a job (a broken stream or a restart) with page 0 committed: page 0 is fetched
// again only to learn the API's page size, and the rest is indexed as before.
TEST(PaginationTest, IndexedResumeRelearnsTheCappedPageSize) {
  v1::JobSpec spec = BaseSpec(v1::OFFSET);
  spec.mutable_pagination()->set_page_size(10);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_pagination()->set_total_count_path("/total");
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    int offset = std::stoi(QueryParam(req.url, "offset"));
    std::string body = R"({"total":10,"data":[)";
    for (int i = offset; i < std::min(offset + 3, 10); ++i) {
      absl::StrAppend(&body, i == offset ? "" : ",", R"({"i":)", i, "}");
    }
    return Reply(200, body + "]}");
  });
  v1::CommittedPage committed;
  committed.set_page_number(0);
  committed.set_page_token("0");
  committed.set_next_page_token("3");
  committed.set_records(3);
  std::vector<FetchedPage> pages = h.Produce({committed});
  EXPECT_THAT(Tokens(pages), ElementsAre("3", "6", "9"));
  EXPECT_THAT(NextTokens(pages), ElementsAre("6", "9", ""));
  for (const auto& p : pages) EXPECT_TRUE(p.ok) << p.error;
  EXPECT_EQ(h.progress().pages_total(), 4);
  EXPECT_EQ(QueryParam(h.http().urls().front(), "offset"), "0");  // Re-learned, not re-sent.
  EXPECT_THAT(h.fatal(), IsEmpty());
}

// An API whose pages run out before its reported total: the gap is a failed page (PARTIAL),
// never a silent end.
TEST(PaginationTest, IndexedEmptyPageBeforeTheTotalIsAFailedPage) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_pagination()->set_page_size(2);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_pagination()->set_total_pages_path("/pages");
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    std::string page = QueryParam(req.url, "page");
    return Reply(200, page == "1" ? R"({"pages":5,"data":[{"a":1}]})" : R"({"pages":5,"data":[]})");
  });
  std::vector<FetchedPage> pages = h.Produce();
  ASSERT_FALSE(pages.empty());
  bool any_failed = false;
  for (const auto& p : pages) {
    if (!p.ok) {
      any_failed = true;
      EXPECT_THAT(p.error, HasSubstr("before its reported total"));
    }
  }
  EXPECT_TRUE(any_failed);
  EXPECT_EQ(h.http().urls().size(), 5u);
}

TEST(PaginationTest, IndexedSkipsCommittedPages) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_pagination()->set_page_size(1);
  spec.mutable_pagination()->set_total_pages_path("/total");
  spec.mutable_pagination()->set_records_path("/data");
  Harness h(spec, [](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
    return Reply(200, R"({"total":3,"data":[1]})");
  });
  v1::CommittedPage committed;
  committed.set_page_number(1);
  committed.set_page_token("2");
  committed.set_next_page_token("3");
  std::vector<FetchedPage> pages = h.Produce({committed});
  EXPECT_THAT(Tokens(pages), ElementsAre("1", "3"));
  for (const std::string& url : h.http().urls()) EXPECT_NE(QueryParam(url, "page"), "2") << url;
}

TEST(PaginationTest, IndexedGivesUpAfterConsecutiveFailuresWithoutATotal) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_retry()->set_max_attempts(1);
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    if (QueryParam(req.url, "page") == "1") return Reply(200, "[1,2]");
    return Reply(500, "down");
  });
  std::vector<FetchedPage> pages = h.Produce();
  ASSERT_EQ(pages.size(), 6u);  // The good page, then five failed ones (the default bound).
  EXPECT_TRUE(pages[0].ok);
  for (size_t i = 1; i < pages.size(); ++i) EXPECT_FALSE(pages[i].ok);
  ASSERT_EQ(h.fatal().size(), 1u);
  EXPECT_THAT(h.fatal()[0], HasSubstr("5 consecutive pages failed"));
}

TEST(PaginationTest, IndexedMaxPagesGuardStopsAnEndlessApi) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_pagination()->set_max_pages(4);
  Harness h(spec, [](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
    return Reply(200, "[1,2]");  // Never short, never a total.
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_EQ(pages.size(), 4u);
  ASSERT_EQ(h.fatal().size(), 1u);
  EXPECT_THAT(h.fatal()[0], HasSubstr("max_pages=4"));
}

// ---- Chain pagination ----

v1::JobSpec CursorSpec() {
  v1::JobSpec spec = BaseSpec(v1::CURSOR);
  spec.mutable_pagination()->set_records_path("/items");
  spec.mutable_pagination()->set_cursor_path("/next");
  return spec;
}

TEST(PaginationTest, ChainFollowsCursorsAndStopsOnAbsentCursor) {
  Harness h(CursorSpec(), [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    std::string c = QueryParam(req.url, "cursor");
    if (c.empty()) return Reply(200, R"({"items":[1,2],"next":"a"})");
    if (c == "a") return Reply(200, R"({"items":[3],"next":"b"})");
    return Reply(200, R"({"items":[4]})");
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("", "a", "b"));
  EXPECT_THAT(NextTokens(pages), ElementsAre("a", "b", ""));
  EXPECT_EQ(h.http().urls().size(), 3u);
  EXPECT_THAT(h.fatal(), IsEmpty());
}

TEST(PaginationTest, ChainStopsOnEmptyOrNullCursor) {
  for (const char* last : {R"("")", "null"}) {
    Harness h(CursorSpec(), [last](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
      if (QueryParam(req.url, "cursor").empty()) return Reply(200, R"({"items":[1],"next":"x"})");
      return Reply(200, absl::StrCat(R"({"items":[2],"next":)", last, "}"));
    });
    std::vector<FetchedPage> pages = h.Produce();
    EXPECT_THAT(Tokens(pages), ElementsAre("", "x")) << last;
    EXPECT_EQ(pages.back().next_token, "") << last;
    EXPECT_THAT(h.fatal(), IsEmpty()) << last;
  }
}

TEST(PaginationTest, ChainRepeatedCursorTripsTheLoopGuard) {
  Harness h(CursorSpec(), [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    std::string c = QueryParam(req.url, "cursor");
    if (c.empty()) return Reply(200, R"({"items":[1],"next":"a"})");
    if (c == "a") return Reply(200, R"({"items":[2],"next":"b"})");
    return Reply(200, R"({"items":[3],"next":"a"})");  // Back to page 1.
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_EQ(pages.size(), 3u);
  EXPECT_EQ(h.http().urls().size(), 3u);
  ASSERT_EQ(h.fatal().size(), 1u);
  EXPECT_THAT(h.fatal()[0], HasSubstr("loop guard: page 2 points back to page 1"));
}

TEST(PaginationTest, ChainCursorPointingToItselfTripsTheLoopGuard) {
  Harness h(CursorSpec(), [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    if (QueryParam(req.url, "cursor").empty()) return Reply(200, R"({"items":[1],"next":"a"})");
    return Reply(200, R"({"items":[2],"next":"a"})");
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("", "a"));
  EXPECT_EQ(h.http().urls().size(), 2u);  // Page 1 is not requested again.
  ASSERT_EQ(h.fatal().size(), 1u);
  EXPECT_THAT(h.fatal()[0], HasSubstr("loop guard: page 1 names itself as the next page"));
}

TEST(PaginationTest, ChainEmptyPageNamingItselfEndsTheJob) {
  Harness h(CursorSpec(), [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    if (QueryParam(req.url, "cursor").empty()) return Reply(200, R"({"items":[1],"next":"a"})");
    return Reply(200, R"({"items":[],"next":"a"})");
  });
  std::vector<FetchedPage> pages = h.Produce();
  EXPECT_THAT(Tokens(pages), ElementsAre("", "a"));
  EXPECT_EQ(pages.back().next_token, "");
  EXPECT_THAT(h.fatal(), IsEmpty());
}

TEST(PaginationTest, ChainResumesAfterTheCommittedPrefix) {
  Harness h(CursorSpec(), [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    if (QueryParam(req.url, "cursor") == "b") return Reply(200, R"({"items":[3]})");
    return Reply(500, "must not be asked");
  });
  v1::CommittedPage p0, p1;
  p0.set_page_number(0);
  p0.set_next_page_token("a");
  p1.set_page_number(1);
  p1.set_page_token("a");
  p1.set_next_page_token("b");
  std::vector<FetchedPage> pages = h.Produce({p0, p1});
  ASSERT_EQ(pages.size(), 1u);
  EXPECT_EQ(pages[0].page_number, 2);
  EXPECT_EQ(pages[0].token, "b");
  EXPECT_TRUE(pages[0].ok);
}

TEST(PaginationTest, ChainStopsAtAFailedPageWithANote) {
  Harness h(CursorSpec(), [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    if (QueryParam(req.url, "cursor").empty()) return Reply(200, R"({"items":[1],"next":"a"})");
    return Reply(404, "gone");
  });
  std::vector<FetchedPage> pages = h.Produce();
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_FALSE(pages[1].ok);
  EXPECT_THAT(h.note(), HasSubstr("stopped at page 1"));
  EXPECT_THAT(h.fatal(), IsEmpty());
}

TEST(PaginationTest, FirstPageFailureFailsTheJob) {
  Harness h(CursorSpec(),
            [](const HttpRequest&) -> absl::StatusOr<HttpResponse> { return Reply(400, "bad"); });
  std::vector<FetchedPage> pages = h.Produce();
  ASSERT_EQ(pages.size(), 1u);
  ASSERT_EQ(h.fatal().size(), 1u);
  EXPECT_THAT(h.fatal()[0], HasSubstr("the first page failed: HTTP 400"));
}

// ---- PageFetcher ----

TEST(PageFetcherTest, RetriesA503ThenSucceeds) {
  std::atomic<int> calls{0};
  Harness h(BaseSpec(v1::PAGE), [&](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
    if (calls.fetch_add(1) == 0) return Reply(503, "busy");
    return Reply(200, "[1,2,3]");
  });
  auto parser = JsonPageParser::Create({"", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = h.fetcher().Fetch(0, "1", parser->get());
  EXPECT_TRUE(page.ok) << page.error;
  EXPECT_EQ(page.attempts, 2);
  EXPECT_EQ(page.records, 3);
  EXPECT_EQ(h.counters().http_requests.load(), 2);
  EXPECT_EQ(h.counters().http_retries.load(), 1);
  EXPECT_EQ(h.counters().pages_failed.load(), 0);
  v1::RetryPolicy policy = WithDefaults(BaseSpec(v1::PAGE), 1).retry();
  EXPECT_THAT(h.waits(), ElementsAre(absl::Seconds(BackoffSeconds(policy, 1))));
}

TEST(PageFetcherTest, GivesUpAfterMaxAttemptsAndThePageIsRecordedFailed) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_pagination()->set_total_pages_path("/total");
  spec.mutable_pagination()->set_records_path("/data");
  Harness h(spec, [](const HttpRequest& req) -> absl::StatusOr<HttpResponse> {
    if (QueryParam(req.url, "page") == "2") return Reply(503, "busy");
    return Reply(200, R"({"total":3,"data":[1]})");
  });
  auto parser = JsonPageParser::Create({"/data", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = h.fetcher().Fetch(1, "2", parser->get());
  EXPECT_FALSE(page.ok);
  EXPECT_FALSE(page.cancelled);
  EXPECT_EQ(page.attempts, 3);
  EXPECT_EQ(page.error, "HTTP 503 after 3 attempts");
  EXPECT_EQ(h.counters().pages_failed.load(), 1);
  EXPECT_EQ(h.waits().size(), 2u);

  // Through the producer: the failed page reaches the sender (which records it) and the job goes
  // on with the other pages.
  std::vector<FetchedPage> pages = h.Produce();
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_TRUE(pages[0].ok);
  EXPECT_FALSE(pages[1].ok);
  EXPECT_EQ(pages[1].token, "2");
  EXPECT_EQ(pages[1].attempts, 3);
  EXPECT_TRUE(pages[2].ok);
  EXPECT_THAT(h.fatal(), IsEmpty());
}

TEST(PageFetcherTest, PermanentStatusIsNotRetried) {
  Harness h(BaseSpec(v1::PAGE),
            [](const HttpRequest&) -> absl::StatusOr<HttpResponse> { return Reply(404, "no"); });
  auto parser = JsonPageParser::Create({"", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = h.fetcher().Fetch(0, "1", parser->get());
  EXPECT_FALSE(page.ok);
  EXPECT_EQ(page.attempts, 1);
  EXPECT_EQ(page.error, "HTTP 404");
  EXPECT_THAT(h.waits(), IsEmpty());
}

TEST(PageFetcherTest, BuildsChunksUnderMaxMessageBytes) {
  std::string body = "[";
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(&body, i ? "," : "", R"({"id":)", i, R"(,"pad":"xxxxxxxxxxxxxxxx"})");
  }
  body += "]";
  PageFetcherOptions options;
  options.max_message_bytes = 100;
  Harness h(
      BaseSpec(v1::PAGE),
      [&](const HttpRequest&) -> absl::StatusOr<HttpResponse> { return Reply(200, body); },
      options);
  auto parser = JsonPageParser::Create({"", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = h.fetcher().Fetch(4, "5", parser->get());
  ASSERT_TRUE(page.ok) << page.error;
  EXPECT_EQ(page.records, 10);
  ASSERT_GT(page.batches.size(), 1u);
  int records = 0;
  for (size_t i = 0; i < page.batches.size(); ++i) {
    const v1::RecordBatch& b = page.batches[i];
    size_t bytes = 0;
    for (const std::string& r : b.records()) bytes += r.size();
    EXPECT_LE(bytes, options.max_message_bytes) << "chunk " << i;
    EXPECT_EQ(b.chunk_index(), int32_t(i));
    EXPECT_EQ(b.last_chunk(), i + 1 == page.batches.size());
    EXPECT_EQ(b.job_id(), "job-1");
    EXPECT_EQ(b.page_number(), 4);
    EXPECT_EQ(b.page_token(), "5");
    records += b.records_size();
  }
  EXPECT_EQ(records, 10);
  EXPECT_EQ(page.batches[0].records(0), R"({"id":0,"pad":"xxxxxxxxxxxxxxxx"})");
}

// Records that are not JSON objects travel with a rejection (dead letters) unless the spec
// allows them; the objects of the same page are sent as usual.
TEST(PageFetcherTest, NonObjectRecordsAreRejectedUnlessAllowed) {
  for (bool allow : {false, true}) {
    v1::JobSpec spec = BaseSpec(v1::NONE);
    spec.set_allow_non_object_records(allow);
    Harness h(spec, [](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
      return Reply(200, R"([{"a":1}, 2, "s", [3], null])");
    });
    std::vector<FetchedPage> pages = h.Produce();
    ASSERT_EQ(pages.size(), 1u);
    ASSERT_TRUE(pages[0].ok) << pages[0].error;
    ASSERT_EQ(pages[0].batches.size(), 1u);
    const v1::RecordBatch& b = pages[0].batches[0];
    ASSERT_EQ(b.records_size(), 5);
    if (allow) {
      EXPECT_EQ(b.rejections_size(), 0);
    } else {
      ASSERT_EQ(b.rejections_size(), 5);
      EXPECT_EQ(b.rejections(0), "");
      for (int i = 1; i < 5; ++i) {
        EXPECT_THAT(b.rejections(i), HasSubstr("not a JSON object")) << i;
      }
    }
  }
}

// A record that cannot fit in one writer message is sent as a prefix with its reason, never whole
// (the writer would refuse the message and the stream would break on every resume).
TEST(PageFetcherTest, RecordLargerThanTheWriterLimitIsRejectedNotSent) {
  v1::JobSpec spec = BaseSpec(v1::NONE);
  PageFetcherOptions options;
  options.max_message_bytes = 1 << 10;
  options.writer_max_message_bytes = 1 << 16;
  const std::string big = absl::StrCat(R"({"v":")", std::string(100000, 'x'), R"("})");
  Harness h(
      spec,
      [&](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
        return Reply(200, absl::StrCat(R"([{"a":1},)", big, R"(,{"b":2}])"));
      },
      options);
  std::vector<FetchedPage> pages = h.Produce();
  ASSERT_EQ(pages.size(), 1u);
  ASSERT_TRUE(pages[0].ok) << pages[0].error;
  EXPECT_EQ(pages[0].records, 3);
  std::vector<std::string> records, rejections;
  for (const auto& b : pages[0].batches) {
    EXPECT_LE(b.ByteSizeLong(), options.writer_max_message_bytes);
    ASSERT_EQ(b.rejections_size(), b.records_size());
    for (int i = 0; i < b.records_size(); ++i) {
      records.push_back(b.records(i));
      rejections.push_back(b.rejections(i));
    }
  }
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0], R"({"a":1})");
  EXPECT_EQ(records[1].size(), kRejectedRecordPrefixBytes);
  EXPECT_THAT(rejections[1], HasSubstr("exceeds the message limit"));
  EXPECT_EQ(rejections[0], "");
  EXPECT_EQ(rejections[2], "");
}

TEST(PageFetcherTest, SendsTheCredentialButKeepsItOutOfErrors) {
  v1::JobSpec spec = BaseSpec(v1::PAGE);
  spec.mutable_auth()->set_type(v1::BEARER);
  Harness h(spec, [](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
    return absl::UnavailableError("connection reset while sending s3cr3t-value");
  });
  ResolvedCredential credential;
  credential.secret = "s3cr3t-value";
  credential.headers = {{"Authorization", "Bearer s3cr3t-value"}};
  credential.hosts = {"api.test"};
  h.fetcher().SetCredential(credential);
  auto parser = JsonPageParser::Create({"", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = h.fetcher().Fetch(0, "1", parser->get());
  EXPECT_FALSE(page.ok);
  EXPECT_EQ(page.attempts, 3);
  EXPECT_THAT(page.error, Not(HasSubstr("s3cr3t-value")));
  EXPECT_THAT(page.error, HasSubstr("[REDACTED]"));
  std::vector<HttpRequest> requests = h.http().requests();
  ASSERT_FALSE(requests.empty());
  bool bearer = false;
  for (const auto& [name, value] : requests[0].credential_headers) {
    if (name == "Authorization" && value == "Bearer s3cr3t-value") bearer = true;
  }
  EXPECT_TRUE(bearer);
  EXPECT_EQ(requests[0].credential_hosts, credential.hosts);  // The fetcher enforces the binding.
  EXPECT_EQ(QueryParam(requests[0].url, "page"), "1");
}

TEST(PageFetcherTest, AuthFailureIsNotRetried) {
  Harness h(BaseSpec(v1::PAGE),
            [](const HttpRequest&) -> absl::StatusOr<HttpResponse> { return Reply(401, ""); });
  auto parser = JsonPageParser::Create({"", "", "", "", "", ""});
  ASSERT_TRUE(parser.ok());
  FetchedPage page = h.fetcher().Fetch(0, "1", parser->get());
  EXPECT_TRUE(page.auth_failed);
  EXPECT_EQ(h.http().urls().size(), 1u);
}

}  // namespace
}  // namespace etl
