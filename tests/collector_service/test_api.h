// A scripted paginated JSON API on loopback for collector tests (cpp-httplib, in process).
//
// Serves `total` deterministic records with awkward content (escapes, Unicode, huge integers) in
// every pagination style:
//   /page?page=N&page_size=K        {"data":[...],"meta":{"total_pages":T,"total":C}}   (1-based)
//   /offset?offset=O&limit=K        {"results":[...],"count":C}
//   /cursor?cursor=X                {"items":[...],"next":"X2"|null}
//   /link?page=N                    top-level array + Link: <relative>; rel="next"
//   /next?page=N                    {"data":[...],"links":{"next":"/next?page=N+1"|null}}
//   /none                           top-level array of everything
// A fault hook sees every request first (with its 0-based page index) and may answer it instead.
#ifndef ETL_TESTS_COLLECTOR_SERVICE_TEST_API_H_
#define ETL_TESTS_COLLECTOR_SERVICE_TEST_API_H_

#include <httplib.h>

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace etl::testing {

struct ApiRequest {
  std::string path;
  int page_index = 0;  // 0-based page in the API's own order.
  std::multimap<std::string, std::string> params;
  std::multimap<std::string, std::string> headers;
  absl::Time at;
};

class TestApi {
 public:
  // Returns true when it answered the request itself.
  using Hook = std::function<bool(const ApiRequest&, httplib::Response&)>;

  // `pad_bytes` > 0 adds a "pad" string of that size to every record (for memory tests).
  TestApi(int total, int page_size, int pad_bytes = 0) : total_(total), page_size_(page_size) {
    for (int i = 0; i < total; ++i) {
      records_.push_back(MakeRecord(i));
      if (pad_bytes > 0) {
        records_.back().pop_back();
        absl::StrAppend(&records_.back(), R"(,"pad":")", std::string(size_t(pad_bytes), 'p'),
                        "\"}");
      }
    }
    server_.Get("/page", [this](const httplib::Request& req, httplib::Response& res) {
      int size = IntParam(req, "page_size", page_size_);
      int page = IntParam(req, "page", 1);
      Serve(req, res, "/page", page - 1, [&] {
        int pages = (total_ + size - 1) / size;
        return absl::StrCat(R"({"meta":{"total_pages":)", pages, R"(,"total":)", total_,
                            R"(},"data":)", Slice((page - 1) * size, size), "}");
      });
    });
    server_.Get("/offset", [this](const httplib::Request& req, httplib::Response& res) {
      int limit = IntParam(req, "limit", page_size_);
      int offset = IntParam(req, "offset", 0);
      Serve(req, res, "/offset", offset / limit, [&] {
        return absl::StrCat(R"({"count":)", total_, R"(,"results":)", Slice(offset, limit), "}");
      });
    });
    server_.Get("/cursor", [this](const httplib::Request& req, httplib::Response& res) {
      int offset = 0;
      if (req.has_param("cursor")) {
        std::string c = req.get_param_value("cursor");
        absl::SimpleAtoi(absl::string_view(c).substr(c.find('-') + 1), &offset);
      }
      Serve(req, res, "/cursor", offset / page_size_, [&] {
        int next = offset + page_size_;
        std::string cursor = next < total_ ? absl::StrCat("\"c/\\u00e9-", next, "\"") : "null";
        return absl::StrCat(R"({"items":)", Slice(offset, page_size_), R"(,"next":)", cursor, "}");
      });
    });
    server_.Get("/link", [this](const httplib::Request& req, httplib::Response& res) {
      int page = IntParam(req, "page", 1);
      Serve(req, res, "/link", page - 1, [&] {
        int pages = (total_ + page_size_ - 1) / page_size_;
        std::string link = absl::StrCat("<link?page=", pages, ">; rel=\"last\"");
        if (page < pages) {
          link = absl::StrCat("<https://example.invalid/x>; rel=\"prev\", <link?page=", page + 1,
                              ">; rel=\"next\", ", link);
        }
        res.set_header("Link", link);
        return Slice((page - 1) * page_size_, page_size_);
      });
    });
    server_.Get("/next", [this](const httplib::Request& req, httplib::Response& res) {
      int page = IntParam(req, "page", 1);
      Serve(req, res, "/next", page - 1, [&] {
        std::string next =
            page * page_size_ < total_ ? absl::StrCat("\"/next?page=", page + 1, "\"") : "null";
        return absl::StrCat(R"({"data":)", Slice((page - 1) * page_size_, page_size_),
                            R"(,"links":{"next":)", next, "}}");
      });
    });
    server_.Get("/none", [this](const httplib::Request& req, httplib::Response& res) {
      Serve(req, res, "/none", 0, [&] { return Slice(0, total_); });
    });
    server_.set_tcp_nodelay(
        true);  // Avoids 40 ms delayed-ACK stalls between header and body writes.
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() is a no-op until the accept loop runs: wait for it so teardown cannot hang.
    while (!server_.is_running()) std::this_thread::yield();
  }

  ~TestApi() {
    server_.stop();
    thread_.join();
  }

  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  const std::vector<std::string>& records() const { return records_; }
  void SetHook(Hook hook) {
    absl::MutexLock l(&mu_);
    hook_ = std::move(hook);
  }

  std::vector<ApiRequest> requests() const {
    absl::MutexLock l(&mu_);
    return requests_;
  }
  int pages_served() const {
    absl::MutexLock l(&mu_);
    return pages_served_;
  }
  // Waits until `pred(requests)` holds or `timeout` passes.
  bool WaitFor(const std::function<bool(const std::vector<ApiRequest>&)>& pred,
               absl::Duration timeout) const {
    absl::MutexLock l(&mu_);
    auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pred(requests_); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  // Waits until no request arrived for `quiet` (or `timeout` passed); returns the request count.
  size_t WaitQuiet(absl::Duration quiet, absl::Duration timeout) const {
    absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock l(&mu_);
    while (absl::Now() < deadline) {
      size_t seen = requests_.size();
      auto grew = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requests_.size() != seen; };
      if (!mu_.AwaitWithTimeout(absl::Condition(&grew), quiet)) break;
    }
    return requests_.size();
  }

  static std::string MakeRecord(int i) {
    // Raw text with escapes, Unicode (escaped and literal), a huge integer and nesting.
    return absl::StrCat(R"({"id":)", i, R"(,"big":1234567890123456789012345678)", i % 10,
                        R"(,"name":"cliente \"q\" \\ \/ \u00e9 é 😀 \ud83d\ude00 #)", i, R"(","v":)",
                        i % 7 == 0 ? "null" : "-1.5e3", R"(,"tags":["a",{"k":[1,true,false]}]})");
  }

 private:
  static int IntParam(const httplib::Request& req, const char* name, int fallback) {
    int v = fallback;
    if (req.has_param(name)) absl::SimpleAtoi(req.get_param_value(name), &v);
    return v;
  }

  std::string Slice(int offset, int count) const {
    std::vector<std::string> part;
    for (int i = std::max(0, offset); i < std::min(total_, offset + count); ++i)
      part.push_back(records_[size_t(i)]);
    return absl::StrCat("[", absl::StrJoin(part, ",\n  "), "]");
  }

  void Serve(const httplib::Request& req, httplib::Response& res, const std::string& path,
             int page_index, const std::function<std::string()>& body) {
    ApiRequest r;
    r.path = path;
    r.page_index = page_index;
    for (const auto& [k, v] : req.params) r.params.emplace(k, v);
    for (const auto& [k, v] : req.headers) r.headers.emplace(k, v);
    r.at = absl::Now();
    Hook hook;
    {
      absl::MutexLock l(&mu_);
      requests_.push_back(r);
      hook = hook_;
    }
    if (hook && hook(r, res)) return;
    res.set_content(body(), "application/json");
    absl::MutexLock l(&mu_);
    ++pages_served_;
  }

  const int total_;
  const int page_size_;
  std::vector<std::string> records_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  mutable absl::Mutex mu_;
  Hook hook_ ABSL_GUARDED_BY(mu_);
  std::vector<ApiRequest> requests_ ABSL_GUARDED_BY(mu_);
  int pages_served_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace etl::testing

#endif  // ETL_TESTS_COLLECTOR_SERVICE_TEST_API_H_
