#include "deploy/sample_api/sample_api_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "deploy/sample_api/records.h"

namespace etl::sample_api {
namespace {

constexpr absl::string_view kStyles[] = {"page", "offset", "cursor", "link", "next_url", "none"};

// Query parameters that position a page; everything else is carried into next/Link URLs.
bool IsPositionParam(absl::string_view k) {
  return k == "page" || k == "offset" || k == "cursor" || k == "limit" || k == "page_size";
}

std::string PercentEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string Param(const httplib::Request& req, const char* name, absl::string_view fallback = "") {
  return req.has_param(name) ? req.get_param_value(name) : std::string(fallback);
}

// Integer query parameter; false (and a message) when present but malformed or below `min`.
bool IntParam(const httplib::Request& req, const char* name, int64_t fallback, int64_t min,
              int64_t* out, std::string* error) {
  *out = fallback;
  if (!req.has_param(name)) return true;
  std::string v = req.get_param_value(name);
  if (!absl::SimpleAtoi(v, out) || *out < min) {
    *error = absl::StrCat("query parameter ", name, "=\"", v, "\" must be an integer >= ", min);
    return false;
  }
  return true;
}

// "3", "2,5", "4-6", "all": does the set contain `page`?
bool PageSetContains(absl::string_view set, int64_t page) {
  if (set.empty()) return false;
  for (absl::string_view part : absl::StrSplit(set, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    if (part == "all" || part == "*") return true;
    size_t dash = part.find('-');
    int64_t lo = 0, hi = 0;
    if (dash != absl::string_view::npos) {
      if (absl::SimpleAtoi(part.substr(0, dash), &lo) &&
          absl::SimpleAtoi(part.substr(dash + 1), &hi) && page >= lo && page <= hi) {
        return true;
      }
    } else if (absl::SimpleAtoi(part, &lo) && lo == page) {
      return true;
    }
  }
  return false;
}

void JsonError(httplib::Response& res, int status, absl::string_view message) {
  res.status = status;
  std::string body = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') body.push_back('\\');
    if (static_cast<unsigned char>(c) >= 0x20) body.push_back(c);
  }
  body += "\"}";
  res.set_content(body, "application/json; charset=utf-8");
}

// Opaque cursor: offset, page size and a check value, so a mangled cursor is refused with 400.
uint32_t CursorCheck(absl::string_view collection, int64_t offset, int64_t size) {
  uint32_t h = 2166136261u;
  std::string s = absl::StrCat(collection, "#", offset, "#", size);
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}
std::string EncodeCursor(absl::string_view collection, int64_t offset, int64_t size) {
  return absl::StrCat("c1.", absl::Hex(offset), ".", absl::Hex(size), ".",
                      absl::Hex(CursorCheck(collection, offset, size)));
}
bool DecodeCursor(absl::string_view collection, absl::string_view token, int64_t* offset,
                  int64_t* size) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  uint64_t o = 0, s = 0, c = 0;
  if (parts.size() != 4 || parts[0] != "c1" || !absl::SimpleHexAtoi(parts[1], &o) ||
      !absl::SimpleHexAtoi(parts[2], &s) || !absl::SimpleHexAtoi(parts[3], &c) || s == 0) {
    return false;
  }
  *offset = static_cast<int64_t>(o);
  *size = static_cast<int64_t>(s);
  return CursorCheck(collection, *offset, *size) == c;
}

}  // namespace

SampleApiServer::SampleApiServer(const SampleApiOptions& options) : options_(options) {}

SampleApiServer::~SampleApiServer() {
  Stop();
  if (request_log_ != nullptr) std::fclose(request_log_);
}

std::string SampleApiServer::base_url() const {
  std::string host = host_ == "0.0.0.0" || host_.empty() ? "127.0.0.1" : host_;
  return absl::StrCat("http://", host, ":", port_);
}

void SampleApiServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<SampleApiServer>> SampleApiServer::Start(
    const SampleApiOptions& options) {
  size_t colon = options.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", options.listen, "\" is not host:port"));
  }
  std::unique_ptr<SampleApiServer> s(new SampleApiServer(options));
  if (!options.request_log.empty()) {
    s->request_log_ = std::fopen(options.request_log.c_str(), "a");
    if (s->request_log_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open the request log ", options.request_log));
    }
  }
  s->host_ = options.listen.substr(0, colon);
  if (s->host_.size() >= 2 && s->host_.front() == '[')
    s->host_ = s->host_.substr(1, s->host_.size() - 2);
  s->server_ = std::make_unique<httplib::Server>();
  httplib::Server& srv = *s->server_;
  const int threads = options.threads > 0 ? options.threads : 32;
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  srv.set_keep_alive_max_count(1000000);
  // httplib's workers notice stop() only once an idle keep-alive connection times out, so this also
  // bounds how long Stop() takes; clients that fetch page after page reuse connections well within
  // it.
  srv.set_keep_alive_timeout(2);
  srv.set_payload_max_length(1 << 20);
  // httplib listens with a backlog of 5; remember the socket so the backlog can be raised after
  // bind (concurrent fetchers opening connections at once must not hit SYN retransmits).
  auto listen_fd = std::make_shared<int>(-1);
  srv.set_socket_options([listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_fd = sock;
  });
  SampleApiServer* self = s.get();
  srv.Get(R"(/v1/clientes/([^/]+)/([^/]+)(?:/([^/]*))?)",
          [self](const httplib::Request& req, httplib::Response& res) {
            self->HandleCollection(req, res);
          });
  srv.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  srv.Get("/_stats", [self](const httplib::Request& req, httplib::Response& res) {
    self->HandleStats(req, res);
  });

  if (port == 0) {
    s->port_ = srv.bind_to_any_port(s->host_);
  } else {
    s->port_ = srv.bind_to_port(s->host_, port) ? port : -1;
  }
  if (s->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  if (*listen_fd >= 0) ::listen(*listen_fd, 1024);
  s->thread_ = std::thread([self] {
    SetThreadComponent("sample_api");
    self->server_->listen_after_bind();
  });
  // httplib 0.11 has no readiness callback, and stop() before listen_after_bind() began is ignored
  // (Stop would then hang). The socket already accepts connections (the kernel queues them), so
  // this wait only closes that window for a Stop() that follows at once.
  for (int i = 0; i < 5000 && !srv.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return s;
}

int64_t SampleApiServer::BumpFaultCounter(const std::string& key) {
  absl::MutexLock l(&mu_);
  return fault_counters_[key]++;
}

void SampleApiServer::Count(const std::string& collection, int64_t requests, int64_t faults,
                            int64_t records) {
  absl::MutexLock l(&mu_);
  Stats& s = stats_[collection];
  s.requests += requests;
  s.faults += faults;
  s.records += records;
}

SampleApiServer::Stats SampleApiServer::StatsFor(const std::string& cliente,
                                                 const std::string& rota) const {
  absl::MutexLock l(&mu_);
  auto it = stats_.find(absl::StrCat(cliente, "/", rota));
  return it == stats_.end() ? Stats{} : it->second;
}

void SampleApiServer::LogRequest(const httplib::Request& req) {
  if (request_log_ == nullptr) return;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  std::string replica = req.get_header_value("X-Etl-Replica").substr(0, 64);
  for (char& c : replica) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != ':' &&
        c != '-') {
      c = '_';
    }
  }
  if (replica.empty()) replica = "-";
  std::string target = req.target.empty() ? req.path : req.target;
  for (char& c : target) {
    if (static_cast<unsigned char>(c) <= ' ') c = '_';
  }
  const std::string line =
      absl::StrCat(int64_t{now.tv_sec} * 1000000000 + now.tv_nsec, " ", replica, " ",
                   req.remote_addr, ":", req.remote_port, " ", target, "\n");
  std::fwrite(line.data(), 1, line.size(), request_log_);
  std::fflush(request_log_);
}

void SampleApiServer::HandleStats(const httplib::Request& req, httplib::Response& res) {
  Stats s = StatsFor(Param(req, "cliente"), Param(req, "rota"));
  res.set_content(absl::StrCat("{\"requests\":", s.requests, ",\"faults\":", s.faults,
                               ",\"records\":", s.records, "}"),
                  "application/json; charset=utf-8");
}

void SampleApiServer::HandleCollection(const httplib::Request& req, httplib::Response& res) {
  const std::string cliente = req.matches[1];
  const std::string rota = req.matches[2];
  const std::string style = req.matches.size() > 3 && req.matches[3].length() > 0
                                ? std::string(req.matches[3])
                                : std::string("page");
  const std::string collection = absl::StrCat(cliente, "/", rota);
  LogRequest(req);
  if (options_.latency_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.latency_ms));

  bool known_style = false;
  for (absl::string_view s : kStyles) known_style = known_style || s == style;
  if (!known_style) {
    Count(collection, 1, 0, 0);
    return JsonError(res, 404,
                     absl::StrCat("unknown pagination style \"", style,
                                  "\"; use page, offset, cursor, link, next_url or none"));
  }

  // Authentication comes first, as in real APIs.
  if (!options_.bearer_token.empty() &&
      req.get_header_value("Authorization") != absl::StrCat("Bearer ", options_.bearer_token)) {
    Count(collection, 1, 1, 0);
    res.set_header("WWW-Authenticate", "Bearer realm=\"sample_api\"");
    return JsonError(res, 401, "missing or invalid bearer token");
  }
  if (!options_.api_key.empty() &&
      req.get_header_value(options_.api_key_header.c_str()) != options_.api_key) {
    Count(collection, 1, 1, 0);
    return JsonError(res, 401,
                     absl::StrCat("missing or invalid ", options_.api_key_header, " header"));
  }

  // The (date-filtered) collection: indices [range.begin, range.end).
  std::string error;
  int64_t total = 0, per_day = 0;
  if (!IntParam(req, "total", options_.default_records, 0, &total, &error) ||
      !IntParam(req, "records_per_day", options_.records_per_day, 1, &per_day, &error)) {
    Count(collection, 1, 0, 0);
    return JsonError(res, 400, error);
  }
  std::string start = Param(req, "data_inicio", Param(req, "start_date"));
  std::string end = Param(req, "data_fim", Param(req, "end_date"));
  absl::StatusOr<IndexRange> range = DateWindowRange(total, start, end, per_day);
  if (!range.ok()) {
    Count(collection, 1, 0, 0);
    return JsonError(res, 400, range.status().message());
  }
  // since_id=N: only records whose id (index + 1) is greater than N (incremental loads by id).
  int64_t since_id = 0;
  if (!IntParam(req, "since_id", 0, 0, &since_id, &error)) {
    Count(collection, 1, 0, 0);
    return JsonError(res, 400, error);
  }
  range->begin = std::max(range->begin, std::min(since_id, range->end));
  const int64_t n = range->size();

  // Position of this page within the filtered collection.
  int64_t offset = 0, size = 0, page = 1;
  bool ok = true;
  if (style == "offset") {
    ok = IntParam(req, "offset", 0, 0, &offset, &error) &&
         IntParam(req, "limit", options_.default_page_size, 1, &size, &error);
  } else if (style == "cursor") {
    int64_t limit = 0;
    ok = IntParam(req, "limit", options_.default_page_size, 1, &limit, &error) &&
         IntParam(req, "page_size", limit, 1, &size, &error);
    if (ok && req.has_param("cursor") && !req.get_param_value("cursor").empty()) {
      int64_t cursor_size = 0;
      if (!DecodeCursor(collection, req.get_param_value("cursor"), &offset, &cursor_size)) {
        ok = false;
        error = "invalid cursor";
      } else if (!req.has_param("page_size") && !req.has_param("limit")) {
        size = cursor_size;
      }
    }
  } else if (style == "none") {
    offset = 0;
    size = n > 0 ? n : 1;
  } else {
    ok = IntParam(req, "page", 1, 1, &page, &error) &&
         IntParam(req, "page_size", options_.default_page_size, 1, &size, &error);
  }
  if (!ok) {
    Count(collection, 1, 0, 0);
    return JsonError(res, 400, error);
  }
  if (style != "none" && size > options_.max_page_size) size = options_.max_page_size;
  int64_t cap = 0;
  if (style != "none" && IntParam(req, "cap_page_size", 0, 1, &cap, &error) && cap > 0 &&
      size > cap) {
    size = cap;
  }
  if (style == "page" || style == "link" || style == "next_url") offset = (page - 1) * size;
  const int64_t page_index = offset / size + 1;
  const int64_t count = offset >= n ? 0 : std::min(size, n - offset);

  // Injected faults.
  const std::string seed = Param(req, "fault_seed");
  auto fault_key = [&](absl::string_view kind) {
    return absl::StrCat(collection, "|", style, "|", kind, "|", page_index, "|", seed);
  };
  int64_t status = 0;
  if (PageSetContains(Param(req, "always_fail_pages"), page_index)) {
    if (!IntParam(req, "always_fail_status", 500, 100, &status, &error)) status = 500;
    Count(collection, 1, 1, 0);
    return JsonError(res, static_cast<int>(status),
                     absl::StrCat("injected permanent failure of page ", page_index));
  }
  int64_t times = 0;
  if (PageSetContains(Param(req, "fail_pages"), page_index)) {
    if (!IntParam(req, "fail_times", 1, 0, &times, &error)) times = 1;
    if (BumpFaultCounter(fault_key("fail")) < times) {
      if (!IntParam(req, "fail_status", 503, 100, &status, &error)) status = 503;
      Count(collection, 1, 1, 0);
      return JsonError(res, static_cast<int>(status),
                       absl::StrCat("injected failure of page ", page_index));
    }
  }
  if (PageSetContains(Param(req, "rate_limit_pages"), page_index)) {
    if (!IntParam(req, "rate_limit_times", 1, 0, &times, &error)) times = 1;
    if (BumpFaultCounter(fault_key("rate")) < times) {
      Count(collection, 1, 1, 0);
      res.set_header("Retry-After", Param(req, "retry_after", "1"));
      return JsonError(res, 429, "rate limited");
    }
  }
  int64_t slow_ms = 0;
  if ((!req.has_param("slow_pages") || PageSetContains(Param(req, "slow_pages"), page_index)) &&
      IntParam(req, "slow_ms", 0, 0, &slow_ms, &error) && slow_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms));
  }
  bool truncate = false;
  if (PageSetContains(Param(req, "truncate_pages"), page_index)) {
    if (!IntParam(req, "truncate_times", 1, 0, &times, &error)) times = 1;
    truncate = BumpFaultCounter(fault_key("truncate")) < times;
  }

  // Links to the next page (link and next_url styles), carrying every non-positional parameter.
  auto page_url = [&](int64_t p, bool absolute) {
    std::string url;
    if (absolute) {
      std::string host = req.get_header_value("Host");
      if (host.empty()) host = absl::StrCat(host_ == "0.0.0.0" ? "127.0.0.1" : host_, ":", port_);
      url = absl::StrCat("http://", host);
    }
    absl::StrAppend(&url, "/v1/clientes/", PercentEncode(cliente), "/", PercentEncode(rota), "/",
                    style, "?page=", p, "&page_size=", size);
    for (const auto& [k, v] : req.params) {
      if (!IsPositionParam(k)) absl::StrAppend(&url, "&", PercentEncode(k), "=", PercentEncode(v));
    }
    return url;
  };
  const int64_t total_pages = (n + size - 1) / size;
  const bool has_next = offset + count < n && count > 0;
  // loop_pages: the next position named by this page is this page again.
  const bool loop = has_next && PageSetContains(Param(req, "loop_pages"), page_index);
  const int64_t next_page = loop ? page : page + 1;
  const int64_t next_offset = loop ? offset : offset + count;

  // The body, built in a per-thread buffer that keeps its capacity between requests.
  thread_local std::string body;
  body.clear();
  const bool envelope = Param(req, "envelope", "1") != "0";
  const bool meta = Param(req, "meta", "0") == "1";
  if (envelope) absl::StrAppend(&body, "{\"", Param(req, "records_key", "data"), "\":");
  body.push_back('[');
  const std::string bad_utf8_ids = Param(req, "bad_utf8_ids");
  const std::string non_object_ids = Param(req, "non_object_ids");
  for (int64_t i = 0; i < count; ++i) {
    if (i > 0) body.push_back(',');
    const int64_t index = range->begin + offset + i;
    const int64_t id = RecordId(index);
    if (!non_object_ids.empty() && PageSetContains(non_object_ids, id)) {
      absl::StrAppend(&body, "[", id, ",\"not an object\"]");
      continue;
    }
    const size_t start = body.size();
    AppendRecord(&body, cliente, rota, index, per_day);
    if (!bad_utf8_ids.empty() && PageSetContains(bad_utf8_ids, id)) {
      constexpr absl::string_view kStatus = "\"status\":\"";
      const size_t at = body.find(kStatus.data(), start, kStatus.size());
      if (at != std::string::npos) body.insert(at + kStatus.size(), "\xC3\x28");
    }
  }
  body.push_back(']');
  if (envelope) {
    std::string fields;
    if (style == "page") {
      fields = absl::StrCat("\"page\":", page, ",\"page_size\":", size,
                            ",\"total_pages\":", total_pages, ",\"total\":", n);
    } else if (style == "offset") {
      fields = absl::StrCat("\"offset\":", offset, ",\"limit\":", size, ",\"total\":", n);
    } else if (style == "cursor") {
      fields = has_next
                   ? absl::StrCat("\"next_cursor\":\"", EncodeCursor(collection, next_offset, size),
                                  "\",\"has_more\":true")
                   : "\"next_cursor\":null,\"has_more\":false";
    } else if (style == "next_url") {
      fields = has_next ? absl::StrCat("\"next\":\"",
                                       page_url(next_page, Param(req, "relative") != "1"), "\"")
                        : "\"next\":null";
    } else if (style == "none") {
      fields = absl::StrCat("\"total\":", n);
    }
    if (!fields.empty()) {
      if (meta) {
        absl::StrAppend(&body, ",\"meta\":{", fields, "}");
      } else {
        absl::StrAppend(&body, ",", fields);
      }
    }
    body.push_back('}');
  }
  if (style == "link") {
    std::vector<std::string> links;
    if (has_next) links.push_back(absl::StrCat("<", page_url(next_page, true), ">; rel=\"next\""));
    if (page > 1) {
      links.push_back(absl::StrCat("<", page_url(page - 1, true), ">; rel=\"prev\""));
      links.push_back(absl::StrCat("<", page_url(1, true), ">; rel=\"first\""));
    }
    if (total_pages > 0)
      links.push_back(absl::StrCat("<", page_url(total_pages, true), ">; rel=\"last\""));
    if (!links.empty()) res.set_header("Link", absl::StrJoin(links, ", "));
  }

  if (truncate) {
    Count(collection, 1, 1, 0);
    const size_t half = body.size() / 2;
    if (Param(req, "truncate_mode", "json") == "conn") {
      // Promise the full length, send half, then fail the provider: httplib closes the connection.
      auto data = std::make_shared<std::string>(body.substr(0, half));
      res.set_content_provider(body.size(), "application/json; charset=utf-8",
                               [data](size_t off, size_t, httplib::DataSink& sink) {
                                 if (off < data->size())
                                   sink.write(data->data() + off, data->size() - off);
                                 return false;
                               });
    } else {
      res.set_content(body.data(), half, "application/json; charset=utf-8");
    }
    return;
  }
  Count(collection, 1, 0, count);
  res.set_content(body.data(), body.size(), "application/json; charset=utf-8");
}

}  // namespace etl::sample_api
