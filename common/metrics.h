// Prometheus metrics of a service: histograms, and the one writer that formats every sample in the
// text exposition format (version 0.0.4) for GET /metrics.
//
// Services keep their counters in structs of atomics (conventions #8) and their latency
// distributions in Histogram objects; at scrape time they render everything through one
// ExpositionWriter, which owns the HELP/TYPE lines, label escaping and number formatting:
// integers are printed exactly (a counter at 17,864,200 is "17864200", never "1.78642e+07", which
// breaks rate()), other values with the shortest text that reads back to the same double.
//
// Per-job figures never become labels (job ids are unbounded); they belong to the status RPCs and
// the dashboard.
//
// Thread-safety: Histogram is thread-safe; an ExpositionWriter is used by one thread at a time.
#ifndef ETL_COMMON_METRICS_H_
#define ETL_COMMON_METRICS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace etl {

// Label name/value pairs of one series, in the order they are printed.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// The sample value as Prometheus reads it: integral values (|v| < 2^53) as integers, NaN as "NaN",
// infinities as "+Inf"/"-Inf", anything else in the shortest round-trip form ("0.25", "1e-06").
std::string FormatSampleValue(double value);
std::string FormatSampleValue(int64_t value);

// Escapes a label value (backslash, double quote, newline); invalid UTF-8 becomes U+FFFD so the
// exposition stays valid whatever a label came from.
std::string EscapeLabelValue(absl::string_view value);

// Bucket upper bounds in seconds for request-like latencies: 1 ms .. 60 s.
std::vector<double> LatencyBuckets();
// Bucket upper bounds in seconds for whole jobs: 1 s .. 24 h.
std::vector<double> JobDurationBuckets();

// A cumulative histogram with fixed bucket bounds (seconds, ascending). Observing is O(log buckets)
// under a short lock: call it per page or per batch, not per record (use `count` for that).
class Histogram {
 public:
  struct Snapshot {
    std::vector<double> upper_bounds;  // Without +Inf.
    std::vector<int64_t> cumulative;   // One per bound, then the +Inf bucket (= count).
    int64_t count = 0;
    double sum = 0;
  };

  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Adds `count` observations of `value` (count <= 0 is ignored; NaN counts in +Inf only).
  void Observe(double value, int64_t count = 1);
  Snapshot Take() const;

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<int64_t> buckets_ ABSL_GUARDED_BY(mu_);  // Not cumulative; last = above every bound.
  int64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
};

// Builds one exposition text. A family is opened once (HELP + TYPE) and followed by its series.
class ExpositionWriter {
 public:
  // Opens a family; `type` is counter, gauge, histogram or untyped. Names must match
  // [a-zA-Z_:][a-zA-Z0-9_:]* (checked by the tests that scrape the services).
  void Family(absl::string_view name, absl::string_view type, absl::string_view help);
  // One sample line of the open family (`name` may carry a suffix such as _bucket).
  void Sample(absl::string_view name, const MetricLabels& labels, double value);
  void Sample(absl::string_view name, const MetricLabels& labels, int64_t value);
  // The _bucket/_sum/_count lines of one histogram series of the open family.
  void HistogramSeries(absl::string_view name, const MetricLabels& labels,
                       const Histogram::Snapshot& h);

  // A family with a single unlabelled sample.
  void Counter(absl::string_view name, absl::string_view help, int64_t value);
  void Gauge(absl::string_view name, absl::string_view help, double value);
  void Gauge(absl::string_view name, absl::string_view help, int64_t value);
  void HistogramFamily(absl::string_view name, absl::string_view help,
                       const Histogram::Snapshot& h);

  // process_start_time_seconds, process_resident_memory_bytes, process_cpu_seconds_total,
  // process_open_fds (from /proc where available) and <prefix>_build_info{version,revision} 1.
  void ProcessAndBuildInfo(absl::string_view prefix);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void AppendSeries(absl::string_view name, const MetricLabels& labels);
  std::string out_;
};

// The version and revision compiled in (CMake: project version, `git describe` at configure time).
const char* BuildVersion();
const char* BuildRevision();

}  // namespace etl

#endif  // ETL_COMMON_METRICS_H_
