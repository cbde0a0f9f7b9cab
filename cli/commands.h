// etlctl's subcommands as functions: each talks to the collector or writer over gRPC, prints to the
// given streams and returns the process exit status. main.cc only parses flags and dispatches here.
//
// Exit status: 0 success (run/watch: the job SUCCEEDED), 2 the job ended PARTIAL, 1 the job FAILED
// or was CANCELLED, or an RPC failed, 64 a usage error.
//
// Thread-safety: each call is independent; a CommandContext is used by one thread.
#ifndef ETL_CLI_COMMANDS_H_
#define ETL_CLI_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "common/grpc_security.h"
#include "etl.pb.h"

namespace etl::cli {

inline constexpr int kExitUsage = 64;

struct CommandContext {
  std::string collector = "localhost:50051";  // CollectorService address.
  std::string writer = "localhost:50052";     // WriterService address (writer-status).
  double rpc_timeout_seconds = 30;            // Deadline of each unary RPC.
  bool json = false;                          // Print results as proto3 JSON instead of text.
  bool live = false;                          // Redraw one progress line with \r (stderr is a TTY).
  std::string request_id;                     // Sent as x-request-id metadata; empty = none.
  int watch_reconnects = 30;                  // Times a broken WatchJob stream is re-opened.
  ChannelSecurityOptions security;            // TLS, client certificate, token (default plaintext).
  std::ostream* out = nullptr;                // Results.
  std::ostream* err = nullptr;                // Progress and errors.
  // StartJob calls of `run` with the same JobSpec.request_id (lost answers are retried).
  int start_attempts = 3;
};

// Starts the job; with `detach` prints its id and returns 0, else follows it like Watch.
int RunJob(const CommandContext& ctx, const etl::v1::JobSpec& spec, bool detach);
// Follows a job's progress until it ends; exit status from its final state.
int WatchJob(const CommandContext& ctx, const std::string& job_id);
int ShowJob(const CommandContext& ctx, const std::string& job_id);
int ListJobs(const CommandContext& ctx, bool unfinished_only, int limit);
// One page of jobs matching `request` (filters, limit, page_token); prints the next page's token
// (to stderr, as a ready --page-token flag) when there are more.
int ListJobs(const CommandContext& ctx, const etl::v1::ListJobsRequest& request);
// Runs a finished job again from its ledger (only the pages not committed); follows it unless
// detach.
int RetryJob(const CommandContext& ctx, const std::string& job_id, bool detach);
// Dead letters of one job ("" = all), at most `limit` (0 = all); with a non-empty `export_path`,
// writes them as JSON lines there instead of a table.
int DeadLetters(const CommandContext& ctx, const std::string& job_id, int64_t limit,
                const std::string& export_path);
// Incremental high-water marks, optionally of one client and/or route.
int Cursors(const CommandContext& ctx, const std::string& cliente_id, const std::string& rota);
int CancelJob(const CommandContext& ctx, const std::string& job_id);
int WriterStatus(const CommandContext& ctx);

}  // namespace etl::cli

#endif  // ETL_CLI_COMMANDS_H_
