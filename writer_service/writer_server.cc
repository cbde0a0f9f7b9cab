#include "writer_service/writer_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "writer_service/pg_sink.h"

namespace etl {

absl::StatusOr<std::unique_ptr<WriterServer>> WriterServer::Start(WriterServerOptions options,
                                                                  RecordSinkFactory sink_factory) {
  std::unique_ptr<WriterServer> s(new WriterServer(options));
  if (!sink_factory) {
    std::string conninfo = options.database_url;
    sink_factory = [conninfo]() -> std::unique_ptr<RecordSink> {
      PgRecordSink::Options o;
      o.conninfo = conninfo;
      return std::make_unique<PgRecordSink>(o);
    };
  }
  s->writer_ = std::make_unique<Writer>(options.writer, std::move(sink_factory));
  s->ledger_ = std::make_unique<LedgerStore>(LedgerStore::Options{options.database_url});
  WriterServiceImpl::Options so;
  so.max_page_bytes = options.max_page_bytes;
  so.max_message_bytes = options.max_message_bytes;
  so.database_url = options.database_url;
  s->service_ = std::make_unique<WriterServiceImpl>(s->writer_.get(), s->ledger_.get(), so);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ServerSecurityOptions security = options.security;
  security.peer_methods = {
      "/etl.v1.WriterService/Write",        "/etl.v1.WriterService/RegisterJob",
      "/etl.v1.WriterService/UpdateJob",    "/etl.v1.WriterService/RecordPageFailure",
      "/etl.v1.WriterService/GetJobLedger", "/etl.v1.WriterService/ListJobRecords"};
  auto credentials = BuildServerCredentials(security);
  if (!credentials.ok()) return credentials.status();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *credentials, &s->port_);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_streams_per_connection);
  // gRPC's own limit sits 1 MiB above ours so that most oversized messages get the service's clear
  // INVALID_ARGUMENT instead of a bare RESOURCE_EXHAUSTED.
  constexpr int kSlack = 1 << 20;
  builder.SetMaxReceiveMessageSize(options.max_message_bytes > INT32_MAX - kSlack
                                       ? INT32_MAX
                                       : options.max_message_bytes + kSlack);
  auto ms = [](absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); };
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ms(options.keepalive_min_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);  // 0 = never GOAWAY on pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms(options.keepalive_timeout));
  // A fixed HTTP/2 window (no BDP probing) keeps each stream's receive buffers small: the queue,
  // not the transport, is where pages wait.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  WriterServer* raw = s.get();
  {
    // Liveness: "" is SERVING from now on; readiness follows PostgreSQL.
    grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
    if (health != nullptr) health->SetServingStatus(true);
  }
  s->SetHealth(false);
  s->writer_->SetServingListener([raw](bool serving) { raw->SetHealth(serving); });
  s->writer_->Start();
  s->SetHealth(s->writer_->serving());
  if (!options.metrics_listen.empty()) {
    Writer* w = s->writer_.get();
    auto m = MetricsServer::Start(options.metrics_listen, [w] { return w->RenderMetrics(); });
    if (!m.ok()) return m.status();
    s->metrics_ = *std::move(m);
  }
  LogInfo("writer listening on port ", s->port_, " (queue ", options.writer.queue_records,
          " records / ", options.writer.queue_bytes, " bytes, batch ", options.writer.batch_records,
          " records / ", options.writer.batch_bytes, " bytes, ", options.writer.writer_threads,
          " writer threads)");
  return s;
}

WriterServer::~WriterServer() { Shutdown(); }

void WriterServer::SetHealth(bool serving) {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  // Only the service's readiness: "" stays SERVING while the process works (see the header).
  health->SetServingStatus("etl.v1.WriterService", serving);
}

void WriterServer::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  LogInfo("shutting down: draining");
  writer_->BeginDrain();
  SetHealth(false);
  // Open streams end when their pages are committed; idle ones are cancelled after the grace
  // period. If PostgreSQL stays away, the writer gives up after drain_timeout so this returns.
  absl::Mutex done_mu;
  bool done = false;
  std::thread stopper([&] {
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoSeconds(options_.shutdown_grace));
    absl::MutexLock l(&done_mu);
    done = true;
  });
  {
    absl::MutexLock l(&done_mu);
    auto finished = [&done] { return done; };
    if (!done_mu.AwaitWithTimeout(absl::Condition(&finished),
                                  options_.shutdown_grace + options_.drain_timeout)) {
      done_mu.Unlock();
      LogWarning("pages still uncommitted after the drain timeout; giving up on them");
      writer_->Stop(absl::ZeroDuration());
      done_mu.Lock();
    }
  }
  stopper.join();
  writer_->Stop(options_.drain_timeout);
  metrics_.reset();
  server_->Wait();
  LogInfo("writer stopped: ", writer_->counters().records_committed.load(), " records committed");
}

}  // namespace etl
