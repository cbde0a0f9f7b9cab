// Issue 6, items 6 and 7 (collector side), end to end: an in-process CollectorServer, the real
// writer_server binary as a child process, a real PostgreSQL (the one scripts/test starts, behind a
// TcpProxy where a test takes it down) and a loopback test API.
//
// Item 6: a cancel while the writer is down for longer than the old give-up, and a failed page
// while PostgreSQL is down, reach the ledger once they are back (durable intents), and a cancelled
// job is not resumed by a restarted collector.
// Item 7: StartJob with a request_id is idempotent (concurrent calls, a call that timed out while
// registering) and the data is loaded once.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "collector_service/collector_server.h"
#include "etl.grpc.pb.h"
#include "tests/collector_service/test_api.h"
#include "tests/testing/tcp_proxy.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

using ::etl::testing::ApiRequest;
using ::etl::testing::ChildProcess;
using ::etl::testing::QueryValue;
using ::etl::testing::TcpProxy;
using ::etl::testing::TestApi;
using ::etl::testing::WaitFor;

// The most records per page the capping test API returns, whatever is asked.
constexpr int kCappedPageSize = 10;

class CollectorIntentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    suffix_ = etl::testing::UniqueSuffix();
  }

  void TearDown() override {
    collector_.reset();
    apis_.clear();
    writer_.reset();
  }

  TestApi& NewApi(int total, int page_size) {
    apis_.push_back(std::make_unique<TestApi>(total, page_size));
    return *apis_.back();
  }

  void StartWriter(const std::string& listen, const std::string& database_url = "") {
    std::map<std::string, std::string> env;
    if (!database_url.empty()) env["DATABASE_URL"] = database_url;
    auto child = ChildProcess::Start(etl::testing::BinaryPath("writer_server"),
                                     {"--listen=" + listen, "--flush_interval_ms=20"}, env);
    ASSERT_TRUE(child.ok()) << child.status();
    writer_ = std::move(*child);
  }

  void StartCollector(bool resume = false) {
    CollectorOptions options;
    options.listen = "127.0.0.1:0";
    options.writer_address = writer_address_.empty() ? writer_->address() : writer_address_;
    options.resume_unfinished = resume;
    options.status_poll_interval = absl::Milliseconds(200);
    options.fetcher.allow_private_networks = true;  // The test APIs are on loopback.
    // A retry schedule of milliseconds, so that many retries (more than the old give-up) fit in a
    // few seconds.
    options.intents.initial_backoff = absl::Milliseconds(20);
    options.intents.max_backoff = absl::Milliseconds(150);
    options.intents.rpc_timeout = absl::Seconds(2);
    options.final_state_wait = absl::Milliseconds(300);
    options.cancel_grace = absl::Seconds(1);
    options.register_timeout = register_timeout_;
    auto server = CollectorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    collector_ = std::move(*server);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", collector_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::CollectorService::NewStub(channel);
  }

  Collector* collector() { return collector_->collector(); }

  v1::JobSpec CursorSpec(const TestApi& api) {
    v1::JobSpec spec;
    spec.set_cliente_id("i" + suffix_);
    spec.set_rota("pedidos");
    spec.set_url(api.Url("/cursor"));
    spec.mutable_pagination()->set_style(v1::CURSOR);
    spec.mutable_pagination()->set_records_path("/items");
    spec.mutable_pagination()->set_cursor_path("/next");
    spec.mutable_retry()->set_backoff_scale(0.01);
    spec.set_id_path("/id");
    spec.set_write_mode(v1::APPEND);  // A duplicated record shows up as a second row.
    return spec;
  }

  v1::JobSpec PageSpec(const TestApi& api) {
    v1::JobSpec spec = CursorSpec(api);
    spec.set_url(api.Url("/page"));
    spec.mutable_pagination()->set_style(v1::PAGE);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_cursor_path("");
    spec.mutable_pagination()->set_page_size(50);
    spec.mutable_pagination()->set_total_pages_path("/meta/total_pages");
    spec.set_fetch_concurrency(1);
    spec.mutable_retry()->set_max_attempts(2);
    return spec;
  }

  grpc::Status Start(const v1::JobSpec& spec, v1::Job* job,
                     absl::Duration deadline = absl::Seconds(30)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return stub_->StartJob(&ctx, spec, job);
  }

  grpc::Status Cancel(const std::string& id, v1::Job* job) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::JobRef ref;
    ref.set_job_id(id);
    return stub_->CancelJob(&ctx, ref, job);
  }

  v1::Job GetJob(const std::string& id) {
    grpc::ClientContext ctx;
    v1::JobRef ref;
    ref.set_job_id(id);
    v1::Job job;
    grpc::Status s = stub_->GetJob(&ctx, ref, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  // Follows the job until it ends, then returns GetJob.
  v1::Job WaitJob(const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    v1::JobRef ref;
    ref.set_job_id(id);
    auto reader = stub_->WatchJob(&ctx, ref);
    v1::JobProgress p;
    while (reader->Read(&p)) {
    }
    EXPECT_TRUE(reader->Finish().ok());
    return GetJob(id);
  }

  static std::string LedgerState(const std::string& job_id) {
    return QueryValue(absl::StrCat("SELECT state FROM etl_jobs WHERE job_id = '", job_id, "'"));
  }

  static int64_t Count(const std::string& table) {
    return std::stoll(QueryValue(absl::StrCat("SELECT count(*) FROM ", table)));
  }

  // Registers an unfinished job directly in the ledger: once a restarted collector resumed it,
  // its resume went through the whole list of unfinished jobs.
  std::string RegisterSentinel() {
    TestApi& other = NewApi(20, 10);
    const std::string id = "sentinel" + suffix_;
    auto channel = grpc::CreateChannel(writer_->address(), grpc::InsecureChannelCredentials());
    auto writer = v1::WriterService::NewStub(channel);
    grpc::ClientContext ctx;
    v1::RegisterJobRequest reg;
    reg.set_job_id(id);
    *reg.mutable_spec() = CursorSpec(other);
    reg.mutable_spec()->set_rota("sentinel");
    reg.mutable_spec()->set_fetch_concurrency(1);
    v1::JobRecord rec;
    grpc::Status s = writer->RegisterJob(&ctx, reg, &rec);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return id;
  }

  void WaitResumed(const std::string& sentinel) {
    ASSERT_TRUE(WaitFor([&] { return collector()->FindJob(sentinel) != nullptr; }));
    EXPECT_EQ(WaitJob(sentinel).state(), v1::SUCCEEDED);
  }

  // Rows of `table` and distinct record ids in it: equal to the API's total when loaded once.
  static std::pair<int64_t, int64_t> RowsAndIds(const std::string& table) {
    return {
        Count(table),
        std::stoll(QueryValue(absl::StrCat("SELECT count(DISTINCT payload->>'id') FROM ", table)))};
  }

  static std::string JobsOfRequest(const std::string& request_id) {
    return QueryValue(absl::StrCat("SELECT count(*) FROM etl_jobs WHERE spec->>'request_id' = '",
                                   request_id, "'"));
  }

  absl::Duration register_timeout_ = absl::Seconds(30);
  std::string suffix_;
  std::string writer_address_;  // Non-empty: the collector's writer address instead of writer_.
  std::vector<std::unique_ptr<TestApi>> apis_;
  std::unique_ptr<ChildProcess> writer_;
  std::unique_ptr<CollectorServer> collector_;
  std::unique_ptr<v1::CollectorService::Stub> stub_;
};

// Item 6: before, PersistState gave up after 20 attempts and the job ran again after a restart.
TEST_F(CollectorIntentsTest, CancelWhileTheWriterIsDownIsRecordedOnceItReturnsAndSticks) {
  StartWriter("127.0.0.1:0");
  StartCollector();
  TestApi& api = NewApi(2000, 50);
  absl::Notification release;
  api.SetHook([&release](const ApiRequest& r, httplib::Response&) {
    if (r.page_index == 10) release.WaitForNotificationWithTimeout(absl::Seconds(60));
    return false;
  });
  v1::Job job;
  ASSERT_TRUE(Start(CursorSpec(api), &job).ok());
  ASSERT_TRUE(api.WaitFor(
      [](const std::vector<ApiRequest>& rs) { return !rs.empty() && rs.back().page_index == 10; },
      absl::Seconds(30)));
  const int port = writer_->port();
  writer_->Signal(SIGKILL);
  writer_.reset();

  // The job stops here at once; CANCELLED is not durable yet, and the answer says so.
  v1::Job cancelled;
  grpc::Status s = Cancel(job.job_id(), &cancelled);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "not yet durable")) << s.error_message();
  release.Notify();
  v1::Job local = GetJob(job.job_id());
  EXPECT_EQ(local.state(), v1::CANCELLED);
  EXPECT_TRUE(local.ledger_write_pending());
  // Far more attempts than the old give-up (20 for a final state), observed through the metrics.
  ASSERT_TRUE(WaitFor([&] { return collector()->counters().ledger_intent_retries.load() >= 30; }));
  EXPECT_TRUE(absl::StrContains(collector()->RenderMetrics(),
                                "\netl_collector_ledger_intents_pending 1\n"));
  EXPECT_EQ(LedgerState(job.job_id()), "RUNNING");

  StartWriter(absl::StrCat("127.0.0.1:", port));
  ASSERT_TRUE(WaitFor([&] { return !collector()->intents().Pending(job.job_id()); }));
  EXPECT_EQ(LedgerState(job.job_id()), "CANCELLED");
  EXPECT_FALSE(GetJob(job.job_id()).ledger_write_pending());
  EXPECT_EQ(collector()->counters().ledger_intents_pending.load(), 0);
  // The client's retry of the cancel now answers that the job ended CANCELLED.
  s = Cancel(job.job_id(), &cancelled);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();

  // A restarted collector resumes unfinished jobs, but not this one. A second, unfinished job
  // shows when the resume went through the ledger's list.
  const std::string sentinel = RegisterSentinel();
  const size_t requests_before = api.requests().size();
  collector_.reset();
  StartCollector(/*resume=*/true);
  ASSERT_NO_FATAL_FAILURE(WaitResumed(sentinel));
  EXPECT_EQ(collector()->FindJob(job.job_id()), nullptr);
  EXPECT_EQ(LedgerState(job.job_id()), "CANCELLED");
  EXPECT_EQ(api.requests().size(), requests_before);
}

// Item 6: before, RecordFailure gave up after 5 tries and the PARTIAL job listed no failed page.
TEST_F(CollectorIntentsTest, FailedPageWhilePostgresIsDownIsListedOnceItReturns) {
  const int pg_port = std::stoi(QueryValue("SELECT inet_server_port()"));
  TcpProxy proxy(pg_port);
  ASSERT_TRUE(proxy.Start());
  StartWriter("127.0.0.1:0", absl::StrCat("postgresql://", QueryValue("SELECT current_user"),
                                          "@127.0.0.1:", proxy.port(), "/",
                                          QueryValue("SELECT current_database()")));
  StartCollector();
  TestApi& api = NewApi(300, 50);
  absl::Notification pg_down;
  api.SetHook([&pg_down](const ApiRequest& r, httplib::Response& res) {
    if (r.page_index != 2) return false;
    pg_down.WaitForNotificationWithTimeout(absl::Seconds(60));
    res.status = 500;
    res.set_content("down", "text/plain");
    return true;
  });
  v1::JobSpec spec = PageSpec(api);
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  ASSERT_TRUE(api.WaitFor(
      [](const std::vector<ApiRequest>& rs) { return !rs.empty() && rs.back().page_index == 2; },
      absl::Seconds(30)));
  proxy.Stop();  // PostgreSQL "down" for the writer.
  pg_down.Notify();
  // Many more attempts than the old 5 while the database is down.
  ASSERT_TRUE(WaitFor([&] { return collector()->counters().ledger_intent_retries.load() >= 15; }));
  ASSERT_TRUE(proxy.Start());
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::PARTIAL) << final_job.error();
  EXPECT_FALSE(final_job.ledger_write_pending());
  EXPECT_EQ(LedgerState(job.job_id()), "PARTIAL");
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT string_agg(page_number::text, ',') FROM etl_pages "
                                    "WHERE state = 'failed' AND job_id = '",
                                    job.job_id(), "'")),
            "2");
  EXPECT_EQ(Count(final_job.table_name()), 250);
}

// Item 7: the same request_id at once from two clients starts one job.
TEST_F(CollectorIntentsTest, ConcurrentStartJobsWithOneRequestIdStartOneJob) {
  StartWriter("127.0.0.1:0");
  StartCollector();
  TestApi& api = NewApi(500, 50);
  v1::JobSpec spec = CursorSpec(api);
  spec.set_request_id("req-" + suffix_);
  v1::Job a, b;
  grpc::Status sa, sb;
  std::thread t1([&] { sa = Start(spec, &a); });
  std::thread t2([&] { sb = Start(spec, &b); });
  t1.join();
  t2.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  ASSERT_TRUE(sb.ok()) << sb.error_message();
  EXPECT_EQ(a.job_id(), b.job_id());
  v1::Job final_job = WaitJob(a.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  // A third call after the end returns the finished job.
  v1::Job c;
  ASSERT_TRUE(Start(spec, &c).ok());
  EXPECT_EQ(c.job_id(), a.job_id());
  EXPECT_EQ(c.state(), v1::SUCCEEDED);
  EXPECT_EQ(JobsOfRequest(spec.request_id()), "1");
  EXPECT_EQ(RowsAndIds(final_job.table_name()), std::make_pair(int64_t{500}, int64_t{500}));
  // An invalid id is refused before anything is registered.
  spec.set_request_id("no spaces");
  EXPECT_EQ(Start(spec, &c).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Item 7: before, the first call's job ran and the retry started a second one (data twice).
TEST_F(CollectorIntentsTest, StartJobThatTimedOutWhileRegisteringAndIsRetriedLoadsOnce) {
  StartWriter("127.0.0.1:0");
  StartCollector();
  TestApi& api = NewApi(500, 50);
  v1::JobSpec spec = CursorSpec(api);
  spec.set_request_id("req-" + suffix_);
  ASSERT_EQ(kill(writer_->pid(), SIGSTOP), 0);
  v1::Job first;
  grpc::Status s = Start(spec, &first, absl::Seconds(1));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  ASSERT_EQ(kill(writer_->pid(), SIGCONT), 0);
  v1::Job again;
  s = Start(spec, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::Job final_job = WaitJob(again.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  EXPECT_EQ(JobsOfRequest(spec.request_id()), "1");
  // Only one job was ever held by the collector for this table.
  EXPECT_EQ(RowsAndIds(final_job.table_name()), std::make_pair(int64_t{500}, int64_t{500}));
}

// Item 7: a StartJob told UNAVAILABLE (registration not confirmed) never runs by itself; its retry
// with the same request_id runs it once.
TEST_F(CollectorIntentsTest, UnconfirmedRegistrationNeverRunsUntilTheClientRetries) {
  register_timeout_ = absl::Milliseconds(500);
  StartWriter("127.0.0.1:0");
  StartCollector();
  TestApi& api = NewApi(300, 50);
  v1::JobSpec spec = CursorSpec(api);
  spec.set_request_id("req-" + suffix_);
  ASSERT_EQ(kill(writer_->pid(), SIGSTOP), 0);
  v1::Job first;
  grpc::Status s = Start(spec, &first);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "same request_id")) << s.error_message();
  ASSERT_EQ(kill(writer_->pid(), SIGCONT), 0);
  // The not-confirmed registration settles: no job, or a FAILED one; nothing fetched.
  ASSERT_TRUE(WaitFor([&] { return collector()->counters().ledger_intents_pending.load() == 0; }));
  const std::string state = QueryValue(absl::StrCat(
      "SELECT coalesce(string_agg(state, ','), 'none') FROM etl_jobs WHERE spec->>'request_id' = "
      "'",
      spec.request_id(), "'"));
  EXPECT_TRUE(state == "none" || state == "FAILED") << state;
  // A restarted collector does not resume it either.
  const std::string sentinel = RegisterSentinel();
  collector_.reset();
  StartCollector(/*resume=*/true);
  ASSERT_NO_FATAL_FAILURE(WaitResumed(sentinel));
  EXPECT_TRUE(api.requests().empty());
  v1::Job again;
  s = Start(spec, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::Job final_job = WaitJob(again.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  EXPECT_EQ(JobsOfRequest(spec.request_id()), "1");
  EXPECT_EQ(RowsAndIds(final_job.table_name()), std::make_pair(int64_t{300}, int64_t{300}));
}

// Item 4 on resume: an OFFSET API that caps its page size at 10 (50 asked). A collector restarted
// mid-job must re-learn the capped size before it indexes the remaining pages (offsets of 50 would
// skip 40 records in each page).
TEST_F(CollectorIntentsTest, ResumedJobRelearnsTheCappedPageSizeAfterACollectorRestart) {
  StartWriter("127.0.0.1:0");
  StartCollector();
  TestApi& api = NewApi(300, 50);
  absl::Notification release;
  auto param = [](const ApiRequest& r, const char* name) {
    auto it = r.params.find(name);
    return it == r.params.end() ? 0 : std::stoi(it->second);
  };
  api.SetHook([&api, &release, param](const ApiRequest& r, httplib::Response& res) {
    const int offset = param(r, "offset");
    if (offset == 150) release.WaitForNotificationWithTimeout(absl::Seconds(60));
    const int total = int(api.records().size());
    const int n = std::min(kCappedPageSize, std::max(0, param(r, "limit")));
    std::vector<std::string> slice;
    for (int i = offset; i < std::min(total, offset + n); ++i) {
      slice.push_back(api.records()[size_t(i)]);
    }
    res.set_content(
        absl::StrCat(R"({"count":)", total, R"(,"results":[)", absl::StrJoin(slice, ","), "]}"),
        "application/json");
    return true;
  });
  v1::JobSpec spec = CursorSpec(api);
  spec.set_url(api.Url("/offset"));
  spec.mutable_pagination()->set_style(v1::OFFSET);
  spec.mutable_pagination()->set_records_path("/results");
  spec.mutable_pagination()->set_cursor_path("");
  spec.mutable_pagination()->set_page_size(50);
  spec.mutable_pagination()->set_total_count_path("/count");
  spec.set_fetch_concurrency(1);
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  ASSERT_TRUE(api.WaitFor(
      [&](const std::vector<ApiRequest>& rs) {
        return !rs.empty() && param(rs.back(), "offset") == 150;
      },
      absl::Seconds(30)));
  collector_.reset();  // Leaves the job unfinished in the ledger, its first pages committed.
  release.Notify();
  ASSERT_NE(QueryValue(absl::StrCat("SELECT count(*) FROM etl_pages WHERE job_id = '", job.job_id(),
                                    "' AND state = 'committed'")),
            "0");
  StartCollector(/*resume=*/true);
  ASSERT_TRUE(WaitFor([&] { return collector()->FindJob(job.job_id()) != nullptr; }));
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  EXPECT_EQ(RowsAndIds(final_job.table_name()), std::make_pair(int64_t{300}, int64_t{300}));
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT min((payload->>'id')::int)::text || '-' || "
                                    "max((payload->>'id')::int)::text FROM ",
                                    final_job.table_name())),
            "0-299");
}

}  // namespace
}  // namespace etl
