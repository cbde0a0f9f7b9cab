// Writes the sample API's records [0, N) of (cliente, rota) as COPY text rows "payload\tjob\tpage",
// the same bytes the pipeline loads, so benchmarks can time `psql \copy` of exactly those records.
//
//   bench_dump_records --cliente=bench --rota=pedidos --records=1000000 --page_size=10000 >
//   rows.copy
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "common/flags.h"
#include "deploy/sample_api/records.h"
#include "writer_service/copy_text.h"

ABSL_FLAG(std::string, cliente, "bench", "cliente of the collection");
ABSL_FLAG(std::string, rota, "pedidos", "rota of the collection");
ABSL_FLAG(int64_t, records, 1000000, "how many records");
ABSL_FLAG(int64_t, page_size, 10000, "records per page (fills the page_number column)");

int main(int argc, char** argv) {
  etl::ParseFlags(argc, argv, "Dump sample API records as COPY text rows.");
  const std::string cliente = absl::GetFlag(FLAGS_cliente), rota = absl::GetFlag(FLAGS_rota);
  const int64_t n = absl::GetFlag(FLAGS_records), page_size = absl::GetFlag(FLAGS_page_size);
  std::string record, line;
  for (int64_t i = 0; i < n; ++i) {
    record.clear();
    etl::sample_api::AppendRecord(&record, cliente, rota, i);
    line.clear();
    etl::AppendCopyText(&line, record);
    line += "\tbaseline\t";
    line += std::to_string(i / page_size);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return 0;
}
