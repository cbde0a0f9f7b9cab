// bench_writer: load generator for writer_service and its baselines (not part of ctest).
//
//   bench_writer --mode=grpc --address=127.0.0.1:50052 --records=1000000   stream through Write
//   bench_writer --mode=generate --out=/tmp/orders.copy --records=1000000   the same records as a
//                                                                           COPY text file (psql \copy)
//   bench_writer --mode=seed --records=1000000                              the seed's design: INSERT
//                                                                           batches of 50, one transaction each
// Prints "<mode> rows=<n> seconds=<s> rows_per_second=<r>".
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <libpq-fe.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "etl.grpc.pb.h"
#include "writer_service/copy_text.h"

ABSL_FLAG(std::string, mode, "grpc", "grpc | generate | seed");
ABSL_FLAG(std::string, address, "127.0.0.1:50052", "writer address (grpc)");
ABSL_FLAG(int64_t, records, 1000000, "records to send");
ABSL_FLAG(int64_t, page_records, 1000, "records per page/message (grpc)");
ABSL_FLAG(int32_t, streams, 1, "concurrent Write streams (grpc)");
ABSL_FLAG(std::string, cliente_id, "bench", "cliente_id");
ABSL_FLAG(std::string, rota, "pedidos", "rota");
ABSL_FLAG(std::string, job_id, "", "job id (default: unique per run)");
ABSL_FLAG(std::string, out, "", "output file (generate)");
ABSL_FLAG(std::string, table, "bench_seed", "target table (seed); created if missing");
ABSL_FLAG(std::string, write_mode, "",
          "grpc: register the job with this write mode (append | merge) and send natural keys; "
          "empty = unregistered job, no keys");

namespace {

// A ~300-byte JSON order, deterministic in `i`.
std::string Order(int64_t i) {
  static const char* kStatus[] = {"pago", "pendente", "cancelado", "enviado"};
  return absl::StrFormat(
      R"({"id": %d, "numero": "PED-%08d", "status": "%s", "total": %d.%02d, "cliente": {"nome": "Cliente %d", "email": "cliente%d@example.com"}, "itens": [{"sku": "SKU-%05d", "qtd": %d, "preco": %d.90}, {"sku": "SKU-%05d", "qtd": 1, "preco": 19.90}], "criado_em": "2024-01-%02dT10:%02d:00Z"})",
      i, i, kStatus[i % 4], 100 + i % 9000, i % 100, i % 5000, i % 5000, i % 99991, 1 + i % 5,
      10 + i % 90, (i * 7) % 99991, 1 + i % 28, i % 60);
}

void Report(const char* mode, int64_t rows, absl::Duration d) {
  double s = absl::ToDoubleSeconds(d);
  std::printf("%s rows=%lld seconds=%.2f rows_per_second=%.0f\n", mode, static_cast<long long>(rows),
              s, static_cast<double>(rows) / s);
}

int RunGrpc() {
  const int64_t total = absl::GetFlag(FLAGS_records);
  const int64_t page_records = absl::GetFlag(FLAGS_page_records);
  const int streams = absl::GetFlag(FLAGS_streams);
  std::string job = absl::GetFlag(FLAGS_job_id);
  if (job.empty()) job = absl::StrCat("bench-", absl::ToUnixMicros(absl::Now()));
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_address),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = etl::v1::WriterService::NewStub(channel);
  {
    // The writer refuses pages of jobs it has not registered.
    grpc::ClientContext ctx;
    etl::v1::RegisterJobRequest reg;
    reg.set_job_id(job);
    reg.mutable_spec()->set_cliente_id(absl::GetFlag(FLAGS_cliente_id));
    reg.mutable_spec()->set_rota(absl::GetFlag(FLAGS_rota));
    etl::v1::JobRecord rec;
    grpc::Status st = stub->RegisterJob(&ctx, reg, &rec);
    if (!st.ok()) {
      std::fprintf(stderr, "RegisterJob failed: %s\n", st.error_message().c_str());
      return 1;
    }
  }
  const int64_t pages = (total + page_records - 1) / page_records;
  const std::string write_mode = absl::GetFlag(FLAGS_write_mode);
  if (!write_mode.empty()) {
    etl::v1::RegisterJobRequest req;
    req.set_job_id(job);
    etl::v1::JobSpec* spec = req.mutable_spec();
    spec->set_cliente_id(absl::GetFlag(FLAGS_cliente_id));
    spec->set_rota(absl::GetFlag(FLAGS_rota));
    spec->set_url("http://127.0.0.1/bench");
    spec->mutable_pagination()->set_style(etl::v1::PAGE);
    spec->set_id_path("/id");
    spec->set_write_mode(write_mode == "merge" ? etl::v1::MERGE : etl::v1::APPEND);
    etl::v1::JobRecord rec;
    grpc::ClientContext ctx;
    grpc::Status st = stub->RegisterJob(&ctx, req, &rec);
    if (!st.ok()) {
      std::fprintf(stderr, "RegisterJob: %s\n", st.error_message().c_str());
      return 1;
    }
  }
  std::vector<std::thread> threads;
  std::vector<grpc::Status> statuses(streams);
  std::vector<etl::v1::WriteSummary> summaries(streams);
  absl::Time start = absl::Now();
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      grpc::ClientContext ctx;
      auto w = stub->Write(&ctx, &summaries[s]);
      etl::v1::RecordBatch b;
      for (int64_t p = s; p < pages; p += streams) {
        b.Clear();
        b.set_job_id(job);
        b.set_cliente_id(absl::GetFlag(FLAGS_cliente_id));
        b.set_rota(absl::GetFlag(FLAGS_rota));
        b.set_page_number(p);
        b.set_page_token(absl::StrCat(p));
        b.set_next_page_token(p + 1 < pages ? absl::StrCat(p + 1) : "");
        b.set_last_chunk(true);
        for (int64_t i = p * page_records; i < std::min(total, (p + 1) * page_records); ++i) {
          b.add_records(Order(i));
          if (!write_mode.empty()) b.add_natural_keys(absl::StrCat(i));
        }
        if (!w->Write(b)) break;
      }
      w->WritesDone();
      statuses[s] = w->Finish();
    });
  }
  int64_t committed = 0;
  for (int s = 0; s < streams; ++s) {
    threads[s].join();
    if (!statuses[s].ok()) {
      std::fprintf(stderr, "stream %d failed: %s\n", s, statuses[s].error_message().c_str());
      return 1;
    }
    committed += summaries[s].records_committed();
  }
  Report(write_mode.empty() ? "grpc_write" : absl::StrCat("grpc_write_", write_mode).c_str(),
         committed, absl::Now() - start);
  return committed == total ? 0 : 1;
}

int RunGenerate() {
  std::ofstream out(absl::GetFlag(FLAGS_out), std::ios::binary);
  std::string line;
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_records); ++i) {
    line.clear();
    etl::AppendCopyText(&line, Order(i));
    line.push_back('\n');
    out << line;
  }
  return out.good() ? 0 : 1;
}

// The seed's design: multi-row INSERT of 50 rows, each in its own transaction.
int RunSeed() {
  PGconn* c = PQconnectdb(etl::EnvOr("DATABASE_URL", "").c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "connect: %s", PQerrorMessage(c));
    return 1;
  }
  const std::string table = absl::GetFlag(FLAGS_table);
  PQclear(PQexec(c, absl::StrCat("CREATE TABLE IF NOT EXISTS ", table,
                                 " (id bigserial primary key, payload jsonb not null)")
                        .c_str()));
  const int64_t total = absl::GetFlag(FLAGS_records);
  absl::Time start = absl::Now();
  for (int64_t i = 0; i < total; i += 50) {
    std::string sql = absl::StrCat("INSERT INTO ", table, " (payload) VALUES ");
    std::vector<std::string> values;
    std::vector<const char*> ptrs;
    for (int64_t k = i; k < std::min(total, i + 50); ++k) {
      values.push_back(Order(k));
      absl::StrAppend(&sql, k == i ? "" : ",", "($", values.size(), "::jsonb)");
    }
    for (auto& v : values) ptrs.push_back(v.c_str());
    PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(ptrs.size()), nullptr, ptrs.data(),
                               nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::fprintf(stderr, "insert: %s", PQresultErrorMessage(r));
      return 1;
    }
    PQclear(r);
  }
  Report("seed_insert50", total, absl::Now() - start);
  PQfinish(c);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  etl::ParseFlags(argc, argv, "bench_writer: load generator for writer_service");
  std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "grpc") return RunGrpc();
  if (mode == "generate") return RunGenerate();
  if (mode == "seed") return RunSeed();
  std::fprintf(stderr, "unknown --mode=%s\n", mode.c_str());
  return 2;
}
