#include "collector_service/collector_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace etl {

absl::StatusOr<std::unique_ptr<CollectorServer>> CollectorServer::Start(
    CollectorOptions options, std::unique_ptr<HttpFetcher> fetcher) {
  std::unique_ptr<CollectorServer> s(new CollectorServer());
  s->options_ = options;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  // Reconnect quickly after a writer restart.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  auto channel = CreateSecureChannel(options.writer_address, options.writer_security, args);
  if (!channel.ok()) return channel.status();
  auto credentials = BuildServerCredentials(options.security);
  if (!credentials.ok()) return credentials.status();
  s->collector_ = std::make_unique<Collector>(options, *channel, std::move(fetcher));
  s->service_ = std::make_unique<CollectorServiceImpl>(s->collector_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  // Each WatchJob is a stream: one client connection cannot hold unboundedly many.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 64);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  if (!options.http_listen.empty()) {
    s->dashboard_backend_ =
        std::make_unique<CollectorDashboardBackend>(s->collector_.get(), *channel);
    DashboardOptions d = options.dashboard;
    d.listen = options.http_listen;
    auto dashboard = DashboardServer::Start(d, s->dashboard_backend_.get());
    if (!dashboard.ok()) return dashboard.status();
    s->dashboard_ = std::move(*dashboard);
  }
  if (!options.metrics_listen.empty()) {
    Collector* c = s->collector_.get();
    const DashboardServer* d = s->dashboard_.get();
    auto metrics = MetricsServer::Start(
        options.metrics_listen, [c, d] { return RenderCollectorMetrics(c->counters(), d); });
    if (!metrics.ok()) return metrics.status();
    s->metrics_ = std::move(*metrics);
  }
  s->collector_->Start();
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  LogInfo("collector serving on port ", s->port_, "; writer at ", options.writer_address);
  return s;
}

CollectorServer::~CollectorServer() { Shutdown(); }

void CollectorServer::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    // Jobs first, so open WatchJob streams see them stop; then the RPCs get a grace period.
    collector_->Shutdown();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
    server_->Wait();
  }
  metrics_.reset();
  dashboard_.reset();
  if (collector_) collector_->Shutdown();
}

}  // namespace etl
