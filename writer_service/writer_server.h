// WriterServer: writer_service assembled: the Writer engine, the ledger store, the gRPC server
// (WriterService + grpc.health.v1.Health + reflection) and the optional /metrics endpoint.
//
// Health: the overall service "" is SERVING while the process runs (liveness: restarting the writer
// would not bring PostgreSQL back); "etl.v1.WriterService" is SERVING only while PostgreSQL answers
// and the writer is not draining (readiness: send no streams here).
// main.cc only fills WriterServerOptions from flags and calls Start / Shutdown; tests run it
// in-process the same way.
//
// Thread-safe.
#ifndef ETL_WRITER_SERVICE_WRITER_SERVER_H_
#define ETL_WRITER_SERVICE_WRITER_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "common/metrics_server.h"
#include "writer_service/ledger_store.h"
#include "writer_service/writer.h"
#include "writer_service/writer_service.h"

namespace etl {

struct WriterServerOptions {
  std::string listen = "0.0.0.0:50052";  // gRPC address; port 0 = any free port.
  std::string database_url;              // libpq connection string/URL; "" = PG* environment.
  std::string metrics_listen;            // Prometheus endpoint (host:port); "" = off.
  // Largest RecordBatch accepted, and so the largest record: the collector's --max_message_bytes
  // must not exceed it (a record over it cannot travel; the collector dead-letters it). A bigger
  // message ends its stream with INVALID_ARGUMENT (up to 1 MiB over) or RESOURCE_EXHAUSTED (gRPC's
  // own limit beyond that): both permanent, never worth re-sending.
  int max_message_bytes = 64 << 20;
  int64_t max_page_bytes = 256 << 20;  // Largest page (all chunks) accepted; also the most one
                                       // stream holds of an unfinished page.
  // Server keepalive enforcement: clients (Envoy, Istio sidecars, the collector) may ping this
  // often, with or without calls in flight, without being sent GOAWAY "too_many_pings".
  absl::Duration keepalive_min_ping_interval = absl::Seconds(5);
  absl::Duration keepalive_time = absl::Seconds(30);     // Server pings an idle connection ...
  absl::Duration keepalive_timeout = absl::Seconds(10);  // ... and drops it if unanswered.
  absl::Duration shutdown_grace = absl::Seconds(10);     // Open streams get this long to end.
  absl::Duration drain_timeout = absl::Seconds(60);  // Then queued pages get this long to commit.
  WriterOptions writer;
  // TLS/mTLS and caller authorization; Write and the ledger RPCs are reserved to the collector's
  // identity whenever one is configured (see common/grpc_security.h). Default: plaintext, open.
  ServerSecurityOptions security;
  int max_streams_per_connection = 64;  // HTTP/2 concurrent streams one client connection may open.
};

class WriterServer {
 public:
  // Builds and starts everything. `sink_factory` defaults to PostgreSQL at options.database_url.
  static absl::StatusOr<std::unique_ptr<WriterServer>> Start(
      WriterServerOptions options, RecordSinkFactory sink_factory = nullptr);
  ~WriterServer();  // Shutdown().
  WriterServer(const WriterServer&) = delete;
  WriterServer& operator=(const WriterServer&) = delete;

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  Writer* writer() { return writer_.get(); }
  grpc::Server* grpc_server() { return server_.get(); }

  // Health NOT_SERVING, refuse new streams, finish open ones after their pages commit, commit the
  // queue, stop. Idempotent.
  void Shutdown();

 private:
  explicit WriterServer(WriterServerOptions options) : options_(std::move(options)) {}
  void SetHealth(bool serving);

  const WriterServerOptions options_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<LedgerStore> ledger_;
  std::unique_ptr<WriterServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_;
  int port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_WRITER_SERVER_H_
