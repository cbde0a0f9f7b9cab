// HttpFetcher: the seam between the collector and the network (one GET of one page).
//
// CurlHttpFetcher is the production implementation: libcurl easy handles kept in a pool and reset
// between requests (reset keeps their live connections), plus a share handle for the connection,
// DNS and TLS-session caches, so every page of every job reuses keep-alive connections. It asks for
// gzip/deflate/brotli (CURLOPT_ACCEPT_ENCODING ""), HTTP/2 over TLS where the server offers it,
// follows redirects only to http/https, and caps the body size so a hostile server cannot exhaust
// memory.
//
// It is also the SSRF guard: only http/https; the URL's host must match the allowed-host patterns
// (when any are set); and every socket libcurl opens is checked on the address actually connected
// (CURLOPT_OPENSOCKETFUNCTION), so loopback, private, link-local (169.254.169.254 metadata), CGNAT,
// multicast, unspecified, IPv4-mapped/compatible IPv6 and ULA targets are refused however they are
// spelled (0x7f.1, 2130706433, a DNS name resolving inward, DNS rebinding, a redirect), unless
// allow_private_networks. Redirects are followed here, hop by hop, each hop checked the same way;
// credentials (credential_headers, basic auth, credential_query_param, and any Authorization/Cookie
// header) go only to the origin of the first request. Environment proxies are ignored (the check
// must see the real target). Decompressed bytes, header count and header bytes are capped.
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
  // Sent only to the origin (scheme, host, port) of `url`, never across a redirect to another one.
  std::vector<std::pair<std::string, std::string>> credential_headers;
  // Query parameter carrying a credential: removed from a redirect target on another origin.
  std::string credential_query_param;
  std::string basic_username;  // Non-empty: HTTP basic auth with basic_password (origin only).
  std::string basic_password;
  // Host patterns the credentials above are bound to: when set and `url`'s host matches none, the
  // fetch fails with PERMISSION_DENIED before connecting (a next-page URL from the API pointing
  // elsewhere cannot take the credential along).
  std::vector<std::string> credential_hosts;
  double timeout_seconds = 60;                  // Whole transfer.
  double connect_timeout_seconds = 10;          // TCP + TLS handshake.
  size_t max_response_bytes = size_t(8) << 20;  // Decompressed; larger bodies: RESOURCE_EXHAUSTED.
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
  // truncated transfer), DEADLINE_EXCEEDED (timeout), RESOURCE_EXHAUSTED (body, headers or
  // redirects over the cap), CANCELLED, INVALID_ARGUMENT (bad or too long URL), PERMISSION_DENIED
  // (the SSRF guard refused the host or the address connected; the message says which and why).
  virtual absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) = 0;
};

struct HttpFetcherOptions {
  // Connect to loopback/private/link-local/... addresses (single-host setups, tests, the demo).
  bool allow_private_networks = false;
  // IP literals allowed even though internal (e.g. one API at 10.0.0.5), checked on the address
  // connected like everything else.
  std::vector<std::string> allowed_private_addresses;
  // Host patterns (exact or "*.domain", see credentials.h) every request and redirect must match;
  // empty = any host.
  std::vector<std::string> allowed_hosts;
  size_t max_header_count = 256;        // Response header lines per response.
  size_t max_header_bytes = 256 << 10;  // Response header bytes per response.
  int max_redirects = 10;               // Redirect hops followed.
  size_t max_url_bytes = 16 << 10;      // Longest request or redirect URL.
  // Non-empty: sent as "X-Etl-Replica: <replica_id>" with every request (an API's log can then
  // tell which collector replica fetched what).
  std::string replica_id;
};

// Why `ip` (an IPv4 or IPv6 literal) is not a public address: "loopback", "private", "link-local",
// "CGNAT", "multicast", "unspecified", "reserved", "IPv4-mapped IPv6", "unique-local"...; "" when
// it is public. Unparsable text is "invalid".
std::string InternalAddressKind(absl::string_view ip);

class CurlHttpFetcher : public HttpFetcher {
 public:
  explicit CurlHttpFetcher(HttpFetcherOptions options = {});
  ~CurlHttpFetcher() override;
  CurlHttpFetcher(const CurlHttpFetcher&) = delete;
  CurlHttpFetcher& operator=(const CurlHttpFetcher&) = delete;

  absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) override;

  struct Share;

 private:
  // One request without following redirects; `*redirect` = the Location target of a 3xx.
  absl::StatusOr<HttpResponse> FetchOnce(const HttpRequest& request, const std::string& url,
                                         bool same_origin, double timeout_seconds,
                                         std::string* redirect);
  void* TakeHandle();
  void ReturnHandle(void* handle);

  const HttpFetcherOptions options_;
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
