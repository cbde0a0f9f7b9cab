// DashboardServer against a fake backend, over real HTTP on loopback.
#include "collector_service/dashboard_server.h"

#include <httplib.h>

#include <deque>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "simdjson.h"

namespace etl {
namespace {

class FakeBackend : public DashboardBackend {
 public:
  void Add(const std::string& id, const std::string& cliente, v1::JobState st, int64_t created_ms) {
    v1::Job j;
    j.set_job_id(id);
    j.set_state(st);
    j.set_created_at_unix_ms(created_ms);
    j.set_table_name(absl::StrCat("dados_raw_cliente_", cliente, "_pedidos"));
    j.mutable_spec()->set_cliente_id(cliente);
    j.mutable_spec()->set_rota("pedidos");
    j.mutable_spec()->set_url("https://api.example.com/v1/pedidos");
    j.mutable_spec()->mutable_auth()->set_type(v1::BEARER);
    j.mutable_spec()->mutable_auth()->set_secret_env("PEDIDOS_API_TOKEN");
    j.mutable_spec()->mutable_auth()->set_secret_file("/run/secrets/pedidos");
    auto* h = j.mutable_spec()->add_headers();
    h->set_key("X-Api-Key");
    h->set_value("hunter2");
    auto* h2 = j.mutable_spec()->add_headers();
    h2->set_key("Accept");
    h2->set_value("application/json");
    j.mutable_progress()->set_state(st);
    j.mutable_progress()->set_pages_total(10);
    j.mutable_progress()->set_pages_committed(4);
    j.mutable_progress()->set_pages_done(6);
    absl::MutexLock l(&mu_);
    jobs_[id] = j;
  }
  absl::StatusOr<std::vector<v1::Job>> ListJobs(int limit) override {
    absl::MutexLock l(&mu_);
    std::vector<v1::Job> out;
    for (const auto& [id, j] : jobs_) out.push_back(j);
    return out;
  }
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override {
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
    return it->second;
  }
  absl::StatusOr<v1::Job> CancelJob(const std::string& id) override {
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError("no job");
    ++cancels_;
    it->second.set_state(v1::CANCELLED);
    return it->second;
  }
  absl::StatusOr<v1::Job> RetryJob(const std::string& id) override {
    absl::MutexLock l(&mu_);
    ++retries_;
    v1::Job j = jobs_.at(id);
    j.set_job_id(id + "r");
    j.set_state(v1::PENDING);
    return j;
  }
  absl::StatusOr<v1::WriterStatus> WriterStatus() override {
    v1::WriterStatus w;
    w.set_serving(true);
    w.set_records_committed(17864200);
    w.add_jobs()->set_job_id("x");
    return w;
  }
  absl::StatusOr<std::vector<int64_t>> CommittedPages(const std::string& id) override {
    return std::vector<int64_t>{0, 1, 2, 5};
  }
  void SetError(const std::string& id, const std::string& error) {
    absl::MutexLock l(&mu_);
    jobs_[id].set_error(error);
    auto* f = jobs_[id].add_failed_pages();
    f->set_error(error);
  }
  int cancels() {
    absl::MutexLock l(&mu_);
    return cancels_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, v1::Job> jobs_ ABSL_GUARDED_BY(mu_);
  int cancels_ ABSL_GUARDED_BY(mu_) = 0;
  int retries_ ABSL_GUARDED_BY(mu_) = 0;
};

class DashboardServerTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& token) {
    DashboardOptions o;
    o.listen = "127.0.0.1:0";
    o.auth_token = token;
    auto s = DashboardServer::Start(o, &backend_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  // Each document gets its own parser so elements stay valid for the whole test.
  simdjson::dom::element Json(const std::string& body) {
    docs_.emplace_back();
    auto r = docs_.back().parse(body);
    EXPECT_EQ(r.error(), simdjson::SUCCESS) << body;
    return r.value();
  }

  FakeBackend backend_;
  std::unique_ptr<DashboardServer> server_;
  std::unique_ptr<httplib::Client> client_;
  std::deque<simdjson::dom::parser> docs_;
};

TEST_F(DashboardServerTest, ServesThePageAndItsAssetsFromTheBinary) {
  StartServer("");
  auto res = client_->Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("<script src=\"/app.js\">"), std::string::npos);
  EXPECT_NE(res->get_header_value("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
  auto js = client_->Get("/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_NE(js->body.find("/api/jobs"), std::string::npos);
  auto css = client_->Get("/style.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->status, 200);
  auto missing = client_->Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(DashboardServerTest, ListsNewestFirstFilteredAndPaged) {
  backend_.Add("a", "2151", v1::SUCCEEDED, 1000);
  backend_.Add("b", "2151", v1::RUNNING, 3000);
  backend_.Add("c", "77", v1::RUNNING, 2000);
  backend_.Add("d", "2151", v1::FAILED, 4000);
  StartServer("");
  auto res = client_->Get("/api/jobs");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  auto all = Json(res->body);
  EXPECT_EQ(int64_t(all["total"]), 4);
  std::vector<std::string> ids;
  for (auto j : all["jobs"].get_array()) ids.emplace_back(std::string_view(j["job_id"]));
  EXPECT_EQ(ids, (std::vector<std::string>{"d", "b", "c", "a"}));

  res = client_->Get("/api/jobs?state=running&cliente=2151");
  ASSERT_TRUE(res);
  auto filtered = Json(res->body);
  EXPECT_EQ(int64_t(filtered["total"]), 1);
  EXPECT_EQ(std::string_view(filtered["jobs"].at(0)["job_id"]), "b");

  res = client_->Get("/api/jobs?state=unfinished");
  EXPECT_EQ(int64_t(Json(res->body)["total"]), 2);

  res = client_->Get("/api/jobs?limit=2&offset=2");
  auto paged = Json(res->body);
  EXPECT_EQ(int64_t(paged["total"]), 4);
  ASSERT_EQ(paged["jobs"].get_array().size(), 2u);
  EXPECT_EQ(std::string_view(paged["jobs"].at(0)["job_id"]), "c");

  EXPECT_EQ(client_->Get("/api/jobs?state=BOGUS")->status, 400);
  EXPECT_EQ(client_->Get("/api/jobs?limit=-1")->status, 400);
}

TEST_F(DashboardServerTest, JobAndListNeverShowCredentialReferences) {
  backend_.Add("a", "2151", v1::RUNNING, 1000);
  StartServer("");
  for (const char* path : {"/api/jobs/a", "/api/jobs"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    EXPECT_EQ(res->body.find("PEDIDOS_API_TOKEN"), std::string::npos) << res->body;
    EXPECT_EQ(res->body.find("/run/secrets"), std::string::npos) << res->body;
    EXPECT_EQ(res->body.find("hunter2"), std::string::npos) << res->body;
  }
  auto job = Json(client_->Get("/api/jobs/a")->body);
  EXPECT_EQ(std::string_view(job["spec"]["auth"]["type"]), "BEARER");
  EXPECT_EQ(std::string_view(job["spec"]["headers"].at(1)["value"]), "application/json");
  EXPECT_EQ(std::string_view(job["spec"]["headers"].at(0)["value"]), "[redacted]");
  EXPECT_EQ(client_->Get("/api/jobs/zzz")->status, 404);
  EXPECT_EQ(client_->Get("/api/jobs/a%22%3Cx")->status, 404);
}

TEST_F(DashboardServerTest, InvalidUtf8InAJobStillGivesValidJson) {
  backend_.Add("a", "2151", v1::PARTIAL, 1000);
  backend_.SetError("a", std::string("HTTP 500: \xff\xfe body", 17));
  StartServer("");
  for (const char* path : {"/api/jobs/a", "/api/jobs"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    simdjson::dom::parser p;
    EXPECT_EQ(p.parse(res->body).error(), simdjson::SUCCESS) << res->body;
  }
}

TEST_F(DashboardServerTest, WriterStatusKeepsCountersExactAndDropsPerJobList) {
  StartServer("");
  auto res = client_->Get("/api/writer");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  auto w = Json(res->body);
  EXPECT_TRUE(bool(w["serving"]));
  EXPECT_EQ(std::string_view(w["records_committed"]), "17864200");  // proto3 JSON: int64 as string
  EXPECT_EQ(w["jobs"].get_array().size(), 0u);
}

TEST_F(DashboardServerTest, PageMapMarksCommittedFailedInFlightAndPending) {
  backend_.Add("a", "2151", v1::RUNNING, 1000);
  StartServer("");
  auto res = client_->Get("/api/jobs/a/pages");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  // Ledger {0,1,2,5}, 6 sent, 4 committed: 2 in flight (3, 4), then committed 5, pending 6..9.
  EXPECT_NE(res->body.find(
                "\"runs\":[[\"committed\",3],[\"in_flight\",2],[\"committed\",1],[\"pending\",4]]"),
            std::string::npos)
      << res->body;
  EXPECT_NE(res->body.find("\"exact\":true"), std::string::npos);
}

TEST_F(DashboardServerTest, ReadOnlyWithoutAToken) {
  backend_.Add("a", "2151", v1::RUNNING, 1000);
  StartServer("");
  EXPECT_NE(client_->Get("/api/info")->body.find("\"read_only\":true"), std::string::npos);
  httplib::Headers h = {{"Authorization", "Bearer "}};
  auto res = client_->Post("/api/jobs/a/cancel", h, "", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_EQ(client_->Post("/api/jobs/a/retry", h, "", "application/json")->status, 403);
  EXPECT_EQ(backend_.cancels(), 0);
}

TEST_F(DashboardServerTest, ActionsNeedTheSameTokenAsTheApi) {
  backend_.Add("a", "2151", v1::RUNNING, 1000);
  StartServer("s3cret-token");
  EXPECT_NE(client_->Get("/api/info")->body.find("\"read_only\":false"), std::string::npos);
  EXPECT_EQ(client_->Post("/api/jobs/a/cancel", "", "application/json")->status, 401);
  EXPECT_EQ(
      client_
          ->Post("/api/jobs/a/cancel", {{"Authorization", "Bearer s3cret-tokeN"}}, "", "text/plain")
          ->status,
      401);
  EXPECT_EQ(client_
                ->Post("/api/jobs/a/cancel", {{"Authorization", "Bearer s3cret-token-longer"}}, "",
                       "text/plain")
                ->status,
            401);
  EXPECT_EQ(client_->Get("/api/jobs/a/cancel")->status, 404);  // GET never acts
  EXPECT_EQ(backend_.cancels(), 0);
  auto ok = client_->Post("/api/jobs/a/cancel", {{"Authorization", "Bearer s3cret-token"}}, "",
                          "text/plain");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(backend_.cancels(), 1);
  EXPECT_NE(ok->body.find("\"CANCELLED\""), std::string::npos);
  auto retry = client_->Post("/api/jobs/a/retry", {{"Authorization", "Bearer s3cret-token"}}, "",
                             "text/plain");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 200);
  EXPECT_NE(retry->body.find("\"ar\""), std::string::npos);
}

TEST_F(DashboardServerTest, CountsResponsesByCodeForMetrics) {
  StartServer("");
  client_->Get("/");
  client_->Get("/nope");
  ExpositionWriter w;
  server_->RenderMetrics(&w);
  EXPECT_NE(w.text().find("etl_collector_dashboard_http_responses_total{code=\"200\"} 1\n"),
            std::string::npos)
      << w.text();
  EXPECT_NE(w.text().find("etl_collector_dashboard_http_responses_total{code=\"404\"} 1\n"),
            std::string::npos);
}

TEST(DashboardServerStartTest, RefusesABadAddress) {
  FakeBackend b;
  DashboardOptions o;
  o.listen = "nonsense";
  EXPECT_FALSE(DashboardServer::Start(o, &b).ok());
}

}  // namespace
}  // namespace etl
