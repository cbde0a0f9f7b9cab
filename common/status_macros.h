// Status propagation helpers (abseil 20220623 ships none) and conversions at the gRPC boundary.
#ifndef ETL_COMMON_STATUS_MACROS_H_
#define ETL_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ETL_CONCAT_INNER_(a, b) a##b
#define ETL_CONCAT_(a, b) ETL_CONCAT_INNER_(a, b)

// RETURN_IF_ERROR(expr): returns the absl::Status of `expr` from the enclosing function unless it
// is OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status etl_status_ = (expr);       \
    if (!etl_status_.ok()) return etl_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates the absl::StatusOr `expr`; returns its status on error,
// else moves its value into `lhs` (which may be a declaration, e.g. `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  ETL_ASSIGN_OR_RETURN_IMPL_(ETL_CONCAT_(etl_statusor_, __LINE__), lhs, expr)
#define ETL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#endif  // ETL_COMMON_STATUS_MACROS_H_
