// Collector: the registry of a collector's jobs (start, list, cancel, resume, live progress).
//
// Collector owns the jobs it holds the lease of (one thread each, at most max_concurrent_jobs
// fetching), the shared HTTP fetcher and the channel to the writer. It is stateless across
// restarts: every job is registered with the writer (PENDING, unowned) before StartJob returns,
// and the replicas share the jobs through leases in the writer's ledger:
// - a heartbeat thread, every min(lease_renew_interval, 1 s), renews the leases of the jobs
//   running here (publishing their progress for the other replicas), stops at once a job whose
//   lease is lost (or not renewed within lease_duration: the writer was unreachable), cancels a
//   job whose cancel another replica requested, and claims jobs up to the free slots (PENDING
//   jobs oldest first, fair across clientes, and jobs whose lease expired);
// - a claimed job carries its lease epoch in every write, and the writer refuses an old epoch;
// - GetJob, ListJobs, WatchJob and CancelJob answer for any job: from the live job when it runs
//   here, else from the ledger (and a cancel becomes a ledger request its owner acts on);
// - Shutdown releases the leases of the jobs it stopped, so another replica claims them at once.
// A poller reads the writer's per-job commit counters about once a second for live progress.
//
// The gRPC API over it is CollectorServiceImpl (collector_service.h); CollectorServer
// (collector_server.h) assembles both with the gRPC server, health, reflection and metrics.
//
// Thread-safety: all public methods are thread-safe.
#ifndef ETL_COLLECTOR_SERVICE_COLLECTOR_H_
#define ETL_COLLECTOR_SERVICE_COLLECTOR_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector_service/counters.h"
#include "collector_service/credentials.h"
#include "collector_service/dashboard_server.h"
#include "collector_service/http_fetcher.h"
#include "collector_service/job.h"
#include "collector_service/ledger_intents.h"
#include "common/grpc_security.h"
#include "etl.grpc.pb.h"

namespace etl {

struct CollectorOptions {
  std::string listen = "0.0.0.0:50051";            // gRPC address; port 0 = any free port.
  std::string writer_address = "localhost:50052";  // writer_service.
  std::string metrics_listen;                      // Prometheus endpoint (host:port); "" = off.
  int max_concurrent_jobs = 8;  // Jobs fetching at once; the others wait PENDING.
  int fetch_concurrency = 4;    // Default per job when its spec says 0: the most, adaptive.
  bool adaptive_fetch_concurrency = true;  // Jobs adapt within [1, fetch_concurrency].
  // Page fetches in flight (request, body, parse, batching) across all jobs: bounds the memory
  // of fetching whatever the number of jobs.
  int max_fetches_in_flight = 6;
  int max_parses_in_flight = 0;  // Parse buffers kept (parses at once); 0 = the number of cores.
  size_t max_message_bytes = size_t(1)
                             << 20;  // Record bytes per RecordBatch before a page is chunked.
  size_t max_response_bytes = size_t(8) << 20;  // Largest API response body (decompressed).
  // The writer's --max_message_bytes (one setting for both sides): a record that cannot fit in a
  // message of this size goes to the dead letters instead of breaking the stream.
  size_t writer_max_message_bytes = size_t(64) << 20;
  // Fetched record bytes a job holds before its fetchers wait (one page is always admitted, so a
  // single page larger than this still goes through).
  size_t max_buffered_bytes = size_t(16) << 20;
  // A Write stream is half-closed and replaced once it carried this many record bytes ...
  int64_t max_stream_bytes = int64_t(64) << 20;
  // ... or was open this long (page boundaries only): proxies' body and duration limits never cut
  // one, a broken stream replays at most one stream's pages, and streams spread over writers.
  absl::Duration max_stream_duration = absl::Seconds(60);
  // Claim any claimable job of the ledger (true), or only the jobs StartJob registered here.
  bool resume_unfinished = true;
  std::string replica_id;  // Owner id in the leases; "" = hostname, pid and a random suffix.
  // Send replica_id to the APIs as "X-Etl-Replica" (their logs can then tell replicas apart).
  bool send_replica_header = false;
  absl::Duration lease_duration = absl::Seconds(10);  // A lease not renewed for this long ends.
  // Leases are renewed (and progress published, claims made) this often, at most every second.
  absl::Duration lease_renew_interval = absl::Seconds(2);
  absl::Duration status_poll_interval = absl::Seconds(1);  // Writer counters for live progress.
  // Shutdown: jobs drain (what was sent is committed) and open RPCs end within this; then every
  // writer call is cancelled and the process exits whatever the writer or PostgreSQL do.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // CancelJob: the job's Write stream gets this long to end, then is cancelled; CancelJob answers
  // within about this bound even while the writer hangs.
  absl::Duration cancel_grace = absl::Seconds(5);
  // A job's Write-stream restarts in a row without a new committed page before it ends FAILED.
  int max_restarts_without_progress = 8;
  // A RUNNING job without a page fetched or committed for this long ends FAILED.
  absl::Duration max_stall = absl::Seconds(600);
  // Operator credentials jobs may name (--credentials); null = none. Shared so that main can
  // reload it on SIGHUP while jobs run.
  std::shared_ptr<CredentialStore> credentials;
  bool allow_spec_secret_paths = false;  // Accept JobSpec.auth secret_env / secret_file.
  HttpFetcherOptions
      fetcher;  // SSRF guard and limits of the default fetcher (no private networks).
  int max_pending_jobs =
      1000;  // Jobs waiting PENDING at once; StartJob beyond: RESOURCE_EXHAUSTED.
  ServerSecurityOptions security;          // TLS, mTLS and token of CollectorService (health open).
  ChannelSecurityOptions writer_security;  // TLS, client certificate and token towards the writer.
  std::string http_listen;                 // Web dashboard address (host:port); "" = off.
  DashboardOptions dashboard;              // Its token and limits (listen = http_listen).
  LedgerIntentsOptions intents;  // Retries of job states and failed pages the ledger must get.
  // A finished job waits this long for the ledger to record its final state before it is done.
  absl::Duration final_state_wait = absl::Seconds(5);
  // Deadline of StartJob's registration with the writer; past it StartJob answers UNAVAILABLE and
  // the job, if the ledger took it anyway, is ended FAILED (a retry with its request_id revives
  // it).
  absl::Duration register_timeout = absl::Seconds(30);
  // On Shutdown, queued ledger writes get this long to reach the writer.
  absl::Duration intents_flush_deadline = absl::Seconds(5);
};

class Collector {
 public:
  // `fetcher` null = CurlHttpFetcher.
  Collector(CollectorOptions options, std::shared_ptr<grpc::Channel> writer_channel,
            std::unique_ptr<HttpFetcher> fetcher = nullptr);
  ~Collector();  // Shutdown().
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Starts the status poller and the heartbeat (renewals and claims).
  void Start();

  absl::StatusOr<v1::Job> StartJob(const v1::JobSpec& spec, const TraceContext& trace);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  // OK once the job stopped and CANCELLED is in the ledger. UNAVAILABLE ("not yet durable") when
  // the ledger cannot take it within cancel_grace + 1 s: the job is stopped here anyway and the
  // state is retried in the background, but a collector restart before it lands would resume the
  // job, so the client must retry the cancel.
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);
  // Runs a PARTIAL, FAILED or CANCELLED job again under its id, fetching only the pages its ledger
  // does not hold as committed. FAILED_PRECONDITION while it runs or once it SUCCEEDED.
  absl::StatusOr<v1::Job> RetryJob(const std::string& job_id, const TraceContext& trace);
  // The live job, or null when it is not running in this process.
  std::shared_ptr<Job> FindJob(const std::string& job_id);

  // Stops every job without finishing it (they stay resumable), releases their leases and stops
  // the background threads. Jobs drain until `drain_deadline`, then their writer calls are
  // cancelled: returns soon after it.
  void Shutdown(absl::Time drain_deadline);
  void Shutdown() { Shutdown(absl::Now() + options_.shutdown_grace); }
  const std::string& replica_id() const { return replica_id_; }
  // Sleeps up to `d`; false once Shutdown began.
  bool WaitUnlessShutdown(absl::Duration d);

  std::string RenderMetrics() const;
  CollectorCounters& counters() { return counters_; }
  LedgerIntents& intents() { return *intents_; }

 private:
  // The job's row in the writer's ledger, or NOT_FOUND.
  absl::StatusOr<v1::JobRecord> LedgerRecord(const std::string& job_id);
  // StartJob of a request_id the ledger already holds (`record`): that job, started here when it
  // was registered but never ran.
  absl::StatusOr<v1::Job> ExistingJob(const v1::JobRecord& record, const TraceContext& trace);
  // The lease of a job running here.
  struct Lease {
    int64_t epoch = 0;
    absl::Time renewed_at;  // When the last successful renewal (or the claim) was sent.
  };

  std::shared_ptr<Job> AddJob(const std::string& id, const v1::JobSpec& spec,
                              const TraceContext& trace, int64_t created_ms, bool resumed,
                              int64_t lease_epoch);
  // Claims up to `max_jobs` jobs (only `job_id` when given; only registered_ when not resuming)
  // and starts them here. Returns how many started.
  int Claim(int max_jobs, const std::string& job_id, const TraceContext* trace);
  // Renews the leases of the jobs running here; stops those lost.
  void RenewLeases();
  // Stops the jobs whose lease was not renewed within lease_duration (the writer was away).
  void ExpireLeases();
  // When the first lease held here runs out locally (InfiniteFuture when none).
  absl::Time EarliestExpiry() const;
  // Deadline of a heartbeat's writer call.
  absl::Duration LeaseCallTimeout() const;
  // Releases the leases of the jobs stopped by shutdown (bounded by a short deadline).
  void ReleaseLeases(absl::Duration timeout);
  int FreeSlots() const;
  // Counts and logs (on changes only) the outcome of a heartbeat's writer call.
  void NoteLeaseCall(const char* what, const grpc::Status& s);
  void HeartbeatLoop();
  // Waits until `d` passed, a claim was requested (a slot freed) or shutdown (false).
  bool WaitForHeartbeat(absl::Duration d);
  void PollLoop();
  JobEnv MakeEnv();

  const CollectorOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WriterService::Stub> writer_;
  std::unique_ptr<HttpFetcher> fetcher_;
  CollectorCounters counters_;
  std::unique_ptr<LedgerIntents> intents_;
  JobSlots slots_;
  FetchSlots fetch_slots_;
  const std::string replica_id_;
  std::thread heartbeat_thread_;
  std::thread poll_thread_;

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Writer calls of the resume and poll threads, cancelled on shutdown.
  std::set<grpc::ClientContext*> background_calls_ ABSL_GUARDED_BY(mu_);
  bool claim_wanted_ ABSL_GUARDED_BY(mu_) = false;  // A slot freed: claim before the next tick.
  bool lease_calls_failing_ ABSL_GUARDED_BY(mu_) = false;  // The last lease call failed.
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);  // Jobs running here, by id.
  // Jobs StartJob registered here and not yet claimed (claimed by this replica only when it does
  // not claim every job, i.e. resume_unfinished is false).
  std::map<std::string, TraceContext> registered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COLLECTOR_H_
