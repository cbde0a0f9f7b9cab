#include "collector_service/dashboard_server.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "collector_service/dashboard_assets.h"
#include "common/logging.h"

namespace etl {
namespace {

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::PARTIAL || s == v1::FAILED || s == v1::CANCELLED;
}

// Names that suggest a credential; their values are never shown.
bool SensitiveName(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(name);
  for (const char* word : {"auth", "token", "secret", "key", "password", "passwd", "cookie",
                           "session", "signature", "credential"}) {
    if (absl::StrContains(n, word)) return true;
  }
  return false;
}

int HttpCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 503;
    default:
      return 500;
  }
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out.append(buf);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(m, &out, o);
  if (!s.ok()) return absl::InternalError(absl::StrCat("cannot render JSON: ", s.ToString()));
  return out;
}

void SendJson(httplib::Response& res, int code, const std::string& body) {
  res.status = code;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body, "application/json");
}

void SendError(httplib::Response& res, const absl::Status& s) {
  SendJson(res, HttpCode(s), absl::StrCat("{\"error\":", JsonString(s.message()), "}"));
}

// A job as listed: the spec reduced to what identifies it, failed pages as a count.
v1::Job ListEntry(const v1::Job& job) {
  v1::Job e;
  e.set_job_id(job.job_id());
  e.set_state(job.state());
  *e.mutable_progress() = job.progress();
  e.set_error(job.error());
  e.set_table_name(job.table_name());
  e.set_created_at_unix_ms(job.created_at_unix_ms());
  e.set_finished_at_unix_ms(job.finished_at_unix_ms());
  e.mutable_spec()->set_cliente_id(job.spec().cliente_id());
  e.mutable_spec()->set_rota(job.spec().rota());
  return e;
}

// Constant-time equality (the time depends on the lengths only).
bool SameSecret(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// Page states, run-length encoded: [["committed",120],["in_flight",4],["pending",876]].
std::string PageMapJson(const v1::Job& job, const std::vector<int64_t>* committed, int64_t limit) {
  const v1::JobProgress& p = job.progress();
  std::set<int64_t> failed;
  for (const auto& f : job.failed_pages()) failed.insert(f.page_number());
  std::vector<std::pair<const char*, int64_t>> runs;
  auto add = [&runs](const char* state, int64_t n) {
    if (n <= 0) return;
    if (!runs.empty() && runs.back().first == state) {
      runs.back().second += n;
    } else {
      runs.emplace_back(state, n);
    }
  };
  static const char* const kCommitted = "committed";
  static const char* const kFailed = "failed";
  static const char* const kInFlight = "in_flight";
  static const char* const kPending = "pending";
  const bool live = !IsTerminal(job.state());
  int64_t total = p.pages_total();
  bool exact = committed != nullptr;
  if (exact) {
    std::set<int64_t> done(committed->begin(), committed->end());
    if (!done.empty()) total = std::max(total, *done.rbegin() + 1);
    if (!failed.empty()) total = std::max(total, *failed.rbegin() + 1);
    int64_t in_flight = live ? std::max<int64_t>(0, p.pages_done() - p.pages_committed()) : 0;
    total = std::max(total, int64_t(done.size() + failed.size()) + in_flight);
    total = std::min(total, limit);
    for (int64_t i = 0; i < total; ++i) {
      if (done.count(i)) {
        add(kCommitted, 1);
      } else if (failed.count(i)) {
        add(kFailed, 1);
      } else if (in_flight > 0) {
        add(kInFlight, 1);
        --in_flight;
      } else {
        add(kPending, 1);
      }
    }
  } else {
    int64_t in_flight = live ? std::max<int64_t>(0, p.pages_done() - p.pages_committed()) : 0;
    add(kCommitted, p.pages_committed());
    add(kFailed, p.pages_failed());
    add(kInFlight, in_flight);
    int64_t known = p.pages_committed() + p.pages_failed() + in_flight;
    total = std::max(total, known);
    add(kPending, total - known);
  }
  std::string out = absl::StrCat("{\"job_id\":", JsonString(job.job_id()), ",\"total\":", total,
                                 ",\"exact\":", exact ? "true" : "false", ",\"runs\":[");
  for (size_t i = 0; i < runs.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", "[\"", runs[i].first, "\",", runs[i].second, "]");
  }
  absl::StrAppend(&out, "]}");
  return out;
}

}  // namespace

v1::JobSpec RedactedSpec(const v1::JobSpec& spec) {
  v1::JobSpec out = spec;
  v1::AuthType type = spec.auth().type();
  out.clear_auth();
  out.mutable_auth()->set_type(type);
  for (auto& kv : *out.mutable_headers()) {
    if (SensitiveName(kv.key())) kv.set_value("[redacted]");
  }
  for (auto& kv : *out.mutable_query_params()) {
    if (SensitiveName(kv.key())) kv.set_value("[redacted]");
  }
  return out;
}

DashboardServer::DashboardServer(DashboardOptions options, DashboardBackend* backend)
    : options_(std::move(options)), backend_(backend) {}

absl::StatusOr<std::unique_ptr<DashboardServer>> DashboardServer::Start(DashboardOptions options,
                                                                        DashboardBackend* backend) {
  size_t colon = options.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("dashboard address \"", options.listen, "\" is not host:port"));
  }
  std::string host = options.listen.substr(0, colon);
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("dashboard address \"", options.listen,
                                                   "\" names no host (e.g. 127.0.0.1:8088)"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  std::unique_ptr<DashboardServer> d(new DashboardServer(std::move(options), backend));
  d->server_ = std::make_unique<httplib::Server>();
  d->server_->new_task_queue = [] { return new httplib::ThreadPool(4); };
  d->Routes();
  d->port_ = port == 0 ? d->server_->bind_to_any_port(host)
                       : (d->server_->bind_to_port(host, port) ? port : -1);
  if (d->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind the dashboard on ", d->options_.listen));
  }
  httplib::Server* srv = d->server_.get();
  d->thread_ = std::thread([srv] {
    SetThreadComponent("collector/dashboard");
    srv->listen_after_bind();
  });
  LogInfo("dashboard on http://", d->options_.listen.substr(0, colon), ":", d->port_, "/ (",
          d->options_.auth_token.empty() ? "read-only" : "cancel/retry with the API token", ")");
  return d;
}

DashboardServer::~DashboardServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

bool DashboardServer::Authorized(const std::string& header) const {
  if (options_.auth_token.empty()) return false;
  constexpr absl::string_view kBearer = "Bearer ";
  if (header.size() < kBearer.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kBearer.size()), kBearer)) {
    return false;
  }
  return SameSecret(absl::string_view(header).substr(kBearer.size()), options_.auth_token);
}

void DashboardServer::CountResponse(int code) {
  absl::MutexLock l(&mu_);
  auto it = std::lower_bound(responses_.begin(), responses_.end(), std::make_pair(code, int64_t{0}),
                             [](const auto& a, const auto& b) { return a.first < b.first; });
  if (it != responses_.end() && it->first == code) {
    ++it->second;
  } else {
    responses_.insert(it, {code, 1});
  }
}

void DashboardServer::RenderMetrics(ExpositionWriter* out) const {
  const char* name = "etl_collector_dashboard_http_responses_total";
  out->Family(name, "counter", "Dashboard HTTP responses by status code.");
  absl::MutexLock l(&mu_);
  if (responses_.empty()) out->Sample(name, {{"code", "200"}}, int64_t{0});
  for (const auto& [code, n] : responses_) out->Sample(name, {{"code", absl::StrCat(code)}}, n);
}

void DashboardServer::Routes() {
  httplib::Server& s = *server_;
  // Runs for every response (404s included) before it is written, so a client that saw the
  // response also sees it counted.
  s.set_post_routing_handler(
      [this](const httplib::Request&, httplib::Response& res) { CountResponse(res.status); });
  s.set_default_headers(
      {{"X-Content-Type-Options", "nosniff"},
       {"X-Frame-Options", "DENY"},
       {"Referrer-Policy", "no-referrer"},
       {"Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"}});

  for (size_t i = 0; i < kDashboardAssetCount; ++i) {
    const DashboardAsset* a = &kDashboardAssets[i];
    auto serve = [a](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-cache");
      res.set_content(reinterpret_cast<const char*>(a->data), a->size, a->content_type);
    };
    s.Get(a->path, serve);
    if (std::string(a->path) == "/index.html") s.Get("/", serve);
  }
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });

  s.Get("/api/info", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200,
             absl::StrCat("{\"read_only\":", options_.auth_token.empty() ? "true" : "false",
                          ",\"version\":", JsonString(BuildVersion()),
                          ",\"revision\":", JsonString(BuildRevision()), "}"));
  });

  s.Get("/api/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    std::string state = absl::AsciiStrToUpper(req.get_param_value("state"));
    std::string cliente = req.get_param_value("cliente");
    int limit = 50, offset = 0;
    if (req.has_param("limit") &&
        (!absl::SimpleAtoi(req.get_param_value("limit"), &limit) || limit < 1)) {
      return SendError(res, absl::InvalidArgumentError("limit must be a positive integer"));
    }
    if (req.has_param("offset") &&
        (!absl::SimpleAtoi(req.get_param_value("offset"), &offset) || offset < 0)) {
      return SendError(res, absl::InvalidArgumentError("offset must be a non-negative integer"));
    }
    limit = std::min(limit, options_.max_page_size);
    v1::JobState wanted = v1::JOB_STATE_UNSPECIFIED;
    if (!state.empty() && state != "ALL" && state != "UNFINISHED" &&
        !v1::JobState_Parse(state, &wanted)) {
      return SendError(res,
                       absl::InvalidArgumentError(absl::StrCat("unknown state \"", state, "\"")));
    }
    absl::StatusOr<std::vector<v1::Job>> jobs = backend_->ListJobs(options_.max_jobs_scanned);
    if (!jobs.ok()) return SendError(res, jobs.status());
    std::vector<const v1::Job*> matching;
    for (const v1::Job& j : *jobs) {
      if (state == "UNFINISHED" && IsTerminal(j.state())) continue;
      if (wanted != v1::JOB_STATE_UNSPECIFIED && j.state() != wanted) continue;
      if (!cliente.empty() && j.spec().cliente_id() != cliente) continue;
      matching.push_back(&j);
    }
    std::sort(matching.begin(), matching.end(), [](const v1::Job* a, const v1::Job* b) {
      return a->created_at_unix_ms() != b->created_at_unix_ms()
                 ? a->created_at_unix_ms() > b->created_at_unix_ms()
                 : a->job_id() < b->job_id();
    });
    std::string body = absl::StrCat("{\"total\":", matching.size(), ",\"offset\":", offset,
                                    ",\"limit\":", limit, ",\"jobs\":[");
    bool first = true;
    for (size_t i = size_t(offset); i < matching.size() && i < size_t(offset) + size_t(limit);
         ++i) {
      absl::StatusOr<std::string> j = ToJson(ListEntry(*matching[i]));
      if (!j.ok()) continue;
      absl::StrAppend(&body, first ? "" : ",", *j);
      first = false;
    }
    absl::StrAppend(&body, "]}");
    SendJson(res, 200, body);
  });

  constexpr char kJobPath[] = R"(/api/jobs/([A-Za-z0-9_.-]{1,128}))";
  s.Get(kJobPath, [this](const httplib::Request& req, httplib::Response& res) {
    absl::StatusOr<v1::Job> job = backend_->GetJob(req.matches[1]);
    if (!job.ok()) return SendError(res, job.status());
    *job->mutable_spec() = RedactedSpec(job->spec());
    absl::StatusOr<std::string> body = ToJson(*job);
    if (!body.ok()) return SendError(res, body.status());
    SendJson(res, 200, *body);
  });

  s.Get(std::string(kJobPath) + "/pages",
        [this](const httplib::Request& req, httplib::Response& res) {
          absl::StatusOr<v1::Job> job = backend_->GetJob(req.matches[1]);
          if (!job.ok()) return SendError(res, job.status());
          const v1::JobProgress& p = job->progress();
          std::vector<int64_t> committed;
          bool exact = false;
          if (std::max(p.pages_total(), p.pages_committed()) <= options_.max_page_map_pages) {
            absl::StatusOr<std::vector<int64_t>> pages = backend_->CommittedPages(job->job_id());
            if (pages.ok()) {
              committed = std::move(*pages);
              exact = true;
            }
          }
          SendJson(res, 200,
                   PageMapJson(*job, exact ? &committed : nullptr, options_.max_page_map_pages));
        });

  s.Get("/api/writer", [this](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<v1::WriterStatus> w = backend_->WriterStatus();
    if (!w.ok()) return SendError(res, w.status());
    w->clear_jobs();  // Per-job counters are shown on the job pages.
    absl::StatusOr<std::string> body = ToJson(*w);
    if (!body.ok()) return SendError(res, body.status());
    SendJson(res, 200, *body);
  });

  auto action = [this](bool cancel) {
    return [this, cancel](const httplib::Request& req, httplib::Response& res) {
      if (options_.auth_token.empty()) {
        return SendError(
            res, absl::PermissionDeniedError(
                     "the dashboard is read-only: start the collector with the API token to "
                     "cancel or retry from here"));
      }
      if (!Authorized(req.get_header_value("Authorization"))) {
        return SendError(res, absl::UnauthenticatedError("a valid API token is required"));
      }
      const std::string id = req.matches[1];
      LogInfo("dashboard: ", cancel ? "cancel" : "retry", " of job ", id, " requested");
      absl::StatusOr<v1::Job> job = cancel ? backend_->CancelJob(id) : backend_->RetryJob(id);
      if (!job.ok()) return SendError(res, job.status());
      *job->mutable_spec() = RedactedSpec(job->spec());
      absl::StatusOr<std::string> body = ToJson(*job);
      if (!body.ok()) return SendError(res, body.status());
      SendJson(res, 200, *body);
    };
  };
  s.Post(std::string(kJobPath) + "/cancel", action(true));
  s.Post(std::string(kJobPath) + "/retry", action(false));

  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(absl::StrCat("{\"error\":\"HTTP ", res.status, "\"}"), "application/json");
    }
  });
}

}  // namespace etl
