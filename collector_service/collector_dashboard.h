// CollectorDashboardBackend: the dashboard's view of a running Collector. Every operation goes
// through the same Collector methods as the CollectorService RPCs (ListJobs, GetJob, CancelJob,
// StartJob for a retry); writer status and committed pages come from the writer over the
// collector's channel.
//
// Thread-safe (Collector and gRPC stubs are).
#ifndef ETL_COLLECTOR_SERVICE_COLLECTOR_DASHBOARD_H_
#define ETL_COLLECTOR_SERVICE_COLLECTOR_DASHBOARD_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "collector_service/dashboard_server.h"
#include "etl.grpc.pb.h"

namespace etl {

class Collector;

class CollectorDashboardBackend : public DashboardBackend {
 public:
  // `collector` must outlive this object.
  CollectorDashboardBackend(Collector* collector, std::shared_ptr<grpc::Channel> writer_channel);

  absl::StatusOr<std::vector<v1::Job>> ListJobs(int limit) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) override;
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id) override;
  absl::StatusOr<v1::Job> RetryJob(const std::string& job_id) override;
  absl::StatusOr<v1::WriterStatus> WriterStatus() override;
  absl::StatusOr<std::vector<int64_t>> CommittedPages(const std::string& job_id) override;

 private:
  Collector* const collector_;
  std::unique_ptr<v1::WriterService::Stub> writer_;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COLLECTOR_DASHBOARD_H_
