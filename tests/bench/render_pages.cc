// Renders the sample API's records [0, N) of (cliente, rota) as static JSON pages, so a plain web
// server (nginx in scripts/bench) can serve them and the API costs next to nothing during a
// benchmark. Page p (1-based) is written to DIR/p.json with the sample API's envelope for `page`
// pagination:
//   {"data":[...],"page":p,"page_size":S,"total_pages":T,"total":N}
//
//   bench_render_pages --dir=/tmp/pages/r1000000_p1000 --records=1000000 --page_size=1000
//
// The records are byte for byte those of bench_dump_records, so `psql \copy` loads the same data.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "deploy/sample_api/records.h"

ABSL_FLAG(std::string, dir, "", "output directory (must exist)");
ABSL_FLAG(std::string, cliente, "bench", "cliente of the collection");
ABSL_FLAG(std::string, rota, "pedidos", "rota of the collection");
ABSL_FLAG(int64_t, records, 1000000, "how many records");
ABSL_FLAG(int64_t, page_size, 1000, "records per page");

int main(int argc, char** argv) {
  etl::ParseFlags(argc, argv, "Render sample API records as static JSON pages.");
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const std::string cliente = absl::GetFlag(FLAGS_cliente), rota = absl::GetFlag(FLAGS_rota);
  const int64_t n = absl::GetFlag(FLAGS_records), size = absl::GetFlag(FLAGS_page_size);
  if (dir.empty() || n < 1 || size < 1) {
    std::fprintf(stderr, "need --dir, --records >= 1 and --page_size >= 1\n");
    return 2;
  }
  const int64_t pages = (n + size - 1) / size;
  std::string body;
  for (int64_t p = 1; p <= pages; ++p) {
    body.assign("{\"data\":[");
    for (int64_t i = (p - 1) * size; i < std::min(n, p * size); ++i) {
      if (i > (p - 1) * size) body.push_back(',');
      etl::sample_api::AppendRecord(&body, cliente, rota, i);
    }
    absl::StrAppend(&body, "],\"page\":", p, ",\"page_size\":", size, ",\"total_pages\":", pages,
                    ",\"total\":", n, "}");
    const std::string path = absl::StrCat(dir, "/", p, ".json");
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(body.data(), 1, body.size(), f) != body.size() ||
        std::fclose(f) != 0) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}
