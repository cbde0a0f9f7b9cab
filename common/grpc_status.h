// Conversions between absl::Status (used everywhere below the service layer) and grpc::Status.
#ifndef ETL_COMMON_GRPC_STATUS_H_
#define ETL_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace etl {

// The numeric codes of absl::StatusCode and grpc::StatusCode are the same canonical codes.
inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// The canonical name of a gRPC status code ("INVALID_ARGUMENT"), for messages.
inline std::string GrpcCodeName(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

}  // namespace etl

#endif  // ETL_COMMON_GRPC_STATUS_H_
