// Jobs people run every day, end to end: sample API (in process, loopback HTTP) -> CollectorServer
// (in process, real gRPC) -> writer_server (child process) -> real PostgreSQL. Write modes on
// re-runs, incremental loads counted at the API, retry of a PARTIAL job, records-path errors, job
// listing.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "collector_service/collector.h"
#include "collector_service/collector_server.h"
#include "deploy/sample_api/records.h"
#include "deploy/sample_api/sample_api_server.h"
#include "etl.grpc.pb.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

using ::etl::sample_api::SampleApiServer;
using ::etl::testing::QueryValue;

class JobsRerunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    auto child =
        etl::testing::ChildProcess::Start(etl::testing::BinaryPath("writer_server"),
                                          {"--listen=127.0.0.1:0", "--flush_interval_ms=20"});
    ASSERT_TRUE(child.ok()) << child.status();
    writer_ = std::move(*child);
    sample_api::SampleApiOptions api_options;
    api_options.listen = "127.0.0.1:0";
    api_options.threads = 8;
    auto api = SampleApiServer::Start(api_options);
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = std::move(*api);
    CollectorOptions options;
    options.listen = "127.0.0.1:0";
    options.writer_address = writer_->address();
    options.status_poll_interval = absl::Milliseconds(200);
    options.resume_unfinished = false;              // Other tests' unfinished jobs are theirs.
    options.fetcher.allow_private_networks = true;  // The sample API is on loopback.
    auto server = CollectorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    collector_ = std::move(*server);
    stub_ = v1::CollectorService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", collector_->port()), grpc::InsecureChannelCredentials()));
    writer_stub_ = v1::WriterService::NewStub(
        grpc::CreateChannel(writer_->address(), grpc::InsecureChannelCredentials()));
    cliente_ = "r" + etl::testing::UniqueSuffix();
  }

  void TearDown() override {
    collector_.reset();
    if (api_) api_->Stop();
    writer_.reset();
  }

  std::string Table(const std::string& rota) const {
    return absl::StrCat("dados_raw_cliente_", cliente_, "_", rota);
  }

  // PAGE style with the total page count known (pages fetched in parallel).
  v1::JobSpec PageSpec(const std::string& rota, int64_t total, int64_t page_size) {
    v1::JobSpec spec;
    spec.set_cliente_id(cliente_);
    spec.set_rota(rota);
    spec.set_url(absl::StrCat(api_->base_url(), "/v1/clientes/", cliente_, "/", rota, "/page"));
    spec.mutable_pagination()->set_style(v1::PAGE);
    spec.mutable_pagination()->set_page_size(page_size);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_total_pages_path("/total_pages");
    spec.mutable_retry()->set_backoff_scale(0.01);
    spec.set_id_path("/id");
    AddParam(&spec, "total", absl::StrCat(total));
    return spec;
  }

  // CURSOR style, loaded incrementally by id (the API's since_id filter).
  v1::JobSpec IncrementalCursorSpec(const std::string& rota, int64_t total) {
    v1::JobSpec spec;
    spec.set_cliente_id(cliente_);
    spec.set_rota(rota);
    spec.set_url(absl::StrCat(api_->base_url(), "/v1/clientes/", cliente_, "/", rota, "/cursor"));
    spec.mutable_pagination()->set_style(v1::CURSOR);
    spec.mutable_pagination()->set_page_size(100);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_cursor_path("/next_cursor");
    spec.mutable_retry()->set_backoff_scale(0.01);
    spec.set_id_path("/id");
    spec.mutable_incremental()->set_cursor_path("/id");
    spec.mutable_incremental()->set_cursor_type(v1::INTEGER);
    spec.mutable_incremental()->set_param("since_id");
    AddParam(&spec, "total", absl::StrCat(total));
    return spec;
  }

  static void AddParam(v1::JobSpec* spec, const std::string& k, const std::string& v) {
    v1::KeyValue* kv = spec->add_query_params();
    kv->set_key(k);
    kv->set_value(v);
  }

  grpc::Status Start(const v1::JobSpec& spec, v1::Job* job) {
    grpc::ClientContext ctx;
    return stub_->StartJob(&ctx, spec, job);
  }

  v1::Job WaitJob(const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::JobRef ref;
    ref.set_job_id(id);
    auto reader = stub_->WatchJob(&ctx, ref);
    v1::JobProgress p;
    while (reader->Read(&p)) {
    }
    EXPECT_TRUE(reader->Finish().ok());
    grpc::ClientContext gctx;
    v1::Job job;
    EXPECT_TRUE(stub_->GetJob(&gctx, ref, &job).ok());
    return job;
  }

  v1::Job RunToEnd(const v1::JobSpec& spec) {
    v1::Job job;
    grpc::Status s = Start(spec, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return job;
    return WaitJob(job.job_id());
  }

  int64_t Count(const std::string& table, const std::string& where = "true") {
    return std::stoll(QueryValue(absl::StrCat("SELECT count(*) FROM ", table, " WHERE ", where)));
  }

  // Every record 0..n-1 of the API's collection exactly once, compared as jsonb.
  void ExpectTableIsCollection(const std::string& rota, int64_t n, int64_t records_per_day = 100) {
    const std::string table = Table(rota);
    ASSERT_EQ(Count(table), n);
    ASSERT_EQ(QueryValue(absl::StrCat("SELECT count(DISTINCT natural_key) FROM ", table)),
              absl::StrCat(n));
    for (int64_t i : {int64_t{0}, n / 2, n - 1}) {
      std::string rec = sample_api::Record(cliente_, rota, i, records_per_day);
      EXPECT_EQ(QueryValue(absl::StrCat("SELECT payload = $x$", rec, "$x$::jsonb FROM ", table,
                                        " WHERE natural_key = '", i + 1, "'")),
                "t")
          << "record " << i;
    }
  }

  std::unique_ptr<etl::testing::ChildProcess> writer_;
  std::unique_ptr<SampleApiServer> api_;
  std::unique_ptr<CollectorServer> collector_;
  std::unique_ptr<v1::CollectorService::Stub> stub_;
  std::unique_ptr<v1::WriterService::Stub> writer_stub_;
  std::string cliente_;
};

TEST_F(JobsRerunTest, MergeReRunLeavesOneRowPerKeyWithTheLatestPayload) {
  v1::JobSpec spec = PageSpec("pedidos", 1000, 100);  // id_path set: merge by default.
  v1::Job first = RunToEnd(spec);
  ASSERT_EQ(first.state(), v1::SUCCEEDED) << first.error();
  ExpectTableIsCollection("pedidos", 1000);
  // The same job again, the API now dating records differently: same keys, new payloads.
  AddParam(&spec, "records_per_day", "7");
  v1::Job second = RunToEnd(spec);
  ASSERT_EQ(second.state(), v1::SUCCEEDED) << second.error();
  ExpectTableIsCollection("pedidos", 1000, 7);
  EXPECT_EQ(Count(Table("pedidos"), absl::StrCat("job_id = '", second.job_id(), "'")), 1000);
}

TEST_F(JobsRerunTest, AppendReRunKeepsEveryRun) {
  v1::JobSpec spec = PageSpec("pedidos", 300, 100);
  spec.set_write_mode(v1::APPEND);
  ASSERT_EQ(RunToEnd(spec).state(), v1::SUCCEEDED);
  ASSERT_EQ(RunToEnd(spec).state(), v1::SUCCEEDED);
  EXPECT_EQ(Count(Table("pedidos")), 600);
}

TEST_F(JobsRerunTest, IncrementalSecondRunFetchesOnlyNewerRecords) {
  v1::Job first = RunToEnd(IncrementalCursorSpec("clientes", 450));
  ASSERT_EQ(first.state(), v1::SUCCEEDED) << first.error();
  ExpectTableIsCollection("clientes", 450);
  SampleApiServer::Stats before = api_->StatsFor(cliente_, "clientes");
  EXPECT_EQ(before.records, 450);
  v1::ListCursorsRequest creq;
  creq.set_cliente_id(cliente_);
  v1::ListCursorsResponse cursors;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(writer_stub_->ListCursors(&ctx, creq, &cursors).ok());
  }
  ASSERT_EQ(cursors.cursors_size(), 1);
  EXPECT_EQ(cursors.cursors(0).value(), "450");

  // The API grew by 120 records: the next run asks for ids above 450 and gets only those.
  v1::Job second = RunToEnd(IncrementalCursorSpec("clientes", 570));
  ASSERT_EQ(second.state(), v1::SUCCEEDED) << second.error();
  EXPECT_EQ(second.spec().incremental().start_value(), "450");
  SampleApiServer::Stats after = api_->StatsFor(cliente_, "clientes");
  EXPECT_EQ(after.records - before.records, 120);
  EXPECT_EQ(after.requests - before.requests, 2);  // 100 + 20 records.
  ExpectTableIsCollection("clientes", 570);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(writer_stub_->ListCursors(&ctx, creq, &cursors).ok());
  }
  EXPECT_EQ(cursors.cursors(0).value(), "570");

  // --full-refresh: everything again, merged (still one row per id).
  v1::JobSpec full = IncrementalCursorSpec("clientes", 570);
  full.mutable_incremental()->set_full_refresh(true);
  v1::Job third = RunToEnd(full);
  ASSERT_EQ(third.state(), v1::SUCCEEDED) << third.error();
  EXPECT_EQ(api_->StatsFor(cliente_, "clientes").records - after.records, 570);
  ExpectTableIsCollection("clientes", 570);
}

TEST_F(JobsRerunTest, IncrementalRunWaitsUntilAnUnfinishedEarlierRunIsRetried) {
  v1::JobSpec spec = IncrementalCursorSpec("clientes", 300);
  spec.mutable_retry()->set_max_attempts(1);
  AddParam(&spec, "fail_pages", "2");  // The second page fails once.
  AddParam(&spec, "fail_times", "1");
  v1::Job first = RunToEnd(spec);
  ASSERT_EQ(first.state(), v1::PARTIAL) << first.error();
  v1::Job refused;
  grpc::Status s = Start(IncrementalCursorSpec("clientes", 300), &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "etlctl retry " + first.job_id()))
      << s.error_message();

  v1::JobRef ref;
  ref.set_job_id(first.job_id());
  v1::Job retried;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->RetryJob(&ctx, ref, &retried).ok());
  }
  ASSERT_EQ(WaitJob(first.job_id()).state(), v1::SUCCEEDED);
  ExpectTableIsCollection("clientes", 300);
  v1::Job next = RunToEnd(IncrementalCursorSpec("clientes", 320));
  ASSERT_EQ(next.state(), v1::SUCCEEDED) << next.error();
  EXPECT_EQ(next.spec().incremental().start_value(), "300");
  ExpectTableIsCollection("clientes", 320);
}

TEST_F(JobsRerunTest, RetryCompletesAPartialJobFetchingOnlyPagesNotCommitted) {
  v1::JobSpec spec = PageSpec("pedidos", 1000, 100);
  spec.set_fetch_concurrency(4);
  spec.mutable_retry()->set_max_attempts(2);
  // Page 3 fails its first 3 requests: 2 attempts in the first run, then 1 failure + 1 success.
  AddParam(&spec, "fail_pages", "3");
  AddParam(&spec, "fail_times", "3");
  v1::Job first = RunToEnd(spec);
  ASSERT_EQ(first.state(), v1::PARTIAL) << first.error();
  ASSERT_EQ(first.failed_pages_size(), 1);
  EXPECT_EQ(Count(Table("pedidos")), 900);
  SampleApiServer::Stats before = api_->StatsFor(cliente_, "pedidos");

  v1::JobRef ref;
  ref.set_job_id(first.job_id());
  v1::Job retried;
  {
    grpc::ClientContext ctx;
    grpc::Status s = stub_->RetryJob(&ctx, ref, &retried);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(retried.job_id(), first.job_id());
  v1::Job done = WaitJob(first.job_id());
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  EXPECT_EQ(done.failed_pages_size(), 0);
  ExpectTableIsCollection("pedidos", 1000);
  SampleApiServer::Stats after = api_->StatsFor(cliente_, "pedidos");
  EXPECT_EQ(after.records - before.records,
            100);  // Page 3 only: committed pages are never refetched.
  EXPECT_EQ(after.requests - before.requests, 2);

  // A SUCCEEDED job has nothing to retry.
  grpc::ClientContext ctx;
  v1::Job again;
  EXPECT_EQ(stub_->RetryJob(&ctx, ref, &again).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(JobsRerunTest, RetryOfACancelledJobFetchesTheRest) {
  v1::JobSpec spec = PageSpec("pedidos", 800, 100);
  spec.set_fetch_concurrency(1);
  AddParam(&spec, "slow_pages", "5");  // Holds the job long enough to cancel it mid-way.
  AddParam(&spec, "slow_ms", "3000");
  v1::Job job;
  ASSERT_TRUE(Start(spec, &job).ok());
  {
    // Follow the progress until pages committed, then cancel.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::JobRef ref;
    ref.set_job_id(job.job_id());
    auto reader = stub_->WatchJob(&ctx, ref);
    v1::JobProgress p;
    while (reader->Read(&p) && p.records_committed() < 300) {
    }
    ctx.TryCancel();
    reader->Finish().IgnoreError();
    ASSERT_GE(p.records_committed(), 300);
    grpc::ClientContext cctx;
    v1::Job cancelled;
    ASSERT_TRUE(stub_->CancelJob(&cctx, ref, &cancelled).ok());
  }
  v1::Job cancelled = WaitJob(job.job_id());
  ASSERT_EQ(cancelled.state(), v1::CANCELLED);
  const int64_t committed = Count(Table("pedidos"));
  ASSERT_LT(committed, 800);
  SampleApiServer::Stats before = api_->StatsFor(cliente_, "pedidos");
  v1::JobRef ref;
  ref.set_job_id(job.job_id());
  v1::Job retried;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->RetryJob(&ctx, ref, &retried).ok());
  }
  v1::Job done = WaitJob(job.job_id());
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  ExpectTableIsCollection("pedidos", 800);
  // The API may still count the slow answer the cancel abandoned, and libcurl may transparently
  // re-send one request on a reused connection: at most two pages more. That no committed page is
  // fetched and sent again is checked exactly below, on the writer's side.
  const int64_t served = api_->StatsFor(cliente_, "pedidos").records - before.records;
  EXPECT_GE(served, 800 - committed);
  EXPECT_LE(served, 800 - committed + 200);
  // No committed page reached the writer again.
  v1::WriterStatus status;
  grpc::ClientContext sctx;
  ASSERT_TRUE(writer_stub_->GetStatus(&sctx, v1::GetStatusRequest(), &status).ok());
  for (const auto& c : status.jobs()) {
    if (c.job_id() == job.job_id()) {
      EXPECT_EQ(c.pages_skipped(), 0);
    }
  }
}

TEST_F(JobsRerunTest, ReplaceJobSwapsInTheNewTableOnlyWhenItSucceeds) {
  v1::JobSpec spec = PageSpec("pedidos", 500, 100);
  ASSERT_EQ(RunToEnd(spec).state(), v1::SUCCEEDED);
  spec.set_write_mode(v1::REPLACE);
  spec.clear_query_params();
  AddParam(&spec, "total", "300");
  AddParam(&spec, "always_fail_pages", "2");
  spec.mutable_retry()->set_max_attempts(1);
  v1::Job partial = RunToEnd(spec);
  ASSERT_EQ(partial.state(), v1::PARTIAL) << partial.error();
  EXPECT_EQ(Count(Table("pedidos")), 500);  // Not swapped.
  spec.clear_query_params();
  AddParam(&spec, "total", "300");
  v1::Job replaced = RunToEnd(spec);
  ASSERT_EQ(replaced.state(), v1::SUCCEEDED) << replaced.error();
  ExpectTableIsCollection("pedidos", 300);
}

TEST_F(JobsRerunTest, RecordsPathThatDoesNotMatchIsAPageErrorNamingTheKeys) {
  v1::JobSpec spec = PageSpec("pedidos", 50, 100);
  spec.mutable_pagination()->set_records_path("/items");
  spec.mutable_retry()->set_max_attempts(1);
  v1::Job job = RunToEnd(spec);
  EXPECT_NE(job.state(), v1::SUCCEEDED);
  std::string errors = job.error();
  for (const auto& f : job.failed_pages()) absl::StrAppend(&errors, " | ", f.error());
  EXPECT_TRUE(
      absl::StrContains(errors, "records path /items not found; top-level keys: data (array)"))
      << errors;
  // Never the whole body as one record.
  if (QueryValue(absl::StrCat("SELECT to_regclass('", Table("pedidos"), "') IS NULL")) == "f") {
    EXPECT_EQ(Count(Table("pedidos")), 0);
  }
}

TEST_F(JobsRerunTest, ListJobsFiltersByClientRouteStateAndPages) {
  std::vector<std::string> ids;
  for (const char* rota : {"a", "b", "a"}) {
    v1::Job job = RunToEnd(PageSpec(rota, 10, 100));
    ASSERT_EQ(job.state(), v1::SUCCEEDED);
    ids.push_back(job.job_id());
  }
  v1::ListJobsRequest req;
  req.set_cliente_id(cliente_);
  req.set_rota("a");
  req.add_states(v1::SUCCEEDED);
  req.set_limit(1);
  std::vector<std::string> got;
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext ctx;
    v1::ListJobsResponse resp;
    ASSERT_TRUE(stub_->ListJobs(&ctx, req, &resp).ok());
    for (const auto& j : resp.jobs()) got.push_back(j.job_id());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(got, (std::vector<std::string>{ids[2], ids[0]}));  // Newest first.
}

}  // namespace
}  // namespace etl
