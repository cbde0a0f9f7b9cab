#include "common/flags.h"

#include <signal.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace etl {

std::vector<std::string> ParseFlags(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> storage(argv, argv + argc);
  bool after_double_dash = false;
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& a = storage[i];
    if (after_double_dash) continue;
    if (a == "--") { after_double_dash = true; continue; }
    if (a.size() < 3 || a[0] != '-') continue;
    size_t start = a[1] == '-' ? 2 : 1;
    size_t end = a.find('=');
    if (end == std::string::npos) end = a.size();
    for (size_t j = start; j < end; ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  std::vector<char*> args;
  for (std::string& s : storage) args.push_back(s.data());
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return std::vector<std::string>(rest.begin(), rest.end());
}

std::string LoopbackByDefault(const std::string& listen) {
  if (listen.empty()) return listen;
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return "127.0.0.1:" + listen;
  if (colon == 0) return "127.0.0.1" + listen;
  return listen;
}

std::vector<std::string> SplitList(absl::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::string(fallback);
  return v;
}

void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) {
    // A test waiting on a FIFO reads the port the moment it is written.
    std::ofstream out(path);
    out << port << "\n";
    return;
  }
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

namespace {
sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
}  // namespace

void TuneAllocatorForFlatMemory() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  mallopt(M_ARENA_MAX, 2);
#endif
}

void BlockTerminationSignals() {
  sigset_t set = TerminationSet();
  sigaddset(&set, SIGHUP);  // Never kills a service; the collector waits for it to reload.
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSet();
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

int WaitForTerminationOrReloadSignal() {
  sigset_t set = TerminationSet();
  sigaddset(&set, SIGHUP);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace etl
