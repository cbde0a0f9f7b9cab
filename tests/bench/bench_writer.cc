// bench_writer: load generator for writer_service and its baselines (not part of ctest).
//
//   bench_writer --mode=grpc --address=127.0.0.1:50052 --records=1000000   stream through Write
//   bench_writer --mode=generate --out=/tmp/orders.copy --records=1000000   the same records as a
//                                                                           COPY text file (psql
//                                                                           \copy)
//   bench_writer --mode=seed --records=1000000                              the seed's design:
//   INSERT
//                                                                           batches of 50, one
//                                                                           transaction each
//   bench_writer --mode=seed --url=http://127.0.0.1:8080/pages/             the same, end to end: a
//   fetch
//                                                                           thread reads pages
//                                                                           URL?page=1.. (records
//                                                                           at /data, total pages
//                                                                           at /total_pages) into a
//                                                                           queue of 1000 records;
//                                                                           the main thread INSERTs
//                                                                           50 per transaction
// Prints "<mode> rows=<n> seconds=<s> rows_per_second=<r>".
#include <curl/curl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <libpq-fe.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "common/json_page.h"
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
ABSL_FLAG(std::string, url, "", "seed: fetch the records from this page URL (?page=1..) instead");
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
  std::printf("%s rows=%lld seconds=%.2f rows_per_second=%.0f\n", mode,
              static_cast<long long>(rows), s, static_cast<double>(rows) / s);
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

// The seed's fetch thread: pages URL?page=1.. into a queue of at most 1000 records.
class SeedFetcher {
 public:
  static constexpr size_t kQueueRecords = 1000;

  explicit SeedFetcher(std::string url) : url_(std::move(url)) {}

  // Fetches every page into the queue, then marks the end (and the first error, if any).
  void Run() {
    etl::PageParseOptions options;
    options.records_path = "/data";
    options.total_pages_path = "/total_pages";
    auto parser = etl::JsonPageParser::Create(options);
    CURL* curl = curl_easy_init();
    std::string body;
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION, +[](char* p, size_t, size_t n, void* out) {
          static_cast<std::string*>(out)->append(p, n);
          return n;
        });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    std::string error;
    for (int64_t page = 1, total = 1; page <= total && error.empty(); ++page) {
      body.clear();
      const std::string url =
          absl::StrCat(url_, url_.find('?') == std::string::npos ? "?" : "&", "page=", page);
      curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
      long code = 0;
      if (curl_easy_perform(curl) != CURLE_OK ||
          curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code != 200) {
        error = absl::StrCat("GET ", url, " failed (HTTP ", code, ")");
        break;
      }
      auto parsed = (*parser)->Parse(&body);
      if (!parsed.ok()) {
        error = absl::StrCat("page ", page, ": ", parsed.status().ToString());
        break;
      }
      total = etl::JsonScalarToInt(parsed->total_pages).value_or(page);
      for (absl::string_view r : parsed->records) {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(this, &SeedFetcher::HasRoom));
        queue_.push_back({std::string(r), page - 1});
      }
    }
    curl_easy_cleanup(curl);
    absl::MutexLock l(&mu_);
    done_ = true;
    error_ = error;
  }

  // Moves up to `max` records into `out`; false once the queue is drained and fetching ended.
  bool Take(size_t max, std::vector<std::pair<std::string, int64_t>>* out) {
    out->clear();
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &SeedFetcher::HasRecordsOrDone));
    while (!queue_.empty() && out->size() < max) {
      out->push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    return !out->empty();
  }

  std::string error() {
    absl::MutexLock l(&mu_);
    return error_;
  }

 private:
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.size() < kQueueRecords; }
  bool HasRecordsOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || done_;
  }

  const std::string url_;
  absl::Mutex mu_;
  std::deque<std::pair<std::string, int64_t>> queue_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::string error_ ABSL_GUARDED_BY(mu_);
};

// The seed's design: multi-row INSERT of 50 rows, each in its own transaction; with --url, records
// come from a fetch thread through a queue of 1000 (the whole seed), else they are generated.
int RunSeed() {
  PGconn* c = PQconnectdb(etl::EnvOr("DATABASE_URL", "").c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "connect: %s", PQerrorMessage(c));
    return 1;
  }
  const std::string table = absl::GetFlag(FLAGS_table);
  PQclear(PQexec(
      c, absl::StrCat("CREATE TABLE IF NOT EXISTS ", table,
                      " (id bigserial primary key, payload jsonb not null, natural_key text,"
                      " job_id text not null default 'seed', page_number bigint not null default 0,"
                      " collected_at timestamptz not null default now())")
             .c_str()));
  const std::string url = absl::GetFlag(FLAGS_url);
  const int64_t total = absl::GetFlag(FLAGS_records);
  std::unique_ptr<SeedFetcher> fetcher;
  std::thread fetch_thread;
  if (!url.empty()) {
    fetcher = std::make_unique<SeedFetcher>(url);
    fetch_thread = std::thread([&] { fetcher->Run(); });
  }
  int64_t next = 0;  // Generated records.
  std::vector<std::pair<std::string, int64_t>> rows;
  auto take = [&]() -> bool {
    if (fetcher) return fetcher->Take(50, &rows);
    rows.clear();
    for (; next < total && rows.size() < 50; ++next) rows.push_back({Order(next), next / 1000});
    return !rows.empty();
  };
  absl::Time start = absl::Now();
  int64_t inserted = 0;
  int rc = 0;
  std::vector<std::string> pages;
  std::vector<const char*> ptrs;
  while (take()) {
    std::string sql = absl::StrCat("INSERT INTO ", table, " (payload, page_number) VALUES ");
    pages.clear();
    ptrs.clear();
    for (size_t k = 0; k < rows.size(); ++k) pages.push_back(absl::StrCat(rows[k].second));
    for (size_t k = 0; k < rows.size(); ++k) {
      ptrs.push_back(rows[k].first.c_str());
      ptrs.push_back(pages[k].c_str());
      absl::StrAppend(&sql, k == 0 ? "" : ",", "($", 2 * k + 1, "::jsonb,$", 2 * k + 2,
                      "::bigint)");
    }
    PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(ptrs.size()), nullptr, ptrs.data(),
                               nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::fprintf(stderr, "insert: %s", PQresultErrorMessage(r));
      PQclear(r);
      rc = 1;
      break;
    }
    PQclear(r);
    inserted += static_cast<int64_t>(rows.size());
  }
  if (fetcher) {
    if (rc != 0) {  // Unblock the fetch thread so it can end.
      while (fetcher->Take(1000, &rows)) {
      }
    }
    fetch_thread.join();
    if (!fetcher->error().empty()) {
      std::fprintf(stderr, "fetch: %s\n", fetcher->error().c_str());
      rc = 1;
    }
  }
  Report("seed_insert50", inserted, absl::Now() - start);
  PQfinish(c);
  return rc;
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
