// Micro-benchmark of JsonPageParser::Parse (not part of ctest): parses the pages rendered by
// bench_render_pages (DIR/1.json, DIR/2.json, ...) from memory, --rounds times, with the options
// the benchmark jobs use (records at /data, total pages at /total_pages, optionally ids at /id),
// and prints records, user CPU seconds and the CPU per million records.
//
//   bench_render_pages --dir=/tmp/pages --records=100000 --page_size=1000
//   json_page_bench --dir=/tmp/pages --rounds=10 --engine=auto   # 1M records
//
// --engine=full runs the reference engine alone (the parser before the fast path), --engine=fast
// the fast path alone (a declined page is an error).
#include <simdjson.h>
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/flags.h"
#include "common/json_page.h"
#include "common/json_page_internal.h"

ABSL_FLAG(std::string, dir, "", "directory of N.json pages from bench_render_pages");
ABSL_FLAG(int, rounds, 10, "how many times every page is parsed");
ABSL_FLAG(std::string, engine, "auto", "auto | full | fast");
ABSL_FLAG(bool, id_path, false, "also extract natural keys at /id");

namespace {

double UserSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec) + double(usage.ru_utime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  etl::ParseFlags(argc, argv, "Parse rendered JSON pages and report the CPU spent.");
  const std::string dir = absl::GetFlag(FLAGS_dir);
  std::vector<std::string> pages;
  for (int p = 1;; ++p) {
    std::ifstream in(dir + "/" + std::to_string(p) + ".json", std::ios::binary);
    if (!in) break;
    std::ostringstream text;
    text << in.rdbuf();
    pages.push_back(text.str());
    // Room for simdjson's padding, as the collector's bodies have, so Parse does not copy them.
    pages.back().reserve(pages.back().size() + simdjson::SIMDJSON_PADDING);
  }
  if (pages.empty()) {
    std::fprintf(stderr, "no pages in --dir=%s (1.json, 2.json, ...)\n", dir.c_str());
    return 2;
  }
  etl::PageParseOptions options;
  options.records_path = "/data";
  options.total_pages_path = "/total_pages";
  if (absl::GetFlag(FLAGS_id_path)) options.id_path = "/id";
  auto parser = etl::JsonPageParser::Create(options);
  if (!parser.ok()) return 1;
  const std::string engine = absl::GetFlag(FLAGS_engine);
  namespace internal = etl::json_page_internal;
  internal::JsonPageParserPeer::SetEngine(parser->get(),
                                          engine == "full"   ? internal::Engine::kFullWalk
                                          : engine == "fast" ? internal::Engine::kFastOnly
                                                             : internal::Engine::kAuto);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  size_t records = 0, bytes = 0;
  const double start = UserSeconds();
  for (int r = 0; r < rounds; ++r) {
    for (std::string& body : pages) {
      auto page = (*parser)->Parse(&body);
      if (!page.ok()) {
        std::fprintf(stderr, "parse failed: %s\n", page.status().ToString().c_str());
        return 1;
      }
      records += page->records.size();
      bytes += body.size();
    }
  }
  const double seconds = UserSeconds() - start;
  std::printf("engine=%s pages=%zu records=%zu MB=%.1f user_cpu_s=%.3f per_1M_records_s=%.3f\n",
              engine.c_str(), pages.size() * size_t(rounds), records, double(bytes) / 1e6, seconds,
              seconds * 1e6 / double(records));
  return 0;
}
