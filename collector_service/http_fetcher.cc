#include "collector_service/http_fetcher.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

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
  HttpResponse* response;
  size_t max_bytes;
  bool too_large = false;
  const std::atomic<bool>* cancelled;
  CURL* curl = nullptr;
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
    return n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  if (t->response->headers.size() < 1000)
    t->response->headers.emplace_back(std::move(name), std::move(value));
  return n;
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
      absl::SimpleHexAtoi(s.substr(i + 1, 2), &v);
      out.push_back(char(v));
      i += 2;
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

CurlHttpFetcher::CurlHttpFetcher() : share_(std::make_unique<Share>()) {
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
  CURL* curl = static_cast<CURL*>(TakeHandle());
  if (curl == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  // Reset clears the options but keeps live connections and caches.
  curl_easy_reset(curl);

  HttpResponse response;
  Transfer transfer{&response, request.max_response_bytes, false, request.cancelled, curl};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) {
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(curl, CURLOPT_SHARE, share_->handle);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");  // Every encoding libcurl can decode.
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "etl-collector/1.0");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(std::max(1.0, request.timeout_seconds * 1000)));
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
  if (!request.basic_username.empty()) {
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
  // Forget the credentials before the handle goes back to the pool.
  curl_easy_setopt(curl, CURLOPT_USERNAME, nullptr);
  curl_easy_setopt(curl, CURLOPT_PASSWORD, nullptr);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  ReturnHandle(curl);

  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    if (transfer.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return absl::ResourceExhaustedError(absl::StrCat("response body exceeds the limit of ",
                                                       request.max_response_bytes, " bytes"));
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
