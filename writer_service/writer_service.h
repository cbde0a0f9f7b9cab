// WriterServiceImpl: the gRPC face of the writer (etl.v1.WriterService, callback API).
//
// Write: one ServerReadReactor per stream. It assembles each page from its chunks, queues complete
// pages, and reads the next message only when the queue has room (otherwise the reactor parks and
// the writer thread resumes it), so HTTP/2 flow control stalls the sender. The WriteSummary is sent
// only when every page the stream delivered is committed, skipped or dead-lettered (ack after
// commit). Ledger RPCs run on a small TaskRunner (they block on PostgreSQL) and finish from there.
//
// Thread-safe.
#ifndef ETL_WRITER_SERVICE_WRITER_SERVICE_H_
#define ETL_WRITER_SERVICE_WRITER_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "etl.grpc.pb.h"
#include "writer_service/ledger_store.h"
#include "writer_service/task_runner.h"
#include "writer_service/writer.h"

namespace etl {

class WriterServiceImpl final : public v1::WriterService::CallbackService {
 public:
  struct Options {
    int64_t max_page_bytes = 256 << 20;    // A page (all its chunks) larger than this is refused;
                                           // also the most a stream holds of an unfinished page.
    int64_t max_message_bytes = 64 << 20;  // A RecordBatch carrying more is refused
                                           // (INVALID_ARGUMENT: permanent).
    int ledger_threads = 4;                // Threads serving the ledger RPCs.
    std::string database_url;              // For write-mode swaps, cursors and dead letters.
  };
  // REQUIRES: writer and ledger outlive the service.
  WriterServiceImpl(Writer* writer, LedgerStore* ledger, Options options);

  grpc::ServerReadReactor<v1::RecordBatch>* Write(grpc::CallbackServerContext* context,
                                                  v1::WriteSummary* summary) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::WriterStatus* response) override;
  grpc::ServerUnaryReactor* RegisterJob(grpc::CallbackServerContext* context,
                                        const v1::RegisterJobRequest* request,
                                        v1::JobRecord* response) override;
  grpc::ServerUnaryReactor* UpdateJob(grpc::CallbackServerContext* context,
                                      const v1::UpdateJobRequest* request,
                                      v1::JobRecord* response) override;
  grpc::ServerUnaryReactor* RecordPageFailure(grpc::CallbackServerContext* context,
                                              const v1::PageFailure* request,
                                              v1::PageFailureAck* response) override;
  grpc::ServerUnaryReactor* GetJobLedger(grpc::CallbackServerContext* context,
                                         const v1::JobRef* request,
                                         v1::JobLedger* response) override;
  grpc::ServerUnaryReactor* ListJobRecords(grpc::CallbackServerContext* context,
                                           const v1::ListJobRecordsRequest* request,
                                           v1::ListJobRecordsResponse* response) override;
  grpc::ServerUnaryReactor* ListCursors(grpc::CallbackServerContext* context,
                                        const v1::ListCursorsRequest* request,
                                        v1::ListCursorsResponse* response) override;
  grpc::ServerUnaryReactor* ListDeadLetters(grpc::CallbackServerContext* context,
                                            const v1::ListDeadLettersRequest* request,
                                            v1::ListDeadLettersResponse* response) override;
  grpc::ServerUnaryReactor* ClaimJobs(grpc::CallbackServerContext* context,
                                      const v1::ClaimJobsRequest* request,
                                      v1::ClaimJobsResponse* response) override;
  grpc::ServerUnaryReactor* RenewLeases(grpc::CallbackServerContext* context,
                                        const v1::RenewLeasesRequest* request,
                                        v1::RenewLeasesResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseLeases(grpc::CallbackServerContext* context,
                                          const v1::ReleaseLeasesRequest* request,
                                          v1::ReleaseLeasesResponse* response) override;
  grpc::ServerUnaryReactor* RequestCancel(grpc::CallbackServerContext* context,
                                          const v1::JobRef* request,
                                          v1::JobRecord* response) override;

 private:
  // Runs `fn` (returning absl::Status) on the ledger threads and finishes the RPC with its status.
  template <typename Fn>
  grpc::ServerUnaryReactor* RunLedger(grpc::CallbackServerContext* context, Fn fn);

  // A connection for the rare calls outside the ledger (replace swap, cursors, dead letters).
  absl::StatusOr<std::unique_ptr<PgConnection>> Connect() const;

  Writer* const writer_;
  LedgerStore* const ledger_;
  const Options options_;
  TaskRunner ledger_runner_;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_WRITER_SERVICE_H_
