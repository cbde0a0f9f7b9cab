// CollectorServer: assembles a collector process: the channel to the writer, Collector, the gRPC
// server (CollectorService + health + reflection), the optional /metrics endpoint and the optional
// web dashboard (--http-listen). main.cc and
// in-process tests both use it.
//
// Thread-safety: Shutdown() may be called from any thread, more than once.
#ifndef ETL_COLLECTOR_SERVICE_COLLECTOR_SERVER_H_
#define ETL_COLLECTOR_SERVICE_COLLECTOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "collector_service/collector.h"
#include "collector_service/collector_dashboard.h"
#include "collector_service/collector_service.h"
#include "collector_service/http_fetcher.h"
#include "common/metrics_server.h"

namespace etl {

class CollectorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CollectorServer>> Start(
      CollectorOptions options, std::unique_ptr<HttpFetcher> fetcher = nullptr);
  ~CollectorServer();  // Shutdown().
  CollectorServer(const CollectorServer&) = delete;
  CollectorServer& operator=(const CollectorServer&) = delete;

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  int dashboard_port() const { return dashboard_ ? dashboard_->port() : 0; }
  Collector* collector() { return collector_.get(); }

  // Health NOT_SERVING, stop accepting RPCs, stop jobs (left resumable), stop. Idempotent.
  void Shutdown();

 private:
  CollectorServer() = default;
  CollectorOptions options_;
  std::unique_ptr<Collector> collector_;
  std::unique_ptr<CollectorServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<CollectorDashboardBackend> dashboard_backend_;
  std::unique_ptr<DashboardServer> dashboard_;
  int port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COLLECTOR_SERVER_H_
