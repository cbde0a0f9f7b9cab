#include "common/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/version.h"

namespace etl {
namespace {

// Wall-clock time when this library was loaded: the fallback for process_start_time_seconds.
const double kLoadedAt = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());

// Seconds since the epoch when this process started, from /proc (boot time + start ticks).
double ProcessStartTime() {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  std::ifstream boot_file("/proc/stat");
  std::string line;
  double btime = -1;
  while (std::getline(boot_file, line)) {
    if (line.rfind("btime ", 0) == 0) btime = std::atof(line.c_str() + 6);
  }
  long ticks = sysconf(_SC_CLK_TCK);
  if (paren == std::string::npos || btime < 0 || ticks <= 0) return kLoadedAt;
  // Fields after the command: state is field 3; starttime is field 22.
  std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
  if (f.size() < 20) return kLoadedAt;
  return btime + std::atof(f[19].c_str()) / double(ticks);
}

void AppendUtf8Safe(absl::string_view in, std::string* out) {
  size_t i = 0;
  while (i < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    if (ok && len == 2) ok = c >= 0xC2;
    if (ok && len == 3) {
      unsigned char c1 = static_cast<unsigned char>(in[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && len == 4) {
      unsigned char c1 = static_cast<unsigned char>(in[i + 1]);
      ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (!ok) {
      out->append("\xEF\xBF\xBD");
      ++i;
      continue;
    }
    out->append(in.data() + i, len);
    i += len;
  }
}

}  // namespace

std::string FormatSampleValue(int64_t value) { return absl::StrCat(value); }

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string safe;
  AppendUtf8Safe(value, &safe);
  std::string out;
  out.reserve(safe.size());
  for (char c : safe) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '"') {
      out.append("\\\"");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> JobDurationBuckets() {
  return {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400};
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  buckets_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double value, int64_t count) {
  if (count <= 0) return;
  // First bound >= value: Prometheus buckets are "less than or equal".
  size_t i =
      std::isnan(value)
          ? bounds_.size()
          : size_t(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  absl::MutexLock l(&mu_);
  buckets_[i] += count;
  count_ += count;
  if (!std::isnan(value)) sum_ += value * double(count);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.upper_bounds = bounds_;
  absl::MutexLock l(&mu_);
  int64_t running = 0;
  for (int64_t b : buckets_) {
    running += b;
    s.cumulative.push_back(running);
  }
  s.count = count_;
  s.sum = sum_;
  return s;
}

void ExpositionWriter::Family(absl::string_view name, absl::string_view type,
                              absl::string_view help) {
  std::string h;
  for (char c : help) {
    if (c == '\\') {
      h.append("\\\\");
    } else if (c == '\n') {
      h.append("\\n");
    } else {
      h.push_back(c);
    }
  }
  absl::StrAppend(&out_, "# HELP ", name, " ", h, "\n# TYPE ", name, " ", type, "\n");
}

void ExpositionWriter::AppendSeries(absl::string_view name, const MetricLabels& labels) {
  out_.append(name.data(), name.size());
  if (labels.empty()) return;
  out_.push_back('{');
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out_.push_back(',');
    absl::StrAppend(&out_, labels[i].first, "=\"", EscapeLabelValue(labels[i].second), "\"");
  }
  out_.push_back('}');
}

void ExpositionWriter::Sample(absl::string_view name, const MetricLabels& labels, double value) {
  AppendSeries(name, labels);
  absl::StrAppend(&out_, " ", FormatSampleValue(value), "\n");
}

void ExpositionWriter::Sample(absl::string_view name, const MetricLabels& labels, int64_t value) {
  AppendSeries(name, labels);
  absl::StrAppend(&out_, " ", FormatSampleValue(value), "\n");
}

void ExpositionWriter::HistogramSeries(absl::string_view name, const MetricLabels& labels,
                                       const Histogram::Snapshot& h) {
  const std::string bucket = absl::StrCat(name, "_bucket");
  for (size_t i = 0; i < h.cumulative.size(); ++i) {
    MetricLabels l = labels;
    l.emplace_back("le", i < h.upper_bounds.size() ? FormatSampleValue(h.upper_bounds[i]) : "+Inf");
    Sample(bucket, l, h.cumulative[i]);
  }
  Sample(absl::StrCat(name, "_sum"), labels, h.sum);
  Sample(absl::StrCat(name, "_count"), labels, h.count);
}

void ExpositionWriter::Counter(absl::string_view name, absl::string_view help, int64_t value) {
  Family(name, "counter", help);
  Sample(name, {}, value);
}

void ExpositionWriter::Gauge(absl::string_view name, absl::string_view help, double value) {
  Family(name, "gauge", help);
  Sample(name, {}, value);
}

void ExpositionWriter::Gauge(absl::string_view name, absl::string_view help, int64_t value) {
  Family(name, "gauge", help);
  Sample(name, {}, value);
}

void ExpositionWriter::HistogramFamily(absl::string_view name, absl::string_view help,
                                       const Histogram::Snapshot& h) {
  Family(name, "histogram", help);
  HistogramSeries(name, {}, h);
}

void ExpositionWriter::ProcessAndBuildInfo(absl::string_view prefix) {
  static const double start = ProcessStartTime();
  Gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
        start);
  std::ifstream statm("/proc/self/statm");
  int64_t pages_total = 0, pages_resident = 0;
  if (statm >> pages_total >> pages_resident) {
    Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
          pages_resident * int64_t(sysconf(_SC_PAGESIZE)));
  }
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  long ticks = sysconf(_SC_CLK_TCK);
  if (paren != std::string::npos && ticks > 0) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
    if (f.size() > 12) {
      double cpu = (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) / double(ticks);
      Family("process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.");
      Sample("process_cpu_seconds_total", {}, cpu);
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    int64_t fds = 0;
    while (readdir(d) != nullptr) ++fds;
    closedir(d);
    Gauge("process_open_fds", "Number of open file descriptors.", std::max<int64_t>(0, fds - 3));
  }
  const std::string name = absl::StrCat(prefix, "_build_info");
  Family(name, "gauge",
         "Always 1; the labels name the version and source revision of this binary.");
  Sample(name, {{"version", BuildVersion()}, {"revision", BuildRevision()}}, int64_t{1});
}

const char* BuildVersion() { return ETL_VERSION; }
const char* BuildRevision() { return ETL_GIT_REVISION; }

}  // namespace etl
