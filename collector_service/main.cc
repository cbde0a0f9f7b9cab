// collector_server: serves etl.v1.CollectorService; fetches paginated HTTP/JSON APIs and streams
// their records to writer_service.
#include <csignal>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "collector_service/collector_server.h"
#include "collector_service/credentials.h"
#include "common/flags.h"
#include "common/logging.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address (port 0 = any free port)");
ABSL_FLAG(std::string, writer, "",
          "writer_service address (env ETL_WRITER; default localhost:50052)");
ABSL_FLAG(int32_t, max_concurrent_jobs, 8, "jobs fetching at once; others wait PENDING");
ABSL_FLAG(int32_t, fetch_concurrency, 4,
          "default most parallel page fetches per job when the page count is known (a job adapts "
          "within 1..this unless --adaptive_fetch_concurrency=false or its spec says fixed)");
ABSL_FLAG(bool, adaptive_fetch_concurrency, true,
          "jobs adapt their parallel fetches: one more per round of fast answers while the writer "
          "has room, halved on HTTP 429/503 or rising latency");
ABSL_FLAG(int32_t, max_fetches_in_flight, 6,
          "page fetches in flight (request, body, parse) across all jobs; bounds fetch memory");
ABSL_FLAG(int64_t, max_message_bytes, 1 << 20,
          "record bytes per RecordBatch message before a page is chunked");
ABSL_FLAG(int64_t, writer_max_message_bytes, int64_t(64) << 20,
          "the writer's --max_message_bytes (keep both equal): a record that cannot fit in one "
          "message goes to the dead letters with the reason instead of breaking the stream");
ABSL_FLAG(int64_t, max_response_bytes, int64_t(8) << 20,
          "largest API response body accepted, counted after decompression (a page being parsed "
          "takes about 6x this)");
ABSL_FLAG(int64_t, max_buffered_bytes, int64_t(16) << 20,
          "fetched record bytes per job held before fetchers wait (at least one page is always "
          "admitted)");
ABSL_FLAG(int64_t, max_stream_bytes, int64_t(64) << 20,
          "record bytes per Write stream; then it is closed (after its commit summary) and the "
          "next one opened");
ABSL_FLAG(int32_t, max_stream_seconds, 60, "longest life of one Write stream, in seconds");
ABSL_FLAG(bool, resume, true,
          "claim any unfinished job of the ledger (false: only the jobs started through this "
          "collector)");
ABSL_FLAG(std::string, replica_id, "",
          "this collector's owner id in the job leases; default hostname-pid-random");
ABSL_FLAG(bool, send_replica_header, false,
          "send the replica id to the APIs as the X-Etl-Replica header of every request");
ABSL_FLAG(double, lease_seconds, 10,
          "a job's lease lasts this long without renewal; then another collector may claim it");
ABSL_FLAG(double, lease_renew_seconds, 2,
          "leases are renewed (and progress published) this often; at most every second");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address: \":port\" binds loopback, host:port binds that host; empty "
          "= off");
ABSL_FLAG(std::string, credentials, "",
          "operator credentials file (JSON: name -> type, env or file, hosts); reloaded on SIGHUP");
ABSL_FLAG(bool, allow_spec_secret_paths, false,
          "let job specs name an environment variable or file of this host as their secret "
          "(single-user setups only)");
ABSL_FLAG(
    std::string, allowed_hosts, "",
    "comma-separated host patterns (host or *.domain) every API request and redirect must match; "
    "empty = any public host");
ABSL_FLAG(bool, allow_private_networks, false,
          "allow API addresses on loopback, private, link-local, CGNAT... networks (tests, demos, "
          "single-host setups)");
ABSL_FLAG(std::string, allowed_private_addresses, "",
          "comma-separated internal IP addresses allowed anyway (e.g. one API at 10.0.0.5)");
ABSL_FLAG(int32_t, max_pending_jobs, 1000, "jobs waiting PENDING at once; more are refused");
ABSL_FLAG(int32_t, ledger_retry_max_backoff_ms, 30000,
          "longest wait between two attempts of a queued ledger write (job state, failed page)");
ABSL_FLAG(int32_t, ledger_retry_give_up_hours, 24,
          "a queued ledger write the writer has not taken after this long is abandoned");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for gRPC TLS (with --tls-key); empty = plaintext");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "require client certificates signed by this CA (mutual TLS)");
ABSL_FLAG(std::string, auth_token_file, "",
          "file with the bearer token every caller must send (needs TLS)");
ABSL_FLAG(std::string, writer_tls_ca, "",
          "TLS to the writer: CA of its certificate; empty = plaintext");
ABSL_FLAG(std::string, writer_tls_cert, "", "client certificate (PEM) presented to the writer");
ABSL_FLAG(std::string, writer_tls_key, "", "private key of --writer-tls-cert");
ABSL_FLAG(std::string, writer_tls_server_name, "", "name expected in the writer's certificate");
ABSL_FLAG(std::string, writer_token_file, "", "file with the collector's token for the writer");
ABSL_FLAG(std::string, http_listen, "",
          "web dashboard and its JSON API: \":port\" binds loopback, host:port binds that host; "
          "empty = off");
ABSL_FLAG(std::string, http_port_file, "", "write the bound dashboard port here once serving");
ABSL_FLAG(
    std::string, http_auth_token_file, "",
    "file holding the API token that enables cancel/retry on the dashboard; default: the gRPC "
    "API's --auth-token-file; neither = read-only dashboard");
ABSL_FLAG(std::string, log_format, "",
          "log lines as text or json (env ETL_LOG_FORMAT; default text)");
ABSL_FLAG(std::string, log_level, "",
          "debug, info, warning or error (env ETL_LOG_LEVEL; default info)");
ABSL_FLAG(std::string, port_file, "", "write the bound gRPC port here once serving");
ABSL_FLAG(int32_t, max_restarts_without_progress, 8,
          "a job's Write-stream restarts in a row that commit no new page before it ends FAILED "
          "with the last error");
ABSL_FLAG(int32_t, max_stall_seconds, 600,
          "a RUNNING job with no page fetched or committed for this long ends FAILED");
ABSL_FLAG(double, cancel_grace_seconds, 5,
          "CancelJob: the job's Write stream gets this long to end, then it is cancelled (a hung "
          "writer cannot hold a cancel)");
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "SIGTERM: jobs drain and RPCs end within this, then every writer call is cancelled and "
          "the process exits; stopped jobs stay resumable");

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
  // Typical pages (bodies, parsed batches and their gRPC messages of up to 1 MiB) reuse arena
  // memory instead of faulting in fresh pages for each page, which cost a third of the collector's
  // CPU; one arena keeps what stays resident with 8 jobs within the same bound as before.
  etl::TuneAllocatorForFlatMemory(/*mmap_threshold_bytes=*/1 << 20,
                                  /*trim_threshold_bytes=*/1 << 20, /*arenas=*/1);
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
  options.adaptive_fetch_concurrency = absl::GetFlag(FLAGS_adaptive_fetch_concurrency);
  options.max_fetches_in_flight = std::max(1, absl::GetFlag(FLAGS_max_fetches_in_flight));
  options.max_message_bytes =
      size_t(std::max<int64_t>(1024, absl::GetFlag(FLAGS_max_message_bytes)));
  options.max_response_bytes =
      size_t(std::max<int64_t>(1024, absl::GetFlag(FLAGS_max_response_bytes)));
  options.writer_max_message_bytes =
      size_t(std::max<int64_t>(int64_t(1) << 16, absl::GetFlag(FLAGS_writer_max_message_bytes)));
  options.max_buffered_bytes =
      size_t(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_buffered_bytes)));
  options.max_stream_bytes = std::max<int64_t>(1, absl::GetFlag(FLAGS_max_stream_bytes));
  options.max_stream_duration =
      absl::Seconds(std::max<int32_t>(1, absl::GetFlag(FLAGS_max_stream_seconds)));
  options.resume_unfinished = absl::GetFlag(FLAGS_resume);
  options.max_restarts_without_progress =
      std::max<int32_t>(0, absl::GetFlag(FLAGS_max_restarts_without_progress));
  options.max_stall = absl::Seconds(std::max<int32_t>(1, absl::GetFlag(FLAGS_max_stall_seconds)));
  options.cancel_grace = absl::Seconds(std::max(0.0, absl::GetFlag(FLAGS_cancel_grace_seconds)));
  options.shutdown_grace =
      absl::Seconds(std::max(0.1, absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  options.intents.max_backoff =
      absl::Milliseconds(std::max<int32_t>(10, absl::GetFlag(FLAGS_ledger_retry_max_backoff_ms)));
  options.intents.give_up_after =
      absl::Hours(std::max<int32_t>(1, absl::GetFlag(FLAGS_ledger_retry_give_up_hours)));
  options.replica_id = absl::GetFlag(FLAGS_replica_id);
  // It names this collector in the ledger and, with --send-replica-header, in an HTTP header.
  if (options.replica_id.size() > 200 ||
      options.replica_id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                           "0123456789._:@-") != std::string::npos) {
    etl::LogError("--replica-id: at most 200 characters of [A-Za-z0-9._:@-]");
    return 2;
  }
  options.send_replica_header = absl::GetFlag(FLAGS_send_replica_header);
  const double lease_seconds = absl::GetFlag(FLAGS_lease_seconds);  // NaN and below 1 s: 1 s.
  options.lease_duration =
      absl::Seconds(lease_seconds >= 1 ? std::min(lease_seconds, 86400.0) : 1.0);
  options.lease_renew_interval =
      absl::Seconds(std::max(0.1, absl::GetFlag(FLAGS_lease_renew_seconds)));
  if (options.lease_renew_interval * 2 > options.lease_duration) {
    etl::LogError("--lease-renew-seconds must be at most half of --lease-seconds");
    return 2;
  }
  options.metrics_listen = etl::LoopbackByDefault(absl::GetFlag(FLAGS_metrics_listen));
  const std::string credentials_file = absl::GetFlag(FLAGS_credentials);
  if (!credentials_file.empty()) {
    auto store = etl::CredentialStore::Load(credentials_file);
    if (!store.ok()) {
      etl::LogError("collector_server: ", store.status().ToString());
      return 1;
    }
    options.credentials = std::move(*store);
  }
  options.allow_spec_secret_paths = absl::GetFlag(FLAGS_allow_spec_secret_paths);
  options.fetcher.allowed_hosts = etl::SplitList(absl::GetFlag(FLAGS_allowed_hosts));
  for (const std::string& pattern : options.fetcher.allowed_hosts) {
    if (absl::Status valid = etl::ValidateHostPattern(pattern); !valid.ok()) {
      etl::LogError("collector_server: --allowed-hosts: ", valid.message());
      return 1;
    }
  }
  options.fetcher.allow_private_networks = absl::GetFlag(FLAGS_allow_private_networks);
  options.fetcher.allowed_private_addresses =
      etl::SplitList(absl::GetFlag(FLAGS_allowed_private_addresses));
  options.max_pending_jobs = absl::GetFlag(FLAGS_max_pending_jobs);
  options.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.security.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.security.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.security.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  options.writer_security.tls_ca_file = absl::GetFlag(FLAGS_writer_tls_ca);
  options.writer_security.tls_cert_file = absl::GetFlag(FLAGS_writer_tls_cert);
  options.writer_security.tls_key_file = absl::GetFlag(FLAGS_writer_tls_key);
  options.writer_security.tls_server_name = absl::GetFlag(FLAGS_writer_tls_server_name);
  options.writer_security.token_file = absl::GetFlag(FLAGS_writer_token_file);
  options.http_listen = etl::LoopbackByDefault(absl::GetFlag(FLAGS_http_listen));
  // The dashboard's actions need the gRPC API's own token unless it is given one of its own.
  std::string dashboard_token_file = absl::GetFlag(FLAGS_http_auth_token_file);
  if (dashboard_token_file.empty()) dashboard_token_file = options.security.auth_token_file;
  if (const std::string& token_file = dashboard_token_file; !token_file.empty()) {
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
  int sig = 0;
  while ((sig = etl::WaitForTerminationOrReloadSignal()) == SIGHUP) {
    if (!options.credentials) {
      etl::LogWarning("SIGHUP: no --credentials file to reload");
      continue;
    }
    absl::Status reloaded = options.credentials->Reload();
    if (reloaded.ok()) {
      etl::LogInfo("SIGHUP: credentials reloaded (", options.credentials->Names().size(),
                   " declared)");
    } else {
      etl::LogWarning("SIGHUP: credentials not reloaded, the previous ones stay: ",
                      reloaded.message());
    }
  }
  etl::LogInfo("signal ", sig, ": shutting down (unfinished jobs stay resumable)");
  (*server)->Shutdown();
  return 0;
}
