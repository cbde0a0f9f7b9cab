// DashboardServer: the collector's web dashboard. One page (plain HTML/CSS/JS compiled into the
// binary, see collector_service/dashboard/) and the small JSON API it polls:
//
//   GET  /api/jobs?state=RUNNING&cliente=2151&limit=50&offset=0   jobs, newest first, filtered,
//   paged GET  /api/jobs/{id}                                             one job (spec without
//   credentials) GET  /api/jobs/{id}/pages                                       page map:
//   committed / failed / in flight GET  /api/writer writer status (queue, rates, streams) GET
//   /api/info                                                  version, whether actions are allowed
//   POST /api/jobs/{id}/cancel, /api/jobs/{id}/retry                need "Authorization: Bearer
//   <token>"
//
// Without an auth token in DashboardOptions the dashboard is read-only: cancel and retry answer
// 403. With one, the request must carry the same token (compared in constant time); the token
// travels in a header, never a cookie, so another site cannot make a browser send it. Specs are
// shown with every credential reference removed (auth, sensitive headers and query parameters).
//
// The collector is reached only through DashboardBackend, so tests run the server against a fake.
//
// Thread-safety: the server answers on its own threads; the backend must be thread-safe.
#ifndef ETL_COLLECTOR_SERVICE_DASHBOARD_SERVER_H_
#define ETL_COLLECTOR_SERVICE_DASHBOARD_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"
#include "etl.pb.h"

namespace httplib {
class Server;
}

namespace etl {

// What the dashboard needs from the collector: the same operations as the RPCs.
class DashboardBackend {
 public:
  virtual ~DashboardBackend() = default;
  // Up to `limit` jobs (this collector's and the writer's ledger), any order.
  virtual absl::StatusOr<std::vector<v1::Job>> ListJobs(int limit) = 0;
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& job_id) = 0;
  virtual absl::StatusOr<v1::Job> CancelJob(const std::string& job_id) = 0;
  // Runs the job's spec again as a new job (StartJob's path); returns the new job.
  virtual absl::StatusOr<v1::Job> RetryJob(const std::string& job_id) = 0;
  virtual absl::StatusOr<v1::WriterStatus> WriterStatus() = 0;
  // Committed pages of a job from the writer's ledger (ascending page number).
  virtual absl::StatusOr<std::vector<int64_t>> CommittedPages(const std::string& job_id) = 0;
};

struct DashboardOptions {
  std::string listen =
      "127.0.0.1:8080";         // host:port (port 0 = any free port); loopback by default.
  std::string auth_token;       // The gRPC API's token; "" = read-only (cancel/retry refused).
  int max_jobs_scanned = 1000;  // Jobs fetched from the backend before filtering and paging.
  int max_page_size = 200;      // Largest `limit` of /api/jobs.
  int64_t max_page_map_pages = 20000;  // Larger jobs get a page map from counts only.
};

class DashboardServer {
 public:
  // Binds options.listen and serves until destroyed. `backend` must outlive the server.
  static absl::StatusOr<std::unique_ptr<DashboardServer>> Start(DashboardOptions options,
                                                                DashboardBackend* backend);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  int port() const { return port_; }

  // etl_collector_dashboard_http_responses_total{code=...}.
  void RenderMetrics(ExpositionWriter* out) const;

 private:
  explicit DashboardServer(DashboardOptions options, DashboardBackend* backend);
  void Routes();
  bool Authorized(const std::string& authorization_header) const;
  void CountResponse(int code);

  const DashboardOptions options_;
  DashboardBackend* const backend_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  mutable absl::Mutex mu_;
  std::vector<std::pair<int, int64_t>> responses_ ABSL_GUARDED_BY(mu_);  // (code, count), sorted.
};

// The spec as the dashboard shows it: auth reduced to its type, and values of headers and query
// parameters whose names suggest a credential replaced by "[redacted]".
v1::JobSpec RedactedSpec(const v1::JobSpec& spec);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_DASHBOARD_SERVER_H_
