#include "tests/testing/test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace etl::testing {
namespace {

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};

std::unique_ptr<PGconn, PgConnDeleter> Connect() {
  std::string conninfo = PostgresConnString();
  std::unique_ptr<PGconn, PgConnDeleter> conn(PQconnectdb(conninfo.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot connect to PostgreSQL: " << PQerrorMessage(conn.get());
    return nullptr;
  }
  return conn;
}

}  // namespace

namespace {

// The server scripts/test started, as the environment names it.
std::string ServerConnString() {
  if (const char* url = std::getenv("DATABASE_URL"); url != nullptr && *url != '\0') return url;
  if (const char* host = std::getenv("PGHOST"); host != nullptr && *host != '\0') {
    // libpq reads the rest (PGPORT, PGUSER, PGDATABASE, PGPASSWORD) from the environment itself.
    return absl::StrCat("host=", host);
  }
  return "";
}

// `conninfo` (a URL or key=value string) as a postgresql:// URL naming another database (a URL
// nests inside other connection strings, e.g. as a quoted dbname, where quotes would not).
std::string WithDatabase(const std::string& conninfo, const std::string& dbname) {
  auto encode = [](absl::string_view v) {
    std::string out;
    for (unsigned char c : v) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
        out.push_back(static_cast<char>(c));
      } else {
        absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
      }
    }
    return out;
  };
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), nullptr);
  std::vector<std::string> params;
  for (PQconninfoOption* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0' || std::string(o->keyword) == "dbname") continue;
    params.push_back(absl::StrCat(o->keyword, "=", encode(o->val)));
  }
  if (opts != nullptr) PQconninfoFree(opts);
  std::string url = absl::StrCat("postgresql:///", dbname);
  if (!params.empty()) absl::StrAppend(&url, "?", absl::StrJoin(params, "&"));
  return url;
}

std::string g_server;    // The server's own connection string (for the drop at exit).
std::string g_database;  // This process's database.

void DropOwnDatabase() {
  PGconn* conn = PQconnectdb(g_server.c_str());
  if (PQstatus(conn) == CONNECTION_OK) {
    PQclear(PQexec(conn,
                   absl::StrCat("DROP DATABASE IF EXISTS ", g_database, " WITH (FORCE)").c_str()));
  }
  PQfinish(conn);
}

}  // namespace

// Each test process works in a database of its own on the test server (created on first use,
// dropped at exit): a collector claims every claimable job of its ledger, so tests that run at
// the same time must not share one. Child processes get it through DATABASE_URL / PGDATABASE.
// ETL_TEST_SHARED_DATABASE=1 keeps the server's database.
std::string PostgresConnString() {
  static const std::string conninfo = [] {
    std::string server = ServerConnString();
    if (server.empty() || std::getenv("ETL_TEST_SHARED_DATABASE") != nullptr) return server;
    const std::string name = absl::StrCat("etl_", UniqueSuffix());
    PGconn* conn = PQconnectdb(server.c_str());
    bool created = false;
    if (PQstatus(conn) == CONNECTION_OK) {
      PGresult* res = PQexec(conn, absl::StrCat("CREATE DATABASE ", name).c_str());
      created = PQresultStatus(res) == PGRES_COMMAND_OK;
      PQclear(res);
    }
    PQfinish(conn);
    if (!created) return server;  // Connection errors surface in the test that connects.
    g_server = server;
    g_database = name;
    std::atexit(DropOwnDatabase);
    std::string own = WithDatabase(server, name);
    setenv("DATABASE_URL", own.c_str(), 1);
    setenv("PGDATABASE", name.c_str(), 1);
    return own;
  }();
  return conninfo;
}

std::vector<std::string> Query(const std::string& sql) {
  std::vector<std::string> rows;
  auto conn = Connect();
  if (!conn) return rows;
  std::unique_ptr<PGresult, PgResultDeleter> res(PQexec(conn.get(), sql.c_str()));
  ExecStatusType st = PQresultStatus(res.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    ADD_FAILURE() << "query failed: " << sql << ": " << PQresultErrorMessage(res.get());
    return rows;
  }
  int n = PQntuples(res.get()), m = PQnfields(res.get());
  rows.reserve(n);
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> cols;
    for (int j = 0; j < m; ++j) {
      cols.push_back(PQgetisnull(res.get(), i, j) ? "\\N" : PQgetvalue(res.get(), i, j));
    }
    rows.push_back(absl::StrJoin(cols, "\t"));
  }
  return rows;
}

std::string QueryValue(const std::string& sql) {
  std::vector<std::string> rows = Query(sql);
  if (rows.size() != 1) {
    ADD_FAILURE() << "expected one row from " << sql << ", got " << rows.size();
    return "";
  }
  return rows[0];
}

std::string Exec(const std::string& sql) {
  auto conn = Connect();
  if (!conn) return "no connection";
  std::unique_ptr<PGresult, PgResultDeleter> res(PQexec(conn.get(), sql.c_str()));
  ExecStatusType st = PQresultStatus(res.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) return PQresultErrorMessage(res.get());
  return "";
}

std::string BinaryPath(const std::string& name) { return absl::StrCat(ETL_BIN_DIR, "/", name); }

std::string UniqueSuffix() {
  static std::atomic<int> counter{0};
  static const uint32_t seed = std::random_device{}();
  return absl::StrCat("t", getpid(), "_", seed % 100000, "_", counter++);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::string& binary, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& extra_env, double timeout_s) {
  char dir_template[] = "/tmp/etl-child.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError("mkdtemp failed");
  std::string fifo = absl::StrCat(dir_template, "/port");
  if (mkfifo(fifo.c_str(), 0600) != 0) return absl::InternalError("mkfifo failed");

  std::vector<std::string> argv_s = {binary};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  argv_s.push_back("--port_file=" + fifo);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (extra_env.count(key) == 0) env_s.push_back(kv);
  }
  for (const auto& [k, v] : extra_env) env_s.push_back(k + "=" + v);

  std::vector<char*> argv, envp;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    execve(binary.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;

  // O_NONBLOCK open of a FIFO's read end succeeds at once; poll() then waits for the writer.
  int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  std::string got;
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
  // A pidfd becomes readable when the child exits, so one poll() waits for "port written" or "child
  // died" without any periodic wake-up.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  while (got.find('\n') == std::string::npos) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                       deadline - std::chrono::steady_clock::now())
                       .count());
    if (left <= 0) break;
    pollfd p[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int r = poll(p, pidfd >= 0 ? 2 : 1, left);
    if (r > 0 && (p[0].revents & POLLIN)) {
      char buf[64];
      ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) got.append(buf, n);
      continue;
    }
    int status = 0;
    if ((r > 0 && (p[1].revents & POLLIN)) || waitpid(pid, &status, WNOHANG) == pid) {
      if (!child->reaped_) waitpid(pid, &status, 0);
      child->reaped_ = true;
      if (pidfd >= 0) close(pidfd);
      close(fd);
      unlink(fifo.c_str());
      rmdir(dir_template);
      return absl::InternalError(
          absl::StrCat(binary, " exited before serving (status ", status, ")"));
    }
    if (r > 0 && (p[0].revents & POLLHUP)) {
      // No writer holds the FIFO open (yet): reopen so poll() blocks instead of spinning on
      // POLLHUP.
      close(fd);
      fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    }
  }
  if (pidfd >= 0) close(pidfd);
  close(fd);
  unlink(fifo.c_str());
  rmdir(dir_template);
  int port = 0;
  std::string line = got.substr(0, got.find('\n'));
  if (!absl::SimpleAtoi(line, &port) || port <= 0) {
    return absl::DeadlineExceededError(
        absl::StrCat(binary, " did not report a port within ", timeout_s, " s"));
  }
  child->port_ = port;
  return child;
}

ChildProcess::~ChildProcess() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

std::string ChildProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

int ChildProcess::Signal(int sig) {
  if (reaped_) return -1;
  kill(pid_, sig);
  return Wait();
}

int ChildProcess::Wait() {
  if (reaped_) return -1;
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return -1;
  reaped_ = true;
  return status;
}

int ChildProcess::WaitFor(double timeout_s) {
  if (reaped_) return -1;
  absl::Time deadline = absl::Now() + absl::Seconds(timeout_s);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return status;
    }
    if (r < 0 || absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::vector<int> LocalTcpPortsOf(pid_t pid) {
  std::vector<std::string> inodes;
  std::string dir = absl::StrCat("/proc/", pid, "/fd");
  for (int fd = 0; fd < 4096; ++fd) {
    char target[256];
    std::string link = absl::StrCat(dir, "/", fd);
    ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    absl::string_view t(target);
    if (absl::ConsumePrefix(&t, "socket:[") && absl::ConsumeSuffix(&t, "]")) {
      inodes.emplace_back(t);
    }
  }
  std::vector<int> ports;
  std::ifstream in(absl::StrCat("/proc/", pid, "/net/tcp"));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 10) continue;
    if (std::find(inodes.begin(), inodes.end(), f[9]) == inodes.end()) continue;
    std::vector<std::string> local = absl::StrSplit(f[1], ':');
    int port = 0;
    if (local.size() == 2 && absl::SimpleHexAtoi(local[1], &port)) ports.push_back(port);
  }
  return ports;
}

}  // namespace etl::testing
