// sample_api: serves deterministic paginated order records for the demo, tests and benchmarks.
// See sample_api_server.h for the URL scheme, pagination styles and injectable faults.
#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "common/flags.h"
#include "common/logging.h"
#include "deploy/sample_api/sample_api_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080", "host:port to serve on (port 0 = any free port)");
ABSL_FLAG(std::string, port_file, "", "write the bound port to this file once serving");
ABSL_FLAG(int64_t, records, 100000,
          "records per collection when a request has no total= parameter");
ABSL_FLAG(int64_t, records_per_day, 100, "records dated per day (record i: 2023-01-01 + i/N days)");
ABSL_FLAG(int64_t, default_page_size, 100, "page size when a request names none");
ABSL_FLAG(int64_t, max_page_size, 10000, "larger requested page sizes are clamped to this");
ABSL_FLAG(int32_t, threads, 32, "request worker threads");
ABSL_FLAG(int32_t, latency_ms, 0, "extra delay added to every /v1 answer");
ABSL_FLAG(
    std::string, require_bearer_env, "",
    "name of an environment variable holding a bearer token that every /v1 request must send");
ABSL_FLAG(std::string, require_api_key_env, "",
          "name of an environment variable holding an API key that every /v1 request must send");
ABSL_FLAG(std::string, request_log, "",
          "append one line per /v1 request to this file: monotonic ns, X-Etl-Replica (or -), "
          "client ip:port, path?query (env SAMPLE_API_REQUEST_LOG)");
ABSL_FLAG(std::string, api_key_header, "X-API-Key", "header that carries the API key");

int main(int argc, char** argv) {
  etl::BlockTerminationSignals();
  etl::ParseFlags(
      argc, argv,
      "sample_api: deterministic paginated order records over HTTP.\n"
      "  GET /v1/clientes/{cliente}/{rota}/{page|offset|cursor|link|next_url|none}?total=N&...\n"
      "Usage: sample_api [--listen=127.0.0.1:8080] [--records=100000] [--port_file=F]");
  etl::SetThreadComponent("sample_api");
  etl::sample_api::SampleApiOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.default_records = absl::GetFlag(FLAGS_records);
  options.records_per_day = absl::GetFlag(FLAGS_records_per_day);
  options.default_page_size = absl::GetFlag(FLAGS_default_page_size);
  options.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.latency_ms = absl::GetFlag(FLAGS_latency_ms);
  options.api_key_header = absl::GetFlag(FLAGS_api_key_header);
  options.request_log = absl::GetFlag(FLAGS_request_log);
  if (options.request_log.empty()) options.request_log = etl::EnvOr("SAMPLE_API_REQUEST_LOG", "");
  for (auto [flag, target] :
       {std::pair{absl::GetFlag(FLAGS_require_bearer_env), &options.bearer_token},
        std::pair{absl::GetFlag(FLAGS_require_api_key_env), &options.api_key}}) {
    if (flag.empty()) continue;
    const char* v = std::getenv(flag.c_str());
    if (v == nullptr || *v == '\0') {
      etl::LogError("environment variable ", flag, " (the required credential) is not set");
      return 1;
    }
    *target = v;
  }
  if (options.default_records < 0 || options.records_per_day <= 0 ||
      options.default_page_size <= 0 || options.max_page_size <= 0) {
    etl::LogError("--records must be >= 0 and the per-day/page-size flags > 0");
    return 1;
  }

  auto server = etl::sample_api::SampleApiServer::Start(options);
  if (!server.ok()) {
    etl::LogError(server.status().ToString());
    return 1;
  }
  etl::LogInfo("serving on ", (*server)->base_url(), " (", options.default_records,
               " records per collection",
               options.bearer_token.empty() ? "" : ", bearer token required",
               options.api_key.empty() ? "" : ", API key required", ")");
  etl::WritePortFile(absl::GetFlag(FLAGS_port_file), (*server)->port());
  int sig = etl::WaitForTerminationSignal();
  etl::LogInfo("signal ", sig, ": stopping");
  (*server)->Stop();
  return 0;
}
