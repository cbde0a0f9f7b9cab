// HttpFetcher: the seam between the collector and the network (one GET of one page).
//
// CurlHttpFetcher is the production implementation: libcurl easy handles kept in a pool and reset
// between requests (reset keeps their live connections), plus a share handle for the connection,
// DNS and TLS-session caches, so every page of every job reuses keep-alive connections. It asks for
// gzip/deflate/brotli (CURLOPT_ACCEPT_ENCODING ""), HTTP/2 over TLS where the server offers it,
// follows redirects only to http/https, and caps the body size so a hostile server cannot exhaust
// memory.
//
// Thread-safety: Fetch() may be called from any number of threads at once.
#ifndef ETL_COLLECTOR_SERVICE_HTTP_FETCHER_H_
#define ETL_COLLECTOR_SERVICE_HTTP_FETCHER_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace etl {

struct HttpRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string basic_username;  // Non-empty: HTTP basic auth with basic_password.
  std::string basic_password;
  double timeout_seconds = 60;                    // Whole transfer.
  double connect_timeout_seconds = 10;            // TCP + TLS handshake.
  size_t max_response_bytes = size_t(256) << 20;  // Larger bodies fail with RESOURCE_EXHAUSTED.
  // When set and true, an ongoing transfer is aborted (CANCELLED).
  const std::atomic<bool>* cancelled = nullptr;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  // Headers of the final response (after redirects), names lower-cased, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string effective_url;

  // All values of header `name` (lower case).
  std::vector<std::string> HeaderValues(absl::string_view name) const;
  std::string Header(absl::string_view name) const;  // First value or "".
};

class HttpFetcher {
 public:
  virtual ~HttpFetcher() = default;
  // Any HTTP status is a successful fetch. Errors: UNAVAILABLE (connection refused/reset, DNS, TLS,
  // truncated transfer), DEADLINE_EXCEEDED (timeout), RESOURCE_EXHAUSTED (body over the cap),
  // CANCELLED, INVALID_ARGUMENT (bad URL).
  virtual absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) = 0;
};

class CurlHttpFetcher : public HttpFetcher {
 public:
  CurlHttpFetcher();
  ~CurlHttpFetcher() override;
  CurlHttpFetcher(const CurlHttpFetcher&) = delete;
  CurlHttpFetcher& operator=(const CurlHttpFetcher&) = delete;

  absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) override;

  struct Share;

 private:
  void* TakeHandle();
  void ReturnHandle(void* handle);

  std::unique_ptr<Share> share_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);  // CURL* easy handles.
};

// ---- URL and header helpers (pure, thread-safe) ----

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string PercentEncode(absl::string_view s);

// `url` with "k=v" pairs appended to its query (both percent-encoded). INVALID_ARGUMENT on a bad
// URL.
absl::StatusOr<std::string> AppendQueryParams(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& params);

// `url` without any query parameter named `name` (used to keep credentials out of stored tokens).
std::string RemoveQueryParam(const std::string& url, const std::string& name);

// Resolves `reference` (absolute or relative) against `base`; INVALID_ARGUMENT unless the result is
// an http(s) URL with a host.
absl::StatusOr<std::string> ResolveUrl(const std::string& base, const std::string& reference);

// One link of an RFC 8288 Link header.
struct LinkValue {
  std::string target;             // The URI reference between < and >.
  std::vector<std::string> rels;  // Lower-cased relation types (rel="next last" gives two).
};
// Parses one or more Link header values (several links per value, quoted or token parameters).
std::vector<LinkValue> ParseLinkHeader(absl::string_view value);
// The target of the first link with rel "next" across all values, or "".
std::string FindNextLink(const std::vector<std::string>& link_header_values);

// Seconds to wait from a Retry-After value (delta-seconds or an HTTP date); -1 when absent/invalid.
double ParseRetryAfter(absl::string_view value, double now_unix_seconds);

// `text` with every occurrence of each secret (and its percent-encoded form) replaced by
// "[REDACTED]".
std::string Redact(std::string text, const std::vector<std::string>& secrets);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_HTTP_FETCHER_H_
