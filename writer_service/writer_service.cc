#include "writer_service/writer_service.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "writer_service/cursor_store.h"
#include "writer_service/pg_schema.h"
#include "writer_service/write_modes.h"

namespace etl {
namespace {

constexpr size_t kMaxJobIdBytes = 200;

// One Write stream. Lives until OnDone. The right to call StartRead passes between gRPC (a read is
// in flight), the reactor's callbacks and the queue (parked): only its current holder calls
// StartRead, and Finish happens only once reading stopped and no page is outstanding, so the two
// never race. No lock is held while calling StartRead/Finish (they may run reactions inline).
class WriteReactor final : public grpc::ServerReadReactor<v1::RecordBatch>, public PageOwner {
 public:
  WriteReactor(Writer* writer, v1::WriteSummary* summary, int64_t max_page_bytes,
               int64_t max_message_bytes)
      : writer_(writer),
        response_(summary),
        max_page_bytes_(max_page_bytes),
        max_message_bytes_(max_message_bytes),
        started_(absl::Now()) {
    if (!writer_->StreamStarted()) {
      refused_ = true;
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "writer is shutting down"));
      return;
    }
    StartRead(&msg_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      EndInput(absl::OkStatus(), /*eof=*/true);
      return;
    }
    absl::Status s = Accept();
    if (!s.ok()) {
      LogWarning("Write stream refused: ", s.message());
      EndInput(s, /*eof=*/false);
      return;
    }
    Continue();
  }

  void OnDone() override {
    if (!refused_) writer_->StreamEnded(final_ok_);
    delete this;
  }

  void OnPageDone(const PageResult& r) override {
    bool finish = false;
    {
      absl::MutexLock l(&mu_);
      switch (r.kind) {
        case PageResult::Kind::kCommitted:
          summary_.set_pages_committed(summary_.pages_committed() + 1);
          summary_.set_records_committed(summary_.records_committed() + r.records_committed);
          summary_.set_records_rejected(summary_.records_rejected() + r.records_rejected);
          if (r.first_in_batch_for_owner) {
            summary_.set_batches_committed(summary_.batches_committed() + 1);
          }
          break;
        case PageResult::Kind::kSkipped:
          summary_.set_pages_skipped(summary_.pages_skipped() + 1);
          summary_.set_records_skipped(summary_.records_skipped() + r.records_skipped);
          break;
        case PageResult::Kind::kFailed:
          if (error_.ok()) error_ = r.error;
          break;
      }
      --outstanding_;
      finish = read_done_ && outstanding_ == 0 && !finished_;
      if (finish) finished_ = true;
    }
    if (finish) DoFinish();
  }

 private:
  // Takes msg_ into the page being assembled; validates it.
  absl::Status Accept() {
    v1::RecordBatch& m = msg_;
    if (page_ == nullptr) {
      if (m.job_id().empty()) return absl::InvalidArgumentError("job_id is empty");
      if (m.job_id().size() > kMaxJobIdBytes || m.job_id().find('\0') != std::string::npos) {
        return absl::InvalidArgumentError("job_id is longer than 200 bytes or contains NUL");
      }
      if (m.cliente_id() != last_cliente_ || m.rota() != last_rota_ || last_table_.empty()) {
        absl::StatusOr<std::string> table = RawTableName(m.cliente_id(), m.rota());
        if (!table.ok()) return table.status();
        last_table_ = *std::move(table);
        last_cliente_ = m.cliente_id();
        last_rota_ = m.rota();
      }
      if (m.page_number() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("page_number ", m.page_number(), " is negative"));
      }
      if (m.chunk_index() != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "page ", m.page_number(), " starts with chunk ", m.chunk_index(), " instead of 0"));
      }
      page_ = std::make_unique<QueuedPage>();
      page_->table = last_table_;
      page_->job_id = m.job_id();
      page_->page_number = m.page_number();
      page_->page_token = m.page_token();
      page_->lease_epoch = m.lease_epoch();
      page_->owner = this;
    } else if (m.job_id() != page_->job_id || m.page_number() != page_->page_number ||
               m.chunk_index() != static_cast<int32_t>(page_->chunks.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected chunk ", page_->chunks.size(), " of page ", page_->page_number, " of job ",
          page_->job_id, ", got chunk ", m.chunk_index(), " of page ", m.page_number()));
    }
    if (m.natural_keys_size() != 0 && m.natural_keys_size() != m.records_size()) {
      return absl::InvalidArgumentError(absl::StrCat("page ", m.page_number(), " has ",
                                                     m.records_size(), " records but ",
                                                     m.natural_keys_size(), " natural keys"));
    }
    if (m.rejections_size() != 0 && m.rejections_size() != m.records_size()) {
      return absl::InvalidArgumentError(absl::StrCat("page ", m.page_number(), " has ",
                                                     m.records_size(), " records but ",
                                                     m.rejections_size(), " rejections"));
    }
    int64_t bytes = 0;
    for (const std::string& r : m.records()) bytes += static_cast<int64_t>(r.size());
    int64_t message_bytes =
        bytes + static_cast<int64_t>(m.page_token().size() + m.next_page_token().size());
    for (const std::string& k : m.natural_keys()) message_bytes += static_cast<int64_t>(k.size());
    if (message_bytes > max_message_bytes_) {
      // Permanent: the same message is refused every time. A record this large cannot be written;
      // the sender must dead-letter it (or fail its page) instead of sending it again.
      return absl::InvalidArgumentError(
          absl::StrCat("RecordBatch of page ", m.page_number(), " carries ", message_bytes,
                       " bytes, more than max_message_bytes = ", max_message_bytes_,
                       " (the largest message, hence record, the pipeline carries)"));
    }
    page_->records += m.records_size();
    page_->bytes += bytes;
    writer_->queue().AddPartial(bytes);
    if (page_->bytes > max_page_bytes_) {
      return absl::InvalidArgumentError(absl::StrCat("page ", page_->page_number, " exceeds ",
                                                     "max_page_bytes = ", max_page_bytes_,
                                                     " bytes"));
    }
    page_->next_page_token = m.next_page_token();
    const bool last = m.last_chunk();
    page_->chunks.push_back(std::move(m));
    msg_.Clear();
    if (last) {
      writer_->NoteReceived(*page_);
      summary_records_received_ += page_->records;
      ++pages_received_;
      if (first_job_.empty()) first_job_ = page_->job_id;
      absl::MutexLock l(&mu_);
      ++outstanding_;
      pending_ = std::move(page_);
    }
    return absl::OkStatus();
  }

  // Holder of the read right: queue the complete page, then read on when there is room (the queue
  // and every stream's partial page count against the bound).
  void Continue() {
    WriteQueue& q = writer_->queue();
    if (pending_ != nullptr) {
      switch (q.PushAssembledOrPark(this, &pending_, [this] { Continue(); })) {
        case WriteQueue::Admission::kParked:
          return;  // The queue calls Continue() again when room frees.
        case WriteQueue::Admission::kClosed:
          EndInput(absl::UnavailableError("writer is shutting down"), /*eof=*/false);
          return;  // EndInput released and failed the pending page.
        case WriteQueue::Admission::kAdmitted:
          break;
      }
    }
    if (writer_->draining()) {
      EndInput(absl::UnavailableError("writer is shutting down; the pages received are committed, "
                                      "send the rest again"),
               /*eof=*/false);
      return;
    }
    switch (q.ReadRoomOrPark(this, page_ == nullptr ? 0 : page_->bytes, [this] { Continue(); })) {
      case WriteQueue::Admission::kParked:
        return;  // The queue calls Continue() again when room frees.
      case WriteQueue::Admission::kClosed:
        EndInput(absl::UnavailableError("writer is shutting down"), /*eof=*/false);
        return;
      case WriteQueue::Admission::kAdmitted:
        StartRead(&msg_);
        return;
    }
  }

  // The queue dropped the complete page (closed): its stream hears it failed.
  void FailPending() {
    PageResult r;
    r.kind = PageResult::Kind::kFailed;
    r.error = absl::UnavailableError("writer is shutting down");
    OnPageDone(r);
  }

  // Reading is over (end of stream, error, or drain). Finishes now if nothing is outstanding.
  void EndInput(absl::Status status, bool eof) {
    if (eof && page_ != nullptr) {
      status = absl::InvalidArgumentError(
          absl::StrCat("stream ended inside page ", page_->page_number, " of job ", page_->job_id,
                       " (chunk ", page_->chunks.size() - 1, " without last_chunk)"));
    }
    if (page_ != nullptr) {
      // An incomplete page is never committed: its bytes leave the bound.
      writer_->queue().ReleasePartial(this, page_->bytes);
      page_.reset();
    }
    if (pending_ != nullptr) {  // Complete but never queued (the queue closed).
      writer_->queue().ReleasePartial(this, pending_->bytes);
      pending_.reset();
      FailPending();
    }
    bool finish = false;
    {
      absl::MutexLock l(&mu_);
      read_done_ = true;
      if (!status.ok() && error_.ok()) error_ = status;
      finish = outstanding_ == 0 && !finished_;
      if (finish) finished_ = true;
    }
    writer_->queue().RequestFlush();  // The sender waits for its acknowledgement now.
    if (finish) DoFinish();
  }

  void DoFinish() {
    absl::Status status;
    {
      absl::MutexLock l(&mu_);
      status = error_;
      *response_ = summary_;
    }
    response_->set_records_received(summary_records_received_);
    final_ok_ = status.ok();
    double secs = absl::ToDoubleSeconds(absl::Now() - started_);
    std::string line = absl::StrFormat(
        "stream ended: job %s, %d pages, %d records received, %d committed, %d rejected, %d pages "
        "skipped, %.3f s, %.0f records/s: %s",
        first_job_.empty() ? "-" : first_job_, pages_received_, summary_records_received_,
        response_->records_committed(), response_->records_rejected(), response_->pages_skipped(),
        secs, secs > 0 ? static_cast<double>(response_->records_committed()) / secs : 0.0,
        status.ok() ? "OK" : status.ToString());
    if (status.ok()) {
      LogInfo(line);
    } else {
      LogWarning(line);
    }
    Finish(ToGrpcStatus(status));
  }

  Writer* const writer_;
  v1::WriteSummary* const response_;
  const int64_t max_page_bytes_;
  const int64_t max_message_bytes_;
  const absl::Time started_;
  bool refused_ = false;
  bool final_ok_ = false;

  // Owned by the holder of the read right.
  v1::RecordBatch msg_;
  std::unique_ptr<QueuedPage> page_;     // Being assembled (chunks so far).
  std::unique_ptr<QueuedPage> pending_;  // Complete, not yet admitted by the queue.
  std::string last_cliente_, last_rota_, last_table_;
  int64_t summary_records_received_ = 0;
  int64_t pages_received_ = 0;
  std::string first_job_;  // For the stream's log line (a stream usually carries one job).

  absl::Mutex mu_;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) =
      0;  // Complete pages not yet committed/skipped/failed.
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  v1::WriteSummary summary_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

WriterServiceImpl::WriterServiceImpl(Writer* writer, LedgerStore* ledger, Options options)
    : writer_(writer),
      ledger_(ledger),
      options_(options),
      ledger_runner_(options.ledger_threads, 10000, "writer/ledger") {}

grpc::ServerReadReactor<v1::RecordBatch>* WriterServiceImpl::Write(
    grpc::CallbackServerContext* context, v1::WriteSummary* summary) {
  return new WriteReactor(writer_, summary, options_.max_page_bytes, options_.max_message_bytes);
}

grpc::ServerUnaryReactor* WriterServiceImpl::GetStatus(grpc::CallbackServerContext* context,
                                                       const v1::GetStatusRequest* request,
                                                       v1::WriterStatus* response) {
  *response = writer_->Status();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

template <typename Fn>
grpc::ServerUnaryReactor* WriterServiceImpl::RunLedger(grpc::CallbackServerContext* context,
                                                       Fn fn) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  bool scheduled = ledger_runner_.Schedule([reactor, fn = std::move(fn)]() mutable {
    absl::Status s = fn();
    reactor->Finish(ToGrpcStatus(s));
  });
  if (!scheduled) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many ledger calls waiting"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* WriterServiceImpl::RegisterJob(grpc::CallbackServerContext* context,
                                                         const v1::RegisterJobRequest* request,
                                                         v1::JobRecord* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<v1::JobRecord> r = ledger_->RegisterJob(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::UpdateJob(grpc::CallbackServerContext* context,
                                                       const v1::UpdateJobRequest* request,
                                                       v1::JobRecord* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    if (request->state() == v1::SUCCEEDED) {
      // A collector that lost the job's lease must not swap the table the new owner loads.
      RETURN_IF_ERROR(ledger_->CheckLease(request->job_id(), request->lease_epoch()));
      // REPLACE jobs swap their fresh table in before they are marked SUCCEEDED (idempotent, so a
      // retried UpdateJob is harmless); other states never swap.
      ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Connect());
      RETURN_IF_ERROR(SwapInReplaceTable(conn.get(), request->job_id()));
    }
    absl::StatusOr<v1::JobRecord> r = ledger_->UpdateJob(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::RecordPageFailure(grpc::CallbackServerContext* context,
                                                               const v1::PageFailure* request,
                                                               v1::PageFailureAck* response) {
  return RunLedger(context, [this, request]() { return ledger_->RecordPageFailure(*request); });
}

grpc::ServerUnaryReactor* WriterServiceImpl::GetJobLedger(grpc::CallbackServerContext* context,
                                                          const v1::JobRef* request,
                                                          v1::JobLedger* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<v1::JobLedger> r = ledger_->GetJobLedger(request->job_id());
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::ListJobRecords(
    grpc::CallbackServerContext* context, const v1::ListJobRecordsRequest* request,
    v1::ListJobRecordsResponse* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<v1::ListJobRecordsResponse> r = ledger_->ListJobRecords(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<PgConnection>> WriterServiceImpl::Connect() const {
  ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn,
                   PgConnection::Connect(options_.database_url, "etl-writer-admin"));
  RETURN_IF_ERROR(EnsureLedgerSchema(conn.get()));
  return conn;
}

grpc::ServerUnaryReactor* WriterServiceImpl::ListCursors(grpc::CallbackServerContext* context,
                                                         const v1::ListCursorsRequest* request,
                                                         v1::ListCursorsResponse* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Connect());
    ASSIGN_OR_RETURN(std::vector<v1::Cursor> cursors,
                     etl::ListCursors(conn.get(), request->cliente_id(), request->rota()));
    for (v1::Cursor& c : cursors) *response->add_cursors() = std::move(c);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::ListDeadLetters(
    grpc::CallbackServerContext* context, const v1::ListDeadLettersRequest* request,
    v1::ListDeadLettersResponse* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Connect());
    ASSIGN_OR_RETURN(std::vector<v1::DeadLetter> dead, etl::ListDeadLetters(conn.get(), *request));
    for (v1::DeadLetter& d : dead) *response->add_dead_letters() = std::move(d);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::ClaimJobs(grpc::CallbackServerContext* context,
                                                       const v1::ClaimJobsRequest* request,
                                                       v1::ClaimJobsResponse* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, ledger_->ClaimJobs(*request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::RenewLeases(grpc::CallbackServerContext* context,
                                                         const v1::RenewLeasesRequest* request,
                                                         v1::RenewLeasesResponse* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, ledger_->RenewLeases(*request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::ReleaseLeases(grpc::CallbackServerContext* context,
                                                           const v1::ReleaseLeasesRequest* request,
                                                           v1::ReleaseLeasesResponse* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, ledger_->ReleaseLeases(*request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WriterServiceImpl::RequestCancel(grpc::CallbackServerContext* context,
                                                           const v1::JobRef* request,
                                                           v1::JobRecord* response) {
  return RunLedger(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, ledger_->RequestCancel(request->job_id()));
    return absl::OkStatus();
  });
}

}  // namespace etl
