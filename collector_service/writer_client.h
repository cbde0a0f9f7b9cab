// WriterClient: every call a job makes to writer_service (ledger reads, state and failure records,
// status counters, the Write stream), with one shared retry helper.
//
// Transient gRPC errors (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED) are retried
// with exponential backoff (200 ms doubling, capped at max_backoff) up to a per-call bound; other
// errors are returned at once. Retry waits ignore job cancellation (a cancelled job must still
// record its final state) but end early on Shutdown. Every call carries the job's trace headers
// and a deadline of rpc_timeout (the Write stream has none).
//
// Thread-safety: all methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_WRITER_CLIENT_H_
#define ETL_COLLECTOR_SERVICE_WRITER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "collector_service/trace_context.h"
#include "etl.grpc.pb.h"
#include "etl.pb.h"

namespace etl {

struct WriterClientOptions {
  absl::Duration rpc_timeout = absl::Seconds(30);  // Deadline of each unary call.
  absl::Duration max_backoff = absl::Seconds(5);   // Longest wait between two attempts.
  int64_t lease_epoch = 0;  // The job's lease epoch, carried by every ledger write (0 = none).
};

class WriterClient {
 public:
  using Rpc = std::function<grpc::Status(grpc::ClientContext*)>;

  // `stub` and `counters` outlive the client.
  WriterClient(v1::WriterService::StubInterface* stub, std::string job_id, TraceContext trace,
               CollectorCounters* counters, WriterClientOptions options);

  // Ends retry waits at once; calls without an attempt bound give up.
  void Shutdown();

  // The shared retry helper: runs `call` with a fresh context until it succeeds, fails
  // permanently or `max_attempts` (<= 0: until Shutdown) attempts were made.
  absl::Status Call(const char* what, const Rpc& call, int max_attempts);

  // Records the job's state (final states are retried longer).
  absl::Status UpdateState(v1::JobState state, const std::string& error);
  // Records the page and record totals learned from the API.
  absl::Status UpdateTotals(int64_t pages_total, int64_t records_total);
  // The job's ledger (record and committed pages).
  absl::Status GetLedger(v1::JobLedger* ledger);
  // Records a page given up after all attempts.
  absl::Status RecordPageFailure(const v1::FailedPage& page);
  // The job's record from the ledger (one attempt set, NOT_FOUND when the writer lacks it).
  absl::StatusOr<v1::JobRecord> GetJobRecord();
  // The writer's per-process commit counters for this job (zeros when it has none); one attempt.
  absl::StatusOr<v1::JobCounters> GetCounters();
  // Opens the client-streaming Write call; `ctx` and `summary` outlive the stream.
  std::unique_ptr<grpc::ClientWriterInterface<v1::RecordBatch>> OpenWrite(
      grpc::ClientContext* ctx, v1::WriteSummary* summary);

 private:
  void PrepareContext(grpc::ClientContext* ctx, bool with_deadline) const;
  bool shutting_down() const;

  v1::WriterService::StubInterface* const stub_;
  const std::string job_id_;
  const TraceContext trace_;
  CollectorCounters* const counters_;
  const WriterClientOptions options_;

  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_WRITER_CLIENT_H_
