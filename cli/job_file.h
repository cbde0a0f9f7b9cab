// Job files for `etlctl run FILE` and `etlctl validate FILE`: YAML or JSON (JSON is YAML), holding
// one job (a mapping) or several (a sequence of mappings, or a mapping with a `jobs:` sequence).
//
// A job's fields are named like etlctl run's flags, with '_' or '-' (`page_size`, `records-path`);
// values are scalars, except `param`/`params` and `header`/`headers`, which take a mapping
// (name: value) or a list of "key=value" / "Name: value" strings. Enum values (pagination,
// write_mode, incremental_type) are case-insensitive. Every field is handed to BuildJobSpec exactly
// as the flag would be, so a file and the command line give the same spec and the same messages.
//
// Thread-safety: pure functions.
#ifndef ETL_CLI_JOB_FILE_H_
#define ETL_CLI_JOB_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/job_spec_builder.h"

namespace etl::cli {

// One job of a file: its inputs for BuildJobSpec and where it was found ("jobs.yaml job 2 (line
// 14)").
struct JobFileEntry {
  SpecInputs inputs;
  std::string origin;
};

// Parses `text` (the contents of `path`, used in messages). INVALID_ARGUMENT naming the file, job
// and line for a syntax error, an unknown field, a nested value where a scalar is expected, or no
// job.
absl::StatusOr<std::vector<JobFileEntry>> ParseJobFile(const std::string& path,
                                                       const std::string& text);

// Reads and parses `path`.
absl::StatusOr<std::vector<JobFileEntry>> LoadJobFile(const std::string& path);

}  // namespace etl::cli

#endif  // ETL_CLI_JOB_FILE_H_
