// Jobs owned by leases, for real: writer_server and collector_server processes on a fresh
// PostgreSQL database of their own (so no other test's jobs are claimable here), scripted HTTP APIs
// on loopback, and direct gRPC clients of the writer's lease and ledger RPCs.
//
// What must hold: a claim takes PENDING jobs oldest first and round-robin over clientes, and never
// gives one job to two claimers; every claim bumps the fencing epoch and the writer refuses data
// and ledger writes of an older epoch with nothing committed; a job runs on exactly one collector;
// a killed collector's jobs are claimed by another once its leases expire; a collector paused past
// its lease cannot commit after the new owner took over; any replica answers GetJob, WatchJob and
// CancelJob for a job another one runs.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "etl.grpc.pb.h"
#include "tests/collector_service/test_api.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

using ::etl::testing::ApiRequest;
using ::etl::testing::ChildProcess;
using ::etl::testing::TestApi;
using ::etl::testing::WaitFor;

// A database of its own for one test: created on the test server, dropped at the end.
class TestDatabase {
 public:
  TestDatabase() : name_("lease_" + etl::testing::UniqueSuffix()) {
    std::string err = etl::testing::Exec(absl::StrCat("CREATE DATABASE ", name_));
    ok_ = err.empty();
    EXPECT_TRUE(ok_) << err;
    // The test server's connection parameters with this database.
    PQconninfoOption* opts = PQconninfoParse(etl::testing::PostgresConnString().c_str(), nullptr);
    std::vector<std::string> parts;
    for (PQconninfoOption* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
      if (o->val == nullptr || *o->val == '\0' || std::string(o->keyword) == "dbname") continue;
      parts.push_back(absl::StrCat(o->keyword, "='", o->val, "'"));
    }
    if (opts != nullptr) PQconninfoFree(opts);
    parts.push_back(absl::StrCat("dbname=", name_));
    conninfo_ = absl::StrJoin(parts, " ");
  }
  ~TestDatabase() {
    if (ok_) etl::testing::Exec(absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"));
  }
  const std::string& conninfo() const { return conninfo_; }

  // Rows of `sql`, columns joined by '\t'.
  std::vector<std::string> Query(const std::string& sql) const {
    std::vector<std::string> rows;
    PGconn* conn = PQconnectdb(conninfo_.c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      ADD_FAILURE() << PQerrorMessage(conn);
      PQfinish(conn);
      return rows;
    }
    PGresult* res = PQexec(conn, sql.c_str());
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(res);
    } else {
      for (int r = 0; r < PQntuples(res); ++r) {
        std::vector<std::string> cols;
        for (int c = 0; c < PQnfields(res); ++c) cols.push_back(PQgetvalue(res, r, c));
        rows.push_back(absl::StrJoin(cols, "\t"));
      }
    }
    PQclear(res);
    PQfinish(conn);
    return rows;
  }
  std::string Value(const std::string& sql) const {
    std::vector<std::string> rows = Query(sql);
    return rows.empty() ? "" : rows[0];
  }

 private:
  std::string name_;
  std::string conninfo_;
  bool ok_ = false;
};

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    db_ = std::make_unique<TestDatabase>();
    auto child = ChildProcess::Start(
        etl::testing::BinaryPath("writer_server"),
        {"--listen=127.0.0.1:0", "--flush_interval_ms=20", "--database_url=" + db_->conninfo()});
    ASSERT_TRUE(child.ok()) << child.status();
    writer_ = std::move(*child);
    writer_stub_ = v1::WriterService::NewStub(
        grpc::CreateChannel(writer_->address(), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    // Held API answers go first: their hooks wait on these.
    for (absl::Notification* n : {&release_a_, &release_b_}) {
      if (!n->HasBeenNotified()) n->Notify();
    }
    collectors_.clear();
    apis_.clear();
    writer_.reset();
    db_.reset();
  }

  // --- The writer's RPCs, directly ---

  static void Deadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }

  std::string Register(const std::string& cliente, const std::string& id = "") {
    v1::RegisterJobRequest req;
    req.set_job_id(id.empty() ? "job" + etl::testing::UniqueSuffix() : id);
    req.mutable_spec()->set_cliente_id(cliente);
    req.mutable_spec()->set_rota("pedidos");
    req.mutable_spec()->set_url("http://127.0.0.1:1/x");
    req.mutable_spec()->mutable_pagination()->set_style(v1::NONE);
    req.mutable_spec()->set_write_mode(v1::APPEND);
    v1::JobRecord rec;
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::Status s = writer_stub_->RegisterJob(&ctx, req, &rec);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return req.job_id();
  }

  v1::ClaimJobsResponse Claim(const std::string& owner, int max_jobs,
                              const std::vector<std::string>& among, double lease_seconds = 30) {
    v1::ClaimJobsRequest req;
    req.set_owner(owner);
    req.set_max_jobs(max_jobs);
    req.set_lease_seconds(lease_seconds);
    for (const auto& id : among) req.add_job_ids(id);
    v1::ClaimJobsResponse resp;
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::Status s = writer_stub_->ClaimJobs(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  v1::RenewLeasesResponse Renew(const std::string& owner, const std::string& job, int64_t epoch) {
    v1::RenewLeasesRequest req;
    req.set_owner(owner);
    req.set_lease_seconds(30);
    v1::HeldLease* l = req.add_leases();
    l->set_job_id(job);
    l->set_lease_epoch(epoch);
    v1::RenewLeasesResponse resp;
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::Status s = writer_stub_->RenewLeases(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  // One Write stream carrying one single-chunk page of `records` records for `job`.
  grpc::Status WritePage(const std::string& job, const std::string& cliente, int64_t epoch,
                         int64_t page, int records) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::WriteSummary summary;
    auto stream = writer_stub_->Write(&ctx, &summary);
    v1::RecordBatch b;
    b.set_job_id(job);
    b.set_cliente_id(cliente);
    b.set_rota("pedidos");
    b.set_page_number(page);
    b.set_page_token(absl::StrCat(page));
    b.set_last_chunk(true);
    b.set_lease_epoch(epoch);
    for (int i = 0; i < records; ++i)
      b.add_records(absl::StrCat(R"({"id":)", page * 1000 + i, "}"));
    stream->Write(b);
    stream->WritesDone();
    return stream->Finish();
  }

  void ExpireLease(const std::string& job) {
    db_->Query(absl::StrCat("UPDATE etl_jobs SET lease_expires_at = now() - interval '1 second' ",
                            "WHERE job_id = '", job, "'"));
  }

  // --- Collectors as processes ---

  struct CollectorProcess {
    std::unique_ptr<ChildProcess> process;
    std::unique_ptr<v1::CollectorService::Stub> stub;
  };

  CollectorProcess& StartCollector(const std::string& replica_id,
                                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen=127.0.0.1:0",       "--writer=" + writer_->address(),
                                     "--replica_id=" + replica_id, "--lease_seconds=2",
                                     "--lease_renew_seconds=0.5",  "--allow_private_networks",
                                     "--max_concurrent_jobs=4"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(etl::testing::BinaryPath("collector_server"), args);
    EXPECT_TRUE(child.ok()) << child.status();
    auto c = std::make_unique<CollectorProcess>();
    c->process = std::move(*child);
    c->stub = v1::CollectorService::NewStub(
        grpc::CreateChannel(c->process->address(), grpc::InsecureChannelCredentials()));
    collectors_.push_back(std::move(c));
    return *collectors_.back();
  }

  TestApi& NewApi(int total, int page_size) {
    apis_.push_back(std::make_unique<TestApi>(total, page_size));
    return *apis_.back();
  }

  static v1::JobSpec PageSpec(const TestApi& api, int page_size) {
    v1::JobSpec spec;
    spec.set_cliente_id("c" + etl::testing::UniqueSuffix());
    spec.set_rota("pedidos");
    spec.set_url(api.Url("/page"));
    spec.mutable_pagination()->set_style(v1::PAGE);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_page_size(page_size);
    spec.mutable_retry()->set_backoff_scale(0.01);
    spec.set_id_path("/id");
    spec.set_write_mode(v1::APPEND);  // A duplicated record shows up as a second row.
    return spec;
  }

  static std::string StartJob(CollectorProcess& c, const v1::JobSpec& spec) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::Job job;
    grpc::Status s = c.stub->StartJob(&ctx, spec, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job.job_id();
  }

  static absl::StatusOr<v1::Job> GetJob(CollectorProcess& c, const std::string& id) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::JobRef ref;
    ref.set_job_id(id);
    v1::Job job;
    grpc::Status s = c.stub->GetJob(&ctx, ref, &job);
    if (!s.ok()) return absl::UnknownError(s.error_message());
    return job;
  }

  std::string LedgerState(const std::string& job) {
    return db_->Value(absl::StrCat("SELECT state FROM etl_jobs WHERE job_id = '", job, "'"));
  }

  // Every record of `api` exactly once in the job's table (ids and content), nothing else.
  void ExpectTableExact(const v1::JobSpec& spec, const TestApi& api) {
    const std::string table = absl::StrCat("dados_raw_cliente_", spec.cliente_id(), "_pedidos");
    std::vector<std::string> got = db_->Query(absl::StrCat(
        "SELECT payload::text FROM ", table, " ORDER BY (payload->>'id')::bigint, id"));
    std::vector<std::string> values;
    for (const auto& r : api.records()) values.push_back(absl::StrCat("($rec$", r, "$rec$)"));
    std::vector<std::string> want =
        db_->Query(absl::StrCat("SELECT x::jsonb::text FROM (VALUES ", absl::StrJoin(values, ","),
                                ") v(x) ORDER BY (x::jsonb->>'id')::bigint"));
    ASSERT_EQ(got.size(), want.size()) << "row count of " << table;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "row " << i;
  }

  // How many times each page index of `api` was requested.
  static std::map<int, int> PageRequests(const TestApi& api) {
    std::map<int, int> n;
    for (const ApiRequest& r : api.requests()) ++n[r.page_index];
    return n;
  }

  absl::Notification release_a_, release_b_;  // Held API answers (outlive the APIs).
  std::atomic<int> held_requests_{0};         // Requests of the held page so far.
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<ChildProcess> writer_;
  std::unique_ptr<v1::WriterService::Stub> writer_stub_;
  std::vector<std::unique_ptr<TestApi>> apis_;  // Declared before the collectors: outlive them.
  std::vector<std::unique_ptr<CollectorProcess>> collectors_;
};

TEST_F(LeaseTest, ClaimsPendingJobsOldestFirstRoundRobinOverClientes) {
  // Registered in this order: three jobs of cliente a, then one of b, then one of c.
  std::vector<std::string> ids = {Register("a"), Register("a"), Register("a"), Register("b"),
                                  Register("c")};
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    v1::ClaimJobsResponse r = Claim("owner", 1, ids);
    if (r.jobs_size() == 0) break;
    ASSERT_EQ(r.jobs_size(), 1);
    EXPECT_EQ(r.jobs(0).lease_epoch(), 1);
    EXPECT_EQ(r.jobs(0).job().owner(), "owner");
    EXPECT_TRUE(r.jobs(0).job().lease_held());
    order.push_back(r.jobs(0).job().job_id());
  }
  // Each cliente's oldest first (a, b, c), then a's second and third.
  EXPECT_EQ(order, (std::vector<std::string>{ids[0], ids[3], ids[4], ids[1], ids[2]}));
  // A live lease is never claimed again; an expired one is, with the next epoch, interrupted
  // (RUNNING) jobs before PENDING ones.
  std::string fresh = Register("d");
  ExpireLease(ids[2]);
  db_->Query(absl::StrCat("UPDATE etl_jobs SET state = 'RUNNING' WHERE job_id = '", ids[2], "'"));
  ids.push_back(fresh);
  v1::ClaimJobsResponse again = Claim("other", 10, ids);
  ASSERT_EQ(again.jobs_size(), 2);
  std::set<std::string> got = {again.jobs(0).job().job_id(), again.jobs(1).job().job_id()};
  EXPECT_EQ(got, (std::set<std::string>{ids[2], fresh}));
  for (const auto& c : again.jobs()) {
    EXPECT_EQ(c.lease_epoch(), c.job().job_id() == fresh ? 1 : 2);
  }
}

TEST_F(LeaseTest, ConcurrentClaimersNeverTakeTheSameJob) {
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(Register(absl::StrCat("k", i % 5)));
  std::mutex mu;
  std::vector<std::string> claimed;
  std::vector<std::thread> claimers;
  for (int t = 0; t < 4; ++t) {
    claimers.emplace_back([&, t] {
      while (true) {
        v1::ClaimJobsResponse r = Claim(absl::StrCat("owner", t), 3, ids);
        if (r.jobs_size() == 0) return;
        std::lock_guard<std::mutex> l(mu);
        for (const auto& c : r.jobs()) claimed.push_back(c.job().job_id());
      }
    });
  }
  for (auto& t : claimers) t.join();
  std::sort(claimed.begin(), claimed.end());
  std::vector<std::string> want = ids;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(claimed, want);  // Every job exactly once.
}

TEST_F(LeaseTest, OlderEpochIsRefusedWithNothingCommitted) {
  const std::string job = Register("fence");
  v1::ClaimJobsResponse first = Claim("old", 1, {job});
  ASSERT_EQ(first.jobs_size(), 1);
  const int64_t old_epoch = first.jobs(0).lease_epoch();
  EXPECT_EQ(Claim("new", 1, {job}).jobs_size(), 0);  // Live lease: not claimable.
  ExpireLease(job);
  v1::ClaimJobsResponse second = Claim("new", 1, {job});
  ASSERT_EQ(second.jobs_size(), 1);
  const int64_t new_epoch = second.jobs(0).lease_epoch();
  ASSERT_GT(new_epoch, old_epoch);

  // The old owner's page: refused as a lost lease, nothing of it committed.
  grpc::Status old_write = WritePage(job, "fence", old_epoch, 0, 5);
  EXPECT_EQ(old_write.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(old_write.error_message(), "lease lost"))
      << old_write.error_message();
  // No lease at all (epoch 0) while someone holds one: refused too.
  EXPECT_EQ(WritePage(job, "fence", 0, 1, 5).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(db_->Value(absl::StrCat("SELECT count(*) FROM etl_pages WHERE job_id = '", job, "'")),
            "0");
  EXPECT_EQ(db_->Value("SELECT count(*) FROM pg_tables WHERE tablename = "
                       "'dados_raw_cliente_fence_pedidos'") == "0" ||
                db_->Value("SELECT count(*) FROM dados_raw_cliente_fence_pedidos") == "0",
            true);

  // The old owner's ledger writes are refused the same way.
  v1::UpdateJobRequest update;
  update.set_job_id(job);
  update.set_state(v1::FAILED);
  update.set_error("stale");
  update.set_lease_epoch(old_epoch);
  v1::JobRecord rec;
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::Status s = writer_stub_->UpdateJob(&ctx, update, &rec);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  }
  v1::PageFailure failure;
  failure.set_job_id(job);
  failure.mutable_page()->set_page_number(3);
  failure.mutable_page()->set_error("stale");
  failure.set_lease_epoch(old_epoch);
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::PageFailureAck ack;
    grpc::Status s = writer_stub_->RecordPageFailure(&ctx, failure, &ack);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  }
  v1::RenewLeasesResponse renew = Renew("old", job, old_epoch);
  EXPECT_EQ(renew.lost_size(), 1);
  EXPECT_EQ(renew.held_size(), 0);
  EXPECT_NE(LedgerState(job), "FAILED");

  // The new owner writes and ends the job; a final job is never claimed again.
  grpc::Status new_write = WritePage(job, "fence", new_epoch, 0, 5);
  EXPECT_TRUE(new_write.ok()) << new_write.error_message();
  EXPECT_EQ(db_->Value("SELECT count(*) FROM dados_raw_cliente_fence_pedidos"), "5");
  update.set_state(v1::SUCCEEDED);
  update.clear_error();
  update.set_lease_epoch(new_epoch);
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::Status s = writer_stub_->UpdateJob(&ctx, update, &rec);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(rec.state(), v1::SUCCEEDED);
  EXPECT_EQ(rec.owner(), "");
  EXPECT_EQ(Claim("third", 1, {job}).jobs_size(), 0);
}

TEST_F(LeaseTest, CancelRequestsEndUnownedJobsAtOnceAndReachTheOwnerByRenewal) {
  const std::string unowned = Register("cx");
  const std::string owned = Register("cx");
  v1::ClaimJobsResponse c = Claim("owner", 1, {owned});
  ASSERT_EQ(c.jobs_size(), 1);
  const int64_t epoch = c.jobs(0).lease_epoch();

  v1::JobRef ref;
  v1::JobRecord rec;
  ref.set_job_id(unowned);
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ASSERT_TRUE(writer_stub_->RequestCancel(&ctx, ref, &rec).ok());
  }
  EXPECT_EQ(rec.state(), v1::CANCELLED);
  ref.set_job_id(owned);
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ASSERT_TRUE(writer_stub_->RequestCancel(&ctx, ref, &rec).ok());
  }
  EXPECT_EQ(rec.state(), v1::PENDING);  // Its owner decides: the request reaches it by renewal.
  EXPECT_TRUE(rec.cancel_requested());
  v1::RenewLeasesResponse renew = Renew("owner", owned, epoch);
  ASSERT_EQ(renew.cancel_requested_size(), 1);
  EXPECT_EQ(renew.cancel_requested(0), owned);

  // Neither is ever claimed; once the owner's lease expired, a claimer ends the cancelled job.
  EXPECT_EQ(Claim("other", 5, {unowned, owned}).jobs_size(), 0);
  ExpireLease(owned);
  EXPECT_EQ(Claim("other", 5, {unowned, owned}).jobs_size(), 0);
  EXPECT_EQ(LedgerState(owned), "CANCELLED");
  EXPECT_EQ(LedgerState(unowned), "CANCELLED");
  // A cancel after the end is refused.
  grpc::ClientContext ctx;
  Deadline(&ctx);
  EXPECT_EQ(writer_stub_->RequestCancel(&ctx, ref, &rec).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(LeaseTest, TwoCollectorsRunEachJobOnceAndTakeOverAKilledOnesJob) {
  CollectorProcess& a = StartCollector("replica-a");
  CollectorProcess& b = StartCollector("replica-b");
  // The job the test kills its owner under: page 5 of 20 is held until the owner is dead.
  TestApi& held_api = NewApi(200, 10);
  absl::Notification& release = release_a_;
  std::atomic<int>& held_requests = held_requests_;
  held_api.SetHook([&](const ApiRequest& r, httplib::Response&) {
    if (r.page_index == 5 && held_requests.fetch_add(1) == 0) {
      release.WaitForNotificationWithTimeout(absl::Seconds(60));
    }
    return false;
  });
  const v1::JobSpec held_spec = PageSpec(held_api, 10);
  const std::string held_job = StartJob(a, held_spec);
  // Six more jobs started alternately on both replicas.
  std::vector<std::pair<TestApi*, v1::JobSpec>> others;
  std::vector<std::string> other_ids;
  for (int i = 0; i < 6; ++i) {
    TestApi& api = NewApi(150 + i * 10, 10);
    others.emplace_back(&api, PageSpec(api, 10));
    other_ids.push_back(StartJob(i % 2 == 0 ? a : b, others.back().second));
  }
  ASSERT_TRUE(held_api.WaitFor(
      [](const std::vector<ApiRequest>& rs) {
        return std::any_of(rs.begin(), rs.end(),
                           [](const ApiRequest& r) { return r.page_index == 5; });
      },
      absl::Seconds(30)));
  // Started on A, but whichever replica had a free slot first may hold it: the test kills the
  // owner and the other one must take over.
  const std::string owner =
      db_->Value(absl::StrCat("SELECT owner FROM etl_jobs WHERE job_id = '", held_job, "'"));
  ASSERT_TRUE(owner == "replica-a" || owner == "replica-b") << owner;
  CollectorProcess& victim = owner == "replica-a" ? a : b;
  CollectorProcess& survivor = owner == "replica-a" ? b : a;
  const std::string survivor_id = owner == "replica-a" ? "replica-b" : "replica-a";
  // The other jobs end first (each on whichever replica claimed it); the survivor answers for all.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& id : other_ids) {
          absl::StatusOr<v1::Job> j = GetJob(survivor, id);
          if (!j.ok() || j->state() != v1::SUCCEEDED) return false;
        }
        return true;
      },
      absl::Seconds(90)));

  // kill -9: no release; the other replica claims the job once the lease (2 s) expired.
  victim.process->Signal(SIGKILL);
  ASSERT_TRUE(WaitFor([&] {
    return db_->Value(absl::StrCat("SELECT owner || ' ' || lease_epoch FROM etl_jobs WHERE "
                                   "job_id = '",
                                   held_job, "'")) == survivor_id + " 2";
  }));
  release.Notify();

  std::vector<std::string> all = other_ids;
  all.push_back(held_job);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& id : all) {
          absl::StatusOr<v1::Job> j = GetJob(survivor, id);  // It answers for every job.
          if (!j.ok() || j->state() != v1::SUCCEEDED) return false;
        }
        return true;
      },
      absl::Seconds(90)));
  ExpectTableExact(held_spec, held_api);
  for (const auto& [api, spec] : others) {
    ExpectTableExact(spec, *api);
    // Run by one collector: no page requested twice (none of these APIs fails).
    for (const auto& [page, n] : PageRequests(*api)) EXPECT_EQ(n, 1) << "page " << page;
  }
  // The killed owner's pages before the held one were committed by it and not fetched again.
  std::map<int, int> held_requests_by_page = PageRequests(held_api);
  for (int p = 0; p < 5; ++p) EXPECT_EQ(held_requests_by_page[p], 1) << "page " << p;
}

TEST_F(LeaseTest, OwnerPausedPastItsLeaseCannotCommitAfterTheTakeover) {
  CollectorProcess& a = StartCollector("replica-a");
  StartCollector("replica-b");  // Takes the job over.
  // Page 6 of 12: the first request (the first owner's) is held and then answered with other
  // records than the API's (as if the data had changed); the second (the new owner's) is held
  // until the first owner had its chance to write.
  TestApi& api = NewApi(120, 10);
  absl::Notification& release_first = release_a_;
  absl::Notification& release_second = release_b_;
  std::atomic<int>& page6_requests = held_requests_;
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    if (r.page_index != 6) return false;
    if (page6_requests.fetch_add(1) == 0) {
      release_first.WaitForNotificationWithTimeout(absl::Seconds(60));
      std::vector<std::string> stale;
      for (int i = 0; i < 10; ++i) stale.push_back(absl::StrCat(R"({"id":)", 900000 + i, "}"));
      res.set_content(absl::StrCat(R"({"data":[)", absl::StrJoin(stale, ","), "]}"),
                      "application/json");
      return true;
    }
    release_second.WaitForNotificationWithTimeout(absl::Seconds(60));
    return false;
  });
  const v1::JobSpec spec = PageSpec(api, 10);
  const std::string job = StartJob(a, spec);
  ASSERT_TRUE(WaitFor([&] { return page6_requests.load() >= 1; }));

  kill(a.process->pid(), SIGSTOP);
  ASSERT_TRUE(WaitFor([&] {
    return db_->Value(absl::StrCat("SELECT owner FROM etl_jobs WHERE job_id = '", job, "'")) ==
           "replica-b";
  }));
  ASSERT_TRUE(WaitFor([&] { return page6_requests.load() >= 2; }));  // B reached page 6.
  // The paused owner gets its (changed) page 6 and resumes: its lease is gone, so what it sends
  // is refused, and it stops the job within a heartbeat. A's view of the job then is its lost
  // run ("lease lost: ...") or, once that left its registry, the ledger's: the progress B
  // publishes (B resumed the job).
  release_first.Notify();
  kill(a.process->pid(), SIGCONT);
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> j = GetJob(a, job);
    return j.ok() && (absl::StartsWith(j->progress().message(), "lease lost") ||
                      absl::StartsWith(j->progress().message(), "resumed"));
  }));
  // A stops its local run within a heartbeat; SIGTERM then makes sure nothing of it is left.
  a.process->Signal(SIGTERM);
  release_second.Notify();
  ASSERT_TRUE(WaitFor([&] { return LedgerState(job) == "SUCCEEDED"; }, absl::Seconds(60)));
  ExpectTableExact(spec, api);
  EXPECT_EQ(db_->Value(absl::StrCat("SELECT lease_epoch FROM etl_jobs WHERE job_id = '", job, "'")),
            "2");
}

TEST_F(LeaseTest, AnyReplicaAnswersGetWatchAndCancelForAJobAnotherRuns) {
  CollectorProcess& a = StartCollector("replica-a");
  CollectorProcess& b = StartCollector("replica-b", {"--resume=false"});
  TestApi& api = NewApi(100, 10);
  absl::Notification& release = release_a_;
  api.SetHook([&](const ApiRequest& r, httplib::Response&) {
    if (r.page_index == 3) release.WaitForNotificationWithTimeout(absl::Seconds(60));
    return false;
  });
  const std::string job = StartJob(a, PageSpec(api, 10));
  // B reads the job from the ledger with the progress A publishes every heartbeat.
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> j = GetJob(b, job);
    // The message is A's (published with its renewals); the ledger alone has none.
    return j.ok() && j->state() == v1::RUNNING && j->progress().records_committed() == 30 &&
           j->progress().message() == "running";
  }));

  // WatchJob on B follows the job until it ends (not one snapshot).
  std::vector<v1::JobProgress> seen;
  grpc::Status watch_status;
  std::thread watcher([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::JobRef ref;
    ref.set_job_id(job);
    auto reader = b.stub->WatchJob(&ctx, ref);
    v1::JobProgress p;
    while (reader->Read(&p)) seen.push_back(p);
    watch_status = reader->Finish();
  });

  // CancelJob on B: a ledger request that A acts on within a heartbeat.
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::JobRef ref;
  ref.set_job_id(job);
  v1::Job cancelled;
  grpc::Status s = b.stub->CancelJob(&ctx, ref, &cancelled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  release.Notify();
  watcher.join();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().state(), v1::RUNNING);
  EXPECT_EQ(seen.back().state(), v1::CANCELLED);
  absl::StatusOr<v1::Job> on_a = GetJob(a, job);
  ASSERT_TRUE(on_a.ok());
  EXPECT_EQ(on_a->state(), v1::CANCELLED);
  EXPECT_EQ(LedgerState(job), "CANCELLED");
}

TEST_F(LeaseTest, ShutdownReleasesLeasesSoAnotherReplicaClaimsAtOnce) {
  // A's lease would last a minute: B can only get the job this early because A released it.
  CollectorProcess& a =
      StartCollector("replica-a", {"--lease_seconds=60", "--lease_renew_seconds=1"});
  StartCollector("replica-b");
  TestApi& api = NewApi(100, 10);
  absl::Notification& release = release_a_;
  std::atomic<int>& page3_requests = held_requests_;
  api.SetHook([&](const ApiRequest& r, httplib::Response&) {
    if (r.page_index == 3 && page3_requests.fetch_add(1) == 0) {
      release.WaitForNotificationWithTimeout(absl::Seconds(60));
    }
    return false;
  });
  const v1::JobSpec spec = PageSpec(api, 10);
  const std::string job = StartJob(a, spec);
  ASSERT_TRUE(WaitFor([&] { return page3_requests.load() >= 1; }));
  const absl::Time stopped = absl::Now();
  a.process->Signal(SIGTERM);
  // B claimed it (the second lease epoch; it may have finished already).
  ASSERT_TRUE(WaitFor([&] {
    return db_->Value(
               absl::StrCat("SELECT lease_epoch FROM etl_jobs WHERE job_id = '", job, "'")) == "2";
  }));
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(30));  // Well before A's lease would expire.
  ASSERT_TRUE(WaitFor([&] { return LedgerState(job) == "SUCCEEDED"; }, absl::Seconds(60)));
  ExpectTableExact(spec, api);
}

TEST_F(LeaseTest, UnreachableWriterStopsTheJobOnceItsLeaseRanOutThenItIsClaimedAgain) {
  CollectorProcess& a = StartCollector("replica-a");
  TestApi& api = NewApi(100, 10);
  absl::Notification& release = release_a_;
  std::atomic<int>& page3_requests = held_requests_;
  api.SetHook([&](const ApiRequest& r, httplib::Response&) {
    if (r.page_index == 3 && page3_requests.fetch_add(1) == 0) {
      release.WaitForNotificationWithTimeout(absl::Seconds(60));
    }
    return false;
  });
  const v1::JobSpec spec = PageSpec(api, 10);
  const std::string job = StartJob(a, spec);
  ASSERT_TRUE(WaitFor([&] { return page3_requests.load() >= 1; }));
  // While A runs the job, GetJob answers from the live job (no writer needed).
  ASSERT_TRUE(GetJob(a, job).ok());
  // A hung writer: renewals time out. Past its 2 s lease A stops the job (another replica may
  // have claimed it), after which it can only ask the (unreachable) ledger about it.
  kill(writer_->pid(), SIGSTOP);
  const absl::Time hung = absl::Now();
  bool stopped = WaitFor([&] { return !GetJob(a, job).ok(); }, absl::Seconds(30));
  const absl::Duration took = absl::Now() - hung;
  kill(writer_->pid(), SIGCONT);
  ASSERT_TRUE(stopped);
  EXPECT_GE(took, absl::Seconds(1));  // Not before the lease could have run out ...
  // ... and not much later (GetJob's ledger read then takes up to its 10 s deadline).
  EXPECT_LT(took, absl::Seconds(16));
  release.Notify();
  // The writer is back: the job's lease expired, so A (or any replica) claims it again.
  ASSERT_TRUE(WaitFor([&] { return LedgerState(job) == "SUCCEEDED"; }, absl::Seconds(60)));
  ExpectTableExact(spec, api);
  EXPECT_EQ(db_->Value(absl::StrCat("SELECT lease_epoch FROM etl_jobs WHERE job_id = '", job, "'")),
            "2");
}

}  // namespace
}  // namespace etl
