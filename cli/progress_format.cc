#include "cli/progress_format.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace etl::cli {

using etl::v1::Job;
using etl::v1::JobProgress;
using etl::v1::JobState;

std::string FormatCount(int64_t n) {
  // Magnitude computed without overflow, INT64_MIN included.
  const uint64_t magnitude = n < 0 ? static_cast<uint64_t>(-(n + 1)) + 1 : static_cast<uint64_t>(n);
  const std::string digits = absl::StrCat(magnitude);
  std::string out;
  int lead = static_cast<int>(digits.size() % 3);
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (static_cast<int>(i) - lead) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

std::string FormatDuration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  if (s < 10) return absl::StrFormat("%.1fs", s);
  int64_t t = static_cast<int64_t>(std::llround(s));
  if (t < 60) return absl::StrCat(t, "s");
  if (t < 3600) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  if (t < 86400) return absl::StrFormat("%dh%02dm", t / 3600, t / 60 % 60);
  return absl::StrFormat("%dd%02dh", t / 86400, t / 3600 % 24);
}

std::string FormatRate(double r) {
  if (!(r >= 0) || !std::isfinite(r)) return "?/s";
  if (r < 10) return absl::StrFormat("%.1f/s", r);
  return absl::StrCat(FormatCount(static_cast<int64_t>(std::llround(r))), "/s");
}

std::string FormatTimestamp(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

bool IsTerminal(JobState s) {
  return s == etl::v1::SUCCEEDED || s == etl::v1::PARTIAL || s == etl::v1::FAILED ||
         s == etl::v1::CANCELLED;
}

int ExitCodeForState(JobState s) {
  if (s == etl::v1::SUCCEEDED) return 0;
  if (s == etl::v1::PARTIAL) return 2;
  return 1;
}

namespace {
std::string StateName(JobState s) {
  return s == etl::v1::JOB_STATE_UNSPECIFIED ? "UNKNOWN" : etl::v1::JobState_Name(s);
}
}  // namespace

std::string FormatProgressLine(const JobProgress& p) {
  std::string line = absl::StrFormat("%-9s ", StateName(p.state()));
  absl::StrAppend(&line, FormatCount(p.records_committed()));
  double fraction = -1;
  if (p.records_total() > 0) {
    absl::StrAppend(&line, "/", FormatCount(p.records_total()));
    fraction = static_cast<double>(p.records_committed()) / static_cast<double>(p.records_total());
  } else if (p.pages_total() > 0) {
    fraction = static_cast<double>(p.pages_committed()) / static_cast<double>(p.pages_total());
  }
  absl::StrAppend(&line, " records");
  if (fraction >= 0) absl::StrAppendFormat(&line, " (%.1f%%)", std::min(fraction, 1.0) * 100);
  if (p.records_fetched() > p.records_committed()) {
    absl::StrAppend(&line, " +", FormatCount(p.records_fetched() - p.records_committed()),
                    " in flight");
  }
  absl::StrAppend(&line, " | pages ", FormatCount(p.pages_committed()));
  if (p.pages_total() > 0) absl::StrAppend(&line, "/", FormatCount(p.pages_total()));
  absl::StrAppend(&line, " | ", FormatRate(p.records_per_second()));
  if (!IsTerminal(p.state())) {
    absl::StrAppend(&line, " | ETA ", p.eta_seconds() >= 0 ? FormatDuration(p.eta_seconds()) : "?");
  }
  absl::StrAppend(&line, " | elapsed ", FormatDuration(p.elapsed_seconds()));
  absl::StrAppend(&line, " | retries ", FormatCount(p.retries()), " | failed pages ",
                  FormatCount(p.pages_failed()));
  if (p.records_rejected() > 0)
    absl::StrAppend(&line, " | rejected ", FormatCount(p.records_rejected()));
  return line;
}

std::string FormatJobOutcome(const Job& job) {
  const JobProgress& p = job.progress();
  std::string out = absl::StrCat("job ", job.job_id(), " ", StateName(job.state()), ": ",
                                 FormatCount(p.records_committed()), " records in ",
                                 FormatDuration(p.elapsed_seconds()));
  if (p.elapsed_seconds() > 0) {
    absl::StrAppend(&out, " (",
                    FormatRate(static_cast<double>(p.records_committed()) / p.elapsed_seconds()),
                    ")");
  }
  if (!job.table_name().empty()) absl::StrAppend(&out, " into ", job.table_name());
  if (p.records_rejected() > 0) {
    absl::StrAppend(&out, "; ", FormatCount(p.records_rejected()),
                    " records rejected (see etl_dead_letters)");
  }
  if (!job.error().empty()) absl::StrAppend(&out, "\n  reason: ", job.error());
  if (job.failed_pages_size() > 0) {
    absl::StrAppend(&out, "\n  ", job.failed_pages_size(), " failed page(s):");
    int shown = 0;
    for (const auto& f : job.failed_pages()) {
      if (++shown > 20) {
        absl::StrAppend(&out, "\n    ... and ", job.failed_pages_size() - 20,
                        " more (etlctl status ", job.job_id(), ")");
        break;
      }
      absl::StrAppend(&out, "\n    page ", f.page_number(), " [", f.page_token(), "] after ",
                      f.attempts(), " attempt(s): ", f.error());
    }
  }
  return out;
}

std::string FormatJobDetails(const Job& job) {
  const auto& s = job.spec();
  std::string out;
  absl::StrAppend(&out, "job:        ", job.job_id(), "\n");
  absl::StrAppend(&out, "state:      ", StateName(job.state()), "\n");
  absl::StrAppend(&out, "table:      ", job.table_name(), "\n");
  absl::StrAppend(&out, "source:     ", s.url(), " (pagination ",
                  s.pagination().style() == etl::v1::PAGINATION_STYLE_UNSPECIFIED
                      ? "?"
                      : etl::v1::PaginationStyle_Name(s.pagination().style()),
                  ")\n");
  if (!s.date_filter().start_date().empty() || !s.date_filter().end_date().empty()) {
    absl::StrAppend(
        &out,
        "dates:      ", s.date_filter().start_date().empty() ? "*" : s.date_filter().start_date(),
        " .. ", s.date_filter().end_date().empty() ? "*" : s.date_filter().end_date(), "\n");
  }
  absl::StrAppend(&out, "created:    ", FormatTimestamp(job.created_at_unix_ms()), "\n");
  absl::StrAppend(&out, "finished:   ", FormatTimestamp(job.finished_at_unix_ms()), "\n");
  absl::StrAppend(&out, "progress:   ", FormatProgressLine(job.progress()), "\n");
  absl::StrAppend(&out, "fetched:    ", FormatCount(job.progress().records_fetched()), " records, ",
                  FormatCount(job.progress().pages_done()), " pages\n");
  if (!job.progress().message().empty())
    absl::StrAppend(&out, "last event: ", job.progress().message(), "\n");
  if (!job.error().empty()) absl::StrAppend(&out, "error:      ", job.error(), "\n");
  if (job.failed_pages_size() > 0) {
    absl::StrAppend(&out, "failed pages (", job.failed_pages_size(), "):\n");
    for (const auto& f : job.failed_pages()) {
      absl::StrAppend(&out, "  page ", f.page_number(), " [", f.page_token(), "] after ",
                      f.attempts(), " attempt(s): ", f.error(), "\n");
    }
  }
  return out;
}

std::string FormatJobTable(const etl::v1::ListJobsResponse& jobs) {
  if (jobs.jobs_size() == 0) return "no jobs\n";
  std::string out = absl::StrFormat("%-36s  %-9s  %12s  %9s  %6s  %-20s  %s\n", "JOB", "STATE",
                                    "RECORDS", "PAGES", "FAILED", "CREATED", "TABLE");
  for (const Job& j : jobs.jobs()) {
    absl::StrAppendFormat(&out, "%-36s  %-9s  %12s  %9s  %6s  %-20s  %s\n", j.job_id(),
                          StateName(j.state()), FormatCount(j.progress().records_committed()),
                          FormatCount(j.progress().pages_committed()),
                          FormatCount(j.progress().pages_failed()),
                          FormatTimestamp(j.created_at_unix_ms()), j.table_name());
  }
  return out;
}

std::string FormatWriterStatus(const etl::v1::WriterStatus& w) {
  std::string out;
  auto row = [&](absl::string_view k, const std::string& v) {
    absl::StrAppendFormat(&out, "%-22s %s\n", k, v);
  };
  row("serving:", w.serving() ? "yes" : "NO");
  row("uptime:", FormatDuration(static_cast<double>(w.uptime_seconds())));
  row("streams:",
      absl::StrCat(w.streams_active(), " active, ", FormatCount(w.streams_total()), " total"));
  row("records received:", FormatCount(w.records_received()));
  row("records committed:", FormatCount(w.records_committed()));
  row("records rejected:", FormatCount(w.records_rejected()));
  row("records skipped:", absl::StrCat(FormatCount(w.records_skipped()), " (",
                                       FormatCount(w.pages_skipped()), " duplicate pages)"));
  row("records queued:", FormatCount(w.records_queued()));
  row("pages committed:", FormatCount(w.pages_committed()));
  row("transactions:", absl::StrCat(FormatCount(w.batches_committed()), " (",
                                    FormatCount(w.commit_retries()), " retried)"));
  row("bytes:", absl::StrCat(FormatCount(w.bytes_received()), " received, ",
                             FormatCount(w.bytes_committed()), " committed"));
  row("queue:", absl::StrCat(FormatCount(w.queue_depth_records()), "/",
                             FormatCount(w.queue_capacity_records()), " records, ",
                             FormatCount(w.queue_depth_bytes()), "/",
                             FormatCount(w.queue_capacity_bytes()), " bytes"));
  row("commit rate:", FormatRate(w.commit_rate_records_per_second()));
  if (!w.last_error().empty()) row("last error:", w.last_error());
  if (w.jobs_size() > 0) {
    absl::StrAppendFormat(&out, "\n%-36s  %12s  %12s  %9s  %9s  %8s\n", "JOB", "RECEIVED",
                          "COMMITTED", "REJECTED", "PAGES", "SKIPPED");
    for (const auto& j : w.jobs()) {
      absl::StrAppendFormat(&out, "%-36s  %12s  %12s  %9s  %9s  %8s\n", j.job_id(),
                            FormatCount(j.records_received()), FormatCount(j.records_committed()),
                            FormatCount(j.records_rejected()), FormatCount(j.pages_committed()),
                            FormatCount(j.pages_skipped()));
    }
  }
  return out;
}

}  // namespace etl::cli
