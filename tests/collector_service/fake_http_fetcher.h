// FakeHttpFetcher: an HttpFetcher for unit tests that answers from a handler (canned pages) and
// records every requested URL. No network.
//
// Thread-safety: Fetch() may be called from several threads; the handler must be thread-safe.
#ifndef ETL_TESTS_COLLECTOR_SERVICE_FAKE_HTTP_FETCHER_H_
#define ETL_TESTS_COLLECTOR_SERVICE_FAKE_HTTP_FETCHER_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "collector_service/http_fetcher.h"

namespace etl::testing {

class FakeHttpFetcher : public HttpFetcher {
 public:
  using Handler = std::function<absl::StatusOr<HttpResponse>(const HttpRequest&)>;

  explicit FakeHttpFetcher(Handler handler) : handler_(std::move(handler)) {}

  absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) override {
    {
      absl::MutexLock l(&mu_);
      urls_.push_back(request.url);
      requests_.push_back(request);
    }
    return handler_(request);
  }

  std::vector<std::string> urls() const {
    absl::MutexLock l(&mu_);
    return urls_;
  }
  std::vector<HttpRequest> requests() const {
    absl::MutexLock l(&mu_);
    return requests_;
  }

 private:
  const Handler handler_;
  mutable absl::Mutex mu_;
  std::vector<std::string> urls_ ABSL_GUARDED_BY(mu_);
  std::vector<HttpRequest> requests_ ABSL_GUARDED_BY(mu_);
};

// A response with `status` and `body`.
inline HttpResponse Reply(long status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// The value of query parameter `name` in `url`, or "" when absent.
inline std::string QueryParam(const std::string& url, const std::string& name) {
  size_t q = url.find('?');
  if (q == std::string::npos) return "";
  size_t pos = q + 1;
  while (pos < url.size()) {
    size_t end = url.find('&', pos);
    if (end == std::string::npos) end = url.size();
    std::string kv = url.substr(pos, end - pos);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == name) return eq == std::string::npos ? "" : kv.substr(eq + 1);
    pos = end + 1;
  }
  return "";
}

}  // namespace etl::testing

#endif  // ETL_TESTS_COLLECTOR_SERVICE_FAKE_HTTP_FETCHER_H_
