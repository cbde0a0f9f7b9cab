// Write modes (append / merge / replace), incremental marks and dead-letter listing of
// writer_service, against a real PostgreSQL through real gRPC channels.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "etl.grpc.pb.h"
#include "tests/testing/test_support.h"
#include "writer_service/pg_conn.h"
#include "writer_service/writer_server.h"

namespace etl {
namespace {

using ::etl::testing::PostgresConnString;
using ::etl::testing::QueryValue;

class WriteModesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    suffix_ = ::etl::testing::UniqueSuffix();
    cliente_ = "m" + suffix_;
    table_ = absl::StrCat("dados_raw_cliente_", cliente_, "_pedidos");
    WriterServerOptions o;
    o.listen = "127.0.0.1:0";
    o.database_url = PostgresConnString();
    auto s = WriterServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::WriterService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    // Jobs registered here never run: end them so no collector sharing this database resumes them.
    for (const std::string& job : registered_) {
      ::etl::testing::Exec(
          absl::StrCat("UPDATE etl_jobs SET state = 'CANCELLED', finished_at = now() "
                       "WHERE job_id = '",
                       job, "' AND state IN ('PENDING', 'RUNNING')"));
    }
  }

  v1::JobSpec Spec(v1::WriteMode mode, const std::string& id_path = "/id") {
    v1::JobSpec spec;
    spec.set_cliente_id(cliente_);
    spec.set_rota("pedidos");
    spec.set_url("http://127.0.0.1:1/x");
    spec.mutable_pagination()->set_style(v1::PAGE);
    spec.set_id_path(id_path);
    spec.set_write_mode(mode);
    return spec;
  }

  void Register(const std::string& job, const v1::JobSpec& spec) {
    v1::RegisterJobRequest req;
    req.set_job_id(job);
    *req.mutable_spec() = spec;
    v1::JobRecord rec;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->RegisterJob(&ctx, req, &rec);
    ASSERT_TRUE(s.ok()) << s.error_message();
    registered_.push_back(job);
  }

  grpc::Status Finish(const std::string& job, v1::JobState state) {
    v1::UpdateJobRequest req;
    req.set_job_id(job);
    req.set_state(state);
    v1::JobRecord rec;
    grpc::ClientContext ctx;
    return stub_->UpdateJob(&ctx, req, &rec);
  }

  // A page whose records are {"id": key, "v": version, "updated_at": ...}.
  v1::RecordBatch Page(const std::string& job, int64_t page, const std::vector<int>& keys,
                       int version) {
    v1::RecordBatch b;
    b.set_job_id(job);
    b.set_cliente_id(cliente_);
    b.set_rota("pedidos");
    b.set_page_number(page);
    b.set_page_token(absl::StrCat(page));
    b.set_last_chunk(true);
    for (int k : keys) {
      b.add_records(
          absl::StrFormat(R"({"id": %d, "v": %d, "updated_at": "2024-05-%02dT10:00:00Z"})", k,
                          version, 1 + k % 28));
      b.add_natural_keys(absl::StrCat(k));
    }
    return b;
  }

  grpc::Status Send(const std::vector<v1::RecordBatch>& pages,
                    v1::WriteSummary* summary = nullptr) {
    v1::WriteSummary local;
    grpc::ClientContext ctx;
    auto w = stub_->Write(&ctx, summary != nullptr ? summary : &local);
    for (const auto& p : pages) {
      if (!w->Write(p)) break;
    }
    w->WritesDone();
    return w->Finish();
  }

  static std::vector<int> Range(int from, int to) {
    std::vector<int> v;
    for (int i = from; i < to; ++i) v.push_back(i);
    return v;
  }

  int64_t Count(const std::string& table, const std::string& where = "true") {
    return std::stoll(QueryValue(absl::StrCat("SELECT count(*) FROM ", table, " WHERE ", where)));
  }

  std::string suffix_, cliente_, table_;
  std::vector<std::string> registered_;
  std::unique_ptr<WriterServer> server_;
  std::unique_ptr<v1::WriterService::Stub> stub_;
};

TEST_F(WriteModesTest, MergeRerunKeepsOneRowPerKeyWithTheLatestPayload) {
  std::string a = "merge-a-" + suffix_, b = "merge-b-" + suffix_;
  Register(a, Spec(v1::MERGE));
  // Page 1 repeats keys of page 0 and one key twice: within one batch the last occurrence wins.
  std::vector<int> page1 = Range(0, 50);
  page1.push_back(7);
  v1::RecordBatch p1 = Page(a, 1, page1, 2);
  p1.set_records(static_cast<int>(page1.size()) - 1,
                 R"({"id": 7, "v": 3, "updated_at": "2024-05-08T10:00:00Z"})");
  ASSERT_TRUE(Send({Page(a, 0, Range(0, 100), 1), p1}).ok());
  EXPECT_EQ(Count(table_), 100);
  EXPECT_EQ(Count(table_, "(payload->>'v')::int = 2"), 49);
  EXPECT_EQ(
      QueryValue(absl::StrCat("SELECT payload->>'v' FROM ", table_, " WHERE natural_key = '7'")),
      "3");
  // A second run of the same data in new versions, plus new keys: still one row per key.
  Register(b, Spec(v1::WRITE_MODE_UNSPECIFIED));  // id_path set: MERGE by default.
  ASSERT_TRUE(Send({Page(b, 0, Range(0, 120), 4)}).ok());
  EXPECT_EQ(Count(table_), 120);
  EXPECT_EQ(Count(table_, "(payload->>'v')::int = 4"), 120);
  EXPECT_EQ(Count(table_, absl::StrCat("job_id = '", b, "'")), 120);
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT count(DISTINCT natural_key) FROM ", table_)), "120");
}

TEST_F(WriteModesTest, MergeSendsRecordsWithoutKeyToDeadLettersWithTheReason) {
  std::string job = "merge-nokey-" + suffix_;
  Register(job, Spec(v1::MERGE));
  v1::RecordBatch p = Page(job, 0, Range(0, 3), 1);
  p.set_natural_keys(1, "");
  v1::WriteSummary summary;
  ASSERT_TRUE(Send({p}, &summary).ok());
  EXPECT_EQ(summary.records_committed(), 2);
  EXPECT_EQ(summary.records_rejected(), 1);
  v1::ListDeadLettersRequest req;
  req.set_job_id(job);
  v1::ListDeadLettersResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListDeadLetters(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.dead_letters_size(), 1);
  EXPECT_EQ(resp.dead_letters(0).record_index(), 1);
  EXPECT_EQ(resp.dead_letters(0).raw(), p.records(1));
  EXPECT_NE(resp.dead_letters(0).reason().find("no natural key"), std::string::npos);
}

TEST_F(WriteModesTest, AppendKeepsEveryRecordOfEveryRun) {
  for (int run = 0; run < 2; ++run) {
    std::string job = absl::StrCat("append-", run, "-", suffix_);
    Register(job, Spec(v1::APPEND));
    ASSERT_TRUE(Send({Page(job, 0, Range(0, 10), run)}).ok());
  }
  EXPECT_EQ(Count(table_), 20);
}

// Parallel COPY connections take ids 1,000 at a time (no contention on the sequence per row); the
// ids of one page are still consecutive and unique.
TEST_F(WriteModesTest, RawTableIdsComeFromACachedSequence) {
  std::string job = "ids-" + suffix_;
  Register(job, Spec(v1::APPEND));
  ASSERT_TRUE(Send({Page(job, 0, Range(0, 10), 1)}).ok());
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT s.cache_size FROM pg_sequences s WHERE "
                                    "quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename)"
                                    " = pg_get_serial_sequence('",
                                    table_, "', 'id')")),
            "1000");
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT count(DISTINCT id) || '/' || (max(id) - min(id)) FROM ",
                                    table_)),
            "10/9");
}

TEST_F(WriteModesTest, DeadLettersKeepExactBytesOfInvalidUtf8) {
  std::string job = "dead-" + suffix_;
  Register(job, Spec(v1::APPEND, ""));
  v1::RecordBatch p = Page(job, 0, Range(0, 2), 1);
  p.clear_natural_keys();
  const std::string bad = std::string("{\"id\": \"\xff\xfe\"}");
  p.set_records(0, bad);
  ASSERT_TRUE(Send({p}).ok());
  v1::ListDeadLettersRequest req;
  req.set_job_id(job);
  v1::ListDeadLettersResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListDeadLetters(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.dead_letters_size(), 1);
  EXPECT_EQ(resp.dead_letters(0).raw(), bad);
  EXPECT_EQ(Count(table_), 1);
}

TEST_F(WriteModesTest, IncrementalMarkAdvancesWithTheCommittedRecordsOnly) {
  std::string job = "incr-" + suffix_;
  v1::JobSpec spec = Spec(v1::MERGE);
  spec.mutable_incremental()->set_cursor_path("/updated_at");
  spec.mutable_incremental()->set_cursor_type(v1::TIMESTAMP);
  Register(job, spec);
  auto mark = [&]() -> std::string {
    v1::ListCursorsRequest req;
    req.set_cliente_id(cliente_);
    v1::ListCursorsResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->ListCursors(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (resp.cursors_size() != 1) return "";
    EXPECT_EQ(resp.cursors(0).cursor_path(), "/updated_at");
    EXPECT_EQ(resp.cursors(0).cursor_type(), v1::TIMESTAMP);
    return resp.cursors(0).value();
  };
  EXPECT_EQ(mark(), "");
  // Keys 0..9: updated_at day 1..10. A record PostgreSQL refuses never moves the mark.
  v1::RecordBatch p0 = Page(job, 0, Range(0, 10), 1);
  p0.set_records(9, R"({"id": 9, "updated_at": "2024-05-28T00:00:00Z", "bad": "\u0000"})");
  ASSERT_TRUE(Send({p0}).ok());
  EXPECT_EQ(mark(), "2024-05-09T10:00:00Z");
  // Older values do not lower it; a re-sent page (skipped) does not touch it.
  ASSERT_TRUE(Send({Page(job, 1, Range(0, 3), 1), p0}).ok());
  EXPECT_EQ(mark(), "2024-05-09T10:00:00Z");
  ASSERT_TRUE(Send({Page(job, 2, {20}, 1)}).ok());
  EXPECT_EQ(mark(), "2024-05-21T10:00:00Z");
  // An integer beyond 64 bits elsewhere in the record does not hide its cursor.
  v1::RecordBatch big = Page(job, 3, {21}, 1);
  big.set_records(
      0, R"({"big": 18446744073709551617123, "id": 21, "updated_at": "2024-05-22T00:00:00Z"})");
  ASSERT_TRUE(Send({big}).ok());
  EXPECT_EQ(mark(), "2024-05-22T00:00:00Z");
  EXPECT_EQ(QueryValue(
                absl::StrCat("SELECT job_id FROM etl_cursors WHERE cliente_id = '", cliente_, "'")),
            job);
}

TEST_F(WriteModesTest, ReplaceSwapsAtomicallyOnSuccessOnlyWhileReadersKeepReading) {
  std::string old_job = "replace-old-" + suffix_, job = "replace-new-" + suffix_;
  Register(old_job, Spec(v1::APPEND));
  ASSERT_TRUE(Send({Page(old_job, 0, Range(0, 30), 1)}).ok());
  ASSERT_EQ(Count(table_), 30);

  Register(job, Spec(v1::REPLACE));
  ASSERT_TRUE(Send({Page(job, 0, Range(0, 50), 2), Page(job, 1, Range(50, 80), 2)}).ok());
  // Until the job succeeds, readers see the old table; PARTIAL, FAILED and CANCELLED never swap.
  EXPECT_EQ(Count(table_), 30);
  for (v1::JobState st : {v1::PARTIAL, v1::FAILED, v1::CANCELLED}) {
    ASSERT_TRUE(Finish(job, st).ok());
    EXPECT_EQ(Count(table_), 30);
  }

  // A reader in a loop on its own connection: every answer is the old or the new table, whole.
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::set<std::string> seen;
  std::string reader_error;
  std::thread reader([&] {
    auto conn = PgConnection::Connect(PostgresConnString(), "test-reader");
    if (!conn.ok()) {
      reader_error = std::string(conn.status().message());
      return;
    }
    while (!stop.load() || reads.load() < 5) {
      auto r = (*conn)->Query(
          absl::StrCat("SELECT count(*) || '/' || min((payload->>'v')::int) FROM ", table_));
      if (!r.ok()) {
        reader_error = std::string(r.status().message());
        return;
      }
      seen.insert(r->Get(0, 0));
      reads.fetch_add(1);
    }
  });
  while (reads.load() < 5) std::this_thread::yield();
  ASSERT_TRUE(Finish(job, v1::SUCCEEDED).ok());
  ASSERT_TRUE(Finish(job, v1::SUCCEEDED).ok());  // Idempotent: a retried UpdateJob swaps nothing.
  int after = reads.load();
  while (reads.load() < after + 5) std::this_thread::yield();
  stop.store(true);
  reader.join();
  EXPECT_EQ(reader_error, "");
  EXPECT_TRUE(seen.count("80/2") == 1) << *seen.begin();
  for (const std::string& s : seen) EXPECT_TRUE(s == "30/1" || s == "80/2") << s;
  EXPECT_EQ(Count(table_), 80);
  EXPECT_EQ(QueryValue(absl::StrCat("SELECT count(*) FROM pg_class WHERE relname LIKE 'etl_old_%' "
                                    "OR relname = 'etl_new_' || '",
                                    suffix_, "'")),
            "0");
}

TEST_F(WriteModesTest, ReplaceOfAJobWithoutRecordsLeavesAnEmptyTable) {
  std::string old_job = "replace-e-old-" + suffix_, job = "replace-e-" + suffix_;
  Register(old_job, Spec(v1::APPEND));
  ASSERT_TRUE(Send({Page(old_job, 0, Range(0, 5), 1)}).ok());
  Register(job, Spec(v1::REPLACE));
  ASSERT_TRUE(Finish(job, v1::SUCCEEDED).ok());
  EXPECT_EQ(Count(table_), 0);
}

TEST_F(WriteModesTest, ListJobRecordsFiltersByClientRouteAndStateAndPagesWithAToken) {
  std::vector<std::string> jobs;
  for (int i = 0; i < 5; ++i) {
    jobs.push_back(absl::StrCat("list-", i, "-", suffix_));
    v1::JobSpec spec = Spec(v1::APPEND);
    if (i == 4) spec.set_rota("outra");
    Register(jobs.back(), spec);
  }
  ASSERT_TRUE(Finish(jobs[1], v1::SUCCEEDED).ok());
  ASSERT_TRUE(Finish(jobs[3], v1::PARTIAL).ok());
  auto list = [&](v1::ListJobRecordsRequest req) {
    std::vector<std::string> ids;
    for (int pages = 0; pages < 10; ++pages) {
      v1::ListJobRecordsResponse resp;
      grpc::ClientContext ctx;
      grpc::Status s = stub_->ListJobRecords(&ctx, req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      for (const auto& j : resp.jobs()) ids.push_back(j.job_id());
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    return ids;
  };
  v1::ListJobRecordsRequest req;
  req.set_cliente_id(cliente_);
  req.set_limit(2);
  std::vector<std::string> newest_first(jobs.rbegin(), jobs.rend());
  EXPECT_EQ(list(req), newest_first);  // Pages of 2, 2 and 1, newest first, none twice.
  req.set_rota("pedidos");
  EXPECT_EQ(list(req), std::vector<std::string>(newest_first.begin() + 1, newest_first.end()));
  req.add_states(v1::SUCCEEDED);
  req.add_states(v1::PARTIAL);
  EXPECT_EQ(list(req), (std::vector<std::string>{jobs[3], jobs[1]}));
  req.set_page_token("garbage");
  v1::ListJobRecordsResponse resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->ListJobRecords(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace etl
