#include "collector_service/page_fetcher.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collector_service/job_spec.h"
#include "common/logging.h"

namespace etl {
namespace {

// Pages at least this large free the JSON parser's buffers once parsed (see Fetch).
constexpr size_t kReleaseParserBuffersAbove = size_t(1) << 20;

}  // namespace

double BackoffSeconds(const v1::RetryPolicy& policy, int retry, double retry_after_seconds) {
  double cap = policy.max_backoff_seconds() > 0 ? policy.max_backoff_seconds() : 60;
  double delay = retry_after_seconds >= 0
                     ? retry_after_seconds
                     : policy.backoff_scale() * (std::pow(2.0, std::min(retry, 62)) + 0.5);
  return std::min(delay, cap);
}

PageFetcher::PageFetcher(std::string job_id, const v1::JobSpec* spec, TraceContext trace,
                         HttpFetcher* http, CollectorCounters* counters, PageFetcherOptions options,
                         const std::atomic<bool>* stop, Hooks hooks)
    : job_id_(std::move(job_id)),
      spec_(spec),
      trace_(std::move(trace)),
      http_(http),
      counters_(counters),
      options_(options),
      stop_(stop),
      hooks_(std::move(hooks)) {}

void PageFetcher::SetCredential(ResolvedCredential credential) {
  credential_ = std::move(credential);
  redact_ = {credential_.secret};
  if (!credential_.basic_username.empty()) {
    redact_.push_back(absl::StrCat(credential_.basic_username, ":", credential_.secret));
  }
}

absl::StatusOr<std::string> PageFetcher::RequestUrl(const std::string& token) const {
  const v1::Pagination& p = spec_->pagination();
  std::vector<std::pair<std::string, std::string>> params;
  const v1::PaginationStyle style = p.style();
  const bool url_token = (style == v1::LINK || style == v1::NEXT_URL) && !token.empty();
  std::string base = spec_->url();
  if (!url_token) {
    for (const auto& kv : spec_->query_params()) params.emplace_back(kv.key(), kv.value());
    const v1::DateFilter& d = spec_->date_filter();
    if (!d.start_date().empty()) {
      auto v = FormatDate(d.start_date(), d.format());
      if (!v.ok()) return v.status();
      params.emplace_back(d.start_param(), *v);
    }
    if (!d.end_date().empty()) {
      auto v = FormatDate(d.end_date(), d.format());
      if (!v.ok()) return v.status();
      params.emplace_back(d.end_param(), *v);
    }
    switch (style) {
      case v1::PAGE:
        params.emplace_back(p.page_param(), token);
        if (p.page_size() > 0) params.emplace_back(p.size_param(), absl::StrCat(p.page_size()));
        break;
      case v1::OFFSET:
        params.emplace_back(p.offset_param(), token);
        if (p.page_size() > 0) params.emplace_back(p.limit_param(), absl::StrCat(p.page_size()));
        break;
      case v1::CURSOR:
        if (!token.empty()) params.emplace_back(p.cursor_param(), token);
        break;
      default:
        break;
    }
  } else {
    base = token;
  }
  return AppendQueryParams(base, params);
}

FetchedPage PageFetcher::Fetch(int64_t page_number, const std::string& token,
                               JsonPageParser* parser, AdaptiveConcurrency* concurrency) {
  FetchedPage page;
  page.page_number = page_number;
  page.token = token;
  const v1::RetryPolicy& retry = spec_->retry();
  auto url = RequestUrl(token);
  if (!url.ok()) {
    page.error = absl::StrCat("cannot build the request URL: ", url.status().message());
    return page;
  }
  page.request_url = *url;
  HttpRequest req;
  req.url = *url;
  if (!credential_.query_param.empty()) {
    auto with_key = AppendQueryParams(*url, {{credential_.query_param, credential_.secret}});
    if (with_key.ok()) req.url = *with_key;
    req.credential_query_param = credential_.query_param;
  }
  req.headers.emplace_back("Accept", "application/json");
  for (const auto& kv : spec_->headers()) req.headers.emplace_back(kv.key(), kv.value());
  req.credential_headers = credential_.headers;
  req.basic_username = credential_.basic_username;
  req.basic_password = credential_.basic_password;
  req.credential_hosts = credential_.hosts;
  if (!trace_.traceparent.empty()) req.headers.emplace_back("traceparent", trace_.traceparent);
  if (!trace_.request_id.empty()) req.headers.emplace_back("X-Request-Id", trace_.request_id);
  req.timeout_seconds = spec_->timeout_seconds();
  req.connect_timeout_seconds = spec_->connect_timeout_seconds();
  req.max_response_bytes = options_.max_response_bytes;
  req.cancelled = stop_;

  for (int attempt = 1; attempt <= retry.max_attempts(); ++attempt) {
    page.attempts = attempt;
    if (stopping()) {
      page.cancelled = true;
      page.error = "cancelled";
      return page;
    }
    FetchSlotLease slot(options_.fetch_slots, stop_);
    if (!slot.held()) {
      page.cancelled = true;
      page.error = "cancelled";
      return page;
    }
    counters_->http_requests.fetch_add(1);
    std::string reason;
    bool retriable = true;
    double retry_after = -1;
    const absl::Time attempt_start = absl::Now();
    const absl::Time adaptive_start = concurrency ? concurrency->Now() : absl::InfinitePast();
    absl::StatusOr<HttpResponse> resp = http_->Fetch(req);
    const double took = absl::ToDoubleSeconds(absl::Now() - attempt_start);
    if (concurrency != nullptr &&
        (resp.ok() || resp.status().code() != absl::StatusCode::kCancelled)) {
      concurrency->OnResponse(resp.ok() ? resp->status : 0, adaptive_start);
    }
    using Outcome = CollectorCounters::FetchOutcome;
    if (resp.ok()) counters_->CountHttpResponse(resp->status);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kCancelled || stopping()) {
        page.cancelled = true;
        page.error = "cancelled";
        return page;
      }
      counters_->CountHttpResponse(0);
      counters_->ObserveFetch(Outcome::kTransportError, took);
      reason = Redact(std::string(resp.status().message()), redact_);
      retriable = resp.status().code() == absl::StatusCode::kUnavailable ||
                  resp.status().code() == absl::StatusCode::kDeadlineExceeded;
    } else if (resp->status == 401 || resp->status == 403) {
      counters_->ObserveFetch(Outcome::kHttpError, took);
      page.auth_failed = true;
      page.error =
          absl::StrCat("HTTP ", resp->status, resp->status == 401 ? " Unauthorized" : " Forbidden",
                       " from the API at page ", page_number,
                       ": authentication failed; check the job's auth settings and credential");
      counters_->http_errors.fetch_add(1);
      return page;
    } else if (resp->status < 200 || resp->status > 299) {
      counters_->ObserveFetch(Outcome::kHttpError, took);
      reason = absl::StrCat("HTTP ", resp->status);
      retriable = resp->status == 408 || resp->status == 429 || resp->status >= 500;
      if (retriable) {
        retry_after = ParseRetryAfter(resp->Header("retry-after"),
                                      absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
      }
    } else {
      counters_->bytes_fetched.fetch_add(int64_t(resp->body.size()));
      std::string body = std::move(resp->body);
      // The parsed page only points into the body, never into the parser: after a large page
      // free the parser's buffers (sized ~5x the body) before the records are copied out, and
      // the body once they are, rather than while the page waits and the next one is fetched.
      const bool large = body.size() >= kReleaseParserBuffersAbove;
      FetchSlots* slots = options_.fetch_slots;
      JsonParseBuffers* buffers = slots ? slots->AcquireParser() : nullptr;
      absl::StatusOr<ParsedPage> parsed = parser->Parse(&body, buffers);
      if (slots) {
        slots->ReleaseParser(buffers, large);
      } else if (large) {
        parser->ReleaseBuffers();
      }
      counters_->ObserveFetch(parsed.ok() ? Outcome::kOk : Outcome::kInvalidBody, took);
      if (parsed.ok()) {
        page.parsed = std::move(*parsed);
        BuildBatches(&page);
        std::string().swap(body);
        if (spec_->pagination().style() == v1::LINK) {
          page.link_next = FindNextLink(resp->HeaderValues("link"));
        }
        if (page.parsed.used_utf8_fallback) {
          counters_->pages_utf8_fallback.fetch_add(1);
          LogWarning("page ", page_number,
                     ": body is not valid UTF-8; records extracted by the fallback scanner");
        }
        page.ok = true;
        page.error.clear();
        counters_->pages_fetched.fetch_add(1);
        counters_->records_fetched.fetch_add(page.records);
        return page;
      }
      reason = std::string(parsed.status().message());
      // A records path that is missing or not an array will not appear on a retry of the same
      // answer; a malformed or truncated body (DATA_LOSS) might.
      retriable = parsed.status().code() == absl::StatusCode::kDataLoss;
    }
    counters_->http_errors.fetch_add(1);
    page.error = attempt > 1 ? absl::StrCat(reason, " after ", attempt, " attempts") : reason;
    slot.Release();  // Not held during the backoff.
    if (!retriable || attempt >= retry.max_attempts()) break;
    double delay = BackoffSeconds(retry, attempt, retry_after);
    counters_->http_retries.fetch_add(1);
    LogWarning("page ", page_number, " attempt ", attempt, "/", retry.max_attempts(),
               " failed: ", reason, "; retrying in ", absl::StrFormat("%.2f", delay), "s",
               retry_after >= 0 ? " (Retry-After)" : "");
    if (hooks_.on_retry) hooks_.on_retry(absl::StrCat("retrying page ", page_number, ": ", reason));
    bool go_on;
    if (hooks_.wait) {
      go_on = hooks_.wait(absl::Seconds(delay));
    } else {
      absl::SleepFor(absl::Seconds(delay));
      go_on = !stopping();
    }
    if (!go_on) {
      page.cancelled = true;
      return page;
    }
  }
  counters_->pages_failed.fetch_add(1);
  LogWarning("page ", page_number, " failed: ", page.error);
  return page;
}

std::string PageFetcher::RecordRejection(absl::string_view record, size_t extra_bytes) const {
  if (record.size() + extra_bytes + kMessageOverheadBytes > options_.writer_max_message_bytes) {
    return absl::StrCat("record of ", record.size(), " bytes exceeds the message limit of ",
                        options_.writer_max_message_bytes,
                        " bytes (--writer_max_message_bytes); only its first ",
                        kRejectedRecordPrefixBytes, " bytes are kept here");
  }
  if (!spec_->allow_non_object_records()) {
    size_t i = record.find_first_not_of(" \t\r\n");
    if (i == absl::string_view::npos || record[i] != '{') {
      return "record is not a JSON object (JobSpec.allow_non_object_records is false)";
    }
  }
  return "";
}

void PageFetcher::BuildBatches(FetchedPage* page) const {
  std::vector<absl::string_view>& records = page->parsed.records;
  std::vector<std::string>& keys = page->parsed.natural_keys;
  const bool with_keys = !keys.empty() && keys.size() == records.size();
  // Per record: the string object and its heap block header, besides the bytes.
  constexpr size_t kPerRecordOverhead = sizeof(std::string) + 16;
  const int64_t fetched_at =
      absl::ToUnixMicros(absl::Now());  // For the writer's end-to-end latency.
  auto start_batch = [&] {
    v1::RecordBatch& batch = page->batches.emplace_back();
    batch.set_job_id(job_id_);
    batch.set_cliente_id(spec_->cliente_id());
    batch.set_rota(spec_->rota());
    batch.set_page_number(page->page_number);
    batch.set_page_token(page->token);
    batch.set_chunk_index(int32_t(page->batches.size() - 1));
    batch.set_fetched_at_unix_micros(fetched_at);
    // Room for the page's records at once (a page usually fits in one message), not by doubling.
    batch.mutable_records()->Reserve(int(records.size()));
    return &batch;
  };
  // Why each record is refused ("" = sent as is); computed first so that a page without refusals
  // sends no rejections field.
  std::vector<std::string> rejections(records.size());
  bool any_rejected = false;
  for (size_t i = 0; i < records.size(); ++i) {
    rejections[i] = RecordRejection(
        records[i], (with_keys ? keys[i].size() : 0) + page->token.size() +
                        page->parsed.cursor.text.size() + page->parsed.next_url.text.size());
    any_rejected |= !rejections[i].empty();
  }
  page->batches.clear();
  v1::RecordBatch* batch = start_batch();
  size_t chunk_bytes = 0;
  page->bytes = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    // A refused record travels as a bounded prefix: the dead letter keeps its start and reason.
    absl::string_view record = records[i];
    if (!rejections[i].empty()) {
      if (record.size() > kRejectedRecordPrefixBytes) {
        record = record.substr(0, kRejectedRecordPrefixBytes);
      }
      if (with_keys && keys[i].size() > kRejectedRecordPrefixBytes) {
        keys[i].resize(kRejectedRecordPrefixBytes);
      }
    }
    if (chunk_bytes > 0 && chunk_bytes + record.size() > options_.max_message_bytes) {
      batch = start_batch();
      chunk_bytes = 0;
    }
    page->bytes +=
        record.size() + kPerRecordOverhead + (with_keys ? keys[i].size() + kPerRecordOverhead : 0);
    chunk_bytes += record.size();
    batch->add_records(record.data(), record.size());
    if (with_keys) batch->add_natural_keys(std::move(keys[i]));
    if (any_rejected) batch->add_rejections(std::move(rejections[i]));
  }
  batch->set_last_chunk(true);
  page->records = int64_t(records.size());
  // The views point into the body the caller frees next.
  std::vector<absl::string_view>().swap(records);
  std::vector<std::string>().swap(keys);
}

}  // namespace etl
