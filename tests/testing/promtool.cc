#include "tests/testing/promtool.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace etl::testing {

bool PromtoolAvailable() { return access("/usr/bin/promtool", X_OK) == 0; }

absl::Status PromtoolCheck(const std::string& exposition) {
  char path[] = "/tmp/etl-metrics-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return absl::InternalError("mkstemp failed");
  close(fd);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << exposition;
  }
  std::string cmd = absl::StrCat("/usr/bin/promtool check metrics < ", path, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("cannot run promtool");
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output.append(buf, n);
  int status = pclose(p);
  unlink(path);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("promtool exit ", WEXITSTATUS(status), ": ", output));
}

void ExpectPromtoolAccepts(const std::string& exposition) {
  if (!PromtoolAvailable()) {
    std::fprintf(stderr,
                 "promtool not installed (scripts/setup installs Debian's prometheus): strict "
                 "check skipped\n");
    return;
  }
  absl::Status s = PromtoolCheck(exposition);
  EXPECT_TRUE(s.ok()) << s.message() << "\n--- exposition ---\n" << exposition;
}

}  // namespace etl::testing
