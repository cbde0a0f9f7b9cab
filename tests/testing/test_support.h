// Shared helpers for integration tests: the test PostgreSQL server, child processes of the real
// binaries, and waiting for their ports without sleeping.
#ifndef ETL_TESTS_TESTING_TEST_SUPPORT_H_
#define ETL_TESTS_TESTING_TEST_SUPPORT_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace etl::testing {

// libpq connection string of the server scripts/test started (from PGHOST/PGPORT/... or
// DATABASE_URL). Empty when none is configured: PostgreSQL tests then GTEST_SKIP().
std::string PostgresConnString();

// Runs `sql` and returns the rows, each row's columns joined by '\t' (NULL as "\\N"). Fails the
// calling test on error.
std::vector<std::string> Query(const std::string& sql);
// The single value of a one-row, one-column query.
std::string QueryValue(const std::string& sql);
// Runs a statement, returns the error text or "" on success.
std::string Exec(const std::string& sql);

// Path of a built binary, e.g. BinaryPath("writer_server").
std::string BinaryPath(const std::string& name);

// A child process of one of our binaries, started with "--port_file=<fifo>" appended; Start()
// returns once the child wrote its bound port (or fails after `timeout_s`, or if the child exits
// first). The destructor sends SIGKILL if the child still runs.
class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::map<std::string, std::string>& extra_env = {}, double timeout_s = 30);
  ~ChildProcess();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const;  // "127.0.0.1:<port>"
  // Sends `sig` and waits for the exit; returns the exit status (as from waitpid) or -1.
  int Signal(int sig);
  // Waits for the exit without signalling; returns the wait status.
  int Wait();
  // Waits up to `timeout_s` for the exit (polling); returns the wait status, or -1 if the child
  // still runs (it is then left running).
  int WaitFor(double timeout_s);

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool reaped_ = false;
};

// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held. For
// conditions a test cannot be told about (another process's state), never as a fixed sleep.
template <typename F>
bool WaitFor(F cond, absl::Duration timeout = absl::Seconds(30)) {
  absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// A fresh unique suffix for table/job names so tests never collide (lower case, [a-z0-9]).
std::string UniqueSuffix();

// Local TCP ports of the sockets process `pid` holds (its side of each connection), so a test can
// terminate the PostgreSQL backends of its own writer only (pg_stat_activity.client_port) and
// leave the tests running next to it alone.
std::vector<int> LocalTcpPortsOf(pid_t pid);

}  // namespace etl::testing

#endif  // ETL_TESTS_TESTING_TEST_SUPPORT_H_
