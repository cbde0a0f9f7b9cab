// Command-line and environment configuration helpers. Only main.cc files call these.
#ifndef ETL_COMMON_FLAGS_H_
#define ETL_COMMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace etl {

// Parses flags with absl::ParseCommandLine after turning "--some-flag" into "--some_flag" (absl
// flag names are identifiers; users type hyphens). Returns the positional arguments, argv[0] first.
// Before that, and the same in every binary: --help (also -h, --helpfull) prints `usage` and the
// program's own flags with their defaults and exits 0; --version prints the version and git
// revision and exits 0; an unknown flag or an invalid value exits 64 (EX_USAGE) with the reason.
std::vector<std::string> ParseFlags(int argc, char** argv, absl::string_view usage);

// The environment variable `name`, or `fallback` when unset or empty.
std::string EnvOr(const char* name, absl::string_view fallback);

// A listen address for a local-only endpoint (/metrics): ":9090" or "9090" become "127.0.0.1:9090";
// an explicit host (e.g. "0.0.0.0:9090") is kept. "" stays "" (off).
std::string LoopbackByDefault(const std::string& listen);

// "a, b,,c" -> {"a", "b", "c"}: comma-separated flag values, blanks dropped.
std::vector<std::string> SplitList(absl::string_view list);

// Writes "<port>\n" to `path` atomically (rename; or straight into it when it is a FIFO), so a test
// or script can learn the port of a port-0 bind.
// Does nothing when `path` is empty.
void WritePortFile(const std::string& path, int port);

// Tunes glibc's allocator for services that must keep a flat footprint: pages, parser buffers and
// gRPC message slices are MiB-sized and short-lived. With glibc's adaptive mmap threshold they soon
// land in per-thread arenas, whose freed space stays resident and fragments; a fixed threshold
// keeps blocks of at least `mmap_threshold_bytes` in their own mappings, returned to the OS on
// free, an arena returns free space above `trim_threshold_bytes` at its top, and at most `arenas`
// arenas bound what stays resident. Smaller blocks are reused without page faults: a service whose
// every page passes through a few such blocks sets the threshold above their size. Call first
// thing in main. No-op on other C libraries.
void TuneAllocatorForFlatMemory(size_t mmap_threshold_bytes = 256 << 10,
                                size_t trim_threshold_bytes = 128 << 10, int arenas = 2);

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call first in main, before any thread
// starts, so every thread inherits the mask) ...
void BlockTerminationSignals();
// ... then waits for SIGTERM or SIGINT and returns its number (SIGHUP stays pending, harmless) ...
int WaitForTerminationSignal();
// ... or for SIGTERM, SIGINT or SIGHUP (reload), returning which.
int WaitForTerminationOrReloadSignal();

}  // namespace etl

#endif  // ETL_COMMON_FLAGS_H_
