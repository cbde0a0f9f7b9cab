// writer_service against a real PostgreSQL, through real gRPC channels.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "etl.grpc.pb.h"
#include "tests/testing/test_support.h"
#include "writer_service/pg_conn.h"
#include "writer_service/writer_server.h"

namespace etl {
namespace {

using ::etl::testing::PostgresConnString;
using ::etl::testing::QueryValue;

class WriterIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    suffix_ = ::etl::testing::UniqueSuffix();
    cliente_ = "t" + suffix_;
    table_ = absl::StrCat("dados_raw_cliente_", cliente_, "_pedidos");
  }

  // The jobs a test registered end CANCELLED, so that collectors resuming unfinished jobs from the
  // shared test database (other tests) never see them.
  void TearDown() override {
    if (suffix_.empty()) return;
    ::etl::testing::Exec(absl::StrCat(
        "UPDATE etl_jobs SET state = 'CANCELLED', finished_at = now() WHERE right(job_id, ",
        suffix_.size(), ") = '", suffix_, "' AND state IN ('PENDING', 'RUNNING')"));
  }

  void StartWriter(WriterOptions w = {}) {
    WriterServerOptions o;
    o.listen = "127.0.0.1:0";
    o.database_url = PostgresConnString();
    o.writer = w;
    o.writer.initial_backoff = absl::Milliseconds(20);
    o.writer.max_backoff = absl::Milliseconds(500);
    auto s = WriterServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    Connect(absl::StrCat("127.0.0.1:", server_->port()));
  }

  void Connect(const std::string& address) {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    stub_ = v1::WriterService::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }

  v1::RecordBatch MakePage(const std::string& job, int64_t page, int records,
                           const std::string& rota = "pedidos") {
    v1::RecordBatch b;
    b.set_job_id(job);
    b.set_cliente_id(cliente_);
    b.set_rota(rota);
    b.set_page_number(page);
    b.set_page_token(absl::StrCat(page));
    b.set_next_page_token(absl::StrCat(page + 1));
    b.set_last_chunk(true);
    for (int i = 0; i < records; ++i) b.add_records(Record(job, page, i));
    return b;
  }

  // Already in jsonb's output form (key order by length then bytes, ", " and ": "), so the table's
  // payload::text must equal it exactly.
  static std::string Record(const std::string& job, int64_t page, int i) {
    return absl::StrFormat(
        R"({"i": %d, "big": 9007199254740993, "job": "%s", "page": %d, "text": "tab\tnl\ncr\r bs\\ q\" 😀 Привет 漢字 \\u0000"})",
        i, job, page);
  }

  struct SendResult {
    grpc::Status status;
    v1::WriteSummary summary;
  };
  // The writer takes pages only of registered jobs. Errors (e.g. an invalid rota) are left for the
  // Write stream to report.
  void Register(const std::string& job, const std::string& rota = "pedidos") {
    grpc::ClientContext ctx;
    v1::RegisterJobRequest reg;
    reg.set_job_id(job);
    reg.mutable_spec()->set_cliente_id(cliente_);
    reg.mutable_spec()->set_rota(rota);
    v1::JobRecord rec;
    (void)stub_->RegisterJob(&ctx, reg, &rec);
  }

  SendResult Send(const std::vector<v1::RecordBatch>& pages, bool register_jobs = true) {
    if (register_jobs) {
      std::set<std::pair<std::string, std::string>> jobs;
      for (const auto& p : pages) jobs.emplace(p.job_id(), p.rota());
      for (const auto& [job, rota] : jobs) Register(job, rota);
    }
    SendResult r;
    grpc::ClientContext ctx;
    auto writer = stub_->Write(&ctx, &r.summary);
    for (const auto& p : pages) {
      if (!writer->Write(p)) break;
    }
    writer->WritesDone();
    r.status = writer->Finish();
    return r;
  }

  int64_t Count(const std::string& where = "true") {
    return std::stoll(QueryValue(absl::StrCat("SELECT count(*) FROM ", table_, " WHERE ", where)));
  }

  std::string suffix_, cliente_, table_;
  std::unique_ptr<WriterServer> server_;
  std::unique_ptr<v1::WriterService::Stub> stub_;
};

TEST_F(WriterIntegrationTest, ConcurrentStreamsCommitEveryRecordExactlyOnceAsSent) {
  StartWriter();
  constexpr int kStreams = 4, kPages = 250, kRecords = 100;  // 100k records
  std::vector<std::future<SendResult>> results;
  for (int s = 0; s < kStreams; ++s) {
    results.push_back(std::async(std::launch::async, [this, s] {
      std::vector<v1::RecordBatch> pages;
      for (int p = 0; p < kPages; ++p) {
        pages.push_back(MakePage(absl::StrCat("job", s, "_", suffix_), p, kRecords));
      }
      return Send(pages);
    }));
  }
  int64_t stream_batches = 0;
  int64_t max_stream_batches = 0;
  for (auto& f : results) {
    SendResult r = f.get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.summary.records_committed(), kPages * kRecords);
    EXPECT_EQ(r.summary.pages_committed(), kPages);
    EXPECT_EQ(r.summary.records_received(), kPages * kRecords);
    EXPECT_GE(r.summary.batches_committed(), 1);
    EXPECT_LE(r.summary.batches_committed(), kPages);
    stream_batches += r.summary.batches_committed();
    max_stream_batches = std::max<int64_t>(max_stream_batches, r.summary.batches_committed());
  }
  // Record by record, in order of arrival within each page.
  auto rows = ::etl::testing::Query(absl::StrCat(  // job ids "job<s>_<suffix>" sort by s
      "SELECT job_id, page_number, payload::text FROM ", table_,
      " ORDER BY job_id, page_number, id"));
  ASSERT_EQ(rows.size(), static_cast<size_t>(kStreams * kPages * kRecords));
  size_t k = 0;
  for (int s = 0; s < kStreams; ++s) {
    for (int p = 0; p < kPages; ++p) {
      for (int i = 0; i < kRecords; ++i, ++k) {
        // Query() renders text columns raw, joined by tabs.
        std::string expected_payload = absl::StrFormat(
            R"({"i": %d, "big": 9007199254740993, "job": "job%d_%s", "page": %d, "text": "tab\tnl\ncr\r bs\\ q\" 😀 Привет 漢字 \\u0000"})",
            i, s, suffix_, p);
        ASSERT_EQ(rows[k], absl::StrCat("job", s, "_", suffix_, "\t", p, "\t", expected_payload))
            << k;
      }
    }
  }
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT (payload->>'big') FROM ", table_, " LIMIT 1")),
            "9007199254740993");
  v1::WriterStatus st = server_->writer()->Status();
  EXPECT_EQ(st.records_committed(), kStreams * kPages * kRecords);
  EXPECT_EQ(st.records_received(), st.records_committed() + st.records_rejected());
  EXPECT_LE(st.batches_committed(), kStreams * kPages);
  // Every transaction committed pages of at least one stream; a stream's pages are in no more
  // transactions than there were.
  EXPECT_GE(stream_batches, st.batches_committed());
  EXPECT_LE(max_stream_batches, st.batches_committed());
}

TEST_F(WriterIntegrationTest, SummaryCountsTheTransactionsThatCommittedTheStreamsPages) {
  WriterOptions w;
  w.batch_records = 10;  // Pages of 10 records: one page per transaction.
  StartWriter(w);
  std::string job = "batches" + suffix_;
  std::vector<v1::RecordBatch> pages;
  for (int p = 0; p < 5; ++p) pages.push_back(MakePage(job, p, 10));
  SendResult a = Send(pages);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.summary.pages_committed(), 5);
  EXPECT_EQ(a.summary.batches_committed(), 5);
  // Pages already committed take part in no transaction of the second stream.
  pages.push_back(MakePage(job, 5, 10));
  SendResult b = Send(pages);
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(b.summary.pages_skipped(), 5);
  EXPECT_EQ(b.summary.pages_committed(), 1);
  EXPECT_EQ(b.summary.batches_committed(), 1);
  EXPECT_EQ(server_->writer()->Status().batches_committed(), 5 + 6);
  // Where the commit threads' time went: each phase of the 11 transactions is counted (a thread
  // adds a batch's share right after acknowledging it, hence the poll).
  const WriterCounters& c = server_->writer()->counters();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((c.copy_us.load() == 0 || c.commit_us.load() == 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GT(c.wait_pages_us.load(), 0);
  EXPECT_GT(c.prepare_us.load(), 0);
  EXPECT_GT(c.copy_us.load(), 0);
  EXPECT_GT(c.commit_us.load(), 0);
  const std::string metrics = server_->writer()->RenderMetrics();
  for (const char* name :
       {"etl_writer_thread_wait_pages_seconds_total", "etl_writer_thread_prepare_seconds_total",
        "etl_writer_thread_copy_seconds_total", "etl_writer_thread_commit_seconds_total"}) {
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  }
}

TEST_F(WriterIntegrationTest, ResentPagesAreSkippedNotDuplicated) {
  StartWriter();
  std::string job = "resend" + suffix_;
  std::vector<v1::RecordBatch> first, second;
  for (int p = 0; p < 5; ++p) first.push_back(MakePage(job, p, 10));
  for (int p = 2; p < 7; ++p) second.push_back(MakePage(job, p, 10));
  SendResult a = Send(first);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  SendResult b = Send(second);
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(b.summary.pages_skipped(), 3);
  EXPECT_EQ(b.summary.records_skipped(), 30);
  EXPECT_EQ(b.summary.pages_committed(), 2);
  EXPECT_EQ(Count(), 70);
  EXPECT_EQ(Count("page_number = 3"), 10);
  // The same page twice in one stream.
  SendResult c = Send({MakePage(job, 9, 10), MakePage(job, 9, 10)});
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(Count("page_number = 9"), 10);
}

TEST_F(WriterIntegrationTest, BadRecordsGoToDeadLettersAndNeighboursCommit) {
  StartWriter();
  std::string job = "bad" + suffix_;
  v1::RecordBatch page = MakePage(job, 0, 0);
  page.add_records(R"({"n": 1})");
  page.add_records(R"({"n": 2, "s": "x\u0000y"})");                  // jsonb cannot store \u0000
  page.add_records(R"({"n": 3, "s": "\\u0000"})");                   // an escaped backslash: fine
  page.add_records(std::string("{\"n\": 4, \"s\": \"\xff\xfe\"}"));  // invalid UTF-8
  page.add_records(R"({"n": 5, "s": )");  // not JSON: found by PostgreSQL
  page.add_records(R"({"n": 6})");
  SendResult r = Send({page, MakePage(job, 1, 5)});
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.summary.records_rejected(), 3);
  EXPECT_EQ(r.summary.records_committed(), 3 + 5);
  EXPECT_EQ(Count("page_number = 0"), 3);
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT string_agg(payload->>'n', ',' ORDER BY id) FROM ",
                                    table_, " WHERE page_number = 0")),
            "1,3,6");
  EXPECT_EQ(
      QueryValue(absl::StrCat("SELECT payload->>'s' FROM ", table_, " WHERE payload->>'n' = '3'")),
      "\\u0000");
  std::string dl = absl::StrCat("FROM etl_dead_letters WHERE job_id = '", job, "'");
  EXPECT_EQ(QueryValue("SELECT count(*) " + dl), "3");
  EXPECT_EQ(QueryValue("SELECT string_agg(record_index::text, ',' ORDER BY record_index) " + dl),
            "1,3,4");
  // The invalid UTF-8 record is kept byte for byte.
  EXPECT_EQ(QueryValue("SELECT encode(raw, 'hex') " + dl + " AND record_index = 3"),
            "7b226e223a20342c202273223a2022fffe227d");
  EXPECT_NE(QueryValue("SELECT reason " + dl + " AND record_index = 1").find("u0000"),
            std::string::npos);
  EXPECT_EQ(
      QueryValue(absl::StrCat("SELECT records || '/' || rejected FROM etl_pages WHERE job_id = '",
                              job, "' AND page_number = 0")),
      "3/3");
}

TEST_F(WriterIntegrationTest, InvalidTableNameEndsStreamWithInvalidArgumentAndNoDdl) {
  StartWriter();
  for (std::string rota : {std::string("Bad-Name"), std::string("x;drop"), std::string(60, 'a')}) {
    SendResult r = Send({MakePage("j" + suffix_, 0, 3, rota)});
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << rota;
  }
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT count(*) FROM pg_class WHERE relname ILIKE '%",
                                    cliente_, "%'")),
            "0");
}

TEST_F(WriterIntegrationTest, PageSplitIntoChunksCommitsAsOnePage) {
  StartWriter();
  std::string job = "chunks" + suffix_;
  v1::RecordBatch c0 = MakePage(job, 0, 4), c1 = MakePage(job, 0, 3);
  c0.set_last_chunk(false);
  c1.set_chunk_index(1);
  SendResult r = Send({c0, c1});
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.summary.pages_committed(), 1);
  EXPECT_EQ(Count(), 7);
  // A stream that ends inside a page commits nothing of it.
  v1::RecordBatch lone = MakePage(job, 1, 4);
  lone.set_last_chunk(false);
  SendResult e = Send({lone});
  EXPECT_EQ(e.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Count("page_number = 1"), 0);
}

TEST_F(WriterIntegrationTest, StalledDatabaseBlocksSenderAndQueueStaysWithinBound) {
  WriterOptions w;
  w.queue_records = 2000;
  w.queue_bytes = 1 << 20;
  w.batch_records = 500;
  StartWriter(w);
  std::string job = "stall" + suffix_;
  ASSERT_TRUE(Send({MakePage(job, 0, 1)}).status.ok());  // creates the table
  auto lock = PgConnection::Connect(PostgresConnString(), "test-lock");
  ASSERT_TRUE(lock.ok()) << lock.status();
  ASSERT_TRUE((*lock)->Exec("BEGIN").ok());
  ASSERT_TRUE((*lock)->Exec(absl::StrCat("LOCK TABLE ", table_, " IN ACCESS EXCLUSIVE MODE")).ok());

  constexpr int kPages = 3000, kRecords = 20;  // ~12 MB: far more than queue + flow-control windows
  std::atomic<int> sent{0};
  std::atomic<bool> stop_monitor{false};
  std::atomic<int64_t> max_depth{0};
  std::thread monitor([&] {
    while (!stop_monitor.load()) {
      auto d = server_->writer()->queue().depth();
      int64_t m = max_depth.load();
      if (d.records > m) max_depth.store(d.records);
      std::this_thread::yield();
    }
  });
  auto sender = std::async(std::launch::async, [&] {
    grpc::ClientContext ctx;
    v1::WriteSummary summary;
    auto writer = stub_->Write(&ctx, &summary);
    for (int p = 1; p <= kPages; ++p) {
      if (!writer->Write(MakePage(job, p, kRecords))) break;
      sent.fetch_add(1);
    }
    writer->WritesDone();
    return writer->Finish();
  });
  // Wait (bounded) until the stream is parked on the full queue.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (server_->writer()->queue().depth().parked == 0 && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_GT(server_->writer()->queue().depth().parked, 0);
  // gRPC and the kernel still buffer what is in flight; then the sender must stop for good.
  int at_stall = -1;
  for (int i = 0; i < 30 && at_stall != sent.load(); ++i) {
    at_stall = sent.load();
    ASSERT_EQ(sender.wait_for(std::chrono::seconds(1)), std::future_status::timeout);
  }
  EXPECT_EQ(sender.wait_for(std::chrono::seconds(1)), std::future_status::timeout);
  EXPECT_EQ(sent.load(), at_stall);
  EXPECT_LT(at_stall, kPages);
  EXPECT_LE(server_->writer()->queue().depth().records, w.queue_records);
  ASSERT_TRUE((*lock)->Exec("COMMIT").ok());
  grpc::Status status = sender.get();
  stop_monitor.store(true);
  monitor.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(sent.load(), kPages);
  EXPECT_LE(max_depth.load(), w.queue_records);
  EXPECT_EQ(Count(), 1 + kPages * kRecords);
}

TEST_F(WriterIntegrationTest, LostConnectionReconnectsAndCommitsEveryRecordOnce) {
  StartWriter();
  std::string job = "lost" + suffix_;
  ASSERT_TRUE(Send({MakePage(job, 0, 10)}).status.ok());
  // Kill the writer's connections, then keep sending: the writer reconnects and retries.
  // Only this process's writer connections: other tests share the server.
  ::etl::testing::QueryValue(absl::StrCat(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE "
      "'etl-writer%' AND client_port IN (",
      absl::StrJoin(::etl::testing::LocalTcpPortsOf(getpid()), ","), ")"));
  std::vector<v1::RecordBatch> pages;
  for (int p = 1; p < 200; ++p) pages.push_back(MakePage(job, p, 50));
  SendResult r = Send(pages);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(Count(), 10 + 199 * 50);
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT count(DISTINCT page_number) FROM ", table_)), "200");
  EXPECT_GE(server_->writer()->counters().commit_retries.load(), 1);
}

TEST_F(WriterIntegrationTest, SigtermMidStreamExitsZeroAndKeepsEverythingAcknowledged) {
  auto child = ::etl::testing::ChildProcess::Start(
      ::etl::testing::BinaryPath("writer_server"),
      {"--listen=127.0.0.1:0", "--flush_interval_ms=50", "--shutdown_grace_ms=3000"},
      {{"DATABASE_URL", PostgresConnString()}});
  ASSERT_TRUE(child.ok()) << child.status();
  Connect((*child)->address());
  std::string job = "term" + suffix_;
  std::vector<v1::RecordBatch> acked;
  for (int p = 0; p < 20; ++p) acked.push_back(MakePage(job, p, 20));
  SendResult a = Send(acked);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();

  // A second stream is mid-way when SIGTERM arrives.
  std::atomic<int> sent{0};
  absl::Notification half_way;
  auto sender = std::async(std::launch::async, [&] {
    grpc::ClientContext ctx;
    v1::WriteSummary summary;
    auto writer = stub_->Write(&ctx, &summary);
    for (int p = 100; p < 100000; ++p) {
      if (!writer->Write(MakePage(job, p, 20))) break;
      if (sent.fetch_add(1) == 200) half_way.Notify();
    }
    if (!half_way.HasBeenNotified()) half_way.Notify();
    writer->WritesDone();
    return writer->Finish();
  });
  half_way.WaitForNotification();
  int wait_status = (*child)->Signal(SIGTERM);
  grpc::Status s = sender.get();
  ASSERT_TRUE(WIFEXITED(wait_status));
  EXPECT_EQ(WEXITSTATUS(wait_status), 0);
  EXPECT_FALSE(s.ok());  // The stream was cut short, so it is not acknowledged.
  // Everything acknowledged is there; every page in the ledger has all of its rows.
  EXPECT_EQ(Count("page_number < 20"), 400);
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT count(*) FROM etl_pages p WHERE p.job_id = '", job,
                                    "' AND p.records <> "
                                    "(SELECT count(*) FROM ",
                                    table_,
                                    " t WHERE t.job_id = p.job_id AND t.page_number = "
                                    "p.page_number)")),
            "0");
  EXPECT_EQ(
      QueryValue(absl::StrCat("SELECT count(*) FROM ", table_,
                              " t WHERE NOT EXISTS (SELECT 1 "
                              "FROM etl_pages p WHERE p.job_id = t.job_id AND p.page_number = "
                              "t.page_number)")),
      "0");
}

TEST_F(WriterIntegrationTest, LedgerRpcsRegisterUpdateAndReportResumePoint) {
  StartWriter();
  std::string job = "ledger" + suffix_;
  v1::RegisterJobRequest reg;
  reg.set_job_id(job);
  reg.mutable_spec()->set_cliente_id(cliente_);
  reg.mutable_spec()->set_rota("pedidos");
  reg.mutable_spec()->set_url("http://example.invalid/api");
  v1::JobRecord rec;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->RegisterJob(&ctx, reg, &rec).ok());
    EXPECT_EQ(rec.state(), v1::PENDING);
    EXPECT_EQ(rec.spec().url(), "http://example.invalid/api");
  }
  {
    grpc::ClientContext ctx;  // idempotent
    ASSERT_TRUE(stub_->RegisterJob(&ctx, reg, &rec).ok());
  }
  {
    v1::RegisterJobRequest bad = reg;
    bad.mutable_spec()->set_rota("Bad Route");
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->RegisterJob(&ctx, bad, &rec).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  ASSERT_TRUE(Send({MakePage(job, 0, 5), MakePage(job, 1, 5)}).status.ok());
  v1::PageFailure failure;
  failure.set_job_id(job);
  failure.mutable_page()->set_page_number(2);
  failure.mutable_page()->set_error("HTTP 503 after 3 attempts");
  failure.mutable_page()->set_attempts(3);
  v1::PageFailureAck ack;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->RecordPageFailure(&ctx, failure, &ack).ok());
  }
  failure.mutable_page()->set_page_number(0);  // a committed page never turns failed
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->RecordPageFailure(&ctx, failure, &ack).ok());
  }
  v1::UpdateJobRequest up;
  up.set_job_id(job);
  up.set_state(v1::RUNNING);
  up.set_pages_total(3);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->UpdateJob(&ctx, up, &rec).ok());
  }
  v1::JobRef ref;
  ref.set_job_id(job);
  v1::JobLedger ledger;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetJobLedger(&ctx, ref, &ledger).ok());
  }
  ASSERT_EQ(ledger.pages_size(), 2);
  EXPECT_EQ(ledger.pages(1).page_number(), 1);
  EXPECT_EQ(ledger.pages(1).next_page_token(), "2");
  EXPECT_EQ(ledger.job().state(), v1::RUNNING);
  EXPECT_EQ(ledger.job().pages_total(), 3);
  EXPECT_EQ(ledger.job().records_committed(), 10);
  ASSERT_EQ(ledger.job().failed_pages_size(), 1);
  EXPECT_EQ(ledger.job().failed_pages(0).page_number(), 2);
  v1::ListJobRecordsRequest list;
  list.set_unfinished_only(true);
  list.set_job_id(job);
  v1::ListJobRecordsResponse jobs;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListJobRecords(&ctx, list, &jobs).ok());
    EXPECT_EQ(jobs.jobs_size(), 1);
  }
  up.set_state(v1::PARTIAL);
  up.set_error("1 page failed");
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->UpdateJob(&ctx, up, &rec).ok());
    EXPECT_GT(rec.finished_at_unix_ms(), 0);
  }
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListJobRecords(&ctx, list, &jobs).ok());
    EXPECT_EQ(jobs.jobs_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    ref.set_job_id("no-such-job" + suffix_);
    EXPECT_EQ(stub_->GetJobLedger(&ctx, ref, &ledger).error_code(), grpc::StatusCode::NOT_FOUND);
  }
}

}  // namespace
}  // namespace etl
