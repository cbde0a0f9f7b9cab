#include "collector_service/job_spec.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/job_modes.h"
#include "common/json_page.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace etl {
namespace {

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

absl::Status ValidateUrl(const std::string& url) {
  if (url.empty()) return absl::InvalidArgumentError("url is required");
  std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
  if (curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("url \"", url, "\" is not a valid absolute URL"));
  }
  char* scheme = nullptr;
  char* host = nullptr;
  curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(u.get(), CURLUPART_HOST, &host, 0);
  std::string s = scheme ? scheme : "", h = host ? host : "";
  curl_free(scheme);
  curl_free(host);
  s = absl::AsciiStrToLower(s);
  if (s != "http" && s != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("url scheme \"", s, "\" is not supported: use http:// or https://"));
  }
  if (h.empty()) return absl::InvalidArgumentError(absl::StrCat("url \"", url, "\" has no host"));
  return absl::OkStatus();
}

absl::Status ValidatePointer(absl::string_view field, const std::string& pointer) {
  auto tokens = ParseJsonPointer(pointer);
  if (!tokens.ok())
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", tokens.status().message()));
  return absl::OkStatus();
}

bool IsHeaderToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || absl::StrContains("!#$%&'*+-.^_`|~", c))) return false;
  }
  return true;
}

bool HasControl(absl::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

// Checks a DateFilter.format before any request is made: every conversion must be one strftime
// defines (an unknown one such as "%q" is copied through or undefined, depending on the C library),
// at least one must encode the date (a format like "%H:%M" or plain text would send the same value
// for every date), and the result for a sample date must be non-empty and fit the output buffer.
absl::Status ValidateDateFormat(const std::string& format) {
  // Conversions that depend on the date (the time fields of a date are always midnight).
  constexpr absl::string_view kDate = "aAbBcCdDeFgGhjmsuUVwWxyY";
  // Allowed but date-independent. %Z is left out: the broken-down time carries no zone name.
  constexpr absl::string_view kOther = "HIklMnpPrRStTz%";
  bool has_date = false;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '\0') return absl::InvalidArgumentError("date_filter.format contains a NUL byte");
    if (c != '%') continue;
    size_t j = i + 1;
    while (j < format.size() && absl::StrContains("_-0^#", format[j])) ++j;  // glibc flags.
    while (j < format.size() && absl::ascii_isdigit(format[j])) ++j;         // Field width.
    if (j < format.size() && (format[j] == 'E' || format[j] == 'O')) ++j;    // Alternative forms.
    if (j >= format.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("date_filter.format \"", format, "\" ends with an incomplete % conversion"));
    }
    const char conv = format[j];
    if (absl::StrContains(kDate, conv)) {
      has_date = true;
    } else if (!absl::StrContains(kOther, conv)) {
      return absl::InvalidArgumentError(
          absl::StrCat("date_filter.format \"", format, "\" has the unknown conversion %",
                       format.substr(j, 1), ": use strftime conversions such as %Y, %m, %d"));
    }
    i = j;
  }
  if (!has_date) {
    return absl::InvalidArgumentError(absl::StrCat(
        "date_filter.format \"", format, "\" has no date conversion (e.g. %Y-%m-%d or %d/%m/%Y)"));
  }
  // The widest sample: a two-digit day and month, a long month and weekday name.
  for (const char* sample : {"2024-12-25", "2024-09-30"}) {
    auto formatted = FormatDate(sample, format);
    if (!formatted.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("date_filter.format: ", formatted.status().message()));
  }
  return absl::OkStatus();
}

absl::Status NonNegative(absl::string_view field, double v) {
  if (v < 0)
    return absl::InvalidArgumentError(absl::StrCat(field, " must not be negative (got ", v, ")"));
  return absl::OkStatus();
}

}  // namespace

std::string StyleName(v1::PaginationStyle style) {
  return v1::PaginationStyle_IsValid(style) ? v1::PaginationStyle_Name(style)
                                            : absl::StrCat(int(style));
}

absl::Status ValidateDate(absl::string_view field, absl::string_view date) {
  bool shape = date.size() == 10 && date[4] == '-' && date[7] == '-';
  for (size_t i = 0; shape && i < date.size(); ++i) {
    if (i != 4 && i != 7 && !absl::ascii_isdigit(date[i])) shape = false;
  }
  absl::CivilDay day;
  if (!shape || !absl::ParseCivilTime(date, &day) || absl::FormatCivilTime(day) != date) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", date, "\" is not a valid date: expected YYYY-MM-DD (e.g. 2024-01-31)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FormatDate(absl::string_view date, const std::string& format) {
  absl::CivilDay day;
  if (!absl::ParseCivilTime(date, &day)) return absl::InvalidArgumentError("bad date");
  std::tm tm = {};
  tm.tm_year = int(day.year() - 1900);
  tm.tm_mon = day.month() - 1;
  tm.tm_mday = day.day();
  tm.tm_wday = int(absl::GetWeekday(day)) == 6 ? 0 : int(absl::GetWeekday(day)) + 1;
  tm.tm_yday = absl::GetYearDay(day) - 1;
  char buf[256];
  size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
  if (n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "date format \"", format, "\" produces an empty string or more than 255 characters"));
  }
  return std::string(buf, n);
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  RETURN_IF_ERROR(RawTableName(spec.cliente_id(), spec.rota()).status());
  RETURN_IF_ERROR(ValidateUrl(spec.url()));

  const v1::Pagination& p = spec.pagination();
  if (p.style() == v1::PAGINATION_STYLE_UNSPECIFIED || !v1::PaginationStyle_IsValid(p.style())) {
    return absl::InvalidArgumentError(
        absl::StrCat("pagination style ", StyleName(p.style()),
                     " is not valid: use PAGE, OFFSET, CURSOR, LINK, NEXT_URL or NONE"));
  }
  RETURN_IF_ERROR(ValidatePointer("records_path", p.records_path()));
  RETURN_IF_ERROR(ValidatePointer("cursor_path", p.cursor_path()));
  RETURN_IF_ERROR(ValidatePointer("next_url_path", p.next_url_path()));
  RETURN_IF_ERROR(ValidatePointer("total_pages_path", p.total_pages_path()));
  RETURN_IF_ERROR(ValidatePointer("total_count_path", p.total_count_path()));
  RETURN_IF_ERROR(ValidatePointer("id_path", spec.id_path()));
  if (p.style() == v1::CURSOR && p.cursor_path().empty()) {
    return absl::InvalidArgumentError(
        "CURSOR pagination needs cursor_path (JSON pointer to the next cursor)");
  }
  if (p.style() == v1::NEXT_URL && p.next_url_path().empty()) {
    return absl::InvalidArgumentError(
        "NEXT_URL pagination needs next_url_path (JSON pointer to the next URL)");
  }
  RETURN_IF_ERROR(NonNegative("page_size", double(p.page_size())));
  RETURN_IF_ERROR(NonNegative("start_page", double(p.start_page())));
  RETURN_IF_ERROR(NonNegative("max_pages", double(p.max_pages())));
  for (const auto& [name, value] :
       {std::pair<const char*, const std::string*>{"page_param", &p.page_param()},
        {"size_param", &p.size_param()},
        {"offset_param", &p.offset_param()},
        {"limit_param", &p.limit_param()},
        {"cursor_param", &p.cursor_param()}}) {
    if (HasControl(*value))
      return absl::InvalidArgumentError(absl::StrCat(name, " has control characters"));
  }

  const v1::DateFilter& d = spec.date_filter();
  if (!d.start_date().empty()) RETURN_IF_ERROR(ValidateDate("start_date", d.start_date()));
  if (!d.end_date().empty()) RETURN_IF_ERROR(ValidateDate("end_date", d.end_date()));
  if (!d.start_date().empty() && !d.end_date().empty() && d.end_date() < d.start_date()) {
    return absl::InvalidArgumentError(
        absl::StrCat("end_date ", d.end_date(), " precedes start_date ", d.start_date()));
  }
  // Checked even without dates: a spec that cannot run with dates is wrong either way.
  if (!d.format().empty()) RETURN_IF_ERROR(ValidateDateFormat(d.format()));
  for (const std::string* date : {&d.start_date(), &d.end_date()}) {
    if (date->empty() || d.format().empty()) continue;
    auto formatted = FormatDate(*date, d.format());
    if (!formatted.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("date_filter.format: ", formatted.status().message()));
  }

  const v1::Auth& a = spec.auth();
  if (!v1::AuthType_IsValid(a.type())) {
    return absl::InvalidArgumentError(absl::StrCat("auth type ", int(a.type()), " is not valid"));
  }
  if (a.type() != v1::AUTH_NONE) {
    if (a.secret_env().empty() == a.secret_file().empty()) {
      return absl::InvalidArgumentError(
          "auth needs exactly one of secret_env (environment variable name) or secret_file (path)");
    }
    if (a.type() == v1::BASIC && a.username().empty()) {
      return absl::InvalidArgumentError("BASIC auth needs a username");
    }
    if (a.type() == v1::API_KEY && !a.header_name().empty() && !IsHeaderToken(a.header_name())) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth header_name \"", a.header_name(), "\" is not a valid header name"));
    }
  }
  if (!spec.credential().empty()) {
    if (a.type() != v1::AUTH_NONE) {
      return absl::InvalidArgumentError(
          "credential and auth are exclusive: name the credential only");
    }
    if (spec.credential().size() > 128 || !IsHeaderToken(spec.credential())) {
      return absl::InvalidArgumentError(
          "credential must be the name of a credential of the collector");
    }
  }
  for (const auto& kv : spec.headers()) {
    if (!IsHeaderToken(kv.key())) {
      return absl::InvalidArgumentError(
          absl::StrCat("header name \"", kv.key(), "\" is not a valid header name"));
    }
    if (HasControl(kv.value())) {
      return absl::InvalidArgumentError(
          absl::StrCat("header \"", kv.key(), "\" has control characters in its value"));
    }
  }
  for (const auto& kv : spec.query_params()) {
    if (kv.key().empty()) return absl::InvalidArgumentError("query parameter with an empty name");
  }

  const v1::RetryPolicy& r = spec.retry();
  if (r.max_attempts() < 0 || r.max_attempts() > kMaxAttemptsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry.max_attempts must be 0 (default 3) to ", kMaxAttemptsLimit));
  }
  RETURN_IF_ERROR(NonNegative("retry.backoff_scale", r.backoff_scale()));
  RETURN_IF_ERROR(NonNegative("retry.max_backoff_seconds", r.max_backoff_seconds()));
  if (spec.fetch_concurrency() < 0 || spec.fetch_concurrency() > kMaxFetchConcurrency) {
    return absl::InvalidArgumentError(
        absl::StrCat("fetch_concurrency must be 0 (server default) to ", kMaxFetchConcurrency));
  }
  RETURN_IF_ERROR(NonNegative("timeout_seconds", spec.timeout_seconds()));
  RETURN_IF_ERROR(NonNegative("connect_timeout_seconds", spec.connect_timeout_seconds()));
  return ValidateJobModes(spec);
}

v1::JobSpec WithDefaults(const v1::JobSpec& in, int default_fetch_concurrency) {
  v1::JobSpec spec = in;
  v1::Pagination* p = spec.mutable_pagination();
  if (p->page_param().empty()) p->set_page_param("page");
  if (p->size_param().empty()) p->set_size_param("page_size");
  if (p->style() == v1::PAGE && p->start_page() == 0) p->set_start_page(1);
  if (p->offset_param().empty()) p->set_offset_param("offset");
  if (p->limit_param().empty()) p->set_limit_param("limit");
  if (p->cursor_param().empty()) p->set_cursor_param("cursor");
  if (p->max_pages() == 0) p->set_max_pages(kDefaultMaxPages);
  v1::DateFilter* d = spec.mutable_date_filter();
  if (d->start_param().empty()) d->set_start_param("start_date");
  if (d->end_param().empty()) d->set_end_param("end_date");
  if (d->format().empty()) d->set_format("%Y-%m-%d");
  v1::RetryPolicy* r = spec.mutable_retry();
  if (r->max_attempts() == 0) r->set_max_attempts(3);
  if (r->backoff_scale() == 0) r->set_backoff_scale(1);
  if (r->max_backoff_seconds() == 0) r->set_max_backoff_seconds(60);
  if (spec.fetch_concurrency() == 0)
    spec.set_fetch_concurrency(std::max(1, default_fetch_concurrency));
  if (spec.timeout_seconds() == 0) spec.set_timeout_seconds(60);
  if (spec.connect_timeout_seconds() == 0) spec.set_connect_timeout_seconds(10);
  v1::Auth* a = spec.mutable_auth();
  if (a->type() == v1::API_KEY && a->header_name().empty() && a->query_param().empty()) {
    a->set_header_name("X-API-Key");
  }
  return spec;
}

absl::Status CheckJobCredential(const v1::JobSpec& spec, const CredentialStore* store,
                                bool allow_spec_secret_paths) {
  if (spec.auth().type() != v1::AUTH_NONE && !allow_spec_secret_paths) {
    return absl::InvalidArgumentError(
        "auth.secret_env / auth.secret_file are refused by this collector: name a credential "
        "declared "
        "by the operator (JobSpec.credential, etlctl --credential=NAME); single-user setups can "
        "allow "
        "them with collector_server --allow-spec-secret-paths");
  }
  if (spec.credential().empty()) return absl::OkStatus();
  if (store == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("credential \"", spec.credential(),
                     "\": this collector has no credentials file (--credentials)"));
  }
  return store->CheckAllowed(spec.credential(), spec.url());
}

absl::StatusOr<ResolvedCredential> ResolveJobCredential(const v1::JobSpec& spec,
                                                        const CredentialStore* store) {
  if (!spec.credential().empty()) {
    if (store == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("credential \"", spec.credential(),
                                                     "\": this collector has no credentials file"));
    }
    return store->Resolve(spec.credential(), spec.url());
  }
  ResolvedCredential out;
  const v1::Auth& auth = spec.auth();
  if (auth.type() == v1::AUTH_NONE) return out;
  ASSIGN_OR_RETURN(out.secret, ReadSecret(auth));
  switch (auth.type()) {
    case v1::BEARER:
      out.headers.emplace_back("Authorization", absl::StrCat("Bearer ", out.secret));
      break;
    case v1::API_KEY:
      if (!auth.query_param().empty()) {
        out.query_param = auth.query_param();
      } else {
        out.headers.emplace_back(auth.header_name().empty() ? "X-API-Key" : auth.header_name(),
                                 out.secret);
      }
      break;
    case v1::BASIC:
      out.basic_username = auth.username();
      out.basic_password = out.secret;
      break;
    default:
      break;
  }
  return out;
}

absl::StatusOr<std::string> ReadSecret(const v1::Auth& auth) {
  std::string secret;
  if (!auth.secret_env().empty()) {
    const char* v = std::getenv(auth.secret_env().c_str());
    if (v == nullptr || *v == '\0') {
      return absl::FailedPreconditionError(absl::StrCat("auth: environment variable ",
                                                        auth.secret_env(),
                                                        " is not set (or empty) in the collector"));
    }
    secret = v;
  } else {
    std::ifstream in(auth.secret_file(), std::ios::binary);
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat("auth: cannot read secret file ", auth.secret_file()));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    secret = ss.str();
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("auth: secret file ", auth.secret_file(), " is empty"));
    }
  }
  if (HasControl(secret)) {
    return absl::FailedPreconditionError("auth: the secret contains a line break or NUL byte");
  }
  return secret;
}

}  // namespace etl
