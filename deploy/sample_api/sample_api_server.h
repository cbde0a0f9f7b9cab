// The sample API: an HTTP server (cpp-httplib) that serves deterministic order records (records.h)
// for any cliente/rota in every pagination style the collector supports, with date filters,
// optional authentication and opt-in, deterministic faults. Used by the demo, docker-compose, tests
// and benchmarks.
//
//   GET /v1/clientes/{cliente}/{rota}[/{style}]    style: page (default) | offset | cursor | link |
//                                                   next_url | none
//   GET /healthz                                    "ok"
//   GET /_stats?cliente=C&rota=R                    {"requests":..,"faults":..,"records":..}
//
// Request log (options.request_log): one line per /v1 request as it arrives, before any fault or
// delay, so a test can tell which caller fetched which page when:
//   <CLOCK_MONOTONIC ns> <X-Etl-Replica header or "-"> <client ip>:<client port> <path?query>
// (the header value is cut to 64 bytes of [A-Za-z0-9._:-], other bytes become '_').
//
// Query parameters (all optional):
//   total=N                 records of the (cliente, rota) collection (default --records)
//   records_per_day=N       record i is dated 2023-01-01 + i/N days (default 100)
//   data_inicio / start_date, data_fim / end_date   YYYY-MM-DD, inclusive: serve only records dated
//   within since_id=N              serve only records whose id is greater than N (incremental
//   loads) page=P (1-based), page_size=K   page, link, next_url styles (page_size also for cursor;
//   default 100,
//                                   clamped to 10000)
//   offset=O, limit=L       offset style (limit default 100)
//   cursor=T                cursor style: the opaque token from the previous body's next_cursor
//   envelope=0              body is the bare records array (no paging fields)
//   records_key=NAME        name of the records array (default "data")
//   meta=1                  paging fields inside {"meta":{...}} instead of at the top level
//   relative=1              next_url style: "next" is a relative URL ("/v1/...") instead of
//   absolute
// Bodies: page {"data":[..],"page":P,"page_size":K,"total_pages":T,"total":N}; offset {"data":[..],
//   "offset":O,"limit":L,"total":N}; cursor {"data":[..],"next_cursor":"..."|null,"has_more":bool};
//   link {"data":[..]} plus `Link: <url>; rel="next", <url>; rel="last"` (and first/prev after page
//   1); next_url {"data":[..],"next":"http://..."|null}; none {"data":[every record],"total":N}.
//
// Faults, keyed by the 1-based page index (offset / page size + 1) and deterministic. Page sets are
// "3", "2,5", "4-6" or "all". Counted faults count per (cliente, rota, style, page, fault_seed), so
// a test that wants fresh counters uses a fresh cliente or fault_seed:
//   fail_pages=S&fail_times=K&fail_status=C         first K requests of those pages answer C (503)
//   always_fail_pages=S&always_fail_status=C        those pages always answer C (500)
//   rate_limit_pages=S&rate_limit_times=K&retry_after=SECS   K x 429 with Retry-After (default 1)
//   slow_pages=S&slow_ms=MS                         answer those pages after MS milliseconds
//                                                   (slow_ms alone: every page)
//   truncate_pages=S&truncate_times=K&truncate_mode=json|conn   first K answers of those pages are
//   cut
//       in half: "json" = a 200 whose body is invalid JSON; "conn" = the connection closes mid-body
// Hostile answers (not counted, every request):
//   cap_page_size=N      serve at most N records per page whatever was asked (page indices, totals
//                        and links then use N), like APIs that cap page sizes silently
//   bad_utf8_ids=S       records with those ids (1-based) carry an invalid UTF-8 byte sequence in
//                        their "status" value
//   non_object_ids=S     records with those ids are served as a JSON array, not an object
//   loop_pages=S         those pages' next cursor / next URL / rel="next" point back at themselves
// Authentication (server options): a bearer token and/or an API key header; a request without them
// gets 401 with a JSON error.
//
// Thread-safety: Start/Stop from one thread; request handlers run on the server's thread pool and
// only share the fault counters and stats, guarded by mu_, and the request log (one locked stdio
// write per line).
#ifndef ETL_DEPLOY_SAMPLE_API_SAMPLE_API_SERVER_H_
#define ETL_DEPLOY_SAMPLE_API_SAMPLE_API_SERVER_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace etl::sample_api {

struct SampleApiOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 = any free port.
  int64_t default_records = 100000;       // Collection size when the request has no total=.
  int64_t records_per_day = 100;          // Default for records_per_day=.
  int64_t default_page_size = 100;        // When the request names no page_size/limit.
  int64_t max_page_size = 10000;          // Larger requested sizes are clamped (like real APIs).
  int threads = 32;                       // Request worker threads (slow pages hold one each).
  std::string bearer_token;  // Non-empty: /v1 requires "Authorization: Bearer <token>".
  std::string api_key;       // Non-empty: /v1 requires "<api_key_header>: <api_key>".
  std::string api_key_header = "X-API-Key";
  int latency_ms = 0;       // Added to every /v1 answer (simulates a remote API).
  std::string request_log;  // Non-empty: append one line per /v1 request to this file.
};

class SampleApiServer {
 public:
  struct Stats {
    int64_t requests = 0;  // /v1 requests for the collection, faults included.
    int64_t faults = 0;    // Requests answered with an injected fault (or 401).
    int64_t records = 0;   // Records served in successful answers.
  };

  // Binds and starts serving on a background thread.
  static absl::StatusOr<std::unique_ptr<SampleApiServer>> Start(const SampleApiOptions& options);
  ~SampleApiServer();
  SampleApiServer(const SampleApiServer&) = delete;
  SampleApiServer& operator=(const SampleApiServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>" (the bound host; 0.0.0.0 is reported as 127.0.0.1).
  std::string base_url() const;
  // Stops accepting and joins the server thread. Idempotent.
  void Stop();

  Stats StatsFor(const std::string& cliente, const std::string& rota) const;

 private:
  explicit SampleApiServer(const SampleApiOptions& options);
  void HandleCollection(const httplib::Request& req, httplib::Response& res);
  void HandleStats(const httplib::Request& req, httplib::Response& res);
  // Returns how many times `key` was seen before this call (and counts this one).
  int64_t BumpFaultCounter(const std::string& key);
  void Count(const std::string& collection, int64_t requests, int64_t faults, int64_t records);
  // Appends the request's line to the request log (when one is open).
  void LogRequest(const httplib::Request& req);

  const SampleApiOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string host_;
  int port_ = 0;
  // Owned; each line is one fwrite (stdio locks the stream per call), so no lock of ours.
  std::FILE* request_log_ = nullptr;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> fault_counters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Stats> stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etl::sample_api

#endif  // ETL_DEPLOY_SAMPLE_API_SAMPLE_API_SERVER_H_
