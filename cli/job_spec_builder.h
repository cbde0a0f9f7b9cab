// Turns etlctl's command-line flags (and an optional --spec file with a JobSpec in proto3 JSON)
// into the JobSpec sent to CollectorService.StartJob.
//
// Flags override the file: a flag given on the command line replaces the file's field; repeated
// --param/--header replace entries of the file with the same key and add the others. Values are
// checked here so a typo gets a clear message naming the flag before any RPC (the collector
// validates again).
//
// Thread-safety: pure functions.
#ifndef ETL_CLI_JOB_SPEC_BUILDER_H_
#define ETL_CLI_JOB_SPEC_BUILDER_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "etl.pb.h"

namespace etl::cli {

// Names (absl spelling, underscores) of every flag that sets a JobSpec field; main.cc defines them
// all as string flags and passes the ones given on the command line to BuildJobSpec.
const std::vector<std::string>& JobSpecFlagNames();

struct SpecInputs {
  std::string spec_json;               // Contents of --spec; empty = start from an empty spec.
  std::string spec_origin = "--spec";  // Names the file in error messages.
  std::map<std::string, std::string> flags;  // Flags given on the command line: name -> text.
  std::vector<std::string> params;           // Each "key=value" (value may hold '=' and ',').
  std::vector<std::string> headers;          // Each "Name: value".
};

// The merged and checked spec, or INVALID_ARGUMENT naming the flag or field at fault.
absl::StatusOr<etl::v1::JobSpec> BuildJobSpec(const SpecInputs& inputs);

// Removes every occurrence of the flags in `names` ("--name=value", "--name value", also with one
// dash) from `args` (args[0] is the program) and returns their values in order, by name. Stops at
// "--". absl's own list flags split on commas, which would break values such as "fields=a,b".
absl::StatusOr<std::map<std::string, std::vector<std::string>>> ExtractRepeatedFlags(
    std::vector<std::string>* args, const std::set<std::string>& names);

// Names (underscore spelling) of the flags that appear in `args` (args[0] is the program), up to
// "--"; tells a flag given as "" from one not given (this abseil has no public
// IsSpecifiedOnCommandLine).
std::set<std::string> FlagsNamedIn(const std::vector<std::string>& args);

// "page" | "offset" | "cursor" | "link" | "next_url" | "none" (case-insensitive, '-' = '_').
absl::StatusOr<etl::v1::PaginationStyle> ParsePaginationStyle(const std::string& text);

}  // namespace etl::cli

#endif  // ETL_CLI_JOB_SPEC_BUILDER_H_
