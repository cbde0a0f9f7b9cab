// RenderCollectorMetrics: the collector's /metrics page, every sample through ExpositionWriter.
// Per-job figures are not here (job ids would be unbounded label values): GetJob/WatchJob and the
// dashboard have them.
#include "collector_service/counters.h"
#include "collector_service/dashboard_server.h"
#include "common/metrics.h"

namespace etl {

std::string RenderCollectorMetrics(const CollectorCounters& c, const DashboardServer* dashboard) {
  ExpositionWriter out;
  struct Item {
    const char* name;
    const char* help;
    bool counter;
    const std::atomic<int64_t>* value;
  } items[] = {
      {"etl_collector_jobs_started_total", "Jobs accepted by StartJob.", true, &c.jobs_started},
      {"etl_collector_jobs_resumed_total", "Unfinished jobs resumed from the writer's ledger.",
       true, &c.jobs_resumed},
      {"etl_collector_jobs_pending", "Jobs waiting for a slot.", false, &c.jobs_pending},
      {"etl_collector_jobs_running", "Jobs fetching now.", false, &c.jobs_running},
      {"etl_collector_jobs_succeeded_total", "Jobs ended SUCCEEDED.", true, &c.jobs_succeeded},
      {"etl_collector_jobs_partial_total", "Jobs ended PARTIAL.", true, &c.jobs_partial},
      {"etl_collector_jobs_failed_total", "Jobs ended FAILED.", true, &c.jobs_failed},
      {"etl_collector_jobs_cancelled_total", "Jobs ended CANCELLED.", true, &c.jobs_cancelled},
      {"etl_collector_http_requests_total", "HTTP requests, retries included.", true,
       &c.http_requests},
      {"etl_collector_http_retries_total", "HTTP requests retried.", true, &c.http_retries},
      {"etl_collector_http_errors_total", "HTTP attempts that failed.", true, &c.http_errors},
      {"etl_collector_bytes_fetched_total", "Response body bytes.", true, &c.bytes_fetched},
      {"etl_collector_pages_fetched_total", "Pages fetched and parsed.", true, &c.pages_fetched},
      {"etl_collector_pages_failed_total", "Pages failed after all attempts.", true,
       &c.pages_failed},
      {"etl_collector_pages_utf8_fallback_total",
       "Pages with invalid UTF-8 parsed by the fallback scanner.", true, &c.pages_utf8_fallback},
      {"etl_collector_records_fetched_total", "Records parsed out of pages.", true,
       &c.records_fetched},
      {"etl_collector_pages_sent_total", "Pages written to the writer.", true, &c.pages_sent},
      {"etl_collector_batches_sent_total", "RecordBatch messages written.", true, &c.batches_sent},
      {"etl_collector_bytes_sent_total", "Record bytes written to the writer.", true,
       &c.bytes_sent},
      {"etl_collector_pages_buffered", "Fetched pages waiting to be sent.", false,
       &c.pages_buffered},
      {"etl_collector_writer_reconnects_total", "Write streams re-opened after a break.", true,
       &c.writer_reconnects},
      {"etl_collector_jobs_stalled_total",
       "Jobs failed after --max-stall-seconds without a page fetched or committed.", true,
       &c.jobs_stalled},
      {"etl_collector_writer_calls_cancelled_total",
       "Writer calls cancelled past --cancel-grace-seconds or --shutdown-grace-seconds.", true,
       &c.writer_calls_cancelled},
      {"etl_collector_writer_streams_rotated_total",
       "Write streams closed at --max-stream-bytes/--max-stream-seconds and replaced.", true,
       &c.writer_streams_rotated},
      {"etl_collector_writer_rpc_errors_total", "Failed calls to the writer.", true,
       &c.writer_rpc_errors},
      {"etl_collector_ledger_intents_pending",
       "Ledger writes (job states, failed pages) waiting for the writer.", false,
       &c.ledger_intents_pending},
      {"etl_collector_ledger_intents_written_total", "Queued ledger writes the writer took.", true,
       &c.ledger_intents_written},
      {"etl_collector_ledger_intent_retries_total", "Attempts of queued ledger writes that failed.",
       true, &c.ledger_intent_retries},
      {"etl_collector_ledger_intents_abandoned_total",
       "Ledger writes given up (permanent error, queue cap, age or shutdown).", true,
       &c.ledger_intents_abandoned},
  };
  for (const Item& i : items) {
    if (i.counter) {
      out.Counter(i.name, i.help, i.value->load());
    } else {
      out.Gauge(i.name, i.help, i.value->load());
    }
  }

  const char* responses = "etl_collector_http_responses_total";
  out.Family(responses, "counter", "API responses by HTTP status code (code=\"0\": no response).");
  bool any = false;
  for (size_t code = 0; code < c.http_responses.size(); ++code) {
    int64_t n = c.http_responses[code].load();
    if (n == 0) continue;
    any = true;
    out.Sample(responses, {{"code", std::to_string(code)}}, n);
  }
  if (!any) out.Sample(responses, {{"code", "200"}}, int64_t{0});

  const char* fetch = "etl_collector_page_fetch_duration_seconds";
  out.Family(fetch, "histogram", "Duration of each HTTP attempt for a page, by outcome.");
  const char* outcomes[] = {"ok", "http_error", "transport_error", "invalid_body"};
  for (size_t i = 0; i < c.page_fetch_seconds.size(); ++i) {
    out.HistogramSeries(fetch, {{"outcome", outcomes[i]}}, c.page_fetch_seconds[i].Take());
  }
  const char* job = "etl_collector_job_duration_seconds";
  out.Family(job, "histogram",
             "Duration of each job from start to its final state, by that state.");
  const char* states[] = {"SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED"};
  for (size_t i = 0; i < c.job_duration_seconds.size(); ++i) {
    out.HistogramSeries(job, {{"state", states[i]}}, c.job_duration_seconds[i].Take());
  }
  if (dashboard != nullptr) dashboard->RenderMetrics(&out);
  out.ProcessAndBuildInfo("etl_collector");
  return out.Take();
}

}  // namespace etl
