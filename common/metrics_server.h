// A small HTTP endpoint serving Prometheus text metrics (GET /metrics) and a liveness page (GET
// /healthz).
//
// Thread-safe: the render callback runs on the server's own thread and must itself be thread-safe
// (services render from a snapshot of their atomic counters).
#ifndef ETL_COMMON_METRICS_SERVER_H_
#define ETL_COMMON_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace etl {

class MetricsServer {
 public:
  using RenderFn = std::function<std::string()>;

  // Binds `host:port` (port 0 = any free port) and serves until destroyed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              RenderFn render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// One family with one sample, formatted like ExpositionWriter (common/metrics.h), which new code
// uses.
void AppendMetric(std::string* out, const std::string& name, const std::string& help,
                  const std::string& type, double value, const std::string& labels = "");

}  // namespace etl

#endif  // ETL_COMMON_METRICS_SERVER_H_
