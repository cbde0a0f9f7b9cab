// Faults of issues 6 and 8 on the collector side: every job ends, and cancel and shutdown never
// wait on a hung writer.
//
// CollectorBoundsTest runs an in-process collector against a scripted writer (a real gRPC server
// on loopback that keeps failing, refuses permanently or hangs) and a hostile HTTP API: stream
// restarts without progress are bounded, a permanent writer status is never retried, and a job
// without progress ends FAILED after --max-stall-seconds. CollectorFaultTest runs the real
// writer_server and collector_server binaries against the PostgreSQL scripts/test starts: a
// cancel while the writer is SIGSTOPped, a SIGTERM while the target table is locked, and a
// StartJob right after PostgreSQL dropped the writer's connections. Each test except the last one
// failed (hung or timed out) before the fix; the last one checks the writer's pool from the
// collector's side.
#include <grpcpp/create_channel.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "collector_service/collector_server.h"
#include "collector_service/writer_client.h"
#include "etl.grpc.pb.h"
#include "tests/collector_service/test_api.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

using ::etl::testing::ApiRequest;
using ::etl::testing::ChildProcess;
using ::etl::testing::PostgresConnString;
using ::etl::testing::QueryValue;
using ::etl::testing::TestApi;
using ::etl::testing::WaitFor;

// A gate the API's fault hook waits on (bounded) until the test opens it.
class Gate {
 public:
  void Open() {
    absl::MutexLock l(&mu_);
    open_ = true;
  }
  // True when opened within `timeout`.
  bool Wait(absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&open_), timeout);
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

TEST(WriterErrorClassTest, ClassifiesEveryCodeOnce) {
  using C = WriterErrorClass;
  auto of = [](grpc::StatusCode code, const std::string& msg = "x") {
    return ClassifyWriterStatus(grpc::Status(code, msg));
  };
  for (auto code : {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::FAILED_PRECONDITION,
                    grpc::StatusCode::PERMISSION_DENIED, grpc::StatusCode::UNAUTHENTICATED,
                    grpc::StatusCode::OUT_OF_RANGE, grpc::StatusCode::UNIMPLEMENTED,
                    grpc::StatusCode::DATA_LOSS, grpc::StatusCode::NOT_FOUND}) {
    EXPECT_EQ(of(code), C::kPermanent) << code;
  }
  for (auto code : {grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::DEADLINE_EXCEEDED,
                    grpc::StatusCode::ABORTED, grpc::StatusCode::INTERNAL,
                    grpc::StatusCode::UNKNOWN, grpc::StatusCode::CANCELLED}) {
    EXPECT_EQ(of(code), C::kTransient) << code;
  }
  EXPECT_EQ(of(grpc::StatusCode::RESOURCE_EXHAUSTED,
               "Received message larger than max (70000000 vs. 67108864)"),
            C::kPermanent);
  EXPECT_EQ(of(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many ledger calls waiting"),
            C::kTransient);
  EXPECT_EQ(
      of(grpc::StatusCode::FAILED_PRECONDITION, absl::StrCat("stale ", kLeaseLostMarker, " 3 < 4")),
      C::kLeaseLost);
  EXPECT_EQ(ClassifyWriterStatus(absl::UnavailableError("down")), C::kTransient);
  EXPECT_EQ(ClassifyWriterStatus(absl::PermissionDeniedError("no")), C::kPermanent);
}

// A writer whose ledger calls work (an empty ledger) and whose Write streams misbehave.
class ScriptedWriter final : public v1::WriterService::Service {
 public:
  enum class Mode { kUnavailable, kPermanent, kHang, kAccept };
  explicit ScriptedWriter(Mode mode, grpc::Status write_status = grpc::Status::OK)
      : mode_(mode), write_status_(std::move(write_status)) {}

  grpc::Status RegisterJob(grpc::ServerContext*, const v1::RegisterJobRequest* req,
                           v1::JobRecord* resp) override {
    absl::MutexLock l(&mu_);
    record_.set_job_id(req->job_id());
    *record_.mutable_spec() = req->spec();
    record_.set_state(v1::PENDING);
    *resp = record_;
    return grpc::Status::OK;
  }
  grpc::Status UpdateJob(grpc::ServerContext*, const v1::UpdateJobRequest* req,
                         v1::JobRecord* resp) override {
    absl::MutexLock l(&mu_);
    if (req->state() != v1::JOB_STATE_UNSPECIFIED) {
      record_.set_state(req->state());
      record_.set_error(req->error());
    }
    *resp = record_;
    return grpc::Status::OK;
  }
  grpc::Status GetJobLedger(grpc::ServerContext*, const v1::JobRef*, v1::JobLedger* resp) override {
    absl::MutexLock l(&mu_);
    *resp->mutable_job() = record_;
    return grpc::Status::OK;
  }
  grpc::Status ListJobRecords(grpc::ServerContext*, const v1::ListJobRecordsRequest* req,
                              v1::ListJobRecordsResponse* resp) override {
    absl::MutexLock l(&mu_);
    if (!req->job_id().empty() && req->job_id() == record_.job_id()) *resp->add_jobs() = record_;
    return grpc::Status::OK;
  }
  grpc::Status RecordPageFailure(grpc::ServerContext*, const v1::PageFailure*,
                                 v1::PageFailureAck*) override {
    return grpc::Status::OK;
  }
  // Leases: the one job is claimed once (epoch 1) and then always held.
  grpc::Status ClaimJobs(grpc::ServerContext*, const v1::ClaimJobsRequest* req,
                         v1::ClaimJobsResponse* resp) override {
    absl::MutexLock l(&mu_);
    if (!claimed_ && !record_.job_id().empty() && record_.state() == v1::PENDING &&
        req->max_jobs() > 0) {
      claimed_ = true;
      v1::ClaimedJob* c = resp->add_jobs();
      *c->mutable_job() = record_;
      c->set_lease_epoch(1);
    }
    return grpc::Status::OK;
  }
  grpc::Status RenewLeases(grpc::ServerContext*, const v1::RenewLeasesRequest* req,
                           v1::RenewLeasesResponse* resp) override {
    for (const auto& h : req->leases()) resp->add_held(h.job_id());
    return grpc::Status::OK;
  }
  grpc::Status ReleaseLeases(grpc::ServerContext*, const v1::ReleaseLeasesRequest* req,
                             v1::ReleaseLeasesResponse* resp) override {
    resp->set_released(req->leases_size());
    return grpc::Status::OK;
  }
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                         v1::WriterStatus*) override {
    return grpc::Status::OK;
  }
  grpc::Status Write(grpc::ServerContext* ctx, grpc::ServerReader<v1::RecordBatch>* reader,
                     v1::WriteSummary* summary) override {
    {
      absl::MutexLock l(&mu_);
      ++streams_;
    }
    v1::RecordBatch batch;
    switch (mode_) {
      case Mode::kUnavailable:
        reader->Read(&batch);
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "writer restarting");
      case Mode::kPermanent:
        reader->Read(&batch);
        return write_status_;
      case Mode::kHang: {
        // Reads nothing and answers nothing until the collector cancels the call.
        absl::MutexLock l(&mu_);
        while (!ctx->IsCancelled() && !released_) {
          mu_.AwaitWithTimeout(absl::Condition(&released_), absl::Milliseconds(20));
        }
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "hung writer released");
      }
      case Mode::kAccept:
        while (reader->Read(&batch))
          summary->set_records_received(summary->records_received() + batch.records_size());
        return grpc::Status::OK;
    }
    return grpc::Status::OK;
  }

  int streams() const {
    absl::MutexLock l(&mu_);
    return streams_;
  }
  void Release() {
    absl::MutexLock l(&mu_);
    released_ = true;
  }

 private:
  const Mode mode_;
  const grpc::Status write_status_;
  mutable absl::Mutex mu_;
  v1::JobRecord record_ ABSL_GUARDED_BY(mu_);
  bool claimed_ ABSL_GUARDED_BY(mu_) = false;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

class CollectorBoundsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (writer_) writer_->Release();
    if (gate_) gate_->Open();
    collector_.reset();
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  void Start(ScriptedWriter::Mode mode, grpc::Status write_status = grpc::Status::OK,
             int max_restarts = 3, absl::Duration max_stall = absl::Seconds(600)) {
    writer_ = std::make_unique<ScriptedWriter>(mode, std::move(write_status));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(writer_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    CollectorOptions options;
    options.listen = "127.0.0.1:0";
    options.writer_address = absl::StrCat("127.0.0.1:", port);
    options.resume_unfinished = false;
    options.fetcher.allow_private_networks = true;
    options.max_restarts_without_progress = max_restarts;
    options.max_stall = max_stall;
    options.shutdown_grace = absl::Seconds(2);
    auto collector = CollectorServer::Start(options);
    ASSERT_TRUE(collector.ok()) << collector.status();
    collector_ = *std::move(collector);
  }

  v1::JobSpec Spec(const TestApi& api) {
    v1::JobSpec spec;
    spec.set_cliente_id("b" + ::etl::testing::UniqueSuffix());
    spec.set_rota("pedidos");
    spec.set_url(api.Url("/page"));
    spec.mutable_pagination()->set_style(v1::PAGE);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_page_size(10);
    spec.mutable_retry()->set_backoff_scale(0.01);
    return spec;
  }

  // Starts the job and waits (bounded) until it ended; returns its last snapshot.
  v1::Job RunToEnd(const v1::JobSpec& spec, absl::Duration timeout, absl::Duration* took) {
    absl::Time start = absl::Now();
    auto job = collector_->collector()->StartJob(spec, TraceContext{});
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return v1::Job();
    std::shared_ptr<Job> live = collector_->collector()->FindJob(job->job_id());
    EXPECT_NE(live, nullptr);
    if (live == nullptr) return v1::Job();
    EXPECT_TRUE(live->WaitDone(timeout)) << "the job did not end within " << timeout;
    if (took != nullptr) *took = absl::Now() - start;
    return live->Snapshot();
  }

  std::unique_ptr<ScriptedWriter> writer_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<CollectorServer> collector_;
  std::unique_ptr<Gate> gate_;
};

TEST_F(CollectorBoundsTest, WriterThatKeepsFailingEndsTheJobAfterBoundedRestarts) {
  Start(ScriptedWriter::Mode::kUnavailable, grpc::Status::OK, /*max_restarts=*/3);
  TestApi api(100, 10);
  absl::Duration took;
  v1::Job job = RunToEnd(Spec(api), absl::Seconds(60), &took);
  EXPECT_EQ(job.state(), v1::FAILED) << job.error();
  EXPECT_TRUE(absl::StrContains(job.error(), "--max-restarts-without-progress")) << job.error();
  EXPECT_TRUE(absl::StrContains(job.error(), "UNAVAILABLE: writer restarting")) << job.error();
  // The first stream and 3 restarts; the 4th restart is refused.
  EXPECT_EQ(writer_->streams(), 4);
}

TEST_F(CollectorBoundsTest, PermanentWriterStatusOnTheStreamIsNeverRetried) {
  Start(ScriptedWriter::Mode::kPermanent,
        grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "collector not allowed"));
  TestApi api(100, 10);
  absl::Duration took;
  v1::Job job = RunToEnd(Spec(api), absl::Seconds(30), &took);
  EXPECT_EQ(job.state(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(job.error(), "PERMISSION_DENIED: collector not allowed"))
      << job.error();
  EXPECT_EQ(writer_->streams(), 1);
}

TEST_F(CollectorBoundsTest, MessageLimitOfTheWriterIsPermanent) {
  Start(ScriptedWriter::Mode::kPermanent,
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "Received message larger than max (70000000 vs. 67108864)"));
  TestApi api(100, 10);
  v1::Job job = RunToEnd(Spec(api), absl::Seconds(30), nullptr);
  EXPECT_EQ(job.state(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(job.error(), "RESOURCE_EXHAUSTED")) << job.error();
  EXPECT_EQ(writer_->streams(), 1);
}

TEST_F(CollectorBoundsTest, HungWriterEndsTheJobFailedAfterTheStallBound) {
  Start(ScriptedWriter::Mode::kHang, grpc::Status::OK, 3, absl::Seconds(2));
  TestApi api(100, 10);
  absl::Duration took;
  v1::Job job = RunToEnd(Spec(api), absl::Seconds(30), &took);
  EXPECT_EQ(job.state(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(job.error(), "--max-stall-seconds")) << job.error();
  EXPECT_GE(took, absl::Seconds(2));
  EXPECT_LT(took, absl::Seconds(15));
  EXPECT_EQ(collector_->collector()->counters().jobs_stalled.load(), 1);
}

TEST_F(CollectorBoundsTest, ApiThatHangsEndsTheJobFailedAfterTheStallBound) {
  Start(ScriptedWriter::Mode::kAccept, grpc::Status::OK, 3, absl::Seconds(2));
  TestApi api(100, 10);
  gate_ = std::make_unique<Gate>();
  Gate* gate = gate_.get();
  // Page 3 never answers (within the test): the transfer hangs well inside curl's own timeout.
  api.SetHook([gate](const ApiRequest& r, httplib::Response&) {
    if (r.page_index >= 2) gate->Wait(absl::Seconds(60));
    return false;
  });
  absl::Duration took;
  v1::Job job = RunToEnd(Spec(api), absl::Seconds(30), &took);
  EXPECT_EQ(job.state(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(job.error(), "--max-stall-seconds")) << job.error();
  EXPECT_LT(took, absl::Seconds(15));
  gate->Open();  // Before the API's server stops (it waits for the hanging handler).
}

using ::etl::testing::LocalTcpPortsOf;

class CollectorFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    cliente_ = "cf" + ::etl::testing::UniqueSuffix();
    auto writer = ChildProcess::Start(::etl::testing::BinaryPath("writer_server"),
                                      {"--listen=127.0.0.1:0", "--flush_interval_ms=50"},
                                      {{"DATABASE_URL", PostgresConnString()}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    writer_ = *std::move(writer);
  }

  // Jobs of this test that did not end are cancelled in the ledger, so that collectors of other
  // tests resuming unfinished jobs from the shared database never see them.
  void TearDown() override {
    if (lock_ != nullptr) PQfinish(lock_);
    if (writer_) kill(writer_->pid(), SIGCONT);
    if (gate_) gate_->Open();
    collector_.reset();
    if (cliente_.empty()) return;
    ::etl::testing::Exec(
        absl::StrCat("UPDATE etl_jobs SET state = 'CANCELLED', finished_at = now() WHERE "
                     "cliente_id = '",
                     cliente_, "' AND state IN ('PENDING', 'RUNNING')"));
  }

  void StartCollector(std::vector<std::string> flags) {
    flags.push_back("--listen=127.0.0.1:0");
    flags.push_back(absl::StrCat("--writer=127.0.0.1:", writer_->port()));
    flags.push_back("--allow_private_networks");
    auto collector = ChildProcess::Start(::etl::testing::BinaryPath("collector_server"), flags);
    ASSERT_TRUE(collector.ok()) << collector.status();
    collector_ = *std::move(collector);
    stub_ = v1::CollectorService::NewStub(
        grpc::CreateChannel(collector_->address(), grpc::InsecureChannelCredentials()));
  }

  v1::JobSpec Spec(const TestApi& api, int page_size) {
    v1::JobSpec spec;
    spec.set_cliente_id(cliente_);
    spec.set_rota("pedidos");
    spec.set_url(api.Url("/page"));
    spec.mutable_pagination()->set_style(v1::PAGE);
    spec.mutable_pagination()->set_records_path("/data");
    spec.mutable_pagination()->set_page_size(page_size);
    spec.mutable_retry()->set_backoff_scale(0.01);
    spec.set_id_path("/id");
    spec.set_write_mode(v1::APPEND);
    return spec;
  }

  std::string Table() const { return absl::StrCat("dados_raw_cliente_", cliente_, "_pedidos"); }

  grpc::Status Call(const char* what, absl::Duration timeout,
                    const std::function<grpc::Status(grpc::ClientContext*)>& rpc) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::Status s = rpc(&ctx);
    EXPECT_TRUE(s.ok()) << what << ": " << s.error_message();
    return s;
  }

  v1::Job StartJob(const v1::JobSpec& spec) {
    v1::Job job;
    Call("StartJob", absl::Seconds(30),
         [&](grpc::ClientContext* ctx) { return stub_->StartJob(ctx, spec, &job); });
    return job;
  }

  v1::Job GetJob(const std::string& id) {
    v1::JobRef ref;
    ref.set_job_id(id);
    v1::Job job;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    stub_->GetJob(&ctx, ref, &job).ok();
    return job;
  }

  bool WaitState(const std::string& id, v1::JobState state, absl::Duration timeout) {
    return WaitFor([&] { return GetJob(id).state() == state; }, timeout);
  }

  int64_t Rows(const std::string& what = "count(*)") {
    std::string v = QueryValue(absl::StrCat("SELECT ", what, " FROM ", Table()));
    int64_t n = -1;
    absl::SimpleAtoi(v, &n);
    return n;
  }

  bool TableExists() {
    return QueryValue(absl::StrCat("SELECT to_regclass('", Table(), "') IS NOT NULL")) == "t";
  }

  std::string cliente_;
  std::unique_ptr<ChildProcess> writer_;
  std::unique_ptr<ChildProcess> collector_;
  std::unique_ptr<v1::CollectorService::Stub> stub_;
  std::unique_ptr<Gate> gate_;
  PGconn* lock_ = nullptr;
};

// Issue 6 item 11: a cancel while the writer is stopped answers within --cancel-grace-seconds,
// and the job ends CANCELLED once the writer runs again, with nothing fetched after the cancel.
TEST_F(CollectorFaultTest, CancelAnswersWithinItsGraceWhileTheWriterIsStopped) {
  StartCollector({"--cancel_grace_seconds=1", "--resume=false"});
  constexpr int kPageSize = 20;
  TestApi api(4000, kPageSize);
  gate_ = std::make_unique<Gate>();
  Gate* gate = gate_.get();
  // Pages past the 10th wait until the writer is stopped: the job is mid-way then.
  api.SetHook([gate](const ApiRequest& r, httplib::Response&) {
    if (r.page_index >= 10) gate->Wait(absl::Seconds(60));
    return false;
  });
  v1::Job job = StartJob(Spec(api, kPageSize));
  ASSERT_FALSE(job.job_id().empty());
  ASSERT_TRUE(api.WaitFor(
      [](const std::vector<ApiRequest>& rs) {
        return std::any_of(rs.begin(), rs.end(),
                           [](const ApiRequest& r) { return r.page_index >= 10; });
      },
      absl::Seconds(30)));
  ASSERT_EQ(kill(writer_->pid(), SIGSTOP), 0);
  gate->Open();
  // The collector fetches on until the stopped writer pushes back (or the API ends).
  api.WaitQuiet(absl::Milliseconds(500), absl::Seconds(20));

  v1::JobRef ref;
  ref.set_job_id(job.job_id());
  v1::Job answer;
  absl::Time start = absl::Now();
  grpc::ClientContext cancel_ctx;
  cancel_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  grpc::Status s = stub_->CancelJob(&cancel_ctx, ref, &answer);
  absl::Duration took = absl::Now() - start;
  // The writer is stopped, so CANCELLED is not durable yet: the answer says so
  // (docs/reliability.md).
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "not yet durable")) << s.error_message();
  EXPECT_LT(took, absl::Seconds(4)) << "CancelJob waited on the stopped writer";
  std::cout << "[ measured ] CancelJob answered in " << absl::FormatDuration(took) << "\n";
  const size_t requests_at_cancel = api.requests().size();

  ASSERT_EQ(kill(writer_->pid(), SIGCONT), 0);
  EXPECT_TRUE(WaitState(job.job_id(), v1::CANCELLED, absl::Seconds(60)))
      << v1::JobState_Name(GetJob(job.job_id()).state());
  // Nothing fetched after the cancel answered, and what reached the table is whole pages, once.
  EXPECT_EQ(api.WaitQuiet(absl::Milliseconds(500), absl::Seconds(10)), requests_at_cancel);
  if (TableExists()) {
    int64_t rows = Rows();
    EXPECT_EQ(rows % kPageSize, 0);
    EXPECT_EQ(rows, Rows("count(DISTINCT natural_key)"));
    EXPECT_LE(rows, int64_t(requests_at_cancel) * kPageSize);
    EXPECT_LT(rows, 4000);
  }
}

// Issue 8 / issue 6 item 11: SIGTERM while the target table is locked exits within
// --shutdown-grace-seconds; the job stays resumable and a new collector completes it exactly.
TEST_F(CollectorFaultTest, SigtermExitsWithinGraceWhileTheTableIsLockedAndTheJobResumes) {
  StartCollector({"--shutdown_grace_seconds=2", "--resume=false"});
  constexpr int kPageSize = 20;
  constexpr int kTotal = 2000;
  TestApi api(kTotal, kPageSize);
  gate_ = std::make_unique<Gate>();
  Gate* gate = gate_.get();
  api.SetHook([gate](const ApiRequest& r, httplib::Response&) {
    if (r.page_index >= 10) gate->Wait(absl::Seconds(60));
    return false;
  });
  v1::Job job = StartJob(Spec(api, kPageSize));
  ASSERT_FALSE(job.job_id().empty());
  // The first 10 pages are committed, then the table is locked and the rest flows.
  ASSERT_TRUE(WaitFor([&] { return TableExists() && Rows() == 10 * kPageSize; }));
  lock_ = PQconnectdb(PostgresConnString().c_str());
  ASSERT_EQ(PQstatus(lock_), CONNECTION_OK);
  PGresult* r = PQexec(
      lock_, absl::StrCat("BEGIN; LOCK TABLE ", Table(), " IN ACCESS EXCLUSIVE MODE").c_str());
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(lock_);
  PQclear(r);
  gate->Open();
  // The collector fetches until the writer, waiting on the lock, pushes back (or the API ends):
  // the job now waits on the writer.
  api.WaitQuiet(absl::Milliseconds(800), absl::Seconds(30));
  ASSERT_GT(api.requests().size(), 11u);

  absl::Time start = absl::Now();
  ASSERT_EQ(kill(collector_->pid(), SIGTERM), 0);
  int status = collector_->WaitFor(15);
  absl::Duration took = absl::Now() - start;
  ASSERT_NE(status, -1) << "the collector did not exit while the table was locked";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_LT(took, absl::Seconds(4));
  std::cout << "[ measured ] SIGTERM to exit: " << absl::FormatDuration(took) << "\n";
  // Stopped by shutdown: still unfinished in the ledger, neither failed nor cancelled.
  EXPECT_EQ(
      QueryValue(absl::StrCat("SELECT state FROM etl_jobs WHERE job_id = '", job.job_id(), "'")),
      "RUNNING");

  StartCollector({"--resume=true"});
  r = PQexec(lock_, "ROLLBACK");
  PQclear(r);
  EXPECT_TRUE(WaitState(job.job_id(), v1::SUCCEEDED, absl::Seconds(60)))
      << v1::JobState_Name(GetJob(job.job_id()).state()) << " " << GetJob(job.job_id()).error();
  EXPECT_EQ(Rows(), kTotal);
  EXPECT_EQ(Rows("count(DISTINCT natural_key)"), kTotal);
}

// Issue 6 item 8 from the collector's side: the first StartJob after PostgreSQL closed every
// connection of the writer (what a restart does) succeeds.
TEST_F(CollectorFaultTest, StartJobSucceedsFirstTimeRightAfterPostgresDroppedConnections) {
  StartCollector({"--resume=false"});
  TestApi api(100, 20);
  v1::Job first = StartJob(Spec(api, 20));
  ASSERT_TRUE(WaitState(first.job_id(), v1::SUCCEEDED, absl::Seconds(30)));
  std::vector<int> ports = LocalTcpPortsOf(writer_->pid());
  ASSERT_FALSE(ports.empty());
  const std::string mine =
      absl::StrCat("client_port IN (", absl::StrJoin(ports, ","), ") AND pid <> pg_backend_pid()");
  ASSERT_NE(
      QueryValue("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE " + mine),
      "0");
  ASSERT_TRUE(WaitFor(
      [&] { return QueryValue("SELECT count(*) FROM pg_stat_activity WHERE " + mine) == "0"; }));
  v1::JobSpec spec = Spec(api, 20);
  spec.set_rota("again");
  v1::Job second;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  grpc::Status s = stub_->StartJob(&ctx, spec, &second);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(WaitState(second.job_id(), v1::SUCCEEDED, absl::Seconds(30)));
}

}  // namespace
}  // namespace etl
