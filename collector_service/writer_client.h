// WriterClient: every call a job makes to writer_service (ledger reads, state and failure records,
// status counters, the Write stream), with one shared retry helper.
//
// Every writer status is classified once, by ClassifyWriterStatus: transient errors (the writer or
// the transport is briefly unwell) are retried with exponential backoff (200 ms doubling, capped
// at max_backoff) up to a per-call bound; permanent ones (the writer refuses the request as it is)
// are returned at once and never retried, by a call or by restarting a Write stream. Retry waits
// ignore job cancellation (a cancelled job must still record its final state) but end early on
// Shutdown. Every call carries the job's trace headers and a deadline of rpc_timeout (the Write
// stream has none). Every open call's context is known, so that CancelWriteStream and AbortCalls
// can end calls blocked on a hung writer (TryCancel) from another thread.
//
// Thread-safety: all methods may be called from any thread.
#ifndef ETL_COLLECTOR_SERVICE_WRITER_CLIENT_H_
#define ETL_COLLECTOR_SERVICE_WRITER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "collector_service/trace_context.h"
#include "common/lease.h"
#include "etl.grpc.pb.h"
#include "etl.pb.h"

namespace etl {

// How the collector treats an error from the writer.
enum class WriterErrorClass {
  kTransient,  // Retry the call / restart the stream (bounded).
  kPermanent,  // Never retry: record it and fail the page or the job.
  kLeaseLost,  // Another collector owns the job now: stop locally, write nothing more.
};

// The one classification of writer statuses. Permanent: INVALID_ARGUMENT, FAILED_PRECONDITION,
// PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE, UNIMPLEMENTED,
// DATA_LOSS, and RESOURCE_EXHAUSTED for a message over gRPC's size limit. Transient: UNAVAILABLE,
// DEADLINE_EXCEEDED, ABORTED, CANCELLED (not by us), INTERNAL and UNKNOWN (a broken transport
// reports these), and RESOURCE_EXHAUSTED for overload ("too many ledger calls waiting").
WriterErrorClass ClassifyWriterStatus(const grpc::Status& status);
// The same for a status already converted (FromGrpcStatus) by a WriterClient call.
WriterErrorClass ClassifyWriterStatus(const absl::Status& status);

// Hook for fenced job leases: the writer refuses a stream, page or ledger call carrying an older
// fencing epoch than the ledger holds with FAILED_PRECONDITION and a message containing
// kLeaseLostMarker. Such a status means "lease lost": the job stops in this process without
// recording anything (the new owner does). ClassifyWriterStatus returns kLeaseLost for it.
inline constexpr absl::string_view kLeaseLostMarker = kLeaseLostPrefix;
bool IsLeaseLost(const grpc::Status& status);
// Where the leases work acts on it: Job::OnLeaseLost (job.h).

// "CODE: message" of a writer status, for job errors and logs.
std::string DescribeWriterStatus(const grpc::Status& status);

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
  // TryCancel of the open Write stream (a later OpenWrite is not affected): a stream blocked on a
  // hung writer ends at once with CANCELLED.
  void CancelWriteStream();
  // TryCancel of every open call, Write stream included, and every later call fails at once with
  // CANCELLED: nothing this client does can block any more (collector shutdown past its grace).
  void AbortCalls();

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
  // Opens the client-streaming Write call; `ctx` and `summary` outlive the stream. After
  // AbortCalls the stream is cancelled at once (its writes fail, Finish says CANCELLED).
  // REQUIRES: ReleaseWrite(ctx) before `ctx` is destroyed.
  std::unique_ptr<grpc::ClientWriterInterface<v1::RecordBatch>> OpenWrite(
      grpc::ClientContext* ctx, v1::WriteSummary* summary);
  // The stream of `ctx` is finished (or abandoned): CancelWriteStream no longer reaches it.
  void ReleaseWrite(grpc::ClientContext* ctx);

 private:
  void PrepareContext(grpc::ClientContext* ctx, bool with_deadline) const;
  bool shutting_down() const;
  // Registers an open unary call; false (and nothing registered) once AbortCalls ran.
  bool Enter(grpc::ClientContext* ctx);
  void Leave(grpc::ClientContext* ctx);

  v1::WriterService::StubInterface* const stub_;
  const std::string job_id_;
  const TraceContext trace_;
  CollectorCounters* const counters_;
  const WriterClientOptions options_;

  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> open_calls_ ABSL_GUARDED_BY(mu_);  // Unary calls in flight.
  grpc::ClientContext* write_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;   // The open Write stream.
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_WRITER_CLIENT_H_
