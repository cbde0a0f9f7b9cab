// collector_server: serves etl.v1.CollectorService; fetches paginated HTTP/JSON APIs and streams
// their records to writer_service.
#include <fstream>
#include <iterator>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "collector_service/collector_server.h"
#include "common/flags.h"
#include "common/logging.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address (port 0 = any free port)");
ABSL_FLAG(std::string, writer, "",
          "writer_service address (env ETL_WRITER; default localhost:50052)");
ABSL_FLAG(int32_t, max_concurrent_jobs, 8, "jobs fetching at once; others wait PENDING");
ABSL_FLAG(int32_t, fetch_concurrency, 4,
          "default parallel page fetches per job when the page count is known");
ABSL_FLAG(int64_t, max_message_bytes, 1 << 20,
          "record bytes per RecordBatch message before a page is chunked");
ABSL_FLAG(int64_t, max_response_bytes, int64_t(256) << 20, "largest API response body accepted");
ABSL_FLAG(int64_t, max_buffered_bytes, int64_t(16) << 20,
          "fetched record bytes per job held before fetchers wait (at least one page is always "
          "admitted)");
ABSL_FLAG(bool, resume, true, "resume the writer's unfinished jobs at start-up");
ABSL_FLAG(std::string, metrics_listen, "", "Prometheus /metrics address (host:port); empty = off");
ABSL_FLAG(std::string, http_listen, "",
          "web dashboard and its JSON API (host:port, e.g. 127.0.0.1:8088); empty = off");
ABSL_FLAG(std::string, http_port_file, "", "write the bound dashboard port here once serving");
ABSL_FLAG(
    std::string, http_auth_token_file, "",
    "file holding the API token that enables cancel/retry on the dashboard (the gRPC API's token); "
    "empty = read-only dashboard");
ABSL_FLAG(std::string, log_format, "",
          "log lines as text or json (env ETL_LOG_FORMAT; default text)");
ABSL_FLAG(std::string, log_level, "",
          "debug, info, warning or error (env ETL_LOG_LEVEL; default info)");
ABSL_FLAG(std::string, port_file, "", "write the bound gRPC port here once serving");

namespace {

// A token file's content without surrounding whitespace; the error names the path, never the
// content.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  token = std::string(absl::StripAsciiWhitespace(token));
  if (!in.good() && !in.eof())
    return absl::FailedPreconditionError(absl::StrCat("cannot read ", path));
  if (token.empty())
    return absl::FailedPreconditionError(absl::StrCat("token file ", path, " is missing or empty"));
  return token;
}

}  // namespace

int main(int argc, char** argv) {
  etl::TuneAllocatorForFlatMemory();
  etl::BlockTerminationSignals();
  etl::ParseFlags(argc, argv, "collector_server: fetches paginated APIs into writer_service");
  if (absl::Status s =
          etl::ConfigureLogging(absl::GetFlag(FLAGS_log_format), absl::GetFlag(FLAGS_log_level));
      !s.ok()) {
    etl::LogError(s.message());
    return 2;
  }
  etl::CollectorOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.writer_address = absl::GetFlag(FLAGS_writer);
  if (options.writer_address.empty())
    options.writer_address = etl::EnvOr("ETL_WRITER", "localhost:50052");
  options.max_concurrent_jobs = absl::GetFlag(FLAGS_max_concurrent_jobs);
  options.fetch_concurrency = absl::GetFlag(FLAGS_fetch_concurrency);
  options.max_message_bytes =
      size_t(std::max<int64_t>(1024, absl::GetFlag(FLAGS_max_message_bytes)));
  options.max_response_bytes =
      size_t(std::max<int64_t>(1024, absl::GetFlag(FLAGS_max_response_bytes)));
  options.max_buffered_bytes =
      size_t(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_buffered_bytes)));
  options.resume_unfinished = absl::GetFlag(FLAGS_resume);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.http_listen = absl::GetFlag(FLAGS_http_listen);
  if (const std::string token_file = absl::GetFlag(FLAGS_http_auth_token_file);
      !token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) {
      etl::LogError(token.status().message());
      return 2;
    }
    options.dashboard.auth_token = *std::move(token);
  }

  etl::SetThreadComponent("collector/main");
  auto server = etl::CollectorServer::Start(options);
  if (!server.ok()) {
    etl::LogError("collector_server: ", server.status().ToString());
    return 1;
  }
  // The dashboard's port first: a script that waited for the gRPC port finds both.
  etl::WritePortFile(absl::GetFlag(FLAGS_http_port_file), (*server)->dashboard_port());
  etl::WritePortFile(absl::GetFlag(FLAGS_port_file), (*server)->port());
  int sig = etl::WaitForTerminationSignal();
  etl::LogInfo("signal ", sig, ": shutting down (unfinished jobs stay resumable)");
  (*server)->Shutdown();
  return 0;
}
