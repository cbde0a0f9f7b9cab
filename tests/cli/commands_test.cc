// etlctl's subcommands against an in-process fake CollectorService (a unit test of the command
// layer: exit statuses, what is printed, how gRPC errors are reported).
#include "cli/commands.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <sstream>

#include "absl/synchronization/mutex.h"
#include "etl.grpc.pb.h"

namespace etl::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Final state by rota: "ok" SUCCEEDED, "partial" PARTIAL, "fail" FAILED. cliente "bad" is refused.
class FakeCollector final : public etl::v1::CollectorService::Service {
 public:
  grpc::Status StartJob(grpc::ServerContext* ctx, const etl::v1::JobSpec* spec,
                        etl::v1::Job* job) override {
    auto md = ctx->client_metadata().find("x-request-id");
    {
      absl::MutexLock l(&mu_);
      if (md != ctx->client_metadata().end())
        request_id_ = std::string(md->second.data(), md->second.size());
      spec_ = *spec;
      start_request_ids_.push_back(spec->request_id());
      if (spec->cliente_id() == "flaky" && start_request_ids_.size() == 1) {
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "answer lost");
      }
    }
    if (spec->cliente_id() == "slow") {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the writer did not answer in time");
    }
    if (spec->cliente_id() == "bad") {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "pagination.cursor_path \"x\" is not a JSON pointer");
    }
    *job = Final(spec->rota(), /*finished=*/false);
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext*, const etl::v1::JobRef* ref,
                      etl::v1::Job* job) override {
    if (ref->job_id() != "job-ok" && ref->job_id() != "job-partial" &&
        ref->job_id() != "job-fail") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no job " + ref->job_id());
    }
    *job = Final(ref->job_id().substr(4), true);
    return grpc::Status::OK;
  }
  grpc::Status WatchJob(grpc::ServerContext*, const etl::v1::JobRef* ref,
                        grpc::ServerWriter<etl::v1::JobProgress>* writer) override {
    bool break_first;
    grpc::Status broken;
    {
      absl::MutexLock l(&mu_);
      break_first = break_next_watch_;
      broken = break_status_;
      break_next_watch_ = false;
      ++watch_calls_;
    }
    etl::v1::JobProgress p;
    p.set_job_id(ref->job_id());
    p.set_state(etl::v1::RUNNING);
    p.set_records_total(300);
    for (int i = 1; i <= 2; ++i) {
      p.set_records_committed(100 * i);
      writer->Write(p);
    }
    if (break_first) return broken;
    *p.mutable_job_id() = ref->job_id();
    p.set_state(Final(ref->job_id().substr(4), true).state());
    p.set_records_committed(300);
    writer->Write(p);
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext*, const etl::v1::ListJobsRequest* req,
                        etl::v1::ListJobsResponse* resp) override {
    *resp->add_jobs() = Final("ok", true);
    if (!req->unfinished_only()) *resp->add_jobs() = Final("fail", true);
    return grpc::Status::OK;
  }
  grpc::Status CancelJob(grpc::ServerContext*, const etl::v1::JobRef* ref,
                         etl::v1::Job* job) override {
    job->set_job_id(ref->job_id());
    job->set_state(etl::v1::RUNNING);
    return grpc::Status::OK;
  }

  static etl::v1::Job Final(const std::string& rota, bool finished) {
    etl::v1::Job job;
    job.set_job_id("job-" + rota);
    job.set_table_name("dados_raw_cliente_1_" + rota);
    if (!finished) {
      job.set_state(etl::v1::PENDING);
      return job;
    }
    job.set_state(rota == "ok"        ? etl::v1::SUCCEEDED
                  : rota == "partial" ? etl::v1::PARTIAL
                                      : etl::v1::FAILED);
    job.mutable_progress()->set_records_committed(300);
    job.mutable_progress()->set_elapsed_seconds(1.5);
    if (rota == "fail") job.set_error("HTTP 401 Unauthorized on page 0");
    if (rota == "partial") {
      auto* f = job.add_failed_pages();
      f->set_page_number(2);
      f->set_page_token("3");
      f->set_attempts(3);
      f->set_error("HTTP 500 after 3 attempts");
    }
    return job;
  }

  std::vector<std::string> start_request_ids() {
    absl::MutexLock l(&mu_);
    return start_request_ids_;
  }
  void BreakNextWatch(grpc::Status how = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                      "collector restarting")) {
    absl::MutexLock l(&mu_);
    break_next_watch_ = true;
    break_status_ = how;
  }
  int watch_calls() {
    absl::MutexLock l(&mu_);
    return watch_calls_;
  }
  std::string request_id() {
    absl::MutexLock l(&mu_);
    return request_id_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> start_request_ids_ ABSL_GUARDED_BY(mu_);
  bool break_next_watch_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status break_status_ ABSL_GUARDED_BY(mu_);
  int watch_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string request_id_ ABSL_GUARDED_BY(mu_);
  etl::v1::JobSpec spec_ ABSL_GUARDED_BY(mu_);
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_GT(port, 0);
    ctx_.collector = "127.0.0.1:" + std::to_string(port);
    ctx_.rpc_timeout_seconds = 10;
    ctx_.request_id = "req-42";
    ctx_.out = &out_;
    ctx_.err = &err_;
  }
  void TearDown() override { server_->Shutdown(); }

  etl::v1::JobSpec Spec(const std::string& cliente, const std::string& rota) {
    etl::v1::JobSpec s;
    s.set_cliente_id(cliente);
    s.set_rota(rota);
    s.set_url("http://127.0.0.1:1/x");
    return s;
  }

  FakeCollector fake_;
  std::unique_ptr<grpc::Server> server_;
  CommandContext ctx_;
  std::ostringstream out_, err_;
};

TEST_F(CommandsTest, RunFollowsProgressAndExitsZeroOnlyForSucceeded) {
  EXPECT_EQ(RunJob(ctx_, Spec("1", "ok"), false), 0);
  EXPECT_THAT(err_.str(), HasSubstr("job job-ok started"));
  EXPECT_THAT(err_.str(), HasSubstr("100/300 records"));
  EXPECT_THAT(err_.str(), HasSubstr("SUCCEEDED"));
  EXPECT_THAT(err_.str(), Not(HasSubstr("\r")));  // not a TTY: one line per update
  EXPECT_THAT(out_.str(), HasSubstr("job job-ok SUCCEEDED: 300 records"));
  EXPECT_EQ(fake_.request_id(), "req-42");
}

TEST_F(CommandsTest, RunExitsTwoForPartialAndListsFailedPages) {
  EXPECT_EQ(RunJob(ctx_, Spec("1", "partial"), false), 2);
  EXPECT_THAT(out_.str(), HasSubstr("PARTIAL"));
  EXPECT_THAT(out_.str(), HasSubstr("page 2 [3] after 3 attempt(s): HTTP 500 after 3 attempts"));
}

TEST_F(CommandsTest, RunExitsOneForFailedWithTheReason) {
  EXPECT_EQ(RunJob(ctx_, Spec("1", "fail"), false), 1);
  EXPECT_THAT(out_.str(), HasSubstr("reason: HTTP 401 Unauthorized on page 0"));
}

TEST_F(CommandsTest, LiveModeRedrawsOneLine) {
  ctx_.live = true;
  EXPECT_EQ(RunJob(ctx_, Spec("1", "ok"), false), 0);
  EXPECT_THAT(err_.str(), HasSubstr("\r"));
  EXPECT_THAT(err_.str(), HasSubstr("\033[K"));
}

TEST_F(CommandsTest, DetachPrintsTheJobIdOnly) {
  EXPECT_EQ(RunJob(ctx_, Spec("1", "ok"), true), 0);
  EXPECT_EQ(out_.str(), "job-ok\n");
  EXPECT_EQ(fake_.watch_calls(), 0);
}

TEST_F(CommandsTest, InvalidArgumentFromStartJobIsPrintedClearly) {
  EXPECT_EQ(RunJob(ctx_, Spec("bad", "ok"), false), 1);
  EXPECT_THAT(
      err_.str(),
      HasSubstr(
          "StartJob failed: INVALID_ARGUMENT: pagination.cursor_path \"x\" is not a JSON pointer"));
}

TEST_F(CommandsTest, RunRetriesALostStartJobAnswerWithTheSameRequestId) {
  etl::v1::JobSpec spec = Spec("flaky", "ok");
  spec.set_request_id("etlctl-0123456789abcdef0123456789abcdef");
  EXPECT_EQ(RunJob(ctx_, spec, /*detach=*/true), 0);
  EXPECT_EQ(fake_.start_request_ids(),
            std::vector<std::string>(2, "etlctl-0123456789abcdef0123456789abcdef"));
  EXPECT_THAT(err_.str(), HasSubstr("retrying with request id"));
}

TEST_F(CommandsTest, UnreachableCollectorNamesTheAddressAndTheFlag) {
  ctx_.collector = "127.0.0.1:1";
  ctx_.rpc_timeout_seconds = 2;
  EXPECT_EQ(RunJob(ctx_, Spec("1", "ok"), false), 1);
  EXPECT_THAT(err_.str(), HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(err_.str(), HasSubstr("collector_server running at 127.0.0.1:1"));
  EXPECT_THAT(err_.str(), HasSubstr("ETL_COLLECTOR"));
}

// A reachable collector that answers DEADLINE_EXCEEDED (e.g. waiting on a hung writer) is not
// reported as possibly not running.
TEST_F(CommandsTest, DeadlineExceededFromAReachableCollectorGetsNoNotRunningHint) {
  EXPECT_EQ(RunJob(ctx_, Spec("slow", "ok"), false), 1);
  EXPECT_THAT(err_.str(), HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(err_.str(), HasSubstr("did not answer in time"));
  EXPECT_THAT(err_.str(), Not(HasSubstr("running at")));
}

TEST_F(CommandsTest, WatchReconnectsAfterABrokenStream) {
  fake_.BreakNextWatch();
  EXPECT_EQ(WatchJob(ctx_, "job-ok"), 0);
  EXPECT_EQ(fake_.watch_calls(), 2);
  EXPECT_THAT(err_.str(), HasSubstr("reconnecting"));
}

// An L7 proxy (nginx grpc_pass, a mesh sidecar) resets the stream when the replica behind it dies:
// the client sees INTERNAL (RST_STREAM), not UNAVAILABLE, and must follow the job again.
TEST_F(CommandsTest, WatchReconnectsAfterAProxyResetTheStream) {
  fake_.BreakNextWatch(
      grpc::Status(grpc::StatusCode::INTERNAL, "Received RST_STREAM with error code 2"));
  EXPECT_EQ(WatchJob(ctx_, "job-ok"), 0);
  EXPECT_EQ(fake_.watch_calls(), 2);
  EXPECT_THAT(err_.str(), HasSubstr("reconnecting"));
}

TEST_F(CommandsTest, WatchDoesNotRetryAnErrorOfTheRequest) {
  fake_.BreakNextWatch(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not yours"));
  EXPECT_EQ(WatchJob(ctx_, "job-ok"), 1);
  EXPECT_EQ(fake_.watch_calls(), 1);
  EXPECT_THAT(err_.str(), HasSubstr("PERMISSION_DENIED"));
}

TEST_F(CommandsTest, StatusOfUnknownJobIsNotFound) {
  EXPECT_EQ(ShowJob(ctx_, "nope"), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND: no job nope"));
  EXPECT_EQ(ShowJob(ctx_, "job-partial"), 0);
  EXPECT_THAT(out_.str(), HasSubstr("state:      PARTIAL"));
}

TEST_F(CommandsTest, ListAndJsonOutput) {
  EXPECT_EQ(ListJobs(ctx_, false, 10), 0);
  EXPECT_THAT(out_.str(), HasSubstr("job-ok"));
  EXPECT_THAT(out_.str(), HasSubstr("job-fail"));
  out_.str("");
  ctx_.json = true;
  EXPECT_EQ(ListJobs(ctx_, true, 10), 0);
  EXPECT_THAT(out_.str(), HasSubstr("\"job_id\": \"job-ok\""));
  EXPECT_THAT(out_.str(), Not(HasSubstr("job-fail")));
}

TEST_F(CommandsTest, CancelReportsTheState) {
  EXPECT_EQ(CancelJob(ctx_, "job-ok"), 0);
  EXPECT_THAT(out_.str(), HasSubstr("job job-ok: RUNNING (cancelling"));
}

}  // namespace
}  // namespace etl::cli
