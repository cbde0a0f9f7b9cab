// End-to-end: a scripted HTTP API on loopback -> in-process CollectorServer (real gRPC channel)
// -> writer_server child process -> real PostgreSQL. "Exact" = every API record exactly once.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "collector_service/collector_server.h"
#include "etl.grpc.pb.h"
#include "tests/collector_service/test_api.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

using ::etl::testing::ApiRequest;
using ::etl::testing::ChildProcess;
using ::etl::testing::TestApi;

// Holds ACCESS EXCLUSIVE on a table in an open transaction, so commits into it stall until
// Release() (or destruction, so a failed assertion never leaves the lock behind).
class TableLock {
 public:
  explicit TableLock(const std::string& table)
      : conn_(PQconnectdb(etl::testing::PostgresConnString().c_str())) {
    if (ok())
      PQclear(PQexec(
          conn_, absl::StrCat("BEGIN; LOCK TABLE ", table, " IN ACCESS EXCLUSIVE MODE").c_str()));
  }
  TableLock(const TableLock&) = delete;
  TableLock& operator=(const TableLock&) = delete;
  ~TableLock() { Release(); }

  ConnStatusType status() const { return PQstatus(conn_); }
  bool ok() const { return status() == CONNECTION_OK; }

  void Release() {
    if (conn_ == nullptr) return;
    if (ok()) PQclear(PQexec(conn_, "COMMIT"));
    PQfinish(conn_);
    conn_ = nullptr;
  }

 private:
  PGconn* conn_;
};

class CollectorIntegrationTest : public ::testing::Test {
 protected:
  int64_t max_stream_bytes_ = 0;  // > 0: the collector's --max-stream-bytes.
  std::string writer_target_;     // Non-empty: the collector's writer address instead of writer_.
  void SetUp() override {
    if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    StartWriter("127.0.0.1:0");
    StartCollector();
  }

  void TearDown() override {
    // The collector first: it closes its keep-alive connections, so the APIs stop at once.
    collector_.reset();
    apis_.clear();
    writer_.reset();
  }

  // An API that lives until TearDown (after the collector is gone).
  TestApi& NewApi(int total, int page_size, int pad_bytes = 0) {
    apis_.push_back(std::make_unique<TestApi>(total, page_size, pad_bytes));
    return *apis_.back();
  }

  void StartWriter(const std::string& listen, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen=" + listen, "--flush_interval_ms=20"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(etl::testing::BinaryPath("writer_server"), args);
    ASSERT_TRUE(child.ok()) << child.status();
    writer_ = std::move(*child);
  }

  void StartCollector(bool resume = false, size_t max_buffered_bytes = 0) {
    CollectorOptions options;
    if (max_buffered_bytes > 0) options.max_buffered_bytes = max_buffered_bytes;
    if (max_stream_bytes_ > 0) options.max_stream_bytes = max_stream_bytes_;
    options.listen = "127.0.0.1:0";
    options.writer_address = writer_target_.empty() ? writer_->address() : writer_target_;
    options.resume_unfinished = resume;
    if (writer_max_message_bytes_ > 0) options.writer_max_message_bytes = writer_max_message_bytes_;
    options.status_poll_interval = absl::Milliseconds(200);
    options.fetcher.allow_private_networks = true;  // The test APIs are on loopback.
    options.allow_spec_secret_paths = true;         // The auth tests name environment variables.
    auto server = CollectorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    collector_ = std::move(*server);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", collector_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::CollectorService::NewStub(channel);
  }

  v1::JobSpec BaseSpec(const std::string& url, v1::PaginationStyle style) {
    v1::JobSpec spec;
    spec.set_cliente_id("c" + etl::testing::UniqueSuffix());
    spec.set_rota("pedidos");
    spec.set_url(url);
    spec.mutable_pagination()->set_style(style);
    spec.mutable_retry()->set_backoff_scale(0.01);
    spec.set_id_path("/id");
    // Append, not the default merge: a duplicated record must show up as a second row here.
    spec.set_write_mode(v1::APPEND);
    return spec;
  }

  // PAGE style on the API's /page endpoint; the total page count and concurrency only when given.
  v1::JobSpec PageSpec(const TestApi& api, int page_size, bool with_total_pages = false,
                       int fetch_concurrency = 0) {
    v1::JobSpec spec = BaseSpec(api.Url("/page"), v1::PAGE);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_page_size(page_size);
    if (with_total_pages) spec.mutable_pagination()->set_total_pages_path("/meta/total_pages");
    if (fetch_concurrency > 0) spec.set_fetch_concurrency(fetch_concurrency);
    return spec;
  }

  v1::JobSpec CursorSpec(const TestApi& api) {
    v1::JobSpec spec = BaseSpec(api.Url("/cursor"), v1::CURSOR);
    spec.mutable_pagination()->set_records_path("/items");
    spec.mutable_pagination()->set_cursor_path("/next");
    return spec;
  }

  v1::JobSpec NextUrlSpec(const TestApi& api) {
    v1::JobSpec spec = BaseSpec(api.Url("/next"), v1::NEXT_URL);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_next_url_path("/links/next");
    return spec;
  }

  // Replaces the writer and the collector started by SetUp with ones configured for one test.
  void RestartServices(std::vector<std::string> writer_args, size_t max_buffered_bytes = 0) {
    collector_.reset();
    writer_.reset();
    StartWriter("127.0.0.1:0", std::move(writer_args));
    StartCollector(/*resume=*/false, max_buffered_bytes);
  }

  // Creates the job's raw table ahead of the writer (same layout); returns Exec's error, "" on
  // success.
  static std::string CreateRawTable(const std::string& table) {
    return etl::testing::Exec(absl::StrCat(
        "CREATE TABLE ", table,
        " (id bigserial PRIMARY KEY, payload jsonb NOT NULL, natural_key text, job_id text NOT "
        "NULL,"
        " page_number bigint NOT NULL, collected_at timestamptz NOT NULL DEFAULT now())"));
  }

  static std::string RawTableOf(const v1::JobSpec& spec) {
    return absl::StrCat("dados_raw_cliente_", spec.cliente_id(), "_", spec.rota());
  }

  // Makes the API hold its answer to page `page_index` until `release` is notified (or `limit`
  // passes).
  static void HoldPage(TestApi& api, int page_index, absl::Notification& release,
                       absl::Duration limit) {
    api.SetHook([&release, page_index, limit](const ApiRequest& r, httplib::Response&) {
      if (r.page_index == page_index) release.WaitForNotificationWithTimeout(limit);
      return false;
    });
  }

  // Starts `spec` with page `page_index` held, then shuts the collector down: the job stays
  // unfinished in the ledger with the pages before `page_index` committed. `release` must outlive
  // the API.
  void StartThenStopCollectorAt(TestApi& api, const v1::JobSpec& spec, int page_index,
                                absl::Notification& release, v1::Job* job) {
    HoldPage(api, page_index, release, absl::Seconds(60));
    ASSERT_TRUE(Start(spec, job).ok());
    ASSERT_TRUE(WaitForPageRequest(api, page_index));
    // Shutting down leaves the job unfinished in the ledger (its in-flight request is aborted).
    std::thread stopper([&] { collector_.reset(); });
    stopper.join();
    release.Notify();
  }

  // True once the latest request the API received is for page `page_index`.
  static bool WaitForPageRequest(TestApi& api, int page_index) {
    return api.WaitFor(
        [page_index](const std::vector<ApiRequest>& rs) {
          return !rs.empty() && rs.back().page_index == page_index;
        },
        absl::Seconds(30));
  }

  grpc::Status Start(const v1::JobSpec& spec, v1::Job* job) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-request-id", "req-123");
    ctx.AddMetadata("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    return stub_->StartJob(&ctx, spec, job);
  }

  // Follows the job with WatchJob until it ends, then returns GetJob.
  v1::Job RunToEnd(const v1::JobSpec& spec, std::vector<v1::JobProgress>* progress = nullptr) {
    v1::Job job;
    grpc::Status s = Start(spec, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return WaitJob(job.job_id(), progress);
  }

  v1::Job WaitJob(const std::string& id, std::vector<v1::JobProgress>* progress = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::JobRef ref;
    ref.set_job_id(id);
    auto reader = stub_->WatchJob(&ctx, ref);
    v1::JobProgress p;
    while (reader->Read(&p)) {
      if (progress) progress->push_back(p);
    }
    EXPECT_TRUE(reader->Finish().ok());
    return GetJob(id);
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

  // Every expected record exactly once (compared as jsonb, record by record), nothing else.
  void ExpectTableExact(const std::string& table, const std::vector<std::string>& expected) {
    std::vector<std::string> got = etl::testing::Query(
        absl::StrCat("SELECT payload::text FROM ", table, " ORDER BY (payload->>'id')::bigint"));
    std::vector<std::string> want;
    if (!expected.empty()) {
      std::vector<std::string> values;
      for (const auto& r : expected) values.push_back(absl::StrCat("($rec$", r, "$rec$)"));
      want = etl::testing::Query(absl::StrCat("SELECT x::jsonb::text FROM (VALUES ",
                                              absl::StrJoin(values, ","),
                                              ") v(x) ORDER BY (x::jsonb->>'id')::bigint"));
    }
    ASSERT_EQ(got.size(), want.size()) << "row count of " << table;
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << "row " << i << " of " << table;
  }

  static std::vector<std::string> Prefix(const TestApi& api, size_t n) {
    return std::vector<std::string>(api.records().begin(), api.records().begin() + long(n));
  }

  std::vector<std::unique_ptr<TestApi>> apis_;
  size_t writer_max_message_bytes_ = 0;  // 0 = the collector's default.
  std::unique_ptr<ChildProcess> writer_;
  std::unique_ptr<CollectorServer> collector_;
  std::unique_ptr<v1::CollectorService::Stub> stub_;
};

struct StyleCase {
  const char* name;
  v1::PaginationStyle style;
  const char* path;
  const char* records_path;
};

void PrintTo(const StyleCase& c, std::ostream* os) { *os << c.name; }

class PaginationStyleTest : public CollectorIntegrationTest,
                            public ::testing::WithParamInterface<StyleCase> {};

TEST_P(PaginationStyleTest, LoadsEveryRecordExactlyOnce) {
  const StyleCase& c = GetParam();
  TestApi& api = NewApi(/*total=*/1003, /*page_size=*/50);
  v1::JobSpec spec = BaseSpec(api.Url(c.path), c.style);
  v1::Pagination* p = spec.mutable_pagination();
  p->set_records_path(c.records_path);
  if (c.style == v1::PAGE) {
    p->set_page_size(50);
    p->set_total_pages_path("/meta/total_pages");
    spec.set_fetch_concurrency(4);
  }
  if (c.style == v1::OFFSET) {
    p->set_page_size(50);
    p->set_total_count_path("/count");
    spec.set_fetch_concurrency(3);
  }
  if (c.style == v1::CURSOR) p->set_cursor_path("/next");
  if (c.style == v1::NEXT_URL) p->set_next_url_path("/links/next");
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  ExpectTableExact(job.table_name(), api.records());
  // Natural keys: the id of each record.
  EXPECT_EQ(etl::testing::QueryValue(absl::StrCat("SELECT count(*) FROM ", job.table_name(),
                                                  " WHERE natural_key = payload->>'id'")),
            "1003");
  // Trace headers reached the API.
  for (const ApiRequest& r : api.requests()) {
    auto it = r.headers.find("X-Request-Id");
    ASSERT_NE(it, r.headers.end());
    EXPECT_EQ(it->second, "req-123");
  }
  EXPECT_EQ(job.progress().records_committed(), 1003);
}

INSTANTIATE_TEST_SUITE_P(Styles, PaginationStyleTest,
                         ::testing::Values(StyleCase{"page", v1::PAGE, "/page", "/data"},
                                           StyleCase{"offset", v1::OFFSET, "/offset", "/results"},
                                           StyleCase{"cursor", v1::CURSOR, "/cursor", "/items"},
                                           StyleCase{"link", v1::LINK, "/link", ""},
                                           StyleCase{"next_url", v1::NEXT_URL, "/next", "/data"},
                                           StyleCase{"none", v1::NONE, "/none", ""}),
                         [](const ::testing::TestParamInfo<StyleCase>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(CollectorIntegrationTest, PageStyleWithoutTotalStopsOnShortPage) {
  TestApi& api = NewApi(120, 50);
  v1::Job job = RunToEnd(PageSpec(api, 50));
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  EXPECT_EQ(api.requests().size(), 3u);  // 50 + 50 + 20 (short page) and no more.
  ExpectTableExact(job.table_name(), api.records());
}

// An API capping its page size (20) below the requested one (50) while reporting its record
// total: the job follows the total (offsets advance by records seen) and loads everything.
TEST_F(CollectorIntegrationTest, OffsetStyleFollowsTheTotalWhenTheApiCapsThePageSize) {
  TestApi& api = NewApi(130, 20);
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    auto it = r.params.find("offset");
    int offset = it == r.params.end() ? 0 : std::stoi(it->second);
    std::string body = R"({"total":130,"data":[)";
    for (int i = offset; i < std::min(offset + 20, 130); ++i) {
      absl::StrAppend(&body, i == offset ? "" : ",", api.records()[size_t(i)]);
    }
    res.set_content(body + "]}", "application/json");
    return true;
  });
  v1::JobSpec spec = BaseSpec(api.Url("/offset"), v1::OFFSET);
  spec.mutable_pagination()->set_records_path("/data");
  spec.mutable_pagination()->set_total_count_path("/total");
  spec.mutable_pagination()->set_page_size(50);
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  ExpectTableExact(job.table_name(), api.records());
}

// Records that are not JSON objects and a record larger than the writer's message limit go to
// the dead letters with their reasons; the job ends (never loops on a broken stream) and every
// other record is stored exactly once.
TEST_F(CollectorIntegrationTest, NonObjectAndOversizedRecordsGoToDeadLettersAndTheJobEnds) {
  collector_.reset();
  writer_.reset();
  StartWriter("127.0.0.1:0", {"--max_message_bytes=1048576"});
  writer_max_message_bytes_ = 1048576;
  StartCollector();
  TestApi& api = NewApi(3, 3);
  const std::string big = absl::StrCat(R"({"id":99,"v":")", std::string(2 << 20, 'x'), R"("})");
  api.SetHook([&](const ApiRequest&, httplib::Response& res) {
    res.set_content(absl::StrCat(R"({"data":[{"id":1},2,"s",)", big, R"(,{"id":3}]})"),
                    "application/json");
    return true;
  });
  v1::JobSpec spec = BaseSpec(api.Url("/none"), v1::NONE);
  spec.mutable_pagination()->set_records_path("/data");
  spec.clear_id_path();
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  ExpectTableExact(job.table_name(), {R"({"id":1})", R"({"id":3})"});
  std::vector<std::string> reasons =
      etl::testing::Query(absl::StrCat("SELECT reason FROM etl_dead_letters WHERE job_id = '",
                                       job.job_id(), "' ORDER BY record_index"));
  ASSERT_EQ(reasons.size(), 3u);
  EXPECT_THAT(reasons[0], ::testing::HasSubstr("not a JSON object"));
  EXPECT_THAT(reasons[1], ::testing::HasSubstr("not a JSON object"));
  EXPECT_THAT(reasons[2], ::testing::HasSubstr("exceeds the message limit"));
}

TEST_F(CollectorIntegrationTest, StartJobRejectsInvalidSpecs) {
  TestApi& api = NewApi(1, 1);
  auto expect_invalid = [&](const v1::JobSpec& spec, const std::string& needle) {
    v1::Job job;
    grpc::Status s = Start(spec, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << needle;
    EXPECT_NE(s.error_message().find(needle), std::string::npos) << s.error_message();
  };
  v1::JobSpec spec = BaseSpec(api.Url("/page"), v1::PAGE);
  v1::JobSpec bad = spec;
  bad.set_url("ftp://127.0.0.1/x");
  expect_invalid(bad, "scheme");
  bad = spec;
  bad.mutable_pagination()->set_style(v1::PAGINATION_STYLE_UNSPECIFIED);
  expect_invalid(bad, "pagination style");
  bad = spec;
  bad.mutable_pagination()->set_records_path("data");
  expect_invalid(bad, "records_path");
  bad = spec;
  bad.mutable_date_filter()->set_start_date("2024-02-30");
  expect_invalid(bad, "start_date");
  bad = spec;
  bad.set_rota("Pedidos!");
  expect_invalid(bad, "rota");
  bad = spec;
  bad.mutable_pagination()->set_style(v1::CURSOR);
  expect_invalid(bad, "cursor_path");
  EXPECT_TRUE(api.requests().empty());
}

TEST_F(CollectorIntegrationTest, DateFilterParamsArrive) {
  TestApi& api = NewApi(30, 50);
  v1::JobSpec spec = PageSpec(api, 50);
  spec.mutable_date_filter()->set_start_param("data_inicio");
  spec.mutable_date_filter()->set_end_param("data_fim");
  spec.mutable_date_filter()->set_start_date("2024-01-01");
  spec.mutable_date_filter()->set_end_date("2024-01-31");
  auto* kv = spec.add_query_params();
  kv->set_key("filtro");
  kv->set_value("a b&c=d/é");
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  auto reqs = api.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].params.find("data_inicio")->second, "2024-01-01");
  EXPECT_EQ(reqs[0].params.find("data_fim")->second, "2024-01-31");
  EXPECT_EQ(reqs[0].params.find("filtro")->second, "a b&c=d/é");
  ExpectTableExact(job.table_name(), api.records());
}

TEST_F(CollectorIntegrationTest, BearerAuthRequiredAndSent) {
  TestApi& api = NewApi(120, 50);
  api.SetHook([](const ApiRequest& r, httplib::Response& res) {
    auto it = r.headers.find("Authorization");
    if (it != r.headers.end() && it->second == "Bearer s3cret-token") return false;
    res.status = 401;
    res.set_content(R"({"error":"unauthorized"})", "application/json");
    return true;
  });
  setenv("COLLECTOR_TEST_TOKEN", "s3cret-token", 1);
  setenv("COLLECTOR_TEST_WRONG_TOKEN", "nope", 1);
  v1::JobSpec spec = CursorSpec(api);
  spec.mutable_auth()->set_type(v1::BEARER);
  spec.mutable_auth()->set_secret_env("COLLECTOR_TEST_WRONG_TOKEN");
  v1::Job failed = RunToEnd(spec);
  EXPECT_EQ(failed.state(), v1::FAILED);
  EXPECT_NE(failed.error().find("401"), std::string::npos) << failed.error();
  EXPECT_NE(failed.error().find("auth"), std::string::npos) << failed.error();
  EXPECT_EQ(failed.error().find("nope"), std::string::npos);

  spec.mutable_auth()->set_secret_env("COLLECTOR_TEST_TOKEN");
  v1::Job ok = RunToEnd(spec);
  EXPECT_EQ(ok.state(), v1::SUCCEEDED) << ok.error();
  ExpectTableExact(ok.table_name(), api.records());

  // A missing secret is refused up front.
  spec.mutable_auth()->set_secret_env("COLLECTOR_TEST_UNSET_VARIABLE");
  v1::Job job;
  EXPECT_EQ(Start(spec, &job).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(CollectorIntegrationTest, FlakyPagesSucceedOnThirdAttempt) {
  TestApi& api = NewApi(500, 50);
  absl::Mutex mu;
  std::map<int, int> attempts;
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    absl::MutexLock l(&mu);
    if (r.page_index % 3 != 1 || ++attempts[r.page_index] > 2) return false;
    res.status = attempts[r.page_index] == 1 ? 503 : 500;
    res.set_content("oops", "text/plain");
    return true;
  });
  v1::JobSpec spec = PageSpec(api, 50, /*with_total_pages=*/true, /*fetch_concurrency=*/3);
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  EXPECT_EQ(job.progress().retries(), 2 * 3);  // Pages 1, 4, 7: two retries each.
  ExpectTableExact(job.table_name(), api.records());
}

TEST_F(CollectorIntegrationTest, TooManyRequestsHonoursRetryAfter) {
  TestApi& api = NewApi(100, 50);
  std::atomic<bool> throttled{false};
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    if (r.page_index != 1 || throttled.exchange(true)) return false;
    res.status = 429;
    res.set_header("Retry-After", "1");
    return true;
  });
  v1::JobSpec spec = CursorSpec(api);
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  std::vector<absl::Time> page1;
  for (const auto& r : api.requests()) {
    if (r.page_index == 1) page1.push_back(r.at);
  }
  // The 429 and at least one retry; libcurl may transparently re-send a request whose reused
  // connection the server had closed, so a third arrival is possible, never an early one.
  ASSERT_GE(page1.size(), 2u);
  for (size_t i = 1; i < page1.size(); ++i) {
    EXPECT_GE(page1[i] - page1[0], absl::Milliseconds(950));  // Backoff alone would be ~25 ms.
  }
  ExpectTableExact(job.table_name(), api.records());
}

TEST_F(CollectorIntegrationTest, TruncatedJsonIsRetried) {
  TestApi& api = NewApi(150, 50);
  std::atomic<int> truncated{0};
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    if (r.page_index != 2 || truncated.fetch_add(1) > 0) return false;
    res.set_content(R"({"data":[{"id":100,"x":1},{"id":101,)", "application/json");
    return true;
  });
  v1::JobSpec spec = NextUrlSpec(api);
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  EXPECT_EQ(truncated.load(), 2);
  EXPECT_EQ(job.progress().retries(), 1);
  ExpectTableExact(job.table_name(), api.records());
}

TEST_F(CollectorIntegrationTest, PageThatAlwaysFailsEndsPartialWithOthersLoaded) {
  TestApi& api = NewApi(400, 50);
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    if (r.page_index != 3) return false;
    res.status = 502;
    return true;
  });
  v1::JobSpec spec = PageSpec(api, 50, /*with_total_pages=*/true, /*fetch_concurrency=*/2);
  v1::Job job = RunToEnd(spec);
  EXPECT_EQ(job.state(), v1::PARTIAL) << job.error();
  ASSERT_EQ(job.failed_pages_size(), 1);
  EXPECT_EQ(job.failed_pages(0).page_number(), 3);
  EXPECT_EQ(job.failed_pages(0).page_token(), "4");
  EXPECT_EQ(job.failed_pages(0).attempts(), 3);
  EXPECT_NE(job.failed_pages(0).error().find("HTTP 502"), std::string::npos);
  std::vector<std::string> expected;
  for (int i = 0; i < 400; ++i) {
    if (i / 50 != 3) expected.push_back(api.records()[size_t(i)]);
  }
  ExpectTableExact(job.table_name(), expected);
}

TEST_F(CollectorIntegrationTest, CancelStopsFetchingAndKeepsWhatWasSent) {
  TestApi& api = NewApi(2000, 20);
  absl::Notification release;
  HoldPage(api, 10, release, absl::Seconds(30));
  v1::JobSpec spec = CursorSpec(api);
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  ASSERT_TRUE(WaitForPageRequest(api, 10));
  grpc::ClientContext ctx;
  v1::JobRef ref;
  ref.set_job_id(job.job_id());
  v1::Job cancelled;
  grpc::Status s = stub_->CancelJob(&ctx, ref, &cancelled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Page 10 stays unanswered until the job has ended: the cancel itself must stop the fetch.
  v1::Job final_job = WaitJob(job.job_id());
  release.Notify();
  EXPECT_EQ(final_job.state(), v1::CANCELLED);
  // What was committed is a prefix of whole pages, each record once; page 10 and later never
  // arrived.
  int64_t rows = std::stoll(
      etl::testing::QueryValue(absl::StrCat("SELECT count(*) FROM ", final_job.table_name())));
  EXPECT_LE(rows, 200);
  EXPECT_EQ(rows % 20, 0);
  ExpectTableExact(final_job.table_name(), Prefix(api, size_t(rows)));
  // Nothing after page 10 was asked for. (Page 10 itself may show twice: libcurl transparently
  // re-sends a request whose reused keep-alive connection the server had just closed.)
  int max_page = 0;
  for (const ApiRequest& r : api.requests()) max_page = std::max(max_page, r.page_index);
  EXPECT_EQ(max_page, 10);
}

TEST_F(CollectorIntegrationTest, TwoJobsAtOnceIntoDifferentTables) {
  TestApi& api_a = NewApi(800, 40);
  TestApi& api_b = NewApi(600, 30);
  v1::JobSpec a = BaseSpec(api_a.Url("/offset"), v1::OFFSET);
  a.mutable_pagination()->set_records_path("/results");
  a.mutable_pagination()->set_page_size(40);
  a.mutable_pagination()->set_total_count_path("/count");
  a.set_fetch_concurrency(2);
  v1::JobSpec b = BaseSpec(api_b.Url("/link"), v1::LINK);
  v1::Job ja, jb;
  ASSERT_TRUE(Start(a, &ja).ok());
  ASSERT_TRUE(Start(b, &jb).ok());
  EXPECT_NE(ja.table_name(), jb.table_name());
  v1::Job ra = WaitJob(ja.job_id());
  v1::Job rb = WaitJob(jb.job_id());
  EXPECT_EQ(ra.state(), v1::SUCCEEDED) << ra.error();
  EXPECT_EQ(rb.state(), v1::SUCCEEDED) << rb.error();
  ExpectTableExact(ra.table_name(), api_a.records());
  ExpectTableExact(rb.table_name(), api_b.records());

  grpc::ClientContext ctx;
  v1::ListJobsRequest req;
  v1::ListJobsResponse resp;
  ASSERT_TRUE(stub_->ListJobs(&ctx, req, &resp).ok());
  int found = 0;
  for (const auto& j : resp.jobs())
    found += (j.job_id() == ja.job_id() || j.job_id() == jb.job_id());
  EXPECT_EQ(found, 2);
}

TEST_F(CollectorIntegrationTest, WriterRestartMidJobResumesExactly) {
  TestApi& api = NewApi(3000, 50);
  absl::Notification release;
  HoldPage(api, 20, release, absl::Seconds(60));
  v1::JobSpec spec = CursorSpec(api);
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  ASSERT_TRUE(WaitForPageRequest(api, 20));
  // Kill the writer hard (no drain) and start a new one on the same port.
  const int port = writer_->port();
  writer_->Signal(SIGKILL);
  writer_.reset();
  StartWriter(absl::StrCat("127.0.0.1:", port));
  release.Notify();
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  ExpectTableExact(final_job.table_name(), api.records());
  EXPECT_GE(collector_->collector()->counters().writer_reconnects.load(), 1);
}

TEST_F(CollectorIntegrationTest, RestartedCollectorResumesUnfinishedJobFromTheLedger) {
  TestApi& api = NewApi(2000, 50);
  absl::Notification release;
  v1::JobSpec spec = NextUrlSpec(api);
  v1::Job job;
  ASSERT_NO_FATAL_FAILURE(StartThenStopCollectorAt(api, spec, 15, release, &job));
  StartCollector(/*resume=*/true);
  // The new collector finds the job through the writer and continues after the last committed page.
  ASSERT_TRUE(api.WaitFor([](const std::vector<ApiRequest>& rs) { return rs.size() > 16; },
                          absl::Seconds(30)));
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  ExpectTableExact(final_job.table_name(), api.records());
  // (Other unfinished jobs in a shared test database may be resumed too.)
  EXPECT_GE(collector_->collector()->counters().jobs_resumed.load(), 1);
  EXPECT_NE(collector_->collector()->FindJob(job.job_id()), nullptr);
  // Pages committed before the restart were not fetched again.
  int first_page_requests = 0;
  for (const auto& r : api.requests()) first_page_requests += r.page_index == 0;
  EXPECT_EQ(first_page_requests, 1);
}

TEST_F(CollectorIntegrationTest, ResumeRefetchesAGapLeftByConcurrentCommits) {
  // Writer connections commit concurrently, so a crash can leave page 5 uncommitted while later
  // pages are committed. A sequential job must resume after the contiguous prefix, not after the
  // last page.
  TestApi& api = NewApi(2000, 50);
  absl::Notification release;
  v1::JobSpec spec = NextUrlSpec(api);
  v1::Job job;
  ASSERT_NO_FATAL_FAILURE(StartThenStopCollectorAt(api, spec, 15, release, &job));
  // Page 5 (0-based sequence number) as if its transaction had never committed.
  const std::string table = RawTableOf(spec);
  const std::string job_filter = absl::StrCat("job_id = '", job.job_id(), "'");
  ASSERT_EQ(etl::testing::Exec(
                absl::StrCat("DELETE FROM etl_pages WHERE ", job_filter, " AND page_number = 5")),
            "");
  ASSERT_EQ(etl::testing::Exec(
                absl::StrCat("DELETE FROM ", table, " WHERE ", job_filter, " AND page_number = 5")),
            "");
  ASSERT_EQ(etl::testing::QueryValue(absl::StrCat("SELECT count(*) > 0 FROM etl_pages WHERE ",
                                                  job_filter, " AND page_number > 5")),
            "t");
  const size_t requests_before = api.requests().size();
  StartCollector(/*resume=*/true);
  // The resumed job asks for page 5 again (the first page after the committed prefix).
  ASSERT_TRUE(
      api.WaitFor([&](const std::vector<ApiRequest>& rs) { return rs.size() > requests_before; },
                  absl::Seconds(30)));
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  ExpectTableExact(final_job.table_name(), api.records());
  EXPECT_EQ(api.requests()[requests_before].page_index, 5);
}

TEST_F(CollectorIntegrationTest, SlowWriterKeepsCollectorMemoryBounded) {
  // A writer with a small queue, and the job's table locked: commits stall, so the writer stops
  // reading, Write blocks and the collector must stop fetching.
  RestartServices({"--queue_records=200", "--batch_records=100"});
  TestApi& api = NewApi(20000, 50, /*pad_bytes=*/2000);  // 400 pages, ~44 MB.
  v1::JobSpec spec = PageSpec(api, 50, /*with_total_pages=*/true, /*fetch_concurrency=*/4);
  const std::string table = RawTableOf(spec);
  ASSERT_EQ(CreateRawTable(table), "");
  TableLock lock(table);
  ASSERT_EQ(lock.status(), CONNECTION_OK);
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  size_t served = api.WaitQuiet(absl::Seconds(2), absl::Seconds(60));
  std::cerr << "pages served while the table was locked: " << served << " of 400\n";
  // 400 pages in total; with the writer stalled only the writer's queue, the gRPC flow-control
  // windows and the collector's window (fetch_concurrency + 1) can hold pages.
  EXPECT_LT(served, 80u);
  auto live = collector_->collector()->FindJob(job.job_id());
  ASSERT_NE(live, nullptr);
  EXPECT_LE(live->max_pages_buffered(), spec.fetch_concurrency() + 2);
  EXPECT_FALSE(live->done());
  lock.Release();
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  ExpectTableExact(final_job.table_name(), api.records());
  EXPECT_LE(live->max_pages_buffered(), spec.fetch_concurrency() + 2);
}

TEST_F(CollectorIntegrationTest, BufferedBytesBoundLimitsPagesHeldEvenWithRoomInTheWindow) {
  // Pages of ~110 kB and a 200 kB byte bound: with the writer stalled, the page being sent plus the
  // next one (always admitted, so the sender never waits on the bound) is all a job may hold,
  // although fetch_concurrency 4 leaves room for 5 pages in the window.
  RestartServices({"--queue_records=50", "--batch_records=50"}, /*max_buffered_bytes=*/200 * 1000);
  TestApi& api = NewApi(3000, 50, /*pad_bytes=*/2000);  // 60 pages.
  v1::JobSpec spec = PageSpec(api, 50, /*with_total_pages=*/true, /*fetch_concurrency=*/4);
  const std::string table = RawTableOf(spec);
  ASSERT_EQ(CreateRawTable(table), "");
  TableLock lock(table);
  ASSERT_EQ(lock.status(), CONNECTION_OK);
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  size_t served = api.WaitQuiet(absl::Seconds(2), absl::Seconds(60));
  EXPECT_LT(served, 60u);
  auto live = collector_->collector()->FindJob(job.job_id());
  ASSERT_NE(live, nullptr);
  EXPECT_GE(live->max_pages_buffered(), 1);
  EXPECT_LE(live->max_pages_buffered(), 2);
  EXPECT_FALSE(live->done());
  lock.Release();
  v1::Job final_job = WaitJob(job.job_id());
  EXPECT_EQ(final_job.state(), v1::SUCCEEDED) << final_job.error();
  ExpectTableExact(final_job.table_name(), api.records());
  EXPECT_LE(live->max_pages_buffered(), 2);
}

TEST_F(CollectorIntegrationTest, WatchJobStreamsProgressUntilTheEnd) {
  TestApi& api = NewApi(300, 50);
  v1::JobSpec spec = BaseSpec(api.Url("/link"), v1::LINK);
  std::vector<v1::JobProgress> progress;
  v1::Job job = RunToEnd(spec, &progress);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().state(), v1::SUCCEEDED);
  EXPECT_EQ(progress.back().records_committed(), 300);
  EXPECT_EQ(progress.back().pages_committed(), 6);
  EXPECT_EQ(job.progress().records_committed(), 300);
}

TEST_F(CollectorIntegrationTest, StartJobDuringShutdownIsRefusedBeforeTheLedgerSeesIt) {
  TestApi& api = NewApi(100, 50);
  v1::JobSpec spec = PageSpec(api, 50);
  // The jobs stop first while the gRPC server still answers, as in a SIGTERM's drain.
  collector_->collector()->Shutdown();
  grpc::ClientContext ctx;
  v1::Job job;
  grpc::Status s = stub_->StartJob(&ctx, spec, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  // Nothing was registered, so the client's retry elsewhere loads the data once. (The test's own
  // database may not even hold the ledger yet.)
  if (etl::testing::QueryValue("SELECT to_regclass('etl_jobs') IS NOT NULL") == "t") {
    EXPECT_EQ(etl::testing::QueryValue(absl::StrCat(
                  "SELECT count(*) FROM etl_jobs WHERE cliente_id = '", spec.cliente_id(), "'")),
              "0");
  }
  EXPECT_TRUE(api.requests().empty());
}

TEST_F(CollectorIntegrationTest, HealthServesTheCollectorServiceName) {
  const std::string probe = absl::StrCat(etl::testing::BinaryPath("etl_health_probe"),
                                         " --quiet 127.0.0.1:", collector_->port());
  EXPECT_EQ(std::system((probe + " --service=etl.v1.CollectorService").c_str()), 0);
  EXPECT_EQ(std::system(probe.c_str()), 0);
  EXPECT_NE(std::system((probe + " --service=etl.v1.NoSuchService").c_str()), 0);
}

TEST_F(CollectorIntegrationTest, BoundedWriteStreamsRotateOverTwoWritersWithoutLoss) {
  // A second writer on the same database; the collector's channel holds both (round_robin), and
  // every page fills its stream (1 byte bound), so each page goes in a stream of its own.
  auto second = ChildProcess::Start(etl::testing::BinaryPath("writer_server"),
                                    {"--listen=127.0.0.1:0", "--flush_interval_ms=20"});
  ASSERT_TRUE(second.ok()) << second.status();
  collector_.reset();
  max_stream_bytes_ = 1;
  writer_target_ = absl::StrCat("ipv4:", writer_->address(), ",", (*second)->address());
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  TestApi& api = NewApi(500, 50);
  v1::Job job = RunToEnd(PageSpec(api, 50, /*with_total_pages=*/true));
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  ExpectTableExact(job.table_name(), api.records());
  EXPECT_EQ(api.requests().size(), 10u);  // No page fetched twice.
  EXPECT_GE(collector_->collector()->counters().writer_streams_rotated.load(), 9);
  EXPECT_EQ(collector_->collector()->counters().writer_reconnects.load(), 0);
  collector_.reset();  // Before the second writer goes away.
}

// An API that answers 429 to any request beyond two at once. A job allowed 8 parallel fetches
// adapts (the default): it loads every record exactly once and asks for more than the API allows
// only now and then; with its concurrency fixed at 8 most of its requests are refused.
TEST_F(CollectorIntegrationTest, AdaptiveFetchConcurrencyBacksOffOnTooManyRequests) {
  constexpr int kApiLimit = 2;
  struct Load {
    absl::Mutex mu;
    int in_flight ABSL_GUARDED_BY(mu) = 0;
    int accepted ABSL_GUARDED_BY(mu) = 0;
    int refused ABSL_GUARDED_BY(mu) = 0;
  };
  auto run = [&](bool fixed, Load* load) {
    TestApi& api = NewApi(1200, 20);  // 60 pages.
    api.SetHook([load](const ApiRequest&, httplib::Response& res) {
      {
        absl::MutexLock l(&load->mu);
        if (load->in_flight >= kApiLimit) {
          ++load->refused;
          res.status = 429;
          return true;
        }
        ++load->in_flight;
        ++load->accepted;
      }
      // The API's service time (what makes requests overlap), not a synchronisation.
      absl::SleepFor(absl::Milliseconds(10));
      absl::MutexLock l(&load->mu);
      --load->in_flight;
      return false;
    });
    v1::JobSpec spec = PageSpec(api, 20, /*with_total_pages=*/true, /*fetch_concurrency=*/8);
    spec.set_fixed_fetch_concurrency(fixed);
    spec.mutable_retry()->set_max_attempts(8);
    spec.mutable_retry()->set_max_backoff_seconds(0.05);
    v1::Job job = RunToEnd(spec);
    if (!fixed) {
      EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.error();
      ExpectTableExact(job.table_name(), api.records());
    }
  };
  Load adaptive;
  run(/*fixed=*/false, &adaptive);
  Load fixed;
  run(/*fixed=*/true, &fixed);
  absl::MutexLock l1(&adaptive.mu);
  absl::MutexLock l2(&fixed.mu);
  const double adaptive_refused =
      double(adaptive.refused) / double(adaptive.refused + adaptive.accepted);
  const double fixed_refused = double(fixed.refused) / double(fixed.refused + fixed.accepted);
  std::cout << "refused: adaptive " << adaptive.refused << "/" << adaptive.accepted
            << " accepted, fixed " << fixed.refused << "/" << fixed.accepted << "\n";
  EXPECT_LE(adaptive_refused, 0.2);
  EXPECT_GE(fixed_refused, 0.4);
}

}  // namespace
}  // namespace etl
