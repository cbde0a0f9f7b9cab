#include "collector_service/http_fetcher.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "collector_service/credentials.h"

namespace etl {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using CurlUrlPtr = std::unique_ptr<CURLU, CurlUrlDeleter>;

std::string TakeCurlString(char* s) {
  std::string out = s ? s : "";
  curl_free(s);
  return out;
}

// Per-transfer state the callbacks write into.
struct Transfer {
  HttpResponse* response = nullptr;
  size_t max_bytes = 0;
  bool too_large = false;
  const std::atomic<bool>* cancelled = nullptr;
  CURL* curl = nullptr;
  const HttpFetcherOptions* options = nullptr;
  size_t header_count = 0;  // Of the current response.
  size_t header_bytes = 0;
  bool headers_too_large = false;
  std::string refused_address;  // Set by the open-socket callback when it refused a target.
  std::string refused_kind;
};

// Room simdjson wants after the JSON text; reserving it with the body spares a reallocation (and a
// second copy of the body alive at once) when the page is parsed.
constexpr size_t kParsePadding = 64;

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  if (t->response->body.size() + n > t->max_bytes) {
    t->too_large = true;
    return 0;  // Makes curl fail the transfer with CURLE_WRITE_ERROR.
  }
  std::string& body = t->response->body;
  if (body.empty()) {
    // Size the buffer once from Content-Length (when the body is not compressed it is exact)
    // instead of letting append double it, which leaves up to half of it unused while the page
    // waits to be sent.
    curl_off_t length = -1;
    if (t->curl != nullptr &&
        curl_easy_getinfo(t->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK &&
        length > 0 && size_t(length) <= t->max_bytes &&
        size_t(length) + kParsePadding > body.capacity()) {
      body.reserve(size_t(length) + kParsePadding);
    }
  }
  body.append(data, n);
  return n;
}

size_t WriteHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  absl::string_view line(data, n);
  line = absl::StripAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    t->response->headers.clear();  // A new response (redirect or 100 Continue) starts.
    t->header_count = 0;
    t->header_bytes = 0;
    return n;
  }
  t->header_bytes += n;
  if (++t->header_count > t->options->max_header_count ||
      t->header_bytes > t->options->max_header_bytes) {
    t->headers_too_large = true;
    return 0;  // Aborts the transfer.
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  t->response->headers.emplace_back(std::move(name), std::move(value));
  return n;
}

// The SSRF guard's last line: runs for every socket libcurl opens, with the address it is about to
// connect to (after DNS, after any redirect), so no spelling of a host can get past it.
curl_socket_t OpenSocket(void* user, curlsocktype purpose, struct curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->options->allow_private_networks && purpose == CURLSOCKTYPE_IPCXN) {
    char text[INET6_ADDRSTRLEN] = {0};
    if (address->family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr, text,
                sizeof(text));
    } else if (address->family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr, text,
                sizeof(text));
    }
    std::string kind = (address->family == AF_INET || address->family == AF_INET6)
                           ? InternalAddressKind(text)
                           : std::string("non-IP");
    const auto& exceptions = t->options->allowed_private_addresses;
    if (!kind.empty() &&
        std::find(exceptions.begin(), exceptions.end(), text) == exceptions.end()) {
      t->refused_address = text;
      t->refused_kind = kind;
      return CURL_SOCKET_BAD;
    }
  }
  return socket(address->family, address->socktype, address->protocol);
}

// scheme://host:port of an absolute URL (default ports filled in), or "" when it cannot be parsed.
std::string Origin(const std::string& url) {
  CURLU* u = curl_url();
  std::string out;
  if (u != nullptr && curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* scheme = nullptr;
    char* host = nullptr;
    char* port = nullptr;
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (scheme && host && port)
      out = absl::AsciiStrToLower(absl::StrCat(scheme, "://", host, ":", port));
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
  }
  curl_url_cleanup(u);
  return out;
}

bool IsAlwaysCredential(absl::string_view header) {
  return absl::EqualsIgnoreCase(header, "Authorization") ||
         absl::EqualsIgnoreCase(header, "Cookie") ||
         absl::EqualsIgnoreCase(header, "Proxy-Authorization");
}

int Progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return (t->cancelled != nullptr && t->cancelled->load()) ? 1 : 0;
}

bool IsUnreserved(char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && absl::ascii_isxdigit(s[i + 1]) &&
        absl::ascii_isxdigit(s[i + 2])) {
      int v = 0;
      if (absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {  // Two hex digits: always parses.
        out.push_back(char(v));
        i += 2;
      } else {
        out.push_back(s[i]);
      }
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

// Connection, DNS and TLS-session caches shared by all easy handles, with the locks libcurl needs
// to use them from several threads.
struct CurlHttpFetcher::Share {
  CURLSH* handle = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Share*>(user)->locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Share*>(user)->locks[data].unlock();
  }
};

std::vector<std::string> HttpResponse::HeaderValues(absl::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (k == name) out.push_back(v);
  }
  return out;
}

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

CurlHttpFetcher::CurlHttpFetcher(HttpFetcherOptions options)
    : options_(std::move(options)), share_(std::make_unique<Share>()) {
  GlobalInit();
  share_->handle = curl_share_init();
  curl_share_setopt(share_->handle, CURLSHOPT_LOCKFUNC, &Share::Lock);
  curl_share_setopt(share_->handle, CURLSHOPT_UNLOCKFUNC, &Share::Unlock);
  curl_share_setopt(share_->handle, CURLSHOPT_USERDATA, share_.get());
  curl_share_setopt(share_->handle, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share_->handle, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(share_->handle, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
}

CurlHttpFetcher::~CurlHttpFetcher() {
  absl::MutexLock l(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
  idle_.clear();
  curl_share_cleanup(share_->handle);
}

void* CurlHttpFetcher::TakeHandle() {
  {
    absl::MutexLock l(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void CurlHttpFetcher::ReturnHandle(void* handle) {
  absl::MutexLock l(&mu_);
  if (idle_.size() < 64) {
    idle_.push_back(handle);
    return;
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

absl::StatusOr<HttpResponse> CurlHttpFetcher::Fetch(const HttpRequest& request) {
  const absl::Time deadline = absl::Now() + absl::Seconds(std::max(0.001, request.timeout_seconds));
  const std::string origin = Origin(request.url);
  const bool has_credentials = !request.credential_headers.empty() ||
                               !request.basic_username.empty() ||
                               !request.credential_query_param.empty();
  if (has_credentials && !request.credential_hosts.empty()) {
    auto host = UrlHost(request.url);
    if (!host.ok() || !HostMatchesAny(*host, request.credential_hosts)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the job's credential may not be sent to host \"", host.ok() ? *host : std::string("?"),
          "\" (allowed: ", absl::StrJoin(request.credential_hosts, ", "), ")"));
    }
  }
  std::string url = request.url;
  for (int hop = 0;; ++hop) {
    if (url.size() > options_.max_url_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "URL of ", url.size(), " bytes exceeds the limit of ", options_.max_url_bytes));
    }
    auto host = UrlHost(url);
    if (!host.ok()) return absl::InvalidArgumentError("bad URL: no host");
    if (!options_.allowed_hosts.empty() && !HostMatchesAny(*host, options_.allowed_hosts)) {
      return absl::PermissionDeniedError(
          absl::StrCat(hop == 0 ? "host \"" : "redirect to host \"", *host,
                       "\" is not in the collector's allowed hosts (--allowed-hosts)"));
    }
    const bool same_origin = !origin.empty() && Origin(url) == origin;
    const double remaining = absl::ToDoubleSeconds(deadline - absl::Now());
    if (remaining <= 0)
      return absl::DeadlineExceededError("timeout: redirects took the whole time budget");
    std::string redirect;
    absl::StatusOr<HttpResponse> response =
        FetchOnce(request, url, same_origin, remaining, &redirect);
    if (!response.ok() || redirect.empty()) return response;
    if (hop >= options_.max_redirects) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", options_.max_redirects, " redirects"));
    }
    url = std::move(redirect);
    // A credential in the query string stays with its origin.
    if (!request.credential_query_param.empty() && Origin(url) != origin) {
      url = RemoveQueryParam(url, request.credential_query_param);
    }
  }
}

absl::StatusOr<HttpResponse> CurlHttpFetcher::FetchOnce(const HttpRequest& request,
                                                        const std::string& url, bool same_origin,
                                                        double timeout_seconds,
                                                        std::string* redirect) {
  CURL* curl = static_cast<CURL*>(TakeHandle());
  if (curl == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  // Reset clears the options but keeps live connections and caches.
  curl_easy_reset(curl);

  HttpResponse response;
  Transfer transfer;
  transfer.response = &response;
  transfer.max_bytes = request.max_response_bytes;
  transfer.cancelled = request.cancelled;
  transfer.curl = curl;
  transfer.options = &options_;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  if (!options_.replica_id.empty()) {
    headers =
        curl_slist_append(headers, absl::StrCat("X-Etl-Replica: ", options_.replica_id).c_str());
  }
  for (const auto& [k, v] : request.headers) {
    if (!same_origin && IsAlwaysCredential(k)) continue;
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  }
  if (same_origin) {
    for (const auto& [k, v] : request.credential_headers) {
      headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
    }
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(curl, CURLOPT_SHARE, share_->handle);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Redirects are followed by Fetch, hop by hop, so each hop is checked and credentials stay home.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_PROXY,
                   "");  // No proxy from the environment: connect to the real target.
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, &OpenSocket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");  // Every encoding libcurl can decode.
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "etl-collector/1.0");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(std::max(1.0, timeout_seconds * 1000)));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   long(std::max(1.0, request.connect_timeout_seconds * 1000)));
  curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.max_response_bytes));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &WriteHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  if (request.cancelled != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &Progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &transfer);
  }
  if (same_origin && !request.basic_username.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, long(CURLAUTH_BASIC));
    curl_easy_setopt(curl, CURLOPT_USERNAME, request.basic_username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, request.basic_password.c_str());
  }

  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  char* effective = nullptr;
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &effective);
  if (effective != nullptr) response.effective_url = effective;
  char* location = nullptr;
  if (rc == CURLE_OK && status >= 300 && status <= 399 &&
      curl_easy_getinfo(curl, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
      location != nullptr) {
    *redirect = location;
  }
  // Forget the credentials before the handle goes back to the pool.
  curl_easy_setopt(curl, CURLOPT_USERNAME, nullptr);
  curl_easy_setopt(curl, CURLOPT_PASSWORD, nullptr);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  ReturnHandle(curl);

  if (!transfer.refused_address.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "refused to connect to ", transfer.refused_address, " (", transfer.refused_kind,
        " address): internal networks are not allowed (collector flag --allow-private-networks)"));
  }
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    if (transfer.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return absl::ResourceExhaustedError(absl::StrCat("response body exceeds the limit of ",
                                                       request.max_response_bytes, " bytes"));
    }
    if (transfer.headers_too_large) {
      return absl::ResourceExhaustedError(absl::StrCat("response headers exceed the limit of ",
                                                       options_.max_header_count, " lines or ",
                                                       options_.max_header_bytes, " bytes"));
    }
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        return absl::DeadlineExceededError(absl::StrCat("timeout: ", detail));
      case CURLE_ABORTED_BY_CALLBACK:
        return absl::CancelledError("request cancelled");
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return absl::InvalidArgumentError(absl::StrCat("bad URL: ", detail));
      default:
        return absl::UnavailableError(absl::StrCat("transport error: ", detail));
    }
  }
  response.status = status;
  return response;
}

namespace {

struct V4Range {
  uint32_t base;
  int bits;
  const char* kind;
};

constexpr uint32_t V4(int a, int b, int c, int d) {
  return (uint32_t(a) << 24) | (uint32_t(b) << 16) | (uint32_t(c) << 8) | uint32_t(d);
}

std::string V4Kind(uint32_t a) {
  static const V4Range kRanges[] = {
      {V4(0, 0, 0, 0), 8, "unspecified"},     {V4(10, 0, 0, 0), 8, "private"},
      {V4(100, 64, 0, 0), 10, "CGNAT"},       {V4(127, 0, 0, 0), 8, "loopback"},
      {V4(169, 254, 0, 0), 16, "link-local"}, {V4(172, 16, 0, 0), 12, "private"},
      {V4(192, 0, 0, 0), 24, "reserved"},     {V4(192, 168, 0, 0), 16, "private"},
      {V4(198, 18, 0, 0), 15, "reserved"},    {V4(224, 0, 0, 0), 4, "multicast"},
      {V4(240, 0, 0, 0), 4, "reserved"},
  };
  for (const V4Range& r : kRanges) {
    uint32_t mask = r.bits == 0 ? 0 : ~uint32_t(0) << (32 - r.bits);
    if ((a & mask) == r.base) return r.kind;
  }
  return "";
}

}  // namespace

std::string InternalAddressKind(absl::string_view ip) {
  std::string text(ip);
  if (text.size() > 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return V4Kind(ntohl(v4.s_addr));
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return "invalid";
  const uint8_t* b = v6.s6_addr;
  auto zero = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      if (b[i] != 0) return false;
    }
    return true;
  };
  if (zero(0, 16)) return "unspecified";
  if (zero(0, 15) && b[15] == 1) return "loopback";
  if (zero(0, 10) && b[10] == 0xff && b[11] == 0xff) return "IPv4-mapped IPv6";
  if (zero(0, 12)) return "IPv4-compatible IPv6";
  if ((b[0] & 0xfe) == 0xfc) return "unique-local";
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "site-local";
  if (b[0] == 0xff) return "multicast";
  // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
  uint32_t embedded = 0;
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(4, 12)) {
    embedded = V4(b[12], b[13], b[14], b[15]);
  } else if (b[0] == 0x20 && b[1] == 0x02) {
    embedded = V4(b[2], b[3], b[4], b[5]);
  } else {
    return "";
  }
  std::string kind = V4Kind(embedded);
  return kind.empty() ? "" : absl::StrCat(kind, " (embedded IPv4)");
}

std::string PercentEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (IsUnreserved(c)) {
      out.push_back(c);
    } else {
      unsigned char u = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::string> AppendQueryParams(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& params) {
  GlobalInit();
  if (params.empty()) return url;
  CurlUrlPtr u(curl_url());
  if (curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError("bad URL");
  }
  char* q = nullptr;
  std::string query;
  if (curl_url_get(u.get(), CURLUPART_QUERY, &q, 0) == CURLUE_OK) query = TakeCurlString(q);
  for (const auto& [k, v] : params) {
    if (!query.empty()) query.push_back('&');
    absl::StrAppend(&query, PercentEncode(k), "=", PercentEncode(v));
  }
  if (curl_url_set(u.get(), CURLUPART_QUERY, query.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError("bad query");
  }
  char* out = nullptr;
  if (curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK)
    return absl::InvalidArgumentError("bad URL");
  return TakeCurlString(out);
}

std::string RemoveQueryParam(const std::string& url, const std::string& name) {
  GlobalInit();
  if (name.empty()) return url;
  CurlUrlPtr u(curl_url());
  if (curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return url;
  char* q = nullptr;
  if (curl_url_get(u.get(), CURLUPART_QUERY, &q, 0) != CURLUE_OK) return url;
  std::string query = TakeCurlString(q);
  std::vector<absl::string_view> kept;
  for (absl::string_view part : absl::StrSplit(query, '&')) {
    absl::string_view key = part.substr(0, part.find('='));
    if (PercentDecode(key) != name) kept.push_back(part);
  }
  std::string new_query = absl::StrJoin(kept, "&");
  curl_url_set(u.get(), CURLUPART_QUERY, new_query.empty() ? nullptr : new_query.c_str(), 0);
  char* out = nullptr;
  if (curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK) return url;
  return TakeCurlString(out);
}

absl::StatusOr<std::string> ResolveUrl(const std::string& base, const std::string& reference) {
  GlobalInit();
  CurlUrlPtr u(curl_url());
  if (curl_url_set(u.get(), CURLUPART_URL, base.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError("bad base URL");
  }
  // With a URL already set, a relative reference is resolved against it (RFC 3986 section 5).
  if (curl_url_set(u.get(), CURLUPART_URL, reference.c_str(), CURLU_URLENCODE) != CURLUE_OK) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve URL \"", reference, "\""));
  }
  char* scheme = nullptr;
  char* host = nullptr;
  curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(u.get(), CURLUPART_HOST, &host, 0);
  std::string s = absl::AsciiStrToLower(TakeCurlString(scheme));
  std::string h = TakeCurlString(host);
  if ((s != "http" && s != "https") || h.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("next URL \"", reference, "\" is not an http(s) URL"));
  }
  char* out = nullptr;
  if (curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK)
    return absl::InvalidArgumentError("bad URL");
  return TakeCurlString(out);
}

std::vector<LinkValue> ParseLinkHeader(absl::string_view v) {
  std::vector<LinkValue> links;
  size_t i = 0, n = v.size();
  auto skip_ws = [&] {
    while (i < n && (v[i] == ' ' || v[i] == '\t')) ++i;
  };
  while (i < n) {
    skip_ws();
    while (i < n && (v[i] == ',' || v[i] == ' ' || v[i] == '\t')) ++i;
    if (i >= n) break;
    if (v[i] != '<') {
      // Not a link: skip to the next top-level comma.
      while (i < n && v[i] != ',') ++i;
      continue;
    }
    size_t close = v.find('>', i + 1);
    if (close == absl::string_view::npos) break;
    LinkValue link;
    link.target = std::string(absl::StripAsciiWhitespace(v.substr(i + 1, close - i - 1)));
    i = close + 1;
    bool have_rel = false;
    // Parameters: ; name [= token | "quoted"]
    while (true) {
      skip_ws();
      if (i >= n || v[i] == ',') break;
      if (v[i] != ';') {
        ++i;
        continue;
      }
      ++i;
      skip_ws();
      size_t name_start = i;
      while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ',' && v[i] != ' ' && v[i] != '\t') ++i;
      std::string name = absl::AsciiStrToLower(v.substr(name_start, i - name_start));
      skip_ws();
      std::string value;
      if (i < n && v[i] == '=') {
        ++i;
        skip_ws();
        if (i < n && v[i] == '"') {
          ++i;
          while (i < n && v[i] != '"') {
            if (v[i] == '\\' && i + 1 < n) ++i;
            value.push_back(v[i]);
            ++i;
          }
          if (i < n) ++i;  // Closing quote.
        } else {
          size_t start = i;
          while (i < n && v[i] != ';' && v[i] != ',' && v[i] != ' ' && v[i] != '\t') ++i;
          value = std::string(v.substr(start, i - start));
        }
      }
      // RFC 8288 section 3.3: only the first rel parameter counts.
      if (name == "rel" && !have_rel) {
        have_rel = true;
        for (absl::string_view r :
             absl::StrSplit(value, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
          link.rels.push_back(absl::AsciiStrToLower(r));
        }
      }
    }
    links.push_back(std::move(link));
  }
  return links;
}

std::string FindNextLink(const std::vector<std::string>& values) {
  for (const std::string& value : values) {
    for (const LinkValue& link : ParseLinkHeader(value)) {
      if (std::find(link.rels.begin(), link.rels.end(), "next") != link.rels.end())
        return link.target;
    }
  }
  return "";
}

double ParseRetryAfter(absl::string_view value, double now_unix_seconds) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return -1;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) return seconds < 0 ? -1 : double(seconds);
  std::string copy(value);
  time_t when = curl_getdate(copy.c_str(), nullptr);
  if (when == -1) return -1;
  return std::max(0.0, double(when) - now_unix_seconds);
}

std::string Redact(std::string text, const std::vector<std::string>& secrets) {
  for (const std::string& s : secrets) {
    if (s.empty()) continue;
    text = absl::StrReplaceAll(text, {{s, "[REDACTED]"}});
    std::string encoded = PercentEncode(s);
    if (encoded != s) text = absl::StrReplaceAll(text, {{encoded, "[REDACTED]"}});
  }
  return text;
}

}  // namespace etl
