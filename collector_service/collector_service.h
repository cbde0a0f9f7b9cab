// CollectorServiceImpl: the etl.v1.CollectorService gRPC API, a thin mapping of each RPC onto
// Collector (statuses mapped to gRPC codes, trace headers taken from the call's metadata).
// WatchJob streams a live job's progress about once a second until it ends.
//
// Thread-safety: gRPC calls the methods from any number of threads; Collector is thread-safe.
#ifndef ETL_COLLECTOR_SERVICE_COLLECTOR_SERVICE_H_
#define ETL_COLLECTOR_SERVICE_COLLECTOR_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "collector_service/collector.h"
#include "etl.grpc.pb.h"

namespace etl {

class CollectorServiceImpl final : public v1::CollectorService::Service {
 public:
  explicit CollectorServiceImpl(Collector* collector) : collector_(collector) {}

  grpc::Status StartJob(grpc::ServerContext* ctx, const v1::JobSpec* spec, v1::Job* job) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::JobRef* ref, v1::Job* job) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::JobRef* ref, v1::Job* job) override;
  grpc::Status RetryJob(grpc::ServerContext* ctx, const v1::JobRef* ref, v1::Job* job) override;
  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::JobRef* ref,
                        grpc::ServerWriter<v1::JobProgress>* writer) override;

 private:
  Collector* const collector_;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_COLLECTOR_SERVICE_H_
