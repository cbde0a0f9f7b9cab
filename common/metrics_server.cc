#include "common/metrics_server.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace etl {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                    RenderFn render) {
  size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", listen, "\" is not host:port"));
  }
  std::string host = listen.substr(0, colon);
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->server_ = std::make_unique<httplib::Server>();
  m->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4");
  });
  m->server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  if (port == 0) {
    m->port_ = m->server_->bind_to_any_port(host);
  } else {
    m->port_ = m->server_->bind_to_port(host, port) ? port : -1;
  }
  if (m->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind metrics endpoint on ", listen));
  }
  httplib::Server* srv = m->server_.get();
  m->thread_ = std::thread([srv] {
    SetThreadComponent("metrics");
    srv->listen_after_bind();
  });
  return m;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void AppendMetric(std::string* out, const std::string& name, const std::string& help,
                  const std::string& type, double value, const std::string& labels) {
  // Same formatting as ExpositionWriter (integers exact); `labels` is pre-rendered text.
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name);
  if (!labels.empty()) absl::StrAppend(out, "{", labels, "}");
  absl::StrAppend(out, " ", FormatSampleValue(value), "\n");
}

}  // namespace etl
