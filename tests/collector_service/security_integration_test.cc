// The whole pipeline hardened, as an operator would run it, attacked from the outside: real
// writer_server and collector_server processes with TLS, mutual TLS and tokens (certificates made
// by openssl for the test), operator credentials bound to hosts, real PostgreSQL, a scripted API on
// loopback and etlctl as the client.
//  - a secret never shows in any output: logs, errors, GetJob/ListJobs/WatchJob, the ledger and
//  data
//    tables, /metrics, /proc/*/cmdline;
//  - the SSRF guard turns internal targets (numeric forms, names resolving inward, redirects) into
//    clear job errors;
//  - credentials cannot be pointed at another host, nor spec secret paths used;
//  - a page nested 100,000 deep is a page error and the collector stays up.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/grpc_security.h"
#include "etl.grpc.pb.h"
#include "tests/collector_service/test_api.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

using ::etl::testing::ApiRequest;
using ::etl::testing::ChildProcess;
using ::etl::testing::TestApi;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A currently free loopback port (for the /metrics endpoints, whose port is not reported).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Runs a command line through the shell; returns its exit status and appends stdout+stderr to *out.
int RunShell(const std::string& command, std::string* out) {
  FILE* p = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class SecurityIntegrationTest : public ::testing::Test {
 protected:
  static constexpr char kApiToken[] = "api-bearer-7c1e0f3a9d";
  static constexpr char kApiKey[] = "api-key-b84d21e6";
  static constexpr char kOperatorToken[] = "operator-token-51ac9e";
  static constexpr char kCollectorToken[] = "collector-token-e0d4b7";

  void SetUp() override {
    if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
    // A database of its own: collectors resume every unfinished job of their ledger, so sharing one
    // with tests running in parallel would let them run (and fail) each other's jobs. The first
    // dbname of a conninfo may itself be a connection string or URL; the second names the database.
    db_ = "etl_security_" + etl::testing::UniqueSuffix();
    ASSERT_EQ(etl::testing::Exec("CREATE DATABASE " + db_), "");
    db_conninfo_ = absl::StrCat("dbname='", etl::testing::PostgresConnString(), "' dbname=", db_);
    dir_ = absl::StrCat(::testing::TempDir(), "/etl-security-", getpid(), "-",
                        etl::testing::UniqueSuffix());
    ASSERT_EQ(std::system(
                  absl::StrCat(ETL_SOURCE_DIR, "/tests/testing/make_test_certs.sh ", dir_).c_str()),
              0);
    std::ofstream(F("operator-token")) << kOperatorToken << "\n";
    std::ofstream(F("collector-token")) << kCollectorToken << "\n";
    std::ofstream(F("api-token")) << kApiToken << "\n";
  }
  void TearDown() override {
    collector_.reset();
    writer_.reset();
    apis_.clear();
    if (!db_.empty()) etl::testing::Exec("DROP DATABASE IF EXISTS " + db_ + " WITH (FORCE)");
    if (!dir_.empty()) std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
  }
  std::string F(const std::string& name) const { return absl::StrCat(dir_, "/", name); }

  // Rows of `sql` in this test's database, first column only.
  std::vector<std::string> DbQuery(const std::string& sql) {
    std::vector<std::string> rows;
    PGconn* conn = PQconnectdb(db_conninfo_.c_str());
    PGresult* res = PQexec(conn, sql.c_str());
    EXPECT_EQ(PQresultStatus(res), PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(conn);
    for (int i = 0; i < PQntuples(res); ++i) rows.emplace_back(PQgetvalue(res, i, 0));
    PQclear(res);
    PQfinish(conn);
    return rows;
  }

  TestApi& NewApi(int total, int page_size) {
    apis_.push_back(std::make_unique<TestApi>(total, page_size));
    return *apis_.back();
  }

  // Starts `binary` with its output appended to `log` (through sh, so the port file argument that
  // ChildProcess appends still reaches the binary).
  std::unique_ptr<ChildProcess> StartLogged(const std::string& binary, const std::string& log,
                                            std::vector<std::string> args,
                                            const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> sh = {"-c", absl::StrCat("exec \"$0\" \"$@\" >>'", log, "' 2>&1"),
                                   etl::testing::BinaryPath(binary)};
    sh.insert(sh.end(), args.begin(), args.end());
    auto child = ChildProcess::Start("/bin/sh", sh, env);
    EXPECT_TRUE(child.ok()) << child.status() << "\n" << ReadAll(log);
    return child.ok() ? std::move(*child) : nullptr;
  }

  // writer_server with TLS, mutual TLS, an operator token and the collector's identity (certificate
  // name "collector" or its token).
  void StartWriter() {
    writer_metrics_ = FreePort();
    writer_ = StartLogged(
        "writer_server", F("writer.log"),
        {"--listen=127.0.0.1:0", "--flush_interval_ms=20", "--database_url=" + db_conninfo_,
         absl::StrCat("--metrics_listen=:", writer_metrics_), "--tls-cert=" + F("server.pem"),
         "--tls-key=" + F("server.key"), "--tls-client-ca=" + F("ca.pem"),
         "--auth-token-file=" + F("operator-token"),
         "--collector-token-file=" + F("collector-token"), "--collector-identity=collector"});
    ASSERT_NE(writer_, nullptr);
  }

  // collector_server with TLS and an operator token; talks to the writer with its client
  // certificate.
  void StartCollector(const std::vector<std::string>& extra) {
    std::ofstream(F("credentials.json"))
        << R"({"api": {"type": "bearer", "file": ")" << F("api-token")
        << R"(", "hosts": ["127.0.0.1", "localhost"]},
              "apikey": {"type": "api_key", "env": "SECURITY_IT_API_KEY", "param": "key", "hosts": ["127.0.0.1"]},
              "elsewhere": {"type": "bearer", "file": ")"
        << F("api-token") << R"(", "hosts": ["api.example.com"]}})";
    collector_metrics_ = FreePort();
    dashboard_port_ = FreePort();
    std::vector<std::string> args = {"--listen=127.0.0.1:0",
                                     absl::StrCat("--writer=localhost:", writer_->port()),
                                     absl::StrCat("--metrics_listen=:", collector_metrics_),
                                     "--credentials=" + F("credentials.json"),
                                     "--tls-cert=" + F("server.pem"),
                                     "--tls-key=" + F("server.key"),
                                     "--auth-token-file=" + F("operator-token"),
                                     "--writer-tls-ca=" + F("ca.pem"),
                                     "--writer-tls-cert=" + F("collector.pem"),
                                     "--writer-tls-key=" + F("collector.key"),
                                     absl::StrCat("--http_listen=:", dashboard_port_)};
    args.insert(args.end(), extra.begin(), extra.end());
    collector_ = StartLogged("collector_server", F("collector.log"), args,
                             {{"SECURITY_IT_API_KEY", kApiKey}});
    ASSERT_NE(collector_, nullptr);
  }

  std::string Etlctl(const std::string& args, int* status = nullptr) {
    std::string out;
    int rc =
        RunShell(absl::StrCat(etl::testing::BinaryPath("etlctl"), " --plain --rpc-timeout=30",
                              " --collector=localhost:", collector_->port(),
                              " --writer=localhost:", writer_->port(), " --tls-ca=", F("ca.pem"),
                              " --token-file=", F("operator-token"), " ", args),
                 &out);
    if (status) *status = rc;
    all_output_ += out;
    return out;
  }

  std::string JobArgs(const TestApi& api, const std::string& path, const std::string& extra) {
    return absl::StrCat("run --cliente=sec", etl::testing::UniqueSuffix(),
                        " --rota=pedidos --url='", api.Url(path), "'",
                        " --pagination=page --page-size=50 --records-path=/data "
                        "--total-pages-path=/meta/total_pages",
                        " --max-attempts=2 --backoff-scale=0.01 ", extra);
  }

  std::string dir_;
  std::string db_;
  std::string db_conninfo_;
  std::vector<std::unique_ptr<TestApi>> apis_;
  std::unique_ptr<ChildProcess> writer_;
  std::unique_ptr<ChildProcess> collector_;
  int writer_metrics_ = 0;
  int collector_metrics_ = 0;
  int dashboard_port_ = 0;
  std::string all_output_;
};

TEST_F(SecurityIntegrationTest, SecretsNeverAppearInAnyOutput) {
  StartWriter();
  StartCollector({"--allow-private-networks"});
  TestApi& api = NewApi(230, 50);
  api.SetHook([](const ApiRequest& r, httplib::Response& res) {
    if (r.params.count("fail")) {
      res.status = 503;
      return true;
    }
    auto auth = r.headers.find("Authorization");
    auto key = r.params.find("key");
    bool ok = (auth != r.headers.end() && auth->second == absl::StrCat("Bearer ", kApiToken)) ||
              (key != r.params.end() && key->second == kApiKey);
    if (ok) return false;
    res.status = 401;
    res.set_content(R"({"error":"unauthorized"})", "application/json");
    return true;
  });

  int rc = -1;
  std::string bearer_run = Etlctl(JobArgs(api, "/page", "--credential=api --id-path=/id"), &rc);
  ASSERT_EQ(rc, 0) << bearer_run << ReadAll(F("collector.log"));
  std::string key_run = Etlctl(JobArgs(api, "/page", "--credential=apikey"), &rc);
  ASSERT_EQ(rc, 0) << key_run;
  // A failing run too: its errors must not carry the secret either.
  std::string failing = Etlctl(JobArgs(api, "/page?fail=1", "--credential=api"), &rc);

  // Positive control: the secrets did travel, to the API only.
  size_t authorized = 0;
  for (const ApiRequest& r : api.requests())
    authorized += r.headers.count("Authorization") + r.params.count("key");
  EXPECT_GT(authorized, 0u);

  // Every output an operator or an attacker with read access could see.
  std::string listed = Etlctl("list --json --limit=1000");
  int jobs_seen = 0;
  std::vector<std::string> job_ids;
  for (size_t at = listed.find("\"job_id\""); at != std::string::npos;
       at = listed.find("\"job_id\"", at + 1)) {
    size_t start = listed.find('"', listed.find(':', at)) + 1;
    std::string id = listed.substr(start, listed.find('"', start) - start);
    Etlctl(absl::StrCat("status --json ", id));
    Etlctl(absl::StrCat("watch ", id));
    job_ids.push_back(id);
    ++jobs_seen;
  }
  EXPECT_GE(jobs_seen, 3) << listed;
  Etlctl("writer-status --json");
  std::string metrics;
  for (int port : {writer_metrics_, collector_metrics_}) {
    httplib::Client client("127.0.0.1", port);
    auto res = client.Get("/metrics");
    ASSERT_TRUE(res) << "no /metrics on 127.0.0.1:" << port;
    metrics += res->body;
  }
  EXPECT_THAT(metrics, HasSubstr("# TYPE"));  // The endpoints answered (on loopback).
  // The dashboard's JSON API (bound to loopback: --http_listen=:PORT).
  std::string dashboard;
  {
    httplib::Client client("127.0.0.1", dashboard_port_);
    std::vector<std::string> paths = {"/api/jobs", "/api/writer", "/api/info"};
    for (const std::string& id : job_ids) {
      paths.push_back("/api/jobs/" + id);
      paths.push_back("/api/jobs/" + id + "/pages");
    }
    for (const std::string& path : paths) {
      auto res = client.Get(path);
      ASSERT_TRUE(res) << "no dashboard at 127.0.0.1:" << dashboard_port_ << path;
      dashboard += res->body;
    }
  }
  EXPECT_THAT(dashboard, HasSubstr("pedidos"));
  std::string tables;
  for (const char* table : {"etl_jobs", "etl_pages", "etl_dead_letters"}) {
    for (const std::string& row : DbQuery(absl::StrCat("SELECT t::text FROM ", table, " t"))) {
      absl::StrAppend(&tables, row, "\n");
    }
  }
  for (const std::string& t :
       DbQuery("SELECT tablename FROM pg_tables WHERE tablename LIKE 'dados_raw_cliente_sec%'")) {
    for (const std::string& row : DbQuery(absl::StrCat("SELECT t::text FROM ", t, " t"))) {
      absl::StrAppend(&tables, row, "\n");
    }
  }
  EXPECT_THAT(tables, HasSubstr("pedidos"));
  std::string cmdlines;
  if (DIR* proc = opendir("/proc")) {
    while (dirent* e = readdir(proc)) {
      if (e->d_name[0] >= '1' && e->d_name[0] <= '9') {
        absl::StrAppend(&cmdlines, ReadAll(absl::StrCat("/proc/", e->d_name, "/cmdline")), "\n");
      }
    }
    closedir(proc);
  }
  EXPECT_THAT(cmdlines, HasSubstr("collector_server"));
  std::string logs = ReadAll(F("writer.log")) + ReadAll(F("collector.log"));
  EXPECT_THAT(logs, HasSubstr("listening"));

  const std::pair<const char*, const std::string*> outputs[] = {
      {"etlctl output (runs, errors, GetJob, ListJobs, WatchJob, writer status)", &all_output_},
      {"/metrics", &metrics},
      {"the dashboard's JSON API", &dashboard},
      {"ledger and data tables", &tables},
      {"/proc/*/cmdline", &cmdlines},
      {"service logs", &logs}};
  for (const auto& [what, text] : outputs) {
    for (const char* secret : {kApiToken, kApiKey, kOperatorToken, kCollectorToken}) {
      EXPECT_FALSE(absl::StrContains(*text, secret)) << secret << " appears in " << what;
    }
  }
}

TEST_F(SecurityIntegrationTest, WriterAcceptsWritesOnlyFromTheCollector) {
  StartWriter();
  // An operator with the right token and a valid certificate can read the writer's status...
  std::string out;
  std::string base =
      absl::StrCat(etl::testing::BinaryPath("etlctl"), " --writer=localhost:", writer_->port(),
                   " --tls-ca=", F("ca.pem"), " --tls-cert=", F("operator.pem"),
                   " --tls-key=", F("operator.key"));
  EXPECT_EQ(RunShell(base + " --token-file=" + F("operator-token") + " writer-status", &out), 0)
      << out;
  // ... but no token, a wrong token, no certificate or a stranger CA's certificate get nothing.
  std::ofstream(F("wrong-token")) << "operator-token-51ac9f\n";
  out.clear();
  EXPECT_NE(RunShell(base + " --token-file=" + F("wrong-token") + " writer-status", &out), 0);
  EXPECT_THAT(out, HasSubstr("UNAUTHENTICATED"));
  out.clear();
  EXPECT_NE(RunShell(absl::StrCat(etl::testing::BinaryPath("etlctl"), " --writer=localhost:",
                                  writer_->port(), " --tls-ca=", F("ca.pem"),
                                  " --token-file=", F("operator-token"), " writer-status"),
                     &out),
            0);
  out.clear();
  EXPECT_NE(RunShell(absl::StrCat(etl::testing::BinaryPath("etlctl"), " --writer=localhost:",
                                  writer_->port(), " --tls-ca=", F("ca.pem"),
                                  " --tls-cert=", F("stranger-collector.pem"),
                                  " --tls-key=", F("stranger-collector.key"), " writer-status"),
                     &out),
            0);
  // Write and the ledger RPCs, called directly with the operator's certificate and token: refused.
  ChannelSecurityOptions op;
  op.tls_ca_file = F("ca.pem");
  op.tls_cert_file = F("operator.pem");
  op.tls_key_file = F("operator.key");
  op.token_file = F("operator-token");
  auto channel = CreateSecureChannel(absl::StrCat("localhost:", writer_->port()), op);
  ASSERT_TRUE(channel.ok()) << channel.status();
  auto stub = v1::WriterService::NewStub(*channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::WriteSummary summary;
    auto writer = stub->Write(&ctx, &summary);
    v1::RecordBatch batch;
    batch.set_job_id("forged");
    batch.add_records("{}");
    writer->Write(batch);
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RegisterJobRequest req;
    req.set_job_id("forged");
    v1::JobRecord out;
    EXPECT_EQ(stub->RegisterJob(&ctx, req, &out).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListJobRecordsRequest req;
    v1::ListJobRecordsResponse out;
    EXPECT_EQ(stub->ListJobRecords(&ctx, req, &out).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  // The collector (its certificate) is served: a collector started against this writer registers
  // jobs.
  StartCollector({"--allow-private-networks"});
  TestApi& api = NewApi(60, 50);
  int rc = -1;
  std::string run = Etlctl(JobArgs(api, "/page", ""), &rc);
  EXPECT_EQ(rc, 0) << run << ReadAll(F("collector.log"));
}

TEST_F(SecurityIntegrationTest, InternalTargetsAreClearJobErrors) {
  StartWriter();
  StartCollector({"--allowed-private-addresses=127.0.0.1"});
  TestApi& api = NewApi(60, 50);
  const std::string port = api.Url("").substr(api.Url("").rfind(':') + 1);
  api.SetHook([&](const ApiRequest& r, httplib::Response& res) {
    if (r.params.count("redirect") == 0) return false;
    res.set_redirect(absl::StrCat("http://127.0.0.2:", port, "/page"));
    return true;
  });
  // Allowed: the API's own address.
  int rc = -1;
  std::string ok = Etlctl(JobArgs(api, "/page", ""), &rc);
  EXPECT_EQ(rc, 0) << ok;
  size_t before = api.requests().size();
  // (Names resolving inward, e.g. localhost, are covered by GuardedFetchTest: here 127.0.0.1 is
  // excepted, so the numeric spellings aim at 127.0.0.2.)
  for (const std::string& host :
       {std::string("0x7f.0.0.2"), std::string("2130706434"), std::string("[::1]")}) {
    std::string args =
        absl::StrCat("run --cliente=sec", etl::testing::UniqueSuffix(), " --rota=r --url=http://",
                     host, ":", port, "/page --pagination=none --max-attempts=1");
    std::string out = Etlctl(args, &rc);
    EXPECT_NE(rc, 0) << host << ": " << out;
    EXPECT_THAT(out, HasSubstr("internal networks are not allowed")) << host;
  }
  std::string redirected = Etlctl(JobArgs(api, "/page?redirect=1", ""), &rc);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(redirected, HasSubstr("127.0.0.2 (loopback"));
  EXPECT_EQ(api.requests().size(), before + 1);  // Only the redirecting request reached the API.
}

TEST_F(SecurityIntegrationTest, CredentialsStayWithTheirHostsAndSpecPathsAreRefused) {
  StartWriter();
  StartCollector({"--allow-private-networks"});
  TestApi& api = NewApi(60, 50);
  int rc = -1;
  std::string out = Etlctl(JobArgs(api, "/page", "--credential=elsewhere"), &rc);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(out, HasSubstr("may not be sent to host \"127.0.0.1\""));
  out = Etlctl(JobArgs(api, "/page", "--bearer-token-env=PGUSER"), &rc);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(out, HasSubstr("--allow-spec-secret-paths"));
  out = Etlctl(JobArgs(api, "/page", "--bearer-token-file=/etc/hostname"), &rc);
  EXPECT_THAT(out, HasSubstr("--allow-spec-secret-paths"));
  EXPECT_TRUE(api.requests().empty());
}

TEST_F(SecurityIntegrationTest, HundredThousandDeepPageIsAPageErrorAndTheCollectorStaysUp) {
  StartWriter();
  StartCollector({"--allow-private-networks"});
  TestApi& api = NewApi(60, 50);
  api.SetHook([](const ApiRequest& r, httplib::Response& res) {
    if (r.page_index != 1) return false;
    res.set_content(absl::StrCat(R"({"meta":{"total_pages":2},"data":[)", std::string(100000, '['),
                                 std::string(100000, ']'), "]}"),
                    "application/json");
    return true;
  });
  int rc = -1;
  std::string out = Etlctl(JobArgs(api, "/page", ""), &rc);
  EXPECT_EQ(rc, 2) << out;  // PARTIAL: page 1 failed, page 0 committed.
  EXPECT_THAT(out, HasSubstr("nesting deeper than 512"));
  std::string health;
  EXPECT_EQ(RunShell(absl::StrCat(etl::testing::BinaryPath("etl_health_probe"),
                                  " --tls-ca=", F("ca.pem"), " localhost:", collector_->port()),
                     &health),
            0)
      << health;
}

TEST_F(SecurityIntegrationTest, SighupReloadsTheCredentialsFile) {
  StartWriter();
  StartCollector({"--allow-private-networks"});
  TestApi& api = NewApi(60, 50);
  int rc = -1;
  std::string out = Etlctl(JobArgs(api, "/page", "--credential=added_later"), &rc);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("not declared"));
  // The operator adds a credential and signals the collector; jobs may name it once reloaded.
  std::ofstream(F("credentials.json"), std::ios::trunc)
      << R"({"added_later": {"type": "bearer", "file": ")" << F("api-token")
      << R"(", "hosts": ["127.0.0.1"]}})";
  ASSERT_EQ(kill(collector_->pid(), SIGHUP), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    out = Etlctl(JobArgs(api, "/page", "--credential=added_later"), &rc);
  } while (rc != 0 && absl::StrContains(out, "not declared") && absl::Now() < deadline);
  EXPECT_EQ(rc, 0) << out << ReadAll(F("collector.log"));
  EXPECT_THAT(ReadAll(F("collector.log")), HasSubstr("credentials reloaded"));
  // A broken file keeps the reloaded credentials in force.
  std::ofstream(F("credentials.json"), std::ios::trunc) << "{broken";
  ASSERT_EQ(kill(collector_->pid(), SIGHUP), 0);
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (!absl::StrContains(ReadAll(F("collector.log")), "credentials not reloaded") &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));  // Poll interval; the log line is the event waited for.
  }
  EXPECT_THAT(ReadAll(F("collector.log")), HasSubstr("credentials not reloaded"));
  out = Etlctl(JobArgs(api, "/page", "--credential=added_later"), &rc);
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace etl
