// Writer::RenderMetrics: the writer's /metrics page, every sample through ExpositionWriter.
// Per-job figures are not here (job ids would be unbounded label values): GetStatus has them.
#include "common/metrics.h"
#include "writer_service/writer.h"

namespace etl {

std::string Writer::RenderMetrics() const {
  v1::WriterStatus s = Status();
  const WriterCounters& c = counters_;
  ExpositionWriter out;
  auto counter = [&out](const char* name, const char* help, int64_t v) {
    out.Counter(absl::StrCat("etl_writer_", name), help, v);
  };
  auto gauge = [&out](const char* name, const char* help, auto v) {
    out.Gauge(absl::StrCat("etl_writer_", name), help, v);
  };
  gauge("serving", "1 when PostgreSQL is reachable and the writer is not draining.",
        int64_t{s.serving()});
  gauge("streams_active", "Write streams open now.", s.streams_active());
  counter("streams_total", "Write streams accepted.", s.streams_total());
  counter("streams_refused_total", "Write streams refused while draining.",
          c.streams_refused.load());
  counter("streams_failed_total", "Write streams that ended with an error.",
          c.streams_failed.load());
  counter("records_received_total", "Records received in complete pages.", s.records_received());
  counter("records_committed_total", "Records committed into raw tables.", s.records_committed());
  counter("records_rejected_total", "Records sent to etl_dead_letters.", s.records_rejected());
  counter("records_skipped_total", "Records of pages already in the ledger.", s.records_skipped());
  counter("pages_received_total", "Complete pages received.", c.pages_received.load());
  counter("pages_committed_total", "Pages committed.", s.pages_committed());
  counter("pages_skipped_total", "Pages already in the ledger.", s.pages_skipped());
  counter("pages_failed_total", "Pages given up after retries.", c.pages_failed.load());
  counter("batches_committed_total", "Transactions committed.", s.batches_committed());
  counter("bytes_received_total", "Record bytes received.", s.bytes_received());
  counter("bytes_committed_total", "Record bytes committed.", s.bytes_committed());
  counter("commit_retries_total", "Transactions retried after a PostgreSQL error.",
          s.commit_retries());
  counter("reconnects_total", "Reconnections to PostgreSQL.", c.reconnects.load());
  counter("pages_resent_different_total",
          "Re-sent pages whose content differed from the committed page (skipped).",
          c.pages_resent_different.load());
  counter("health_checks_failed_total", "Idle PostgreSQL checks that failed.",
          c.health_checks_failed.load());
  // Phase times of the commit threads, in seconds (kept in microseconds internally).
  auto seconds = [&out](const char* name, const char* help, int64_t micros) {
    const std::string full = absl::StrCat("etl_writer_", name);
    out.Family(full, "counter", help);
    out.Sample(full, {}, static_cast<double>(micros) / 1e6);
  };
  seconds("thread_wait_pages_seconds_total", "Writer threads waiting for a batch in the queue.",
          c.wait_pages_us.load());
  seconds("thread_prepare_seconds_total",
          "Writer threads checking pages and writing ledger rows (all but COPY and COMMIT).",
          c.prepare_us.load());
  seconds("thread_copy_seconds_total", "Writer threads in COPY.", c.copy_us.load());
  seconds("thread_commit_seconds_total", "Writer threads waiting for COMMIT (WAL flush).",
          c.commit_us.load());
  gauge("queue_records", "Records in the queue.", s.queue_depth_records());
  gauge("queue_bytes", "Record bytes in the queue.", s.queue_depth_bytes());
  gauge("queue_partial_bytes", "Record bytes of pages still arriving in chunks (within the bound).",
        queue_.depth().partial_bytes);
  gauge("queue_capacity_records", "Queue bound in records.", s.queue_capacity_records());
  gauge("queue_capacity_bytes", "Queue bound in bytes.", s.queue_capacity_bytes());
  gauge("commit_rate_records_per_second", "Records committed per second, last 10 s.",
        s.commit_rate_records_per_second());
  gauge("uptime_seconds", "Seconds since start.", s.uptime_seconds());
  gauge("jobs_tracked", "Jobs with per-job counters in GetStatus.", int64_t{s.jobs_size()});
  out.HistogramFamily(
      "etl_writer_commit_duration_seconds",
      "Duration of each committed transaction (COPY of whole pages plus their ledger rows).",
      c.commit_seconds.Take());
  out.HistogramFamily(
      "etl_writer_record_latency_seconds",
      "Per record, from the collector having its page to its commit (end-to-end lag).",
      c.record_latency_seconds.Take());
  out.ProcessAndBuildInfo("etl_writer");
  return out.Take();
}

}  // namespace etl
