#include "collector_service/collector_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
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
  // Pings every 30 s, only while calls are open: above the writer's 5 s minimum and accepted by
  // Envoy and Istio sidecars (no too_many_pings GOAWAY); a dead writer is noticed in 40 s.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // A `dns:///writer:50052` address resolves to every writer pod behind a headless Service;
  // round_robin spreads the calls and streams over them (one address behaves as pick_first).
  args.SetLoadBalancingPolicyName("round_robin");
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
  // "" and the service's own name, so probes and meshes that ask either one see it serving.
  s->server_->GetHealthCheckService()->SetServingStatus(v1::CollectorService::service_full_name(),
                                                        true);
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
  // One deadline for everything: the process exits within shutdown_grace (plus joins).
  const absl::Time deadline = absl::Now() + options_.shutdown_grace;
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);  // "" and etl.v1.CollectorService.
    // Jobs first (they drain up to a fraction of the grace, then their writer calls are
    // cancelled), so open WatchJob streams see them stop; then the RPCs get what is left.
    const absl::Duration margin = std::min(absl::Seconds(1), options_.shutdown_grace / 5);
    collector_->Shutdown(deadline - margin);
    server_->Shutdown(absl::ToChronoTime(deadline));
    server_->Wait();
  }
  metrics_.reset();
  dashboard_.reset();
  if (collector_) collector_->Shutdown();
}

}  // namespace etl
