// The collector's defences: operator credentials bound to hosts, the SSRF guard on the address
// actually connected, redirects that never carry credentials to another origin, and response limits
// (decompressed bytes, header count/size, URL length). Real HTTP servers on loopback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "collector_service/credentials.h"
#include "collector_service/http_fetcher.h"
#include "collector_service/job_spec.h"

namespace etl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- Credentials file ----

TEST(CredentialsTest, ParsesTheDocumentedForms) {
  auto defs = ParseCredentialsFile(R"({
    "pedidos_api": {"type": "bearer", "env": "PEDIDOS_TOKEN", "hosts": ["api.example.com", "*.example.org"]},
    "erp": {"type": "api_key", "file": "/run/secrets/erp", "header": "X-Api-Key", "hosts": ["erp.example.com"]},
    "q": {"type": "api_key", "env": "Q", "param": "key", "hosts": ["10.0.0.5"]},
    "legacy": {"type": "basic", "username": "etl", "env": "LEGACY_PW", "hosts": ["Legacy.Example.com."]}})");
  ASSERT_TRUE(defs.ok()) << defs.status();
  ASSERT_EQ(defs->size(), 4u);
  EXPECT_EQ(defs->at("pedidos_api").kind, CredentialKind::kBearer);
  EXPECT_THAT(defs->at("pedidos_api").hosts, ElementsAre("api.example.com", "*.example.org"));
  EXPECT_EQ(defs->at("erp").file, "/run/secrets/erp");
  EXPECT_EQ(defs->at("q").param, "key");
  EXPECT_EQ(defs->at("legacy").username, "etl");
  EXPECT_THAT(defs->at("legacy").hosts, ElementsAre("legacy.example.com"));
}

TEST(CredentialsTest, RefusesAmbiguousOrUnboundEntries) {
  const char* bad[] = {
      R"([])",
      R"({"a": {"type": "token", "env": "A", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "bearer", "env": "A", "file": "/f", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "bearer", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "bearer", "env": "A"}})",
      R"({"a": {"type": "bearer", "env": "A", "hosts": []}})",
      R"({"a": {"type": "bearer", "env": "A", "hosts": ["*"]}})",
      R"({"a": {"type": "bearer", "env": "A", "hosts": ["*.com"]}})",
      R"({"a": {"type": "bearer", "env": "A", "hosts": ["a/b"]}})",
      R"({"a": {"type": "bearer", "env": "A", "hosts": ["h.example.com"], "secret": "x"}})",
      R"({"a": {"type": "bearer", "env": "A-B", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "bearer", "file": "relative", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "basic", "env": "A", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "api_key", "env": "A", "header": "X", "param": "k", "hosts": ["h.example.com"]}})",
      R"({"a b": {"type": "bearer", "env": "A", "hosts": ["h.example.com"]}})",
      R"({"a": {"type": "bearer", "env": "A", "hosts": ["h.example.com"]})",
  };
  for (const char* text : bad) {
    auto defs = ParseCredentialsFile(text);
    EXPECT_EQ(defs.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  std::string deep = R"({"a": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(ParseCredentialsFile(deep).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CredentialsTest, HostPatterns) {
  EXPECT_TRUE(HostMatchesPattern("API.example.com.", "api.example.com"));
  EXPECT_TRUE(HostMatchesPattern("a.example.org", "*.example.org"));
  EXPECT_TRUE(HostMatchesPattern("a.b.example.org", "*.example.org"));
  EXPECT_FALSE(HostMatchesPattern("example.org", "*.example.org"));
  EXPECT_FALSE(HostMatchesPattern("evilexample.org", "*.example.org"));
  EXPECT_FALSE(HostMatchesPattern("api.example.com.evil.net", "api.example.com"));
  EXPECT_FALSE(HostMatchesPattern("", "*.example.org"));
  EXPECT_TRUE(HostMatchesPattern("[::1]", "::1"));
  EXPECT_EQ(*UrlHost("https://User:pw@API.Example.com:8443/x?y#z"), "api.example.com");
  EXPECT_EQ(*UrlHost("http://[::1]:80/"), "::1");
  EXPECT_FALSE(UrlHost("/relative").ok());
}

class CredentialStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("SECURITY_TEST_TOKEN", "tok-3f9a1c", 1);
    unsetenv("SECURITY_TEST_UNSET");
    path_ = absl::StrCat(::testing::TempDir(), "/credentials-", getpid(), ".json");
    secret_file_ = absl::StrCat(::testing::TempDir(), "/secret-", getpid());
    std::ofstream(secret_file_) << "file-pw-77\n";
  }
  void TearDown() override {
    unlink(path_.c_str());
    unlink(secret_file_.c_str());
  }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }

  std::string path_;
  std::string secret_file_;
};

TEST_F(CredentialStoreTest, ResolvesOnlyForItsHostsAndNeverNamesTheSecret) {
  Write(absl::StrCat(
      R"({"api": {"type": "bearer", "env": "SECURITY_TEST_TOKEN", "hosts": ["api.example.com"]},
      "pw": {"type": "basic", "username": "u", "file": ")",
      secret_file_, R"(", "hosts": ["*.example.net"]},
      "key": {"type": "api_key", "env": "SECURITY_TEST_TOKEN", "param": "k", "hosts": ["api.example.com"]},
      "gone": {"type": "bearer", "env": "SECURITY_TEST_UNSET", "hosts": ["api.example.com"]}})"));
  auto store = CredentialStore::Load(path_);
  ASSERT_TRUE(store.ok()) << store.status();

  auto bearer = (*store)->Resolve("api", "https://api.example.com/v1/x");
  ASSERT_TRUE(bearer.ok()) << bearer.status();
  EXPECT_THAT(bearer->headers, ElementsAre(std::make_pair(std::string("Authorization"),
                                                          std::string("Bearer tok-3f9a1c"))));
  auto basic = (*store)->Resolve("pw", "http://a.example.net/");
  ASSERT_TRUE(basic.ok()) << basic.status();
  EXPECT_EQ(basic->basic_username, "u");
  EXPECT_EQ(basic->basic_password, "file-pw-77");
  auto key = (*store)->Resolve("key", "https://api.example.com/");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->query_param, "k");
  EXPECT_EQ(key->secret, "tok-3f9a1c");

  // Another host, a look-alike, an internal address: INVALID_ARGUMENT before any secret is read.
  for (const char* url : {"https://evil.example.net/", "https://api.example.com.evil.net/",
                          "http://169.254.169.254/latest/meta-data/", "http://0x7f.1/"}) {
    absl::Status s = (*store)->CheckAllowed("api", url);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(std::string(s.message()), HasSubstr("may not be sent to host"));
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("tok-3f9a1c")));
  }
  EXPECT_EQ((*store)->CheckAllowed("nope", "https://api.example.com/").code(),
            absl::StatusCode::kInvalidArgument);
  auto gone = (*store)->Resolve("gone", "https://api.example.com/");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("SECURITY_TEST_UNSET"));
}

TEST_F(CredentialStoreTest, ReloadSwapsEntriesAndKeepsThemOnABadFile) {
  Write(R"({"a": {"type": "bearer", "env": "SECURITY_TEST_TOKEN", "hosts": ["a.example.com"]}})");
  auto store = CredentialStore::Load(path_);
  ASSERT_TRUE(store.ok());
  EXPECT_THAT((*store)->Names(), ElementsAre("a"));
  Write(R"({"b": {"type": "bearer", "env": "SECURITY_TEST_TOKEN", "hosts": ["b.example.com"]}})");
  ASSERT_TRUE((*store)->Reload().ok());
  EXPECT_THAT((*store)->Names(), ElementsAre("b"));
  Write("{not json");
  EXPECT_FALSE((*store)->Reload().ok());
  EXPECT_THAT((*store)->Names(), ElementsAre("b"));
  EXPECT_EQ(CredentialStore::Load("/nonexistent/credentials.json").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// ---- Job specs name credentials, not paths ----

v1::JobSpec SpecFor(const std::string& url) {
  v1::JobSpec spec;
  spec.set_cliente_id("c1");
  spec.set_rota("r1");
  spec.set_url(url);
  spec.mutable_pagination()->set_style(v1::NONE);
  return spec;
}

TEST(JobCredentialTest, SpecSecretPathsAreRefusedUnlessAllowed) {
  // The attack of the report: any caller pointing the collector's environment at its own listener.
  v1::JobSpec spec = SpecFor("https://attacker.example.net/collect");
  spec.mutable_auth()->set_type(v1::BEARER);
  spec.mutable_auth()->set_secret_env("PGUSER");
  ASSERT_TRUE(ValidateJobSpec(spec).ok());
  absl::Status s = CheckJobCredential(spec, nullptr, /*allow_spec_secret_paths=*/false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--allow-spec-secret-paths"));
  spec.mutable_auth()->clear_secret_env();
  spec.mutable_auth()->set_secret_file("/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(CheckJobCredential(spec, nullptr, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckJobCredential(spec, nullptr, true).ok());  // Explicit single-user opt-in.
}

TEST(JobCredentialTest, NamedCredentialMustBeDeclaredAndBoundToTheUrlHost) {
  std::map<std::string, CredentialDef> defs;
  CredentialDef def;
  def.env = "SECURITY_TEST_TOKEN";
  def.hosts = {"api.example.com"};
  defs["pedidos_api"] = def;
  auto store = CredentialStore::FromDefs(defs);
  v1::JobSpec spec = SpecFor("https://api.example.com/v1/pedidos");
  spec.set_credential("pedidos_api");
  ASSERT_TRUE(ValidateJobSpec(spec).ok());
  EXPECT_TRUE(CheckJobCredential(spec, store.get(), false).ok());
  spec.set_url("https://attacker.example.net/collect");
  absl::Status s = CheckJobCredential(spec, store.get(), false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("may not be sent to host \"attacker.example.net\""));
  spec.set_credential("unknown");
  EXPECT_EQ(CheckJobCredential(spec, store.get(), false).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckJobCredential(spec, nullptr, false).code(), absl::StatusCode::kInvalidArgument);
  spec.set_credential("a b\n");
  EXPECT_EQ(ValidateJobSpec(spec).code(), absl::StatusCode::kInvalidArgument);
  spec.set_credential("pedidos_api");
  spec.mutable_auth()->set_type(v1::BEARER);
  spec.mutable_auth()->set_secret_env("X");
  EXPECT_EQ(ValidateJobSpec(spec).code(), absl::StatusCode::kInvalidArgument);
}

// ---- SSRF guard ----

TEST(SsrfTest, ClassifiesInternalAddresses) {
  for (const char* ip : {"127.0.0.1",
                         "127.1.2.3",
                         "10.1.2.3",
                         "172.16.0.1",
                         "172.31.255.255",
                         "192.168.1.1",
                         "169.254.169.254",
                         "100.64.0.1",
                         "100.127.255.255",
                         "224.0.0.1",
                         "239.1.1.1",
                         "0.0.0.0",
                         "255.255.255.255",
                         "::1",
                         "::",
                         "::ffff:127.0.0.1",
                         "::ffff:8.8.8.8",
                         "::127.0.0.1",
                         "fc00::1",
                         "fd12:3456::1",
                         "fe80::1",
                         "ff02::1",
                         "64:ff9b::7f00:1",
                         "2002:7f00:1::1",
                         "[::1]",
                         "fec0::1"}) {
    EXPECT_NE(InternalAddressKind(ip), "") << ip;
  }
  for (const char* ip :
       {"8.8.8.8", "1.1.1.1", "100.128.0.1", "100.63.255.255", "172.32.0.1", "192.169.0.1",
        "2606:4700:4700::1111", "2a00:1450::1", "64:ff9b::808:808"}) {
    EXPECT_EQ(InternalAddressKind(ip), "") << ip;
  }
  EXPECT_EQ(InternalAddressKind("169.254.169.254"), "link-local");
  EXPECT_EQ(InternalAddressKind("100.64.0.1"), "CGNAT");
  EXPECT_EQ(InternalAddressKind("::ffff:127.0.0.1"), "IPv4-mapped IPv6");
  EXPECT_EQ(InternalAddressKind("fd00::1"), "unique-local");
  EXPECT_EQ(InternalAddressKind("not an ip"), "invalid");
}

class GuardedFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/headers", [this](const httplib::Request& req, httplib::Response& res) {
      hits_.fetch_add(1);
      res.set_content(absl::StrCat("auth=", req.get_header_value("Authorization"),
                                   "|cookie=", req.get_header_value("Cookie"),
                                   "|custom=", req.get_header_value("X-Custom"),
                                   "|key=", req.get_param_value("key")),
                      "text/plain");
    });
    server_.Get("/redirect", [this](const httplib::Request& req, httplib::Response& res) {
      hits_.fetch_add(1);
      res.set_redirect(
          absl::StrCat(req.get_param_value("to"), "?key=", req.get_param_value("key")));
    });
    server_.Get("/replica", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content(absl::StrCat("replica=", req.get_header_value("X-Etl-Replica")),
                      "text/plain");
    });
    server_.Get("/loop",
                [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/loop"); });
    server_.Get("/bomb", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Encoding", "gzip");
      res.set_content(bomb_, "application/octet-stream");
    });
    server_.Get("/many-headers", [](const httplib::Request&, httplib::Response& res) {
      for (int i = 0; i < 400; ++i) res.set_header(absl::StrCat("X-H", i), "v");
      res.set_content("{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  void TearDown() override {
    server_.stop();
    thread_.join();
  }
  std::string Url(const std::string& host, const std::string& path) {
    return absl::StrCat("http://", host, ":", port_, path);
  }
  static HttpFetcherOptions Open() {
    HttpFetcherOptions o;
    o.allow_private_networks = true;
    return o;
  }
  // A gzip body that inflates to `inflated` zero bytes.
  static std::string GzipZeros(size_t inflated) {
    z_stream z{};
    deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 9, Z_DEFAULT_STRATEGY);
    std::string zeros(1 << 20, '\0'), out;
    char buf[1 << 16];
    for (size_t done = 0; done < inflated; done += zeros.size()) {
      z.next_in = reinterpret_cast<Bytef*>(&zeros[0]);
      z.avail_in = uInt(zeros.size());
      int flush = done + zeros.size() >= inflated ? Z_FINISH : Z_NO_FLUSH;
      do {
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof(buf);
        deflate(&z, flush);
        out.append(buf, sizeof(buf) - z.avail_out);
      } while (z.avail_out == 0);
    }
    deflateEnd(&z);
    return out;
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> hits_{0};
  std::string bomb_;
};

TEST_F(GuardedFetchTest, InternalTargetsAreRefusedHoweverSpelled) {
  CurlHttpFetcher fetcher;  // Defaults: no private networks.
  for (const std::string host : {"127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.1",
                                 "localhost", "[::ffff:127.0.0.1]", "[::1]"}) {
    HttpRequest req;
    req.url = Url(host, "/headers");
    req.connect_timeout_seconds = 5;
    auto resp = fetcher.Fetch(req);
    ASSERT_FALSE(resp.ok()) << host;
    EXPECT_EQ(resp.status().code(), absl::StatusCode::kPermissionDenied)
        << host << ": " << resp.status();
    EXPECT_THAT(std::string(resp.status().message()), HasSubstr("--allow-private-networks"))
        << host;
  }
  EXPECT_EQ(hits_.load(), 0);
  // The cloud metadata address is refused before any packet leaves.
  HttpRequest metadata;
  metadata.url = "http://169.254.169.254/latest/meta-data/";
  auto resp = fetcher.Fetch(metadata);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(resp.status().message()), HasSubstr("169.254.169.254 (link-local"));
  // Not http(s): refused by protocol.
  HttpRequest file;
  file.url = "file:///etc/passwd";
  EXPECT_FALSE(fetcher.Fetch(file).ok());

  // Allowed explicitly: the same request works.
  CurlHttpFetcher open(Open());
  HttpRequest req;
  req.url = Url("localhost", "/headers");
  auto ok = open.Fetch(req);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(hits_.load(), 1);
}

TEST_F(GuardedFetchTest, RedirectToAnInternalAddressIsRefused) {
  HttpFetcherOptions options;
  options.allowed_private_addresses = {"127.0.0.1"};  // Only the API itself.
  CurlHttpFetcher fetcher(options);
  HttpRequest req;
  req.url = Url("127.0.0.1", absl::StrCat("/redirect?to=", Url("127.0.0.2", "/headers")));
  auto resp = fetcher.Fetch(req);
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(resp.status().message()), HasSubstr("127.0.0.2 (loopback"));
  // Numeric spellings of the excepted address are the same address; other ones are not.
  req.url = Url("0x7f.1", "/headers");
  EXPECT_TRUE(fetcher.Fetch(req).ok());
  req.url = Url("0x7f.0.0.3", "/headers");
  EXPECT_EQ(fetcher.Fetch(req).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(GuardedFetchTest, AllowedHostsApplyToEveryHop) {
  HttpFetcherOptions options = Open();
  options.allowed_hosts = {"127.0.0.1"};
  CurlHttpFetcher fetcher(options);
  HttpRequest req;
  req.url = Url("localhost", "/headers");
  auto resp = fetcher.Fetch(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(resp.status().message()), HasSubstr("allowed hosts"));
  req.url = Url("127.0.0.1", absl::StrCat("/redirect?to=", Url("localhost", "/headers")));
  resp = fetcher.Fetch(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(resp.status().message()), HasSubstr("redirect to host \"localhost\""));
  EXPECT_EQ(hits_.load(), 1);  // Only the redirecting page was reached.
}

TEST_F(GuardedFetchTest, RedirectsCarryCredentialsOnlyToTheSameOrigin) {
  CurlHttpFetcher fetcher(Open());
  auto fetch = [&](const std::string& target) {
    HttpRequest req;
    req.url = Url("127.0.0.1", absl::StrCat("/redirect?key=s3cr3t-key&to=", target));
    req.credential_headers = {{"Authorization", "Bearer s3cr3t-token"}};
    req.credential_query_param = "key";
    req.headers = {{"Cookie", "sid=s3cr3t-cookie"}, {"X-Custom", "kept"}};
    auto resp = fetcher.Fetch(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->body : std::string();
  };
  // Same origin: everything arrives (so the assertion below can fail).
  EXPECT_EQ(fetch(Url("127.0.0.1", "/headers")),
            "auth=Bearer s3cr3t-token|cookie=sid=s3cr3t-cookie|custom=kept|key=s3cr3t-key");
  // Another host (same port): no credential of any kind.
  EXPECT_EQ(fetch(Url("localhost", "/headers")), "auth=|cookie=|custom=kept|key=");

  HttpRequest basic;
  basic.url = Url("127.0.0.1", absl::StrCat("/redirect?to=", Url("localhost", "/headers")));
  basic.basic_username = "u";
  basic.basic_password = "s3cr3t-pw";
  auto resp = fetcher.Fetch(basic);
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(resp->body, HasSubstr("auth=|"));
}

TEST_F(GuardedFetchTest, ReplicaHeaderOnlyWhenConfigured) {
  HttpRequest req;
  req.url = Url("127.0.0.1", "/replica");
  CurlHttpFetcher plain(Open());
  auto none = plain.Fetch(req);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->body, "replica=");
  HttpFetcherOptions options = Open();
  options.replica_id = "c2.1";
  CurlHttpFetcher named(options);
  auto resp = named.Fetch(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->body, "replica=c2.1");
}

TEST_F(GuardedFetchTest, CredentialsBoundToHostsAreNeverSentElsewhere) {
  CurlHttpFetcher fetcher(Open());
  HttpRequest req;
  req.url = Url("localhost", "/headers");  // E.g. a next-page URL taken from the API's body.
  req.credential_headers = {{"Authorization", "Bearer s3cr3t-token"}};
  req.credential_hosts = {"127.0.0.1"};
  auto resp = fetcher.Fetch(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(resp.status().message()),
              HasSubstr("may not be sent to host \"localhost\""));
  EXPECT_EQ(hits_.load(), 0);
  req.url = Url("127.0.0.1", "/headers");
  resp = fetcher.Fetch(req);
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(resp->body, HasSubstr("auth=Bearer s3cr3t-token"));
}

TEST_F(GuardedFetchTest, RedirectLoopsAreBounded) {
  CurlHttpFetcher fetcher(Open());
  HttpRequest req;
  req.url = Url("127.0.0.1", "/loop");
  auto resp = fetcher.Fetch(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(resp.status().message()), HasSubstr("redirects"));
}

TEST_F(GuardedFetchTest, GzipBombStopsAtTheDecompressedLimit) {
  bomb_ = GzipZeros(size_t(512) << 20);  // ~0.5 MB on the wire, 512 MiB inflated.
  ASSERT_LT(bomb_.size(), size_t(1) << 20);
  CurlHttpFetcher fetcher(Open());
  HttpRequest req;
  req.url = Url("127.0.0.1", "/bomb");
  req.max_response_bytes = size_t(4) << 20;
  auto resp = fetcher.Fetch(req);
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(resp.status().message()),
              HasSubstr("exceeds the limit of 4194304 bytes"));
}

TEST_F(GuardedFetchTest, HeaderFloodAndHugeUrlsAreRefused) {
  CurlHttpFetcher fetcher(Open());
  HttpRequest req;
  req.url = Url("127.0.0.1", "/many-headers");
  auto resp = fetcher.Fetch(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(resp.status().message()), HasSubstr("headers exceed"));
  req.url = Url("127.0.0.1", "/headers?x=" + std::string(20000, 'a'));
  EXPECT_EQ(fetcher.Fetch(req).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace etl
