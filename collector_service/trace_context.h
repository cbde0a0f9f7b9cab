// TraceContext: trace headers taken from StartJob's gRPC metadata and forwarded to the API and the
// writer. A plain value type.
#ifndef ETL_COLLECTOR_SERVICE_TRACE_CONTEXT_H_
#define ETL_COLLECTOR_SERVICE_TRACE_CONTEXT_H_

#include <string>

namespace etl {

struct TraceContext {
  std::string traceparent;
  std::string request_id;
};

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_TRACE_CONTEXT_H_
