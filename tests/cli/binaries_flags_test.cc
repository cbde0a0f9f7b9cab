// Every binary answers --help with its own flags and defaults (exit 0), --version with the version
// and revision (exit 0), and an unknown flag or a bad value with exit status 64. Runs the real
// binaries.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace {

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

RunResult RunBinary(const std::string& name, const std::string& args) {
  RunResult r;
  std::string cmd = absl::StrCat(ETL_BIN_DIR, "/", name, " ", args, " 2>&1 </dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

class BinaryFlagsTest : public ::testing::TestWithParam<const char*> {};

TEST_P(BinaryFlagsTest, HelpListsOwnFlagsWithDefaultsAndExitsZero) {
  for (const char* help : {"--help", "-help", "--helpfull"}) {
    RunResult r = RunBinary(GetParam(), help);
    EXPECT_EQ(r.exit_code, 0) << help << "\n" << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "(default: ")) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "--flagfile")) << r.output;
    EXPECT_FALSE(absl::StrContains(r.output, "No flags matched")) << r.output;
    EXPECT_FALSE(absl::StrContains(r.output, "absl/"))
        << r.output;  // Only the program's own flags.
  }
}

TEST_P(BinaryFlagsTest, VersionPrintsVersionAndRevision) {
  RunResult r = RunBinary(GetParam(), "--version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StartsWith(r.output, absl::StrCat(GetParam(), " "))) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "(git ")) << r.output;
}

TEST_P(BinaryFlagsTest, UnknownFlagOrBadValueExits64) {
  RunResult r = RunBinary(GetParam(), "--no-such-flag=1");
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "unknown flag --no-such-flag")) << r.output;
  // An integer flag of each binary given a word.
  const std::string name = GetParam();
  const char* bad = name == "writer_server"      ? "--queue-records=abc"
                    : name == "collector_server" ? "--max-concurrent-jobs=abc"
                    : name == "etlctl"           ? "--limit=abc"
                                                 : "--records=abc";
  RunResult v = RunBinary(name, bad);
  EXPECT_EQ(v.exit_code, 64) << v.output;
  EXPECT_TRUE(absl::StrContains(v.output, "abc")) << v.output;
}

INSTANTIATE_TEST_SUITE_P(AllBinaries, BinaryFlagsTest,
                         ::testing::Values("writer_server", "collector_server", "etlctl",
                                           "sample_api"));

TEST(BinaryFlagsTest, WriterHelpShowsItsDefaults) {
  RunResult r = RunBinary("writer_server", "--help");
  EXPECT_TRUE(absl::StrContains(r.output, "--listen=VALUE  (default: \"0.0.0.0:50052\")"))
      << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--writer-threads=VALUE  (default: 3)")) << r.output;
  RunResult c = RunBinary("collector_server", "--help");
  EXPECT_TRUE(absl::StrContains(c.output, "--fetch-concurrency=VALUE  (default: 4)")) << c.output;
}

// The replica id names the collector in the ledger and in an HTTP header sent to the APIs: a value
// that could inject a header line (or is not plain text) is refused before anything starts.
TEST(BinaryFlagsTest, CollectorRefusesAReplicaIdThatIsNotPlainText) {
  RunResult r = RunBinary("collector_server",
                          "--listen=127.0.0.1:0 --writer=127.0.0.1:1 "
                          "\"--replica-id=$(printf 'c1\\r\\nX-Injected: 1')\"");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--replica-id")) << r.output;
}

TEST(EtlctlTest, ValidateAcceptsTheDeployExamplesAndExplainsABadFile) {
  for (const char* f : {"pedidos_por_data.yaml", "clientes_incremental.yaml"}) {
    RunResult r =
        RunBinary("etlctl", absl::StrCat("validate ", ETL_SOURCE_DIR, "/deploy/jobs/", f));
    EXPECT_EQ(r.exit_code, 0) << f << "\n" << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, ": OK (2151/")) << r.output;
  }
  std::string bad = ::testing::TempDir() + "/bad_job.yaml";
  FILE* f = fopen(bad.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("cliente: \"2151\"\nrota: pedidos\nurl: http://x/\npagination: page\nwrite_mode: merge\n",
        f);
  fclose(f);
  RunResult r = RunBinary("etlctl", "validate " + bad);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "merge needs --id-path")) << r.output;
}

}  // namespace
