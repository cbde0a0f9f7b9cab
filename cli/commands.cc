#include "cli/commands.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/dead_letter_format.h"
#include "cli/progress_format.h"
#include "common/grpc_status.h"
#include "etl.grpc.pb.h"
#include "google/protobuf/util/json_util.h"

namespace etl::cli {
namespace {

using etl::v1::CollectorService;
using etl::v1::Job;
using etl::v1::JobProgress;
using etl::v1::JobRef;
using etl::v1::WriterService;

// main checked ctx.security (CheckChannelSecurity) before any command runs.
std::shared_ptr<grpc::Channel> Channel(const CommandContext& ctx, const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = CreateSecureChannel(address, ctx.security, args);
  if (!channel.ok())
    return grpc::CreateCustomChannel("unix:/nonexistent", grpc::InsecureChannelCredentials(), args);
  return *channel;
}

void Prepare(const CommandContext& ctx, grpc::ClientContext* cc, bool deadline) {
  if (deadline && ctx.rpc_timeout_seconds > 0) {
    cc->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(ctx.rpc_timeout_seconds * 1e6)));
  }
  if (!ctx.request_id.empty()) cc->AddMetadata("x-request-id", ctx.request_id);
}

int RpcError(const CommandContext& ctx, const char* rpc, const std::string& service,
             const std::string& address, const grpc::Status& st) {
  *ctx.err << "etlctl: " << rpc << " failed: " << GrpcCodeName(st.error_code()) << ": "
           << st.error_message();
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    // The server may well be up and waiting on something (a hung writer, a locked table): only an
    // unreachable server gets the "is it running?" hint.
    *ctx.err
        << "\n  (" << service << " at " << address
        << " did not answer in time; the request may still take effect: check with etlctl list)";
  } else if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    *ctx.err << "\n  (is " << service << " running at " << address << "? set "
             << (service == "writer_server" ? "--writer or ETL_WRITER"
                                            : "--collector or ETL_COLLECTOR")
             << ")";
  }
  *ctx.err << std::endl;
  return 1;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

// The collector RPCs that take a JobRef and answer with the Job.
using JobRpc = grpc::Status (CollectorService::Stub::*)(grpc::ClientContext*, const JobRef&, Job*);

// Calls `rpc` for job_id with the usual deadline and request id; on failure prints why and returns
// false.
bool CallJobRpc(const CommandContext& ctx, CollectorService::Stub* stub, JobRpc rpc,
                const char* rpc_name, const std::string& job_id, Job* job) {
  grpc::ClientContext cc;
  Prepare(ctx, &cc, true);
  JobRef ref;
  ref.set_job_id(job_id);
  grpc::Status st = (stub->*rpc)(&cc, ref, job);
  if (st.ok()) return true;
  RpcError(ctx, rpc_name, "collector_server", ctx.collector, st);
  return false;
}

// Prints the job as JSON with --json, else the given one-line text.
void PrintJob(const CommandContext& ctx, const Job& job, const std::string& text) {
  if (ctx.json) {
    *ctx.out << ToJson(job) << std::flush;
  } else {
    *ctx.out << text << std::endl;
  }
}

// A progress stream broken under the client rather than refused: the replica restarted or died
// (UNAVAILABLE), or an L7 proxy in between (nginx grpc_pass, a mesh sidecar) reset the stream when
// the replica behind it went away (INTERNAL: "Received RST_STREAM"). Watching is read-only and any
// replica answers for any job, so it is opened again (bounded by watch_reconnects).
bool StreamBroken(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
         st.error_code() == grpc::StatusCode::INTERNAL;
}

// Prints progress lines until the job ends; returns false (after printing why) when the collector
// cannot be followed any more.
bool Follow(const CommandContext& ctx, CollectorService::Stub* stub, const std::string& job_id) {
  JobRef ref;
  ref.set_job_id(job_id);
  int reconnects = 0;
  bool drew_live_line = false;
  auto end_live_line = [&] {
    if (drew_live_line) *ctx.err << "\n" << std::flush;
    drew_live_line = false;
  };
  for (;;) {
    grpc::ClientContext cc;
    Prepare(ctx, &cc, /*deadline=*/false);
    std::unique_ptr<grpc::ClientReader<JobProgress>> reader = stub->WatchJob(&cc, ref);
    JobProgress p;
    bool terminal = false;
    while (reader->Read(&p)) {
      reconnects = 0;
      std::string line = FormatProgressLine(p);
      if (ctx.live) {
        *ctx.err << "\r" << line << "\033[K" << std::flush;
        drew_live_line = true;
      } else {
        *ctx.err << line << std::endl;
      }
      if (IsTerminal(p.state())) {
        terminal = true;
        cc.TryCancel();
        break;
      }
    }
    grpc::Status st = reader->Finish();
    if (terminal) break;
    if (st.ok()) {
      // The stream ended without a final state (e.g. the collector is shutting down): ask directly.
      grpc::ClientContext gc;
      Prepare(ctx, &gc, true);
      Job job;
      if (stub->GetJob(&gc, ref, &job).ok() && IsTerminal(job.state())) break;
    } else if (!StreamBroken(st)) {
      end_live_line();
      RpcError(ctx, "WatchJob", "collector_server", ctx.collector, st);
      return false;
    }
    if (++reconnects > ctx.watch_reconnects) {
      end_live_line();
      *ctx.err << "etlctl: lost the progress stream of job " << job_id << " ("
               << GrpcCodeName(st.error_code()) << ": " << st.error_message()
               << "); the job may still be running: etlctl status " << job_id << std::endl;
      return false;
    }
    end_live_line();
    *ctx.err << "etlctl: progress stream interrupted (" << GrpcCodeName(st.error_code()) << ": "
             << st.error_message() << "); reconnecting..." << std::endl;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  end_live_line();
  return true;
}

int FollowAndReport(const CommandContext& ctx, CollectorService::Stub* stub,
                    const std::string& job_id) {
  if (!Follow(ctx, stub, job_id)) return 1;
  Job job;
  if (!CallJobRpc(ctx, stub, &CollectorService::Stub::GetJob, "GetJob", job_id, &job)) return 1;
  PrintJob(ctx, job, FormatJobOutcome(job));
  return ExitCodeForState(job.state());
}

}  // namespace

int RunJob(const CommandContext& ctx, const etl::v1::JobSpec& spec, bool detach) {
  auto stub = CollectorService::NewStub(Channel(ctx, ctx.collector));
  Job job;
  grpc::Status st;
  // With a request_id, a StartJob whose answer was lost (timeout, collector unreachable) is sent
  // again with the same id: the collector returns the job it started, never a second one.
  const int attempts = spec.request_id().empty() ? 1 : std::max(1, ctx.start_attempts);
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext cc;
    Prepare(ctx, &cc, true);
    st = stub->StartJob(&cc, spec, &job);
    const bool retriable = st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (st.ok() || !retriable || attempt >= attempts) break;
    *ctx.err << "etlctl: StartJob: " << GrpcCodeName(st.error_code()) << ": " << st.error_message()
             << "; retrying with request id " << spec.request_id() << std::endl;
    std::this_thread::sleep_for(std::chrono::seconds(attempt));
  }
  if (!st.ok()) return RpcError(ctx, "StartJob", "collector_server", ctx.collector, st);
  if (detach) {
    PrintJob(ctx, job, job.job_id());
    return 0;
  }
  *ctx.err << "job " << job.job_id() << " started: " << spec.url() << " -> " << job.table_name()
           << "\n  (Ctrl-C stops watching, not the job: etlctl cancel " << job.job_id() << ")"
           << std::endl;
  return FollowAndReport(ctx, stub.get(), job.job_id());
}

int WatchJob(const CommandContext& ctx, const std::string& job_id) {
  auto stub = CollectorService::NewStub(Channel(ctx, ctx.collector));
  return FollowAndReport(ctx, stub.get(), job_id);
}

int ShowJob(const CommandContext& ctx, const std::string& job_id) {
  auto stub = CollectorService::NewStub(Channel(ctx, ctx.collector));
  Job job;
  if (!CallJobRpc(ctx, stub.get(), &CollectorService::Stub::GetJob, "GetJob", job_id, &job))
    return 1;
  *ctx.out << (ctx.json ? ToJson(job) : FormatJobDetails(job)) << std::flush;
  return 0;
}

int ListJobs(const CommandContext& ctx, bool unfinished_only, int limit) {
  etl::v1::ListJobsRequest req;
  req.set_unfinished_only(unfinished_only);
  req.set_limit(limit);
  return ListJobs(ctx, req);
}

int ListJobs(const CommandContext& ctx, const etl::v1::ListJobsRequest& req) {
  auto stub = CollectorService::NewStub(Channel(ctx, ctx.collector));
  grpc::ClientContext cc;
  Prepare(ctx, &cc, true);
  etl::v1::ListJobsResponse resp;
  grpc::Status st = stub->ListJobs(&cc, req, &resp);
  if (!st.ok()) return RpcError(ctx, "ListJobs", "collector_server", ctx.collector, st);
  *ctx.out << (ctx.json ? ToJson(resp) : FormatJobTable(resp)) << std::flush;
  if (!ctx.json && !resp.next_page_token().empty()) {
    *ctx.err << "more jobs: add --page-token=" << resp.next_page_token() << std::endl;
  }
  return 0;
}

int RetryJob(const CommandContext& ctx, const std::string& job_id, bool detach) {
  auto stub = CollectorService::NewStub(Channel(ctx, ctx.collector));
  Job job;
  if (!CallJobRpc(ctx, stub.get(), &CollectorService::Stub::RetryJob, "RetryJob", job_id, &job))
    return 1;
  if (detach) {
    PrintJob(ctx, job, job.job_id());
    return 0;
  }
  *ctx.err << "job " << job.job_id() << " restarted: fetching the pages not committed" << std::endl;
  return FollowAndReport(ctx, stub.get(), job.job_id());
}

int DeadLetters(const CommandContext& ctx, const std::string& job_id, int64_t limit,
                const std::string& export_path) {
  auto stub = WriterService::NewStub(Channel(ctx, ctx.writer));
  std::ofstream file;
  if (!export_path.empty()) {
    file.open(export_path, std::ios::binary | std::ios::trunc);
    if (!file) {
      *ctx.err << "etlctl: cannot write " << export_path << std::endl;
      return 1;
    }
  }
  std::vector<etl::v1::DeadLetter> rows;
  int64_t total = 0;
  int64_t after = 0;
  while (limit <= 0 || total < limit) {
    grpc::ClientContext cc;
    Prepare(ctx, &cc, true);
    etl::v1::ListDeadLettersRequest req;
    req.set_job_id(job_id);
    req.set_after_id(after);
    req.set_limit(static_cast<int32_t>(limit <= 0 ? 1000 : std::min<int64_t>(1000, limit - total)));
    etl::v1::ListDeadLettersResponse resp;
    grpc::Status st = stub->ListDeadLetters(&cc, req, &resp);
    if (!st.ok()) return RpcError(ctx, "ListDeadLetters", "writer_server", ctx.writer, st);
    for (const auto& d : resp.dead_letters()) {
      after = d.id();
      ++total;
      if (file.is_open()) {
        file << DeadLetterJsonLine(d) << "\n";
      } else {
        rows.push_back(d);
      }
    }
    if (resp.dead_letters_size() < req.limit()) break;
  }
  if (file.is_open()) {
    file.close();
    if (!file) {
      *ctx.err << "etlctl: cannot write " << export_path << std::endl;
      return 1;
    }
    *ctx.err << total << " dead letters written to " << export_path << std::endl;
    return 0;
  }
  if (ctx.json) {
    for (const auto& d : rows) *ctx.out << DeadLetterJsonLine(d) << "\n";
    *ctx.out << std::flush;
  } else {
    *ctx.out << FormatDeadLetterTable(rows) << std::flush;
  }
  return 0;
}

int Cursors(const CommandContext& ctx, const std::string& cliente_id, const std::string& rota) {
  auto stub = WriterService::NewStub(Channel(ctx, ctx.writer));
  grpc::ClientContext cc;
  Prepare(ctx, &cc, true);
  etl::v1::ListCursorsRequest req;
  req.set_cliente_id(cliente_id);
  req.set_rota(rota);
  etl::v1::ListCursorsResponse resp;
  grpc::Status st = stub->ListCursors(&cc, req, &resp);
  if (!st.ok()) return RpcError(ctx, "ListCursors", "writer_server", ctx.writer, st);
  *ctx.out << (ctx.json ? ToJson(resp) : FormatCursorTable(resp)) << std::flush;
  return 0;
}

int CancelJob(const CommandContext& ctx, const std::string& job_id) {
  auto stub = CollectorService::NewStub(Channel(ctx, ctx.collector));
  Job job;
  if (!CallJobRpc(ctx, stub.get(), &CollectorService::Stub::CancelJob, "CancelJob", job_id, &job))
    return 1;
  PrintJob(ctx, job,
           absl::StrCat(
               "job ", job.job_id(), ": ", etl::v1::JobState_Name(job.state()),
               IsTerminal(job.state()) ? "" : " (cancelling; pages already sent are committed)"));
  return 0;
}

int WriterStatus(const CommandContext& ctx) {
  auto stub = WriterService::NewStub(Channel(ctx, ctx.writer));
  grpc::ClientContext cc;
  Prepare(ctx, &cc, true);
  etl::v1::WriterStatus status;
  grpc::Status st = stub->GetStatus(&cc, etl::v1::GetStatusRequest(), &status);
  if (!st.ok()) return RpcError(ctx, "GetStatus", "writer_server", ctx.writer, st);
  *ctx.out << (ctx.json ? ToJson(status) : FormatWriterStatus(status)) << std::flush;
  return 0;
}

}  // namespace etl::cli
