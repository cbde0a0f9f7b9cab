// etl_health_probe: gRPC health check client (grpc.health.v1) for Docker/Kubernetes probes and
// scripts. Exit status 0 iff the server answers SERVING for the service; 1 otherwise (NOT_SERVING,
// unreachable, deadline exceeded, unknown service); 64 on usage errors.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "common/flags.h"
#include "common/grpc_security.h"
#include "grpc/health/v1/health.grpc.pb.h"

ABSL_FLAG(std::string, addr, "", "server address host:port (or the first positional argument)");
ABSL_FLAG(std::string, service, "", "service name to check; empty = the server as a whole");
ABSL_FLAG(double, timeout, 2, "seconds to wait for the answer, connecting included");
ABSL_FLAG(bool, quiet, false, "print nothing");
ABSL_FLAG(std::string, tls_ca, "",
          "TLS: CA certificate (PEM) of the server's certificate; empty = plaintext");
ABSL_FLAG(std::string, tls_cert, "",
          "TLS: client certificate (PEM) for servers requiring one (mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "TLS: private key of --tls-cert");
ABSL_FLAG(std::string, tls_server_name, "", "TLS: name expected in the server certificate");

int main(int argc, char** argv) {
  // --help lists the flags of this file (absl's default looks for <program>.cc /
  // <program>_main.cc).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "cli/health_probe_main.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  std::vector<std::string> positional =
      etl::ParseFlags(argc, argv,
                      "etl_health_probe [--addr=]host:port [--service=NAME] [--timeout=2]\n"
                      "Exit 0 iff the gRPC health service reports SERVING.");
  std::string addr = absl::GetFlag(FLAGS_addr);
  if (addr.empty() && positional.size() == 2) addr = positional[1];
  if (addr.empty() || positional.size() > 2) {
    std::cerr << "usage: etl_health_probe [--addr=]host:port [--service=NAME] [--timeout=SECONDS]"
              << std::endl;
    return 64;
  }
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  etl::ChannelSecurityOptions security;
  security.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  security.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  security.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  auto channel = etl::CreateSecureChannel(addr, security);
  if (!channel.ok()) {
    std::cerr << "etl_health_probe: " << channel.status().message() << std::endl;
    return 64;
  }
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_timeout) * 1000)));
  ctx.set_wait_for_ready(true);  // Wait (up to the deadline) for a server that is still starting.
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) {
    if (!quiet) std::cerr << addr << ": health check failed: " << st.error_message() << std::endl;
    return 1;
  }
  const bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  if (!quiet) {
    std::cout << addr << ": "
              << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status())
              << std::endl;
  }
  return serving ? 0 : 1;
}
