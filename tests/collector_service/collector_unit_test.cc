// Unit tests of the collector's pure parts and of CurlHttpFetcher against a loopback server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "collector_service/http_fetcher.h"
#include "collector_service/job.h"
#include "collector_service/job_spec.h"

namespace etl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(LinkHeaderTest, FindsNextAmongSeveralLinksAndQuotedRelLists) {
  EXPECT_EQ(
      FindNextLink(
          {R"(<https://api.x/items?page=3>; rel="next", <https://api.x/items?page=9>; rel="last")"}),
      "https://api.x/items?page=3");
  EXPECT_EQ(FindNextLink({R"(<a?p=1>; rel="prev", <b?p=3>; title="x, y; z"; rel="next last")"}),
            "b?p=3");
  EXPECT_EQ(FindNextLink({R"(<a>; rel=prev)", R"(<c>; rel=NEXT)"}), "c");
  EXPECT_EQ(FindNextLink({R"(<a>; rel="prev")"}), "");
  EXPECT_EQ(FindNextLink({}), "");
  // Only the first rel parameter counts (RFC 8288 section 3.3).
  EXPECT_EQ(FindNextLink({R"(<a>; rel="prev"; rel="next")"}), "");
  auto links = ParseLinkHeader(R"(< /x?a=1,2 >; rel="next"; type="application/json")");
  ASSERT_EQ(links.size(), 1u);
  EXPECT_EQ(links[0].target, "/x?a=1,2");
  EXPECT_THAT(links[0].rels, ElementsAre("next"));
}

TEST(UrlTest, ResolvesRelativeAndAbsoluteReferences) {
  EXPECT_EQ(*ResolveUrl("http://h:1/api/v1/items?page=1", "items?page=2"),
            "http://h:1/api/v1/items?page=2");
  EXPECT_EQ(*ResolveUrl("http://h:1/api/v1/items?page=1", "/other?x=1"), "http://h:1/other?x=1");
  EXPECT_EQ(*ResolveUrl("http://h:1/a", "https://g/b"), "https://g/b");
  EXPECT_EQ(*ResolveUrl("http://h:1/a/b", "?page=2"), "http://h:1/a/b?page=2");
  EXPECT_FALSE(ResolveUrl("http://h/a", "file:///etc/passwd").ok());
}

TEST(UrlTest, AppendsEncodedParamsAndRemovesSecretParam) {
  EXPECT_EQ(*AppendQueryParams("http://h/p", {{"a b", "x&y=z/é"}}),
            "http://h/p?a%20b=x%26y%3dz%2f%c3%a9");
  EXPECT_EQ(*AppendQueryParams("http://h/p?q=1#frag", {{"k", "v"}}), "http://h/p?q=1&k=v#frag");
  EXPECT_EQ(RemoveQueryParam("http://h/p?api_key=SECRET&page=2", "api_key"), "http://h/p?page=2");
  EXPECT_EQ(RemoveQueryParam("http://h/p?api_key=SECRET", "api_key"), "http://h/p");
}

TEST(RetryTest, BackoffIsScaledExponentialCappedAndHonoursRetryAfter) {
  v1::RetryPolicy policy;
  policy.set_backoff_scale(1);
  policy.set_max_backoff_seconds(60);
  EXPECT_DOUBLE_EQ(BackoffSeconds(policy, 1), 2.5);
  EXPECT_DOUBLE_EQ(BackoffSeconds(policy, 2), 4.5);
  EXPECT_DOUBLE_EQ(BackoffSeconds(policy, 10), 60);
  EXPECT_DOUBLE_EQ(BackoffSeconds(policy, 1, 7), 7);
  EXPECT_DOUBLE_EQ(BackoffSeconds(policy, 1, 600), 60);
  policy.set_backoff_scale(0.01);
  EXPECT_DOUBLE_EQ(BackoffSeconds(policy, 3), 0.085);
}

TEST(RetryTest, ParsesRetryAfterSecondsAndHttpDate) {
  EXPECT_EQ(ParseRetryAfter("5", 0), 5);
  EXPECT_EQ(ParseRetryAfter("Thu, 01 Jan 1970 00:01:40 GMT", 40), 60);
  EXPECT_EQ(ParseRetryAfter("garbage", 0), -1);
  EXPECT_EQ(ParseRetryAfter("", 0), -1);
}

TEST(RedactTest, RemovesSecretsAndTheirEncodedForm) {
  EXPECT_EQ(Redact("GET /x?k=a%2Fb failed, token a/b", {"a/b"}),
            "GET /x?k=[REDACTED] failed, token [REDACTED]");
}

v1::JobSpec ValidSpec() {
  v1::JobSpec spec;
  spec.set_cliente_id("2151");
  spec.set_rota("pedidos");
  spec.set_url("https://api.example.com/v1/orders");
  spec.mutable_pagination()->set_style(v1::PAGE);
  spec.mutable_pagination()->set_records_path("/data");
  return spec;
}

TEST(JobSpecTest, AcceptsAValidSpecAndFillsDefaults) {
  EXPECT_TRUE(ValidateJobSpec(ValidSpec()).ok());
  v1::JobSpec spec = WithDefaults(ValidSpec(), 4);
  EXPECT_EQ(spec.pagination().page_param(), "page");
  EXPECT_EQ(spec.pagination().start_page(), 1);
  EXPECT_EQ(spec.pagination().max_pages(), 1000000);
  EXPECT_EQ(spec.retry().max_attempts(), 3);
  EXPECT_EQ(spec.fetch_concurrency(), 4);
  EXPECT_EQ(spec.date_filter().format(), "%Y-%m-%d");
}

TEST(JobSpecTest, RejectsBadSpecsWithClearMessages) {
  struct Case {
    std::function<void(v1::JobSpec*)> mutate;
    const char* needle;
  } cases[] = {
      {[](v1::JobSpec* s) { s->set_url("ftp://h/x"); }, "scheme"},
      {[](v1::JobSpec* s) { s->set_url("http://:80/x"); }, "url"},
      {[](v1::JobSpec* s) { s->set_url("not a url"); }, "url"},
      {[](v1::JobSpec* s) { s->mutable_pagination()->set_style(v1::PaginationStyle(42)); },
       "pagination style"},
      {[](v1::JobSpec* s) { s->mutable_pagination()->set_style(v1::PAGINATION_STYLE_UNSPECIFIED); },
       "pagination style"},
      {[](v1::JobSpec* s) { s->mutable_pagination()->set_records_path("data"); }, "records_path"},
      {[](v1::JobSpec* s) { s->set_id_path("/a~2"); }, "id_path"},
      {[](v1::JobSpec* s) { s->mutable_pagination()->set_style(v1::CURSOR); }, "cursor_path"},
      {[](v1::JobSpec* s) { s->mutable_pagination()->set_style(v1::NEXT_URL); }, "next_url_path"},
      {[](v1::JobSpec* s) { s->mutable_date_filter()->set_start_date("2023-02-29"); },
       "start_date"},
      {[](v1::JobSpec* s) { s->mutable_date_filter()->set_end_date("2024-1-5"); }, "end_date"},
      {[](v1::JobSpec* s) {
         s->mutable_date_filter()->set_start_date("2024-02-01");
         s->mutable_date_filter()->set_end_date("2024-01-31");
       },
       "precedes"},
      {[](v1::JobSpec* s) { s->set_cliente_id("21-51"); }, "cliente"},
      {[](v1::JobSpec* s) { s->set_rota(""); }, "rota"},
      {[](v1::JobSpec* s) { s->set_rota(std::string(60, 'a')); }, "63"},
      {[](v1::JobSpec* s) { s->mutable_auth()->set_type(v1::BEARER); }, "secret_env"},
      {[](v1::JobSpec* s) { s->mutable_pagination()->set_page_size(-1); }, "page_size"},
      {[](v1::JobSpec* s) { s->mutable_retry()->set_max_attempts(-2); }, "max_attempts"},
      {[](v1::JobSpec* s) { s->set_fetch_concurrency(1000); }, "fetch_concurrency"},
      {[](v1::JobSpec* s) {
         auto* h = s->add_headers();
         h->set_key("X-Bad");
         h->set_value("a\r\nInjected: 1");
       },
       "control"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec = ValidSpec();
    c.mutate(&spec);
    absl::Status s = ValidateJobSpec(spec);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.needle;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.needle));
  }
}

TEST(JobSpecTest, FormatsDatesWithTheApiFormat) {
  EXPECT_EQ(*FormatDate("2024-03-05", "%d/%m/%Y"), "05/03/2024");
  EXPECT_EQ(*FormatDate("2024-03-05", "%Y-%m-%d"), "2024-03-05");
  EXPECT_TRUE(ValidateDate("d", "2024-02-29").ok());
  EXPECT_FALSE(ValidateDate("d", "2024-13-01").ok());
}

TEST(JobSpecTest, RejectsDateFormatsThatCannotEncodeADate) {
  struct Case {
    const char* format;
    const char* needle;
  } cases[] = {
      {"%q", "unknown conversion %q"},
      {"%Y-%m-%d%q", "unknown conversion %q"},
      {"%Y-%m-%", "incomplete"},
      {"%H:%M", "no date conversion"},
      {"since-today", "no date conversion"},
      {"%%", "no date conversion"},
      {"%Z%Y", "unknown conversion %Z"},
      {"%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%"
       "Y%m%d"
       "%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%"
       "Y%m%d",
       "more than 255"},
  };
  for (const Case& c : cases) {
    // Refused with and without dates to format: the spec is wrong either way.
    for (bool with_dates : {false, true}) {
      v1::JobSpec spec = ValidSpec();
      spec.mutable_date_filter()->set_format(c.format);
      if (with_dates) {
        spec.mutable_date_filter()->set_start_date("2024-01-01");
        spec.mutable_date_filter()->set_end_date("2024-01-31");
      }
      absl::Status s = ValidateJobSpec(spec);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.format;
      EXPECT_THAT(std::string(s.message()), HasSubstr(c.needle)) << c.format;
    }
  }
  for (const char* good :
       {"%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%s", "%Y-%m-%dT%H:%M:%S%z", "%-d.%-m.%Y", "%b %e %Y"}) {
    v1::JobSpec spec = ValidSpec();
    spec.mutable_date_filter()->set_format(good);
    spec.mutable_date_filter()->set_start_date("2024-01-01");
    EXPECT_TRUE(ValidateJobSpec(spec).ok()) << good << ": " << ValidateJobSpec(spec);
  }
  EXPECT_EQ(*FormatDate("2024-03-05", "%Y-%m-%dT%H:%M:%S"), "2024-03-05T00:00:00");
}

TEST(JobSpecTest, ReadsSecretFromEnvOrFileWithoutNamingTheValue) {
  v1::Auth auth;
  auth.set_secret_env("UNIT_TEST_SECRET_VAR");
  unsetenv("UNIT_TEST_SECRET_VAR");
  auto missing = ReadSecret(auth);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("UNIT_TEST_SECRET_VAR"));
  setenv("UNIT_TEST_SECRET_VAR", "abc", 1);
  EXPECT_EQ(*ReadSecret(auth), "abc");
  std::string path = ::testing::TempDir() + "/secret.txt";
  FILE* f = fopen(path.c_str(), "w");
  fputs("file-secret\n", f);
  fclose(f);
  v1::Auth file_auth;
  file_auth.set_secret_file(path);
  EXPECT_EQ(*ReadSecret(file_auth), "file-secret");
}

// The servers of these tests are on loopback, which the SSRF guard refuses by default.
HttpFetcherOptions LoopbackOptions() {
  HttpFetcherOptions options;
  options.allow_private_networks = true;
  return options;
}

class FetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/json", [](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Link", "<next>; rel=\"next\"");
      res.set_content(std::string(R"({"a":")") + std::string(100000, 'x') + "\"}",
                      "application/json");
    });
    server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(5 << 20, 'x'), "application/json");
    });
    server_.Get("/headers", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content(req.get_header_value("Authorization") + "|" +
                          req.get_header_value("X-Custom") + "|" +
                          req.get_header_value("Accept-Encoding"),
                      "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() is a no-op until the accept loop runs: wait for it so teardown cannot hang.
    while (!server_.is_running()) std::this_thread::yield();
  }
  void TearDown() override {
    server_.stop();
    thread_.join();
  }
  std::string Url(const std::string& p) { return absl::StrCat("http://127.0.0.1:", port_, p); }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(FetcherTest, FetchesBodyAndHeadersWithGzip) {
  CurlHttpFetcher fetcher(LoopbackOptions());
  HttpRequest req;
  req.url = Url("/json");
  for (int i = 0; i < 3; ++i) {  // Handles and connections are reused across calls.
    auto resp = fetcher.Fetch(req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    EXPECT_EQ(resp->status, 200);
    EXPECT_EQ(resp->body.size(), 100008u);
    EXPECT_EQ(resp->Header("link"), "<next>; rel=\"next\"");
  }
}

TEST_F(FetcherTest, SendsHeadersAndBasicAuth) {
  CurlHttpFetcher fetcher(LoopbackOptions());
  HttpRequest req;
  req.url = Url("/headers");
  req.headers = {{"X-Custom", "v1"}};
  req.basic_username = "user";
  req.basic_password = "pw";
  auto resp = fetcher.Fetch(req);
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(resp->body, HasSubstr("Basic dXNlcjpwdw==|v1|"));
  EXPECT_THAT(resp->body, HasSubstr("gzip"));
}

TEST_F(FetcherTest, OversizedBodyIsRefused) {
  CurlHttpFetcher fetcher(LoopbackOptions());
  HttpRequest req;
  req.url = Url("/big");
  req.max_response_bytes = 1 << 20;
  auto resp = fetcher.Fetch(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(FetcherTest, ConnectionRefusedIsUnavailable) {
  CurlHttpFetcher fetcher(LoopbackOptions());
  HttpRequest req;
  req.url = "http://127.0.0.1:1/x";
  EXPECT_EQ(fetcher.Fetch(req).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace etl
