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
#include "common/grpc_security.h"
#include "etl.grpc.pb.h"

namespace etl {

struct CollectorOptions {
  std::string listen = "0.0.0.0:50051";            // gRPC address; port 0 = any free port.
  std::string writer_address = "localhost:50052";  // writer_service.
  std::string metrics_listen;                      // Prometheus endpoint (host:port); "" = off.
  int max_concurrent_jobs = 8;  // Jobs fetching at once; the others wait PENDING.
  int fetch_concurrency = 4;    // Default per job when its spec says 0.
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
  absl::Duration shutdown_grace = absl::Seconds(10);  // For open RPCs (e.g. WatchJob) on shutdown.
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
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);
  // Runs a PARTIAL, FAILED or CANCELLED job again under its id, fetching only the pages its ledger
  // does not hold as committed. FAILED_PRECONDITION while it runs or once it SUCCEEDED.
  absl::StatusOr<v1::Job> RetryJob(const std::string& job_id, const TraceContext& trace);
  // The live job, or null when it is not running in this process.
  std::shared_ptr<Job> FindJob(const std::string& job_id);

  // Stops every job without finishing it (they stay resumable), releases their leases and stops
  // the background threads.
  void Shutdown();
  const std::string& replica_id() const { return replica_id_; }
  // Sleeps up to `d`; false once Shutdown began.
  bool WaitUnlessShutdown(absl::Duration d);

  std::string RenderMetrics() const;
  CollectorCounters& counters() { return counters_; }

 private:
  // The job's row in the writer's ledger, or NOT_FOUND.
  absl::StatusOr<v1::JobRecord> LedgerRecord(const std::string& job_id);
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
  // Renews the leases of the jobs running here; stops those lost or expired.
  void RenewLeases();
  // Releases the leases of the jobs stopped by shutdown (bounded by a short deadline).
  void ReleaseLeases();
  int FreeSlots() const;
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
  JobSlots slots_;
  const std::string replica_id_;
  std::thread heartbeat_thread_;
  std::thread poll_thread_;

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool claim_wanted_ ABSL_GUARDED_BY(mu_) = false;  // A slot freed: claim before the next tick.
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);  // Jobs running here, by id.
  // Jobs StartJob registered here and not yet claimed (claimed by this replica only when it does
  // not claim every job, i.e. resume_unfinished is false).
  std::map<std::string, TraceContext> registered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COLLECTOR_H_
