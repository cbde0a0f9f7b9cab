#include "common/flags.h"

#include <signal.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/version.h"

namespace etl {

namespace {

constexpr int kExitUsage = 64;  // sysexits.h EX_USAGE.

bool IsBool(const absl::CommandLineFlag& f) { return f.IsOfType<bool>(); }

std::string Dashed(absl::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '_') c = '-';
  }
  return out;
}

// The flags this program defines (every flag outside abseil's own files), sorted by name.
std::vector<absl::CommandLineFlag*> ProgramFlags() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->IsRetired() || absl::StrContains(flag->Filename(), "absl/")) continue;
    flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(), [](absl::CommandLineFlag* a, absl::CommandLineFlag* b) {
    return a->Name() < b->Name();
  });
  return flags;
}

void PrintHelp(absl::string_view program, absl::string_view usage) {
  std::string out =
      absl::StrCat(usage, "\n\nFlags (--name=value; '-' and '_' are the same in names):\n");
  for (absl::CommandLineFlag* f : ProgramFlags()) {
    std::string def = f->DefaultValue();
    if (f->IsOfType<std::string>()) def = absl::StrCat("\"", def, "\"");
    absl::StrAppend(&out, "  --", Dashed(f->Name()), IsBool(*f) ? "" : "=VALUE",
                    "  (default: ", def, ")\n      ", f->Help(), "\n");
  }
  absl::StrAppend(
      &out,
      "  --flagfile=FILE  (default: none)\n"
      "      read more flags from FILE, one --name=value per line\n"
      "  --version\n      print the version and source revision, then exit\n"
      "  --help\n      print this help, then exit\n"
      "Environment: ETL_LOG_LEVEL=debug|info|warning|error (default info); see README for "
      "the variables each flag falls back to.\n");
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

int UsageError(absl::string_view program, absl::string_view message) {
  std::fprintf(stderr, "%s: %s\nRun '%s --help' for the flags.\n", std::string(program).c_str(),
               std::string(message).c_str(), std::string(program).c_str());
  return kExitUsage;
}

// Checks every flag on the command line before absl parses it: --help and --version are answered
// here (exit 0), an unknown flag or a bad value exits 64 with the reason.
void CheckCommandLine(const std::vector<std::string>& args, absl::string_view usage) {
  std::string program = args.empty() ? "program" : args[0];
  size_t slash = program.rfind('/');
  if (slash != std::string::npos) program = program.substr(slash + 1);
  static const char* kBuiltins[] = {"flagfile", "fromenv", "tryfromenv", "undefok"};
  bool help = false, version = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    size_t start = a[1] == '-' ? 2 : 1;
    size_t eq = a.find('=');
    std::string name = a.substr(start, eq == std::string::npos ? std::string::npos : eq - start);
    if (name == "help" || name == "helpfull" || name == "helpshort" || name == "h" ||
        name == "helpon" || name == "helpmatch" || name == "helppackage") {
      help = true;
      continue;
    }
    if (name == "version") {
      version = true;
      continue;
    }
    if (std::find(std::begin(kBuiltins), std::end(kBuiltins), name) != std::end(kBuiltins)) {
      if (eq == std::string::npos) ++i;
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no") && eq == std::string::npos) {
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && IsBool(*negated)) continue;
    }
    if (flag == nullptr || flag->IsRetired()) {
      std::exit(UsageError(program, absl::StrCat("unknown flag --", Dashed(name))));
    }
    std::string value;
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
    } else if (IsBool(*flag)) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      std::exit(UsageError(program, absl::StrCat("--", Dashed(name), " needs a value")));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::exit(UsageError(program, absl::StrCat("--", Dashed(name), "=", value, ": ", error)));
    }
  }
  if (help) {
    PrintHelp(program, usage);
    std::exit(0);
  }
  if (version) {
    std::printf("%s %s (git %s)\n", program.c_str(), ETL_VERSION, ETL_GIT_REVISION);
    std::exit(0);
  }
}

}  // namespace

std::vector<std::string> ParseFlags(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> storage(argv, argv + argc);
  bool after_double_dash = false;
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& a = storage[i];
    if (after_double_dash) continue;
    if (a == "--") {
      after_double_dash = true;
      continue;
    }
    if (a.size() < 3 || a[0] != '-') continue;
    size_t start = a[1] == '-' ? 2 : 1;
    size_t end = a.find('=');
    if (end == std::string::npos) end = a.size();
    for (size_t j = start; j < end; ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  CheckCommandLine(storage, usage);
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

void TuneAllocatorForFlatMemory(size_t mmap_threshold_bytes, size_t trim_threshold_bytes,
                                int arenas) {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold_bytes));
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold_bytes));
  mallopt(M_ARENA_MAX, arenas);
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
