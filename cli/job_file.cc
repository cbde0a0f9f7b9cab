#include "cli/job_file.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace etl::cli {
namespace {

std::string Where(const std::string& path, size_t index, size_t count, const YAML::Node& node) {
  std::string s = path;
  if (count > 1) absl::StrAppend(&s, " job ", index + 1);
  if (node.Mark().line >= 0) absl::StrAppend(&s, " (line ", node.Mark().line + 1, ")");
  return s;
}

absl::Status FieldError(const std::string& where, const std::string& field, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, ": ", msg));
}

// "key=value" / "Name: value" entries from a mapping or a list of strings.
absl::Status CollectPairs(const std::string& where, const std::string& field,
                          const YAML::Node& node, const char* separator,
                          std::vector<std::string>* out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.second.IsScalar()) return FieldError(where, field, "values must be plain text");
      out->push_back(absl::StrCat(kv.first.Scalar(), separator, kv.second.Scalar()));
    }
    return absl::OkStatus();
  }
  if (node.IsSequence()) {
    for (const auto& item : node) {
      if (!item.IsScalar()) return FieldError(where, field, "list entries must be plain text");
      out->push_back(item.Scalar());
    }
    return absl::OkStatus();
  }
  if (node.IsScalar()) {
    out->push_back(node.Scalar());
    return absl::OkStatus();
  }
  return FieldError(where, field, "expects a mapping or a list");
}

absl::StatusOr<JobFileEntry> ParseJob(const std::string& where, const YAML::Node& job) {
  if (!job.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": a job is a mapping of field: value"));
  }
  JobFileEntry e;
  e.origin = where;
  e.inputs.spec_origin = where;
  const std::vector<std::string>& known = JobSpecFlagNames();
  for (const auto& kv : job) {
    std::string field = absl::StrReplaceAll(kv.first.Scalar(), {{"-", "_"}});
    if (field == "param" || field == "params") {
      auto s = CollectPairs(where, field, kv.second, "=", &e.inputs.params);
      if (!s.ok()) return s;
      continue;
    }
    if (field == "header" || field == "headers") {
      auto s = CollectPairs(where, field, kv.second, ": ", &e.inputs.headers);
      if (!s.ok()) return s;
      continue;
    }
    if (std::find(known.begin(), known.end(), field) == known.end()) {
      return FieldError(where, kv.first.Scalar(),
                        "unknown field; a job's fields are etlctl run's flags (cliente, rota, url, "
                        "pagination, page_size, records_path, write_mode, ...: see etlctl --help)");
    }
    if (!kv.second.IsScalar() && !kv.second.IsNull()) {
      return FieldError(where, kv.first.Scalar(), "expects a single value");
    }
    if (e.inputs.flags.count(field) > 0) {
      return FieldError(where, kv.first.Scalar(), "given twice");
    }
    e.inputs.flags[field] = kv.second.IsNull() ? "" : kv.second.Scalar();
  }
  return e;
}

}  // namespace

absl::StatusOr<std::vector<JobFileEntry>> ParseJobFile(const std::string& path,
                                                       const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": line ", e.mark.line + 1, ", column ",
                                                   e.mark.column + 1, ": ", e.msg));
  }
  std::vector<YAML::Node> jobs;
  if (root.IsMap() && root["jobs"]) root = root["jobs"];
  if (root.IsSequence()) {
    for (const auto& j : root) jobs.push_back(j);
  } else if (root.IsMap()) {
    jobs.push_back(root);
  }
  if (jobs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no job found (expected a mapping of field: value, or a list of them)"));
  }
  std::vector<JobFileEntry> out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    absl::StatusOr<JobFileEntry> e = ParseJob(Where(path, i, jobs.size(), jobs[i]), jobs[i]);
    if (!e.ok()) return e.status();
    out.push_back(*std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<JobFileEntry>> LoadJobFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseJobFile(path, ss.str());
}

}  // namespace etl::cli
