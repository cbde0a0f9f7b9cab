#include "cli/job_spec_builder.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/job_modes.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace etl::cli {
namespace {

using etl::v1::JobSpec;

std::string Dashed(const std::string& name) {
  return "--" + absl::StrReplaceAll(name, {{"_", "-"}});
}

absl::Status FlagError(const std::string& name, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Dashed(name), ": ", message));
}

absl::StatusOr<int64_t> ParseInt(const std::string& name, const std::string& text, int64_t min) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v))
    return FlagError(name, absl::StrCat("\"", text, "\" is not an integer"));
  if (v < min) return FlagError(name, absl::StrCat("must be >= ", min, ", got ", v));
  return v;
}

absl::StatusOr<double> ParseSeconds(const std::string& name, const std::string& text) {
  std::string t = text;
  if (absl::EndsWith(t, "s")) t.pop_back();  // accept "30s"
  double v = 0;
  if (!absl::SimpleAtod(t, &v) || !std::isfinite(v)) {
    return FlagError(name, absl::StrCat("\"", text, "\" is not a number"));
  }
  if (v < 0) return FlagError(name, absl::StrCat("must not be negative, got ", text));
  return v;
}

absl::Status CheckPointer(const std::string& what, const std::string& pointer) {
  if (!pointer.empty() && pointer[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": \"", pointer,
        "\" is not a JSON pointer (RFC 6901: empty or starting with '/', e.g. /data)"));
  }
  return absl::OkStatus();
}

absl::Status CheckDate(const std::string& what, const std::string& date) {
  if (date.empty()) return absl::OkStatus();
  int y = 0, m = 0, d = 0;
  bool ok = date.size() == 10 && date[4] == '-' && date[7] == '-' &&
            absl::SimpleAtoi(date.substr(0, 4), &y) && absl::SimpleAtoi(date.substr(5, 2), &m) &&
            absl::SimpleAtoi(date.substr(8, 2), &d) && absl::ascii_isdigit(date[0]) && m >= 1 &&
            m <= 12 && d >= 1 && d <= 31;
  if (ok) {
    static constexpr int kDaysIn[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    ok = d <= kDaysIn[m - 1] && !(m == 2 && d == 29 && !leap);
  }
  if (!ok)
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", date, "\" is not a date (YYYY-MM-DD)"));
  return absl::OkStatus();
}

// Replaces entries with the same key (case-insensitively for headers) and appends the rest.
void MergeKeyValues(google::protobuf::RepeatedPtrField<etl::v1::KeyValue>* into,
                    const std::vector<std::pair<std::string, std::string>>& extra,
                    bool case_insensitive) {
  auto same = [&](const std::string& a, const std::string& b) {
    return case_insensitive ? absl::EqualsIgnoreCase(a, b) : a == b;
  };
  for (const auto& [k, v] : extra) {
    for (int i = into->size() - 1; i >= 0; --i) {
      if (same(into->Get(i).key(), k)) into->DeleteSubrange(i, 1);
    }
  }
  for (const auto& [k, v] : extra) {
    etl::v1::KeyValue* kv = into->Add();
    kv->set_key(k);
    kv->set_value(v);
  }
}

}  // namespace

const std::vector<std::string>& JobSpecFlagNames() {
  static const auto* names = new std::vector<std::string>{"cliente",
                                                          "rota",
                                                          "url",
                                                          "pagination",
                                                          "page_param",
                                                          "size_param",
                                                          "page_size",
                                                          "start_page",
                                                          "offset_param",
                                                          "limit_param",
                                                          "cursor_param",
                                                          "cursor_path",
                                                          "next_url_path",
                                                          "total_pages_path",
                                                          "total_count_path",
                                                          "records_path",
                                                          "max_pages",
                                                          "start_date",
                                                          "end_date",
                                                          "start_param",
                                                          "end_param",
                                                          "date_format",
                                                          "id_path",
                                                          "max_attempts",
                                                          "backoff_scale",
                                                          "max_backoff",
                                                          "fetch_concurrency",
                                                          "timeout",
                                                          "connect_timeout",
                                                          "bearer_token_env",
                                                          "bearer_token_file",
                                                          "api_key_env",
                                                          "api_key_file",
                                                          "api_key_header",
                                                          "api_key_param",
                                                          "basic_user",
                                                          "basic_password_env",
                                                          "basic_password_file",
                                                          "write_mode",
                                                          "incremental_path",
                                                          "incremental_type",
                                                          "incremental_param",
                                                          "incremental_initial",
                                                          "lookback",
                                                          "full_refresh",
                                                          "credential",
                                                          "allow_non_object_records",
                                                          "fixed_fetch_concurrency"};
  return *names;
}

absl::StatusOr<etl::v1::PaginationStyle> ParsePaginationStyle(const std::string& text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  absl::StrReplaceAll({{"-", "_"}}, &t);
  if (t == "page") return etl::v1::PAGE;
  if (t == "offset") return etl::v1::OFFSET;
  if (t == "cursor") return etl::v1::CURSOR;
  if (t == "link") return etl::v1::LINK;
  if (t == "next_url") return etl::v1::NEXT_URL;
  if (t == "none") return etl::v1::NONE;
  return absl::InvalidArgumentError(
      absl::StrCat("--pagination: unknown style \"", text,
                   "\"; use page, offset, cursor, link, next_url or none"));
}

absl::StatusOr<std::map<std::string, std::vector<std::string>>> ExtractRepeatedFlags(
    std::vector<std::string>* args, const std::set<std::string>& names) {
  std::map<std::string, std::vector<std::string>> found;
  std::vector<std::string> kept;
  if (!args->empty()) kept.push_back((*args)[0]);
  for (size_t i = 1; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    if (a == "--") {
      kept.insert(kept.end(), args->begin() + static_cast<long>(i), args->end());
      break;
    }
    size_t dashes = absl::StartsWith(a, "--") ? 2 : absl::StartsWith(a, "-") ? 1 : 0;
    if (dashes == 0) {
      kept.push_back(a);
      continue;
    }
    size_t eq = a.find('=');
    std::string name = absl::StrReplaceAll(
        a.substr(dashes, eq == std::string::npos ? std::string::npos : eq - dashes), {{"-", "_"}});
    if (names.count(name) == 0) {
      kept.push_back(a);
      continue;
    }
    if (eq != std::string::npos) {
      found[name].push_back(a.substr(eq + 1));
    } else if (i + 1 < args->size()) {
      found[name].push_back((*args)[++i]);
    } else {
      return FlagError(name, "missing value");
    }
  }
  *args = std::move(kept);
  return found;
}

std::set<std::string> FlagsNamedIn(const std::vector<std::string>& args) {
  std::set<std::string> names;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    size_t start = a[1] == '-' ? 2 : 1;
    size_t eq = a.find('=');
    names.insert(absl::StrReplaceAll(
        a.substr(start, eq == std::string::npos ? std::string::npos : eq - start), {{"-", "_"}}));
  }
  return names;
}

absl::StatusOr<JobSpec> BuildJobSpec(const SpecInputs& in) {
  JobSpec spec;
  if (!absl::StripAsciiWhitespace(in.spec_json).empty()) {
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = false;
    auto st = google::protobuf::util::JsonStringToMessage(in.spec_json, &spec, opts);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          in.spec_origin, ": not a JobSpec in proto3 JSON: ", std::string(st.message())));
    }
  }

  const auto& f = in.flags;
  for (const auto& [name, value] : f) {
    bool known = false;
    for (const std::string& n : JobSpecFlagNames()) known = known || n == name;
    if (!known) return absl::InternalError(absl::StrCat("unknown job flag ", Dashed(name)));
  }
  auto has = [&](const char* n) { return f.count(n) > 0; };
  auto get = [&](const char* n) { return f.at(n); };
  etl::v1::Pagination* p = spec.mutable_pagination();
  etl::v1::DateFilter* d = spec.mutable_date_filter();
  etl::v1::RetryPolicy* r = spec.mutable_retry();

  // Plain strings.
  const std::pair<const char*, std::string*> strings[] = {
      {"cliente", spec.mutable_cliente_id()},
      {"rota", spec.mutable_rota()},
      {"url", spec.mutable_url()},
      {"page_param", p->mutable_page_param()},
      {"size_param", p->mutable_size_param()},
      {"offset_param", p->mutable_offset_param()},
      {"limit_param", p->mutable_limit_param()},
      {"cursor_param", p->mutable_cursor_param()},
      {"cursor_path", p->mutable_cursor_path()},
      {"next_url_path", p->mutable_next_url_path()},
      {"total_pages_path", p->mutable_total_pages_path()},
      {"total_count_path", p->mutable_total_count_path()},
      {"records_path", p->mutable_records_path()},
      {"start_date", d->mutable_start_date()},
      {"end_date", d->mutable_end_date()},
      {"start_param", d->mutable_start_param()},
      {"end_param", d->mutable_end_param()},
      {"date_format", d->mutable_format()},
      {"id_path", spec.mutable_id_path()},
      {"incremental_path", spec.mutable_incremental()->mutable_cursor_path()},
      {"incremental_param", spec.mutable_incremental()->mutable_param()},
      {"incremental_initial", spec.mutable_incremental()->mutable_initial_value()},
  };
  for (const auto& [name, field] : strings) {
    if (has(name)) *field = std::string(absl::StripAsciiWhitespace(get(name)));
  }
  if (has("pagination")) {
    ASSIGN_OR_RETURN(etl::v1::PaginationStyle style, ParsePaginationStyle(get("pagination")));
    p->set_style(style);
  }

  if (has("write_mode")) {
    auto mode = ParseWriteMode(get("write_mode"));
    if (!mode.ok())
      return FlagError("write_mode",
                       absl::StrCat("\"", get("write_mode"), "\" is not append, merge or replace"));
    spec.set_write_mode(*mode);
  }
  if (has("incremental_type")) {
    auto type = ParseCursorType(get("incremental_type"));
    if (!type.ok())
      return FlagError("incremental_type", absl::StrCat("\"", get("incremental_type"),
                                                        "\" is not timestamp or integer"));
    spec.mutable_incremental()->set_cursor_type(*type);
  }
  if (has("lookback")) {
    auto seconds = ParseDurationSeconds(get("lookback"));
    if (!seconds.ok()) return FlagError("lookback", seconds.status().message());
    spec.mutable_incremental()->set_lookback_seconds(*seconds);
  }
  if (has("full_refresh")) {
    std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(get("full_refresh")));
    if (v != "true" && v != "false" && v != "1" && v != "0" && v != "yes" && v != "no") {
      return FlagError("full_refresh",
                       absl::StrCat("\"", get("full_refresh"), "\" is not true or false"));
    }
    spec.mutable_incremental()->set_full_refresh(v == "true" || v == "1" || v == "yes");
  }
  if (!spec.has_incremental() || spec.incremental().ByteSizeLong() == 0) spec.clear_incremental();
  if (has("allow_non_object_records")) {
    std::string v =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(get("allow_non_object_records")));
    if (v != "true" && v != "false" && v != "1" && v != "0" && v != "yes" && v != "no") {
      return FlagError(
          "allow_non_object_records",
          absl::StrCat("\"", get("allow_non_object_records"), "\" is not true or false"));
    }
    spec.set_allow_non_object_records(v == "true" || v == "1" || v == "yes");
  }
  if (has("fixed_fetch_concurrency")) {
    std::string v =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(get("fixed_fetch_concurrency")));
    if (v != "true" && v != "false" && v != "1" && v != "0" && v != "yes" && v != "no") {
      return FlagError("fixed_fetch_concurrency", absl::StrCat("\"", get("fixed_fetch_concurrency"),
                                                               "\" is not true or false"));
    }
    spec.set_fixed_fetch_concurrency(v == "true" || v == "1" || v == "yes");
  }

  // Numbers.
  if (has("page_size")) {
    ASSIGN_OR_RETURN(int64_t v, ParseInt("page_size", get("page_size"), 0));
    p->set_page_size(v);
  }
  if (has("start_page")) {
    ASSIGN_OR_RETURN(int64_t v, ParseInt("start_page", get("start_page"), 0));
    p->set_start_page(v);
  }
  if (has("max_pages")) {
    ASSIGN_OR_RETURN(int64_t v, ParseInt("max_pages", get("max_pages"), 1));
    p->set_max_pages(v);
  }
  if (has("max_attempts")) {
    ASSIGN_OR_RETURN(int64_t v, ParseInt("max_attempts", get("max_attempts"), 1));
    if (v > 100) return FlagError("max_attempts", "must be <= 100");
    r->set_max_attempts(static_cast<int32_t>(v));
  }
  if (has("fetch_concurrency")) {
    ASSIGN_OR_RETURN(int64_t v, ParseInt("fetch_concurrency", get("fetch_concurrency"), 1));
    if (v > 256) return FlagError("fetch_concurrency", "must be <= 256");
    spec.set_fetch_concurrency(static_cast<int32_t>(v));
  }
  if (has("backoff_scale")) {
    ASSIGN_OR_RETURN(double v, ParseSeconds("backoff_scale", get("backoff_scale")));
    r->set_backoff_scale(v);
  }
  if (has("max_backoff")) {
    ASSIGN_OR_RETURN(double v, ParseSeconds("max_backoff", get("max_backoff")));
    r->set_max_backoff_seconds(v);
  }
  if (has("timeout")) {
    ASSIGN_OR_RETURN(double v, ParseSeconds("timeout", get("timeout")));
    spec.set_timeout_seconds(v);
  }
  if (has("connect_timeout")) {
    ASSIGN_OR_RETURN(double v, ParseSeconds("connect_timeout", get("connect_timeout")));
    spec.set_connect_timeout_seconds(v);
  }

  // A credential declared by the operator on the collector (the way to authenticate).
  if (has("credential")) spec.set_credential(get("credential"));

  // Auth: one method; the secret stays where it is, only its location travels.
  struct AuthFlags {
    const char* env;
    const char* file;
    etl::v1::AuthType type;
  };
  const AuthFlags methods[] = {{"bearer_token_env", "bearer_token_file", etl::v1::BEARER},
                               {"api_key_env", "api_key_file", etl::v1::API_KEY},
                               {"basic_password_env", "basic_password_file", etl::v1::BASIC}};
  int methods_given = 0;
  for (const AuthFlags& m : methods) {
    if (!has(m.env) && !has(m.file)) continue;
    if (++methods_given > 1) {
      return absl::InvalidArgumentError(
          "choose one authentication method: --bearer-token-env/-file, --api-key-env/-file or "
          "--basic-password-env/-file");
    }
    if (has(m.env) && has(m.file)) {
      return absl::InvalidArgumentError(
          absl::StrCat("give either ", Dashed(m.env), " or ", Dashed(m.file), ", not both"));
    }
    etl::v1::Auth* auth = spec.mutable_auth();
    auth->Clear();
    auth->set_type(m.type);
    if (has(m.env)) {
      std::string env = get(m.env);
      if (env.empty() || env.find_first_of("= \t") != std::string::npos) {
        return FlagError(
            m.env,
            "expects the NAME of an environment variable holding the secret, not the secret");
      }
      auth->set_secret_env(env);
    } else {
      auth->set_secret_file(get(m.file));
    }
  }
  if (has("api_key_header") || has("api_key_param")) {
    if (spec.auth().type() != etl::v1::API_KEY) {
      return absl::InvalidArgumentError(
          "--api-key-header/--api-key-param need --api-key-env or --api-key-file");
    }
    if (has("api_key_header")) spec.mutable_auth()->set_header_name(get("api_key_header"));
    if (has("api_key_param")) spec.mutable_auth()->set_query_param(get("api_key_param"));
  }
  if (has("basic_user")) {
    if (spec.auth().type() != etl::v1::BASIC) {
      return absl::InvalidArgumentError(
          "--basic-user needs --basic-password-env or --basic-password-file");
    }
    spec.mutable_auth()->set_username(get("basic_user"));
  }

  // Repeated query parameters and headers.
  std::vector<std::pair<std::string, std::string>> params, headers;
  for (const std::string& kv : in.params) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--param: \"", kv, "\" is not key=value"));
    }
    params.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const std::string& kv : in.headers) {
    size_t colon = kv.find(':');
    std::string name = colon == std::string::npos
                           ? ""
                           : std::string(absl::StripAsciiWhitespace(kv.substr(0, colon)));
    if (name.empty() || name.find_first_of(" \t\r\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--header: \"", kv, "\" is not \"Name: value\""));
    }
    std::string value(absl::StripAsciiWhitespace(kv.substr(colon + 1)));
    if (value.find_first_of("\r\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--header ", name, ": value must not contain line breaks"));
    }
    if (absl::EqualsIgnoreCase(name, "Authorization") ||
        absl::EqualsIgnoreCase(name, "Proxy-Authorization")) {
      return absl::InvalidArgumentError(
          "--header: credentials do not go in headers (they would be stored with the job); use "
          "--bearer-token-env, --api-key-env or --basic-user with --basic-password-env");
    }
    headers.emplace_back(name, value);
  }
  MergeKeyValues(spec.mutable_query_params(), params, /*case_insensitive=*/false);
  MergeKeyValues(spec.mutable_headers(), headers, /*case_insensitive=*/true);

  // Checks of the merged spec: what the collector would refuse, said in terms of etlctl's flags.
  if (spec.cliente_id().empty())
    return absl::InvalidArgumentError("--cliente is required (e.g. --cliente=2151)");
  if (spec.rota().empty())
    return absl::InvalidArgumentError("--rota is required (e.g. --rota=pedidos)");
  RETURN_IF_ERROR(ValidateNamePart("--cliente", spec.cliente_id()));
  RETURN_IF_ERROR(ValidateNamePart("--rota", spec.rota()));
  RETURN_IF_ERROR(RawTableName(spec.cliente_id(), spec.rota()).status());
  if (spec.url().empty()) return absl::InvalidArgumentError("--url is required");
  std::string lower_url = absl::AsciiStrToLower(spec.url());
  if (!absl::StartsWith(lower_url, "http://") && !absl::StartsWith(lower_url, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--url: \"", spec.url(), "\" must start with http:// or https://"));
  }
  if (p->style() == etl::v1::PAGINATION_STYLE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "--pagination is required: page, offset, cursor, link, next_url or none");
  }
  if (p->style() == etl::v1::CURSOR && p->cursor_path().empty()) {
    return absl::InvalidArgumentError(
        "--cursor-path is required with --pagination=cursor (e.g. /next_cursor)");
  }
  if (p->style() == etl::v1::NEXT_URL && p->next_url_path().empty()) {
    return absl::InvalidArgumentError(
        "--next-url-path is required with --pagination=next_url (e.g. /next)");
  }
  const std::pair<const char*, const std::string*> pointers[] = {
      {"--cursor-path", &p->cursor_path()},
      {"--next-url-path", &p->next_url_path()},
      {"--total-pages-path", &p->total_pages_path()},
      {"--total-count-path", &p->total_count_path()},
      {"--records-path", &p->records_path()},
      {"--id-path", &spec.id_path()}};
  for (const auto& [what, value] : pointers) RETURN_IF_ERROR(CheckPointer(what, *value));
  RETURN_IF_ERROR(CheckDate("--start-date", d->start_date()));
  RETURN_IF_ERROR(CheckDate("--end-date", d->end_date()));
  if (!d->start_date().empty() && !d->end_date().empty() && d->end_date() < d->start_date()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--end-date ", d->end_date(), " precedes --start-date ", d->start_date()));
  }
  if (!spec.credential().empty() && spec.auth().type() != etl::v1::AUTH_NONE) {
    return absl::InvalidArgumentError(
        "--credential replaces the --bearer-token/--api-key/--basic flags: give one");
  }
  if (spec.auth().type() != etl::v1::AUTH_NONE && spec.auth().secret_env().empty() &&
      spec.auth().secret_file().empty()) {
    return absl::InvalidArgumentError("auth: name the secret's environment variable or file");
  }
  if (spec.write_mode() == etl::v1::MERGE && spec.id_path().empty()) {
    return absl::InvalidArgumentError("--write-mode=merge needs --id-path (e.g. --id-path=/id)");
  }
  if (spec.has_incremental()) {
    const etl::v1::Incremental& inc = spec.incremental();
    if (inc.cursor_path().empty()) {
      return absl::InvalidArgumentError(
          "--incremental-path is required for an incremental load (e.g. "
          "--incremental-path=/updated_at)");
    }
    RETURN_IF_ERROR(CheckPointer("--incremental-path", inc.cursor_path()));
    if (inc.cursor_type() == etl::v1::CURSOR_TYPE_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          "--incremental-type is required with --incremental-path: timestamp or integer");
    }
  }
  RETURN_IF_ERROR(ValidateJobModes(spec));
  return spec;
}

}  // namespace etl::cli
