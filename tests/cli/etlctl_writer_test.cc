// etlctl's writer commands as a user runs them: the real etlctl binary against a writer_server
// child process and a real PostgreSQL (dead letters listed and exported with exact bytes, cursors
// shown).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "etl.grpc.pb.h"
#include "tests/testing/test_support.h"

namespace etl {
namespace {

struct RunResult {
  int exit_code = -1;
  std::string output;
};

RunResult Etlctl(const std::string& args) {
  RunResult r;
  std::string cmd = absl::StrCat(ETL_BIN_DIR, "/etlctl ", args, " 2>&1 </dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

TEST(EtlctlWriterTest, DeadLettersExportKeepsExactBytesAndCursorsShowTheMark) {
  if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
  auto writer =
      etl::testing::ChildProcess::Start(etl::testing::BinaryPath("writer_server"),
                                        {"--listen=127.0.0.1:0", "--flush_interval_ms=20"});
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto stub = v1::WriterService::NewStub(
      grpc::CreateChannel((*writer)->address(), grpc::InsecureChannelCredentials()));
  const std::string cliente = "e" + etl::testing::UniqueSuffix();
  const std::string job = "etlctl-" + cliente;
  {
    v1::RegisterJobRequest req;
    req.set_job_id(job);
    v1::JobSpec* spec = req.mutable_spec();
    spec->set_cliente_id(cliente);
    spec->set_rota("pedidos");
    spec->set_url("http://127.0.0.1:1/");
    spec->mutable_pagination()->set_style(v1::NONE);
    spec->set_write_mode(v1::APPEND);
    spec->mutable_incremental()->set_cursor_path("/id");
    spec->mutable_incremental()->set_cursor_type(v1::INTEGER);
    spec->mutable_incremental()->set_param("since_id");
    v1::JobRecord rec;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->RegisterJob(&ctx, req, &rec).ok());
  }
  const std::string bad = "{\"id\": 7, \"name\": \"\xff\xfe\"}";
  const std::string nul = R"({"id": 8, "text": "a\u0000b"})";
  {
    v1::RecordBatch b;
    b.set_job_id(job);
    b.set_cliente_id(cliente);
    b.set_rota("pedidos");
    b.set_last_chunk(true);
    b.add_records(R"({"id": 5})");
    b.add_records(bad);
    b.add_records(nul);
    v1::WriteSummary summary;
    grpc::ClientContext ctx;
    auto w = stub->Write(&ctx, &summary);
    ASSERT_TRUE(w->Write(b));
    w->WritesDone();
    ASSERT_TRUE(w->Finish().ok());
    ASSERT_EQ(summary.records_rejected(), 2);
  }
  const std::string writer_flag = "--writer=" + (*writer)->address();

  RunResult table = Etlctl(absl::StrCat(writer_flag, " dead-letters ", job));
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(absl::StrContains(table.output, "\\xff\\xfe")) << table.output;  // Readable excerpt.

  const std::string file = ::testing::TempDir() + "/dead-" + cliente + ".jsonl";
  RunResult exported = Etlctl(absl::StrCat(writer_flag, " dead-letters ", job, " --export=", file));
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string lines = ss.str();
  EXPECT_TRUE(
      absl::StrContains(lines, absl::StrCat("\"raw_base64\": \"", absl::Base64Escape(bad), "\"")))
      << lines;
  EXPECT_TRUE(absl::StrContains(lines, R"("raw": "{\"id\": 8, \"text\": \"a\\u0000b\"}")"))
      << lines;
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 2) << lines;

  RunResult cursors = Etlctl(absl::StrCat(writer_flag, " cursors --cliente=", cliente));
  EXPECT_EQ(cursors.exit_code, 0) << cursors.output;
  EXPECT_TRUE(absl::StrContains(cursors.output, "/id")) << cursors.output;
  EXPECT_TRUE(absl::StrContains(cursors.output, "INTEGER   5 "))
      << cursors.output;  // 7, 8 refused.
  etl::testing::Exec(
      absl::StrCat("UPDATE etl_jobs SET state = 'CANCELLED' WHERE job_id = '", job, "'"));
}

// A job file run by the etlctl binary against the real services: writer_server, collector_server
// and sample_api child processes. Run twice, the merge job leaves one row per id; the incremental
// job asks the API only for ids above its mark.
TEST(EtlctlEndToEndTest, JobFileRunsTwiceWithoutDuplicatesAndIncrementally) {
  if (etl::testing::PostgresConnString().empty()) GTEST_SKIP() << "no PostgreSQL configured";
  using etl::testing::BinaryPath;
  using etl::testing::ChildProcess;
  auto writer = ChildProcess::Start(BinaryPath("writer_server"),
                                    {"--listen=127.0.0.1:0", "--flush_interval_ms=20"});
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto api = ChildProcess::Start(BinaryPath("sample_api"), {"--listen=127.0.0.1:0"});
  ASSERT_TRUE(api.ok()) << api.status();
  auto collector = ChildProcess::Start(BinaryPath("collector_server"),
                                       {"--listen=127.0.0.1:0", "--writer=" + (*writer)->address(),
                                        "--resume=false", "--allow-private-networks"});
  ASSERT_TRUE(collector.ok()) << collector.status();
  const std::string cliente = "f" + etl::testing::UniqueSuffix();
  const std::string base = absl::StrCat("http://", (*api)->address(), "/v1/clientes/", cliente);
  const std::string file = ::testing::TempDir() + "/jobs-" + cliente + ".yaml";
  auto write_file = [&](int total) {
    std::ofstream out(file, std::ios::trunc);
    out << "- cliente: \"" << cliente << "\"\n"
        << "  rota: pedidos\n  url: " << base << "/pedidos/page\n  pagination: PAGE\n"
        << "  page_size: 100\n  records_path: /data\n  total_pages_path: /total_pages\n"
        << "  id_path: /id\n  write_mode: Merge\n  params:\n    total: " << total << "\n"
        << "- cliente: \"" << cliente << "\"\n"
        << "  rota: clientes\n  url: " << base << "/clientes/cursor\n  pagination: cursor\n"
        << "  page_size: 100\n  records_path: /data\n  cursor_path: /next_cursor\n"
        << "  id_path: /id\n  incremental_path: /id\n  incremental_type: integer\n"
        << "  incremental_param: since_id\n  params:\n    total: " << total << "\n";
  };
  const std::string flags = absl::StrCat("--collector=", (*collector)->address(), " --plain");
  auto count = [&](const std::string& rota) {
    return etl::testing::QueryValue(absl::StrCat(
        "SELECT count(*) || '/' || count(DISTINCT natural_key) FROM dados_raw_cliente_", cliente,
        "_", rota));
  };
  write_file(250);
  RunResult validate = Etlctl("validate " + file);
  ASSERT_EQ(validate.exit_code, 0) << validate.output;
  RunResult first = Etlctl(absl::StrCat(flags, " run ", file));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(count("pedidos"), "250/250");
  EXPECT_EQ(count("clientes"), "250/250");

  write_file(300);  // The API grew.
  RunResult second = Etlctl(absl::StrCat(flags, " run ", file));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(count("pedidos"), "300/300");   // Merge: every id once.
  EXPECT_EQ(count("clientes"), "300/300");  // Incremental: the 50 new ids.
  RunResult stats =
      Etlctl(absl::StrCat(flags, " list --cliente=", cliente, " --rota=clientes --json"));
  ASSERT_EQ(stats.exit_code, 0) << stats.output;
  EXPECT_TRUE(absl::StrContains(stats.output, "\"start_value\": \"250\"")) << stats.output;
  EXPECT_EQ(etl::testing::QueryValue(absl::StrCat(
                "SELECT count(*) FROM dados_raw_cliente_", cliente,
                "_clientes WHERE job_id = (SELECT job_id FROM etl_jobs WHERE cliente_id = '",
                cliente, "' AND rota = 'clientes' ORDER BY created_at DESC LIMIT 1)")),
            "50");
}

}  // namespace
}  // namespace etl
