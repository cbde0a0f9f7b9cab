// writer_server: receives pages of records over gRPC and commits them into PostgreSQL.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/logging.h"
#include "writer_service/writer_server.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50052", "gRPC listen address (port 0 = any free port)");
ABSL_FLAG(
    std::string, database_url, "",
    "PostgreSQL connection URL or conninfo; default $DATABASE_URL, else libpq's PG* environment");
ABSL_FLAG(int64_t, queue_records, 100000, "queue bound in records (whole pages)");
ABSL_FLAG(int64_t, queue_bytes, 6 << 20,
          "queue bound in record bytes; keep it >= writer_threads x batch_bytes so that a thread "
          "finishing its commit finds a whole batch waiting");
ABSL_FLAG(int64_t, batch_records, 20000, "records per transaction at most (whole pages)");
ABSL_FLAG(int64_t, batch_bytes, 2 << 20,
          "record bytes per transaction at most (whole pages); each commit waits for its WAL to "
          "reach disk, so fewer, larger transactions");
ABSL_FLAG(int64_t, flush_interval_ms, 200, "a partial batch is committed after this many ms");
ABSL_FLAG(int32_t, writer_threads, 3,
          "threads (connections) committing batches in parallel: while one waits for its commit "
          "to flush or prepares its next batch, the others COPY");
ABSL_FLAG(int32_t, max_message_bytes, 64 << 20,
          "largest RecordBatch accepted, hence the largest record the pipeline carries (the "
          "collector's --max_message_bytes must not exceed it); a bigger message ends its stream "
          "with INVALID_ARGUMENT (or gRPC's "
          "RESOURCE_EXHAUSTED past 1 MiB over), a permanent error");
ABSL_FLAG(int64_t, max_page_bytes, 256 << 20,
          "largest page (all its chunks) accepted; also the most one stream holds of an unfinished "
          "page (partial pages count against --queue_bytes; one at a time may exceed it)");
ABSL_FLAG(int32_t, max_commit_attempts, 5,
          "attempts of a batch after a serialization failure, deadlock or lock timeout");
ABSL_FLAG(int64_t, max_unavailable_ms, 600000,
          "a batch waits this long for PostgreSQL to come back, then its pages fail");
ABSL_FLAG(int64_t, health_check_interval_ms, 2000,
          "an idle writer checks PostgreSQL this often (health of etl.v1.WriterService); 0 = off");
ABSL_FLAG(int64_t, keepalive_min_ping_interval_ms, 5000,
          "clients (Envoy, Istio, the collector) may send HTTP/2 keepalive pings this often, with "
          "or without calls in flight");
ABSL_FLAG(int64_t, keepalive_time_ms, 30000, "the server pings an idle connection this often");
ABSL_FLAG(int64_t, keepalive_timeout_ms, 10000,
          "and closes it when a ping is unanswered this long");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address: \":port\" binds loopback, host:port binds that host; empty "
          "= off");
ABSL_FLAG(int32_t, max_streams_per_connection, 64,
          "concurrent RPC streams one client connection may open");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for gRPC TLS (with --tls-key); empty = plaintext");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "require client certificates signed by this CA (mutual TLS)");
ABSL_FLAG(std::string, auth_token_file, "",
          "file with the bearer token every caller must send (needs TLS)");
ABSL_FLAG(std::string, collector_token_file, "",
          "file with the token identifying the collector: Write and the ledger RPCs need it (or "
          "--collector-identity)");
ABSL_FLAG(std::string, collector_identity, "",
          "comma-separated client-certificate names (CN/SAN) identifying the collector (needs "
          "--tls-client-ca)");
ABSL_FLAG(std::string, log_format, "",
          "log lines as text or json (env ETL_LOG_FORMAT; default text)");
ABSL_FLAG(std::string, log_level, "",
          "debug, info, warning or error (env ETL_LOG_LEVEL; default info)");
ABSL_FLAG(std::string, port_file, "", "write the bound gRPC port here once serving");
ABSL_FLAG(int64_t, shutdown_grace_ms, 10000, "on SIGTERM, open streams get this long to end");
ABSL_FLAG(int64_t, drain_timeout_ms, 60000, "on SIGTERM, queued pages get this long to commit");

int main(int argc, char** argv) {
  etl::TuneAllocatorForFlatMemory();
  etl::BlockTerminationSignals();
  etl::ParseFlags(argc, argv,
                  "writer_server: commits records streamed over gRPC (etl.v1.WriterService) into "
                  "PostgreSQL");
  etl::SetThreadComponent("writer/main");
  if (absl::Status s =
          etl::ConfigureLogging(absl::GetFlag(FLAGS_log_format), absl::GetFlag(FLAGS_log_level));
      !s.ok()) {
    etl::LogError(s.message());
    return 2;
  }

  etl::WriterServerOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.database_url = absl::GetFlag(FLAGS_database_url);
  if (o.database_url.empty()) o.database_url = etl::EnvOr("DATABASE_URL", "");
  o.metrics_listen = etl::LoopbackByDefault(absl::GetFlag(FLAGS_metrics_listen));
  o.max_streams_per_connection = std::max(1, absl::GetFlag(FLAGS_max_streams_per_connection));
  o.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.security.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.security.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.security.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.security.peer_token_file = absl::GetFlag(FLAGS_collector_token_file);
  o.security.peer_names = etl::SplitList(absl::GetFlag(FLAGS_collector_identity));
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.max_page_bytes = absl::GetFlag(FLAGS_max_page_bytes);
  o.shutdown_grace = absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms));
  o.drain_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_drain_timeout_ms));
  o.writer.queue_records = absl::GetFlag(FLAGS_queue_records);
  o.writer.queue_bytes = absl::GetFlag(FLAGS_queue_bytes);
  o.writer.batch_records = absl::GetFlag(FLAGS_batch_records);
  o.writer.batch_bytes = absl::GetFlag(FLAGS_batch_bytes);
  o.writer.flush_interval = absl::Milliseconds(absl::GetFlag(FLAGS_flush_interval_ms));
  o.writer.writer_threads = absl::GetFlag(FLAGS_writer_threads);
  o.writer.max_commit_attempts = absl::GetFlag(FLAGS_max_commit_attempts);
  o.writer.max_unavailable = absl::Milliseconds(absl::GetFlag(FLAGS_max_unavailable_ms));
  o.writer.health_check_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_health_check_interval_ms));
  o.keepalive_min_ping_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_keepalive_min_ping_interval_ms));
  o.keepalive_time = absl::Milliseconds(absl::GetFlag(FLAGS_keepalive_time_ms));
  o.keepalive_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_keepalive_timeout_ms));
  if (o.writer.queue_records <= 0 || o.writer.queue_bytes <= 0 || o.writer.batch_records <= 0 ||
      o.writer.batch_bytes <= 0 || o.writer.writer_threads <= 0 || o.max_message_bytes <= 0 ||
      o.max_page_bytes <= 0 || o.writer.max_commit_attempts <= 0) {
    etl::LogError("queue, batch, thread and message sizes must be positive");
    return 2;
  }

  auto server = etl::WriterServer::Start(o);
  if (!server.ok()) {
    etl::LogError("cannot start: ", server.status().ToString());
    return 1;
  }
  etl::WritePortFile(absl::GetFlag(FLAGS_port_file), (*server)->port());
  int sig = etl::WaitForTerminationSignal();
  etl::LogInfo("signal ", sig, " received");
  (*server)->Shutdown();
  return 0;
}
