// The sample API over loopback with a real HTTP client: determinism, every pagination style walks
// all records exactly once, date filters, faults as documented, authentication, the Link header
// format.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "deploy/sample_api/records.h"
#include "deploy/sample_api/sample_api_server.h"
#include "simdjson.h"
#include "tests/testing/test_support.h"

namespace etl::sample_api {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Page {
  int status = 0;
  std::string body;
  std::string link;
  std::vector<std::string> records;  // raw JSON of each record
  std::string next;                  // next_cursor / next URL / "" when null
  int64_t total_pages = -1;
  int64_t total = -1;
};

class SampleApiTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(SampleApiOptions{}); }
  void TearDown() override {
    client_.reset();
    server_.reset();
  }

  void StartServer(SampleApiOptions options) {
    options.listen = "127.0.0.1:0";
    client_.reset();  // close keep-alive connections first so the old server stops at once
    server_.reset();
    auto s = SampleApiServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);
  }

  // GETs `target` (path + query) and parses the envelope.
  Page Get(const std::string& target, const httplib::Headers& headers = {}) {
    Page page;
    auto res = client_->Get(target.c_str(), headers);
    EXPECT_TRUE(res) << target << ": " << httplib::to_string(res.error());
    if (!res) return page;
    page.status = res->status;
    page.body = res->body;
    page.link = res->get_header_value("Link");
    if (page.status != 200 || page.body.empty() || page.body[0] != '{') return page;
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(page.body);
    simdjson::ondemand::document doc = parser.iterate(padded);
    simdjson::ondemand::object obj;
    EXPECT_EQ(doc.get_object().get(obj), simdjson::SUCCESS) << page.body.substr(0, 200);
    for (auto field : obj) {
      std::string_view key = field.unescaped_key().value();
      simdjson::ondemand::value v = field.value();
      if (key == "data") {
        for (auto rec : v.get_array()) {
          simdjson::ondemand::object record = rec.get_object().value();
          page.records.emplace_back(record.raw_json().value());
        }
      } else if (key == "next_cursor" || key == "next") {
        std::string_view s;
        if (!v.is_null()) {
          EXPECT_EQ(v.get_string().get(s), simdjson::SUCCESS);
          page.next = std::string(s);
        }
      } else if (key == "total_pages") {
        page.total_pages = v.get_int64().value();
      } else if (key == "total") {
        page.total = v.get_int64().value();
      }
    }
    return page;
  }

  std::string Path(const std::string& cliente, const std::string& style) {
    return absl::StrCat("/v1/clientes/", cliente, "/pedidos/", style);
  }

  // The records the API must serve for indices [begin, end).
  static std::vector<std::string> Expected(const std::string& cliente, int64_t begin, int64_t end) {
    std::vector<std::string> out;
    for (int64_t i = begin; i < end; ++i) out.push_back(Record(cliente, "pedidos", i));
    return out;
  }

  std::unique_ptr<SampleApiServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

// The raw Link header via libcurl (httplib's client URL-decodes header values).
std::string RawLinkHeader(const std::string& url) {
  CURL* curl = curl_easy_init();
  std::string headers;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(
      curl, CURLOPT_HEADERFUNCTION, +[](char* data, size_t size, size_t n, void* out) {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &headers);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char*, size_t size, size_t n, void*) { return size * n; });
  EXPECT_EQ(curl_easy_perform(curl), CURLE_OK);
  curl_easy_cleanup(curl);
  size_t pos = headers.find("Link: ");
  if (pos == std::string::npos) return "";
  size_t end = headers.find("\r\n", pos);
  return headers.substr(pos + 6, end - pos - 6);
}

std::string LinkTarget(const std::string& link, const std::string& rel) {
  // <url>; rel="x", <url>; rel="y"
  size_t pos = link.find(absl::StrCat("; rel=\"", rel, "\""));
  if (pos == std::string::npos) return "";
  size_t open = link.rfind('<', pos);
  size_t close = link.rfind('>', pos);
  return link.substr(open + 1, close - open - 1);
}

std::string StripOrigin(const std::string& url, int port) {
  std::string origin = absl::StrCat("http://127.0.0.1:", port);
  EXPECT_THAT(url, StartsWith(origin));
  return url.substr(origin.size());
}

TEST(RecordsTest, DeterministicDistinctAndValidJson) {
  EXPECT_EQ(Record("2151", "pedidos", 12345), Record("2151", "pedidos", 12345));
  EXPECT_NE(Record("2151", "pedidos", 1), Record("2151", "pedidos", 2));
  EXPECT_NE(Record("2151", "pedidos", 1), Record("2152", "pedidos", 1));
  std::string r = Record("2151", "pedidos", 0);
  EXPECT_THAT(r, StartsWith("{\"id\":1,"));
  EXPECT_THAT(r, HasSubstr("\"big_counter\":18446744073709551617"));  // > 2^64
  EXPECT_THAT(r, HasSubstr("\"seq53\":9007199254740993"));            // 2^53 + 1
  // Every note and name variant (escapes, Unicode) parses as JSON with an independent parser.
  std::string all = "[";
  int64_t bytes = 0;
  for (int i = 0; i < 500; ++i) {
    std::string rec = Record("2151", "pedidos", i);
    bytes += static_cast<int64_t>(rec.size());
    all += (i ? "," : "") + rec;
  }
  all += "]";
  EXPECT_GT(bytes / 500, 250);
  EXPECT_LT(bytes / 500, 450);
  std::string path = ::testing::TempDir() + "/records.json";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fwrite(all.data(), 1, all.size(), f);
  std::fclose(f);
  std::string cmd = absl::StrCat(
      "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
      "assert len(d)==500 and d[0][\"big_counter\"]==2**64+1 and d[0][\"seq53\"]==2**53+1; "
      "assert any(\"\\t\" in x[\"note\"] for x in d) and any(\"\\U0001F600\" in x[\"note\"] for x "
      "in d)' ",
      path);
  EXPECT_EQ(std::system(cmd.c_str()), 0)
      << "records are not valid JSON or lack the expected variety";
}

TEST(RecordsTest, DatesAndDateWindows) {
  EXPECT_EQ(FormatDay(RecordDay(0)), "2023-01-01");
  EXPECT_EQ(FormatDay(RecordDay(99)), "2023-01-01");
  EXPECT_EQ(FormatDay(RecordDay(100)), "2023-01-02");
  EXPECT_EQ(FormatDay(*ParseDay("2024-02-29")), "2024-02-29");
  EXPECT_FALSE(ParseDay("2023-02-29").ok());
  EXPECT_FALSE(ParseDay("2023-1-01").ok());
  auto r = DateWindowRange(1000, "2023-01-03", "2023-01-04");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->begin, 200);
  EXPECT_EQ(r->end, 400);
  auto open_end = DateWindowRange(1000, "2023-01-05", "");
  EXPECT_EQ(open_end->begin, 400);
  EXPECT_EQ(open_end->end, 1000);
  EXPECT_EQ(DateWindowRange(1000, "2030-01-01", "")->size(), 0);
  EXPECT_EQ(DateWindowRange(1000, "2023-01-05", "2023-01-01")->size(), 0);
}

TEST_F(SampleApiTest, SameRequestSameBody) {
  Page a = Get(Path("2151", "page") + "?page=3&page_size=50&total=1000");
  Page b = Get(Path("2151", "page") + "?page=3&page_size=50&total=1000");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.records, Expected("2151", 100, 150));
}

TEST_F(SampleApiTest, PageStyleWalksEveryRecordOnce) {
  std::vector<std::string> got;
  int64_t pages = 0;
  for (int p = 1;; ++p) {
    Page page = Get(Path("c1", "page") + absl::StrCat("?page=", p, "&page_size=100&total=1050"));
    ASSERT_EQ(page.status, 200);
    EXPECT_EQ(page.total_pages, 11);
    EXPECT_EQ(page.total, 1050);
    if (page.records.empty()) break;
    ++pages;
    got.insert(got.end(), page.records.begin(), page.records.end());
  }
  EXPECT_EQ(pages, 11);
  EXPECT_EQ(got, Expected("c1", 0, 1050));
}

TEST_F(SampleApiTest, OffsetStyleWalksEveryRecordOnce) {
  std::vector<std::string> got;
  for (int64_t off = 0;; off += 70) {
    Page page = Get(Path("c2", "offset") + absl::StrCat("?offset=", off, "&limit=70&total=500"));
    ASSERT_EQ(page.status, 200);
    EXPECT_EQ(page.total, 500);
    got.insert(got.end(), page.records.begin(), page.records.end());
    if (page.records.size() < 70) break;
  }
  EXPECT_EQ(got, Expected("c2", 0, 500));
}

TEST_F(SampleApiTest, CursorStyleWalksEveryRecordOnceAndRefusesForgedCursors) {
  std::vector<std::string> got;
  std::string cursor;
  std::set<std::string> seen;
  for (int guard = 0; guard < 100; ++guard) {
    std::string q =
        absl::StrCat("?page_size=64&total=300", cursor.empty() ? "" : "&cursor=" + cursor);
    Page page = Get(Path("c3", "cursor") + q);
    ASSERT_EQ(page.status, 200);
    got.insert(got.end(), page.records.begin(), page.records.end());
    if (page.next.empty()) break;
    EXPECT_TRUE(seen.insert(page.next).second) << "cursor repeated";
    cursor = page.next;
  }
  EXPECT_EQ(got, Expected("c3", 0, 300));
  EXPECT_EQ(Get(Path("c3", "cursor") + "?cursor=c1.40.40.deadbeef").status, 400);
  // A cursor carries its page size: a client that does not resend page_size still walks
  // consistently.
  Page first = Get(Path("c3", "cursor") + "?page_size=10&total=300");
  Page second = Get(Path("c3", "cursor") + "?total=300&cursor=" + first.next);
  EXPECT_EQ(second.records, Expected("c3", 10, 20));
}

TEST_F(SampleApiTest, LinkStyleFollowsRelNextAndCarriesOtherParameters) {
  std::vector<std::string> got;
  std::string target = Path("c4", "link") + "?page_size=40&total=130&fields=a%2Cb";
  int pages = 0;
  while (!target.empty() && pages < 20) {
    Page page = Get(target);
    ASSERT_EQ(page.status, 200);
    ++pages;
    got.insert(got.end(), page.records.begin(), page.records.end());
    if (pages == 1) {
      // RFC 8288: comma-separated "<absolute URL>; rel=\"...\"" entries.
      EXPECT_EQ(RawLinkHeader(absl::StrCat("http://127.0.0.1:", server_->port(), target)),
                absl::StrCat("<http://127.0.0.1:", server_->port(),
                             "/v1/clientes/c4/pedidos/"
                             "link?page=2&page_size=40&fields=a%2Cb&total=130>; rel=\"next\", "
                             "<http://127.0.0.1:",
                             server_->port(),
                             "/v1/clientes/c4/pedidos/"
                             "link?page=4&page_size=40&fields=a%2Cb&total=130>; rel=\"last\""));
    }
    if (pages == 2) {
      EXPECT_THAT(page.link, HasSubstr("rel=\"prev\""));
    }
    std::string next = LinkTarget(page.link, "next");
    target = next.empty() ? "" : StripOrigin(next, server_->port());
  }
  EXPECT_EQ(pages, 4);
  EXPECT_EQ(got, Expected("c4", 0, 130));
}

TEST_F(SampleApiTest, NextUrlStyleWalksEveryRecordOnceAbsoluteAndRelative) {
  for (bool relative : {false, true}) {
    std::vector<std::string> got;
    std::string target =
        Path("c5", "next_url") + "?page_size=33&total=100" + (relative ? "&relative=1" : "");
    int pages = 0;
    while (!target.empty() && pages < 20) {
      Page page = Get(target);
      ASSERT_EQ(page.status, 200);
      ++pages;
      got.insert(got.end(), page.records.begin(), page.records.end());
      if (page.next.empty()) break;
      target = relative ? page.next : StripOrigin(page.next, server_->port());
      if (relative) {
        EXPECT_THAT(page.next, StartsWith("/v1/clientes/c5/pedidos/next_url?page="));
      }
    }
    EXPECT_EQ(pages, 4);
    EXPECT_EQ(got, Expected("c5", 0, 100));
  }
}

TEST_F(SampleApiTest, NoneStyleServesEverythingAtOnceAndBareArraysOnRequest) {
  Page page = Get(Path("c6", "none") + "?total=250");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.records, Expected("c6", 0, 250));
  Page bare = Get(Path("c6", "page") + "?total=5&envelope=0");
  ASSERT_EQ(bare.status, 200);
  std::string expected = "[";
  for (int i = 0; i < 5; ++i) expected += (i ? "," : "") + Record("c6", "pedidos", i);
  EXPECT_EQ(bare.body, expected + "]");
  Page meta = Get(Path("c6", "page") + "?total=5&meta=1&records_key=results");
  EXPECT_THAT(meta.body, StartsWith("{\"results\":["));
  EXPECT_THAT(meta.body,
              HasSubstr(",\"meta\":{\"page\":1,\"page_size\":100,\"total_pages\":1,\"total\":5}}"));
}

TEST_F(SampleApiTest, DateFilterServesOnlyRecordsInTheWindow) {
  for (const char* params : {"data_inicio=2023-01-03&data_fim=2023-01-04",
                             "start_date=2023-01-03&end_date=2023-01-04"}) {
    std::vector<std::string> got;
    for (int p = 1; p < 10; ++p) {
      Page page =
          Get(Path("c7", "page") + absl::StrCat("?total=1000&page_size=150&page=", p, "&", params));
      ASSERT_EQ(page.status, 200);
      EXPECT_EQ(page.total, 200);
      if (page.records.empty()) break;
      got.insert(got.end(), page.records.begin(), page.records.end());
    }
    EXPECT_EQ(got, Expected("c7", 200, 400)) << params;
    for (const std::string& r : got) {
      EXPECT_TRUE(r.find("\"created_at\":\"2023-01-03T") != std::string::npos ||
                  r.find("\"created_at\":\"2023-01-04T") != std::string::npos);
    }
  }
  Page bad = Get(Path("c7", "page") + "?data_inicio=2023-13-01");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("is not YYYY-MM-DD"));
}

TEST_F(SampleApiTest, FlakyPageFailsKTimesThenSucceeds) {
  const std::string q = "&page_size=10&total=50&fail_pages=2&fail_times=2&fail_status=502";
  EXPECT_EQ(Get(Path("f1", "page") + "?page=1" + q).status, 200);
  EXPECT_EQ(Get(Path("f1", "page") + "?page=2" + q).status, 502);
  EXPECT_EQ(Get(Path("f1", "page") + "?page=2" + q).status, 502);
  Page ok = Get(Path("f1", "page") + "?page=2" + q);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.records, Expected("f1", 10, 20));
  // Same page index in the offset style: offset 10 / limit 10 + 1 = page 2.
  EXPECT_EQ(
      Get(Path("f1", "offset") + "?offset=10&limit=10&total=50&fail_pages=2&fail_times=1").status,
      503);
  EXPECT_EQ(
      Get(Path("f1", "offset") + "?offset=10&limit=10&total=50&fail_pages=2&fail_times=1").status,
      200);
  // A fresh fault_seed gets fresh counters.
  EXPECT_EQ(Get(Path("f1", "page") + "?page=2&fault_seed=x" + q).status, 502);
  EXPECT_EQ(server_->StatsFor("f1", "pedidos").faults, 4);
}

TEST_F(SampleApiTest, AlwaysFailingPageNeverSucceeds) {
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(
        Get(Path("f2", "page") + "?page=3&page_size=10&total=50&always_fail_pages=3,5").status,
        500);
  }
  EXPECT_EQ(Get(Path("f2", "page") + "?page=4&page_size=10&total=50&always_fail_pages=3,5").status,
            200);
  EXPECT_EQ(Get(Path("f2", "page") +
                "?page=5&page_size=10&total=50&always_fail_pages=3,5&always_fail_status=404")
                .status,
            404);
}

TEST_F(SampleApiTest, RateLimitAnswers429WithRetryAfter) {
  const std::string target =
      Path("f3", "page") + "?page=1&total=5&rate_limit_pages=all&rate_limit_times=1&retry_after=2";
  auto res = client_->Get(target.c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(res->get_header_value("Retry-After"), "2");
  EXPECT_EQ(Get(target).status, 200);
}

TEST_F(SampleApiTest, TruncatedBodiesAreInvalidJsonOrCutConnections) {
  const std::string full = Get(Path("f4", "page") + "?page=1&page_size=20&total=50").body;
  auto cut =
      client_->Get((Path("f4", "page") + "?page=1&page_size=20&total=50&truncate_pages=1").c_str());
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->status, 200);
  EXPECT_LT(cut->body.size(), full.size());
  EXPECT_EQ(cut->body, full.substr(0, full.size() / 2));
  EXPECT_EQ(Get(Path("f4", "page") + "?page=1&page_size=20&total=50&truncate_pages=1").body, full);

  const std::string conn =
      Path("f4", "page") + "?page=2&page_size=20&total=50&truncate_pages=2&truncate_mode=conn";
  auto broken = client_->Get(conn.c_str());
  EXPECT_FALSE(broken && broken->status == 200 && broken->body.size() > 0 &&
               broken->body.back() == '}')
      << "the connection should close mid-body";
  httplib::Client fresh("127.0.0.1", server_->port());
  auto again = fresh.Get(conn.c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(SampleApiTest, SlowPagesAreSlow) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(
      Get(Path("f5", "page") + "?page=2&page_size=5&total=50&slow_pages=2&slow_ms=300").status,
      200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
}

TEST_F(SampleApiTest, BadRequestsGetClearErrors) {
  EXPECT_EQ(Get(Path("e", "page") + "?page=abc").status, 400);
  EXPECT_EQ(Get(Path("e", "page") + "?page=0").status, 400);
  EXPECT_EQ(Get(Path("e", "offset") + "?limit=0").status, 400);
  Page unknown = Get(Path("e", "pages"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("unknown pagination style"));
}

TEST_F(SampleApiTest, PageSizeIsClampedAndDefaultIsPageStyle) {
  Page page = Get("/v1/clientes/d/pedidos?page_size=50000&total=20000");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.records.size(), 10000u);
  EXPECT_EQ(page.total_pages, 2);
}

TEST_F(SampleApiTest, BearerTokenRequiredWhenConfigured) {
  SampleApiOptions options;
  options.bearer_token = "t0k3n";
  StartServer(options);
  Page none = Get(Path("a", "page") + "?total=3");
  EXPECT_EQ(none.status, 401);
  EXPECT_THAT(none.body, HasSubstr("bearer token"));
  EXPECT_THAT(none.body, ::testing::Not(HasSubstr("t0k3n")));
  EXPECT_EQ(Get(Path("a", "page") + "?total=3", {{"Authorization", "Bearer wrong"}}).status, 401);
  Page ok = Get(Path("a", "page") + "?total=3", {{"Authorization", "Bearer t0k3n"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.records.size(), 3u);
}

TEST_F(SampleApiTest, StatsCountRequestsAndRecords) {
  Get(Path("s", "page") + "?page=1&page_size=10&total=15");
  Get(Path("s", "page") + "?page=2&page_size=10&total=15");
  auto res = client_->Get("/_stats?cliente=s&rota=pedidos");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "{\"requests\":2,\"faults\":0,\"records\":15}");
}

TEST_F(SampleApiTest, RequestLogHasOneLinePerRequestWithTheCallersReplica) {
  const std::string log_path = ::testing::TempDir() + "/sample_api_requests.log";
  std::remove(log_path.c_str());
  SampleApiOptions options;
  options.request_log = log_path;
  StartServer(options);
  Get(Path("rl", "page") + "?page=1&page_size=10&total=15", {{"X-Etl-Replica", "c1.2"}});
  Get(Path("rl", "page") + "?page=2&page_size=10&total=15", {{"X-Etl-Replica", "bad id/x"}});
  Get(Path("rl", "page") + "?page=3&page_size=10&total=15");
  client_->Get("/healthz");  // Not a /v1 request: not logged.
  std::FILE* f = std::fopen(log_path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::vector<std::vector<std::string>> lines;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), f) != nullptr) {
    lines.push_back(absl::StrSplit(absl::StripTrailingAsciiWhitespace(buf), ' '));
  }
  std::fclose(f);
  ASSERT_EQ(lines.size(), 3u);
  int64_t previous = 0;
  for (const auto& fields : lines) {
    ASSERT_EQ(fields.size(), 4u);
    int64_t ns = 0;
    EXPECT_TRUE(absl::SimpleAtoi(fields[0], &ns));
    EXPECT_GE(ns, previous);  // One client, one request at a time: in order.
    previous = ns;
    EXPECT_THAT(fields[2], StartsWith("127.0.0.1:"));
  }
  EXPECT_EQ(lines[0][1], "c1.2");
  EXPECT_EQ(lines[0][3], Path("rl", "page") + "?page=1&page_size=10&total=15");
  EXPECT_EQ(lines[1][1], "bad_id_x");
  EXPECT_EQ(lines[2][1], "-");
  EXPECT_EQ(lines[2][3], Path("rl", "page") + "?page=3&page_size=10&total=15");
}

TEST(SampleApiBinaryTest, ServesOnPortFileAndExitsCleanlyOnSigterm) {
  auto child = etl::testing::ChildProcess::Start(etl::testing::BinaryPath("sample_api"),
                                                 {"--listen=127.0.0.1:0", "--records=7"});
  ASSERT_TRUE(child.ok()) << child.status();
  httplib::Client c("127.0.0.1", (*child)->port());
  auto res = c.Get("/v1/clientes/2151/pedidos/none");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("\"total\":7}"));
  int status = (*child)->Signal(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SampleApiBinaryTest, RefusesToStartWithoutTheRequiredTokenVariable) {
  auto child = etl::testing::ChildProcess::Start(
      etl::testing::BinaryPath("sample_api"),
      {"--listen=127.0.0.1:0", "--require_bearer_env=ETL_TEST_UNSET_TOKEN"}, {}, 10);
  EXPECT_FALSE(child.ok());
}

TEST_F(SampleApiTest, CappedPagesServeAtMostTheCapAndIndexByIt) {
  Page page = Get(Path("h1", "page") + "?page=2&page_size=100&total=1000&cap_page_size=30");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.records, Expected("h1", 30, 60));
  EXPECT_EQ(page.total_pages, 34);
  EXPECT_EQ(page.total, 1000);
  Page offset = Get(Path("h1", "offset") + "?offset=500&limit=100&total=1000&cap_page_size=30");
  EXPECT_EQ(offset.records, Expected("h1", 500, 530));
  Page cursor = Get(Path("h1", "cursor") + "?page_size=100&total=1000&cap_page_size=30");
  EXPECT_EQ(cursor.records.size(), 30u);
  Page next = Get(Path("h1", "cursor") + "?total=1000&cap_page_size=30&cursor=" + cursor.next);
  EXPECT_EQ(next.records, Expected("h1", 30, 60));
}

TEST_F(SampleApiTest, BadUtf8AndNonObjectRecordsOnRequest) {
  auto res = client_->Get(
      (Path("h2", "page") + "?page=1&page_size=10&total=10&bad_utf8_ids=3&non_object_ids=5,7")
          .c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("\"status\":\"\xC3\x28"));
  EXPECT_EQ(res->body.find("\xC3\x28"), res->body.rfind("\xC3\x28"));  // one record only
  EXPECT_THAT(res->body, HasSubstr("[5,\"not an object\"]"));
  EXPECT_THAT(res->body, HasSubstr("[7,\"not an object\"]"));
  // Every other record is served unchanged.
  for (int64_t i : {0, 1, 3, 5, 7, 8, 9}) {
    EXPECT_THAT(res->body, HasSubstr(Record("h2", "pedidos", i))) << i;
  }
}

TEST_F(SampleApiTest, LoopPagesPointBackAtThemselves) {
  Page c1 = Get(Path("h3", "cursor") + "?page_size=10&total=100&loop_pages=2");
  Page c2 = Get(Path("h3", "cursor") + "?total=100&loop_pages=2&cursor=" + c1.next);
  EXPECT_EQ(c2.records, Expected("h3", 10, 20));
  Page again = Get(Path("h3", "cursor") + "?total=100&loop_pages=2&cursor=" + c2.next);
  EXPECT_EQ(again.records, c2.records);
  Page n2 = Get(Path("h3", "next_url") + "?page=2&page_size=10&total=100&loop_pages=2");
  EXPECT_THAT(n2.next, HasSubstr("page=2&"));
  Page n3 = Get(Path("h3", "next_url") + "?page=3&page_size=10&total=100&loop_pages=2");
  EXPECT_THAT(n3.next, HasSubstr("page=4&"));
  const std::string link =
      RawLinkHeader(absl::StrCat("http://127.0.0.1:", server_->port(), Path("h3", "link"),
                                 "?page=2&page_size=10&total=100&loop_pages=2"));
  EXPECT_THAT(LinkTarget(link, "next"), HasSubstr("page=2&"));
}

}  // namespace
}  // namespace etl::sample_api
