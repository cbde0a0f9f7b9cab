// etlctl: command-line client of the collector (start, follow, inspect and cancel jobs) and the
// writer.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/job_file.h"
#include "cli/job_spec_builder.h"
#include "collector_service/job_spec.h"
#include "common/flags.h"

// Connection and output.
ABSL_FLAG(std::string, collector, "",
          "collector address host:port (default: $ETL_COLLECTOR or localhost:50051)");
ABSL_FLAG(std::string, writer, "",
          "writer address host:port for writer-status (default: $ETL_WRITER or localhost:50052)");
ABSL_FLAG(double, rpc_timeout, 30, "deadline in seconds of each unary RPC");
ABSL_FLAG(bool, json, false, "print results as proto3 JSON");
ABSL_FLAG(bool, plain, false,
          "one progress line per update even on a terminal (default: redraw with \\r on a TTY)");
ABSL_FLAG(std::string, request_id, "",
          "x-request-id sent with every RPC, and run's idempotency key (JobSpec.request_id; "
          "[A-Za-z0-9._:-], reused on run's own retries); default: a random 128-bit id");
ABSL_FLAG(std::string, tls_ca, "",
          "TLS: CA certificate (PEM) the servers' certificates must chain to; empty = plaintext");
ABSL_FLAG(std::string, tls_cert, "", "TLS: client certificate (PEM) for servers that require one");
ABSL_FLAG(std::string, tls_key, "", "TLS: private key of --tls-cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: name expected in the server certificate when the address differs");
ABSL_FLAG(std::string, token_file, "",
          "file with the bearer token the servers require (env ETL_TOKEN_FILE)");
// run
ABSL_FLAG(std::string, spec, "",
          "run: JobSpec file in proto3 JSON; flags given on the command line override it");
ABSL_FLAG(bool, detach, false,
          "run: print the job id and return at once instead of following the job");
// list, dead-letters, cursors
ABSL_FLAG(bool, unfinished, false, "list: only PENDING and RUNNING jobs");
ABSL_FLAG(int32_t, limit, 100,
          "list: at most this many jobs per page; dead-letters: at most this many (default 100; "
          "with --export: all)");
ABSL_FLAG(std::string, state, "",
          "list: only jobs in these states, comma-separated "
          "(pending,running,succeeded,partial,failed,cancelled)");
ABSL_FLAG(std::string, page_token, "", "list: the token printed after the previous page");
ABSL_FLAG(std::string, export_file, "",
          "dead-letters: write JSON lines (exact bytes; raw_base64 where not UTF-8) to this file "
          "(also --export)");
// Job specification (run). Strings so that etlctl can say which flag is wrong and tell given from
// unset.
ABSL_FLAG(std::string, cliente, "",
          "run: client id, [a-z0-9_]+ (table dados_raw_cliente_{cliente}_{rota})");
ABSL_FLAG(std::string, rota, "", "run: route name, [a-z0-9_]+");
ABSL_FLAG(std::string, url, "", "run: http(s) URL of the API endpoint");
ABSL_FLAG(std::string, pagination, "", "run: page | offset | cursor | link | next_url | none");
ABSL_FLAG(std::string, page_param, "", "run: page-number query parameter (default page)");
ABSL_FLAG(std::string, size_param, "", "run: page-size query parameter (default page_size)");
ABSL_FLAG(std::string, page_size, "",
          "run: records per page (page/offset/cursor); 0 = the API's default");
ABSL_FLAG(std::string, start_page, "",
          "run: first page number (default 1) or first offset (default 0)");
ABSL_FLAG(std::string, offset_param, "", "run: offset query parameter (default offset)");
ABSL_FLAG(std::string, limit_param, "", "run: limit query parameter (default limit)");
ABSL_FLAG(std::string, cursor_param, "", "run: cursor query parameter (default cursor)");
ABSL_FLAG(std::string, cursor_path, "",
          "run: JSON pointer to the next cursor in the body, e.g. /next_cursor");
ABSL_FLAG(std::string, next_url_path, "", "run: JSON pointer to the next page's URL, e.g. /next");
ABSL_FLAG(std::string, total_pages_path, "",
          "run: JSON pointer to the total page count, e.g. /total_pages");
ABSL_FLAG(std::string, total_count_path, "",
          "run: JSON pointer to the total record count, e.g. /total");
ABSL_FLAG(std::string, records_path, "",
          "run: JSON pointer to the records array, e.g. /data (default: the body is the array)");
ABSL_FLAG(std::string, max_pages, "",
          "run: loop guard, the job fails beyond this many pages (default 1000000)");
ABSL_FLAG(std::string, start_date, "", "run: first date YYYY-MM-DD of the date filter");
ABSL_FLAG(std::string, end_date, "", "run: last date YYYY-MM-DD of the date filter");
ABSL_FLAG(std::string, start_param, "",
          "run: query parameter of the start date (default start_date), e.g. data_inicio");
ABSL_FLAG(std::string, end_param, "",
          "run: query parameter of the end date (default end_date), e.g. data_fim");
ABSL_FLAG(std::string, date_format, "",
          "run: strftime format of the dates sent (default %Y-%m-%d)");
ABSL_FLAG(std::string, param, "",
          "run: key=value query parameter sent with every request; repeat for more "
          "(values may contain ',' and '=')");
ABSL_FLAG(
    std::string, header, "",
    "run: 'Name: value' request header; repeat for more (no credentials: use the auth flags)");
ABSL_FLAG(std::string, id_path, "", "run: JSON pointer to each record's natural key, e.g. /id");
ABSL_FLAG(std::string, max_attempts, "", "run: attempts per page, the first included (default 3)");
ABSL_FLAG(std::string, backoff_scale, "", "run: retry n waits scale*(2^n+0.5) s (default 1)");
ABSL_FLAG(std::string, max_backoff, "",
          "run: cap in seconds of one retry delay, Retry-After included (default 60)");
ABSL_FLAG(std::string, fetch_concurrency, "",
          "run: most pages fetched in parallel when the page count is known; the job adapts "
          "within 1..this (more while the API answers fast and the writer has room, half on HTTP "
          "429/503 or rising latency) unless --fixed-fetch-concurrency (default: the collector's "
          "--fetch-concurrency, 4)");
ABSL_FLAG(bool, fixed_fetch_concurrency, false,
          "run: always fetch exactly --fetch-concurrency pages in parallel (default: adapt)");
ABSL_FLAG(std::string, timeout, "", "run: seconds allowed for one HTTP request (default 60)");
ABSL_FLAG(std::string, connect_timeout, "", "run: seconds allowed to connect (default 10)");
ABSL_FLAG(
    std::string, credential, "",
    "run: NAME of a credential declared in the collector's credentials file (bound to its hosts)");
// The *_env / *_file auth flags name a secret on the collector's host: refused unless the collector
// runs with --allow-spec-secret-paths (single-user setups); --credential is the way elsewhere.
ABSL_FLAG(std::string, bearer_token_env, "",
          "run: NAME of the collector's environment variable holding a bearer token (needs "
          "collector_server --allow-spec-secret-paths; prefer --credential)");
ABSL_FLAG(std::string, bearer_token_file, "",
          "run: file on the collector's host holding a bearer token");
ABSL_FLAG(std::string, api_key_env, "",
          "run: NAME of the collector's environment variable holding an API key");
ABSL_FLAG(std::string, api_key_file, "", "run: file on the collector's host holding an API key");
ABSL_FLAG(std::string, api_key_header, "", "run: header carrying the API key (default X-API-Key)");
ABSL_FLAG(std::string, api_key_param, "",
          "run: send the API key as this query parameter instead of a header");
ABSL_FLAG(std::string, basic_user, "", "run: user name for HTTP basic authentication");
ABSL_FLAG(std::string, basic_password_env, "",
          "run: NAME of the collector's environment variable holding the basic-auth password");
ABSL_FLAG(std::string, basic_password_file, "",
          "run: file on the collector's host holding the basic-auth password");
// Write modes and incremental loads (run).
ABSL_FLAG(std::string, write_mode, "",
          "run: append | merge | replace (default: merge with --id-path, else append)");
ABSL_FLAG(std::string, incremental_path, "",
          "run: JSON pointer to each record's cursor for incremental loads, e.g. /updated_at");
ABSL_FLAG(std::string, incremental_type, "",
          "run: timestamp | integer: type of the incremental cursor");
ABSL_FLAG(std::string, incremental_param, "",
          "run: query parameter that sends the stored mark to the API (default: the date filter's "
          "--start-param)");
ABSL_FLAG(std::string, incremental_initial, "",
          "run: mark sent when none is stored yet (default: no lower bound)");
ABSL_FLAG(
    std::string, lookback, "",
    "run: send the mark this much earlier, for late data (e.g. 1h, 30m, 90s; timestamp cursors)");
ABSL_FLAG(bool, full_refresh, false, "run: ignore the stored incremental mark for this run");
ABSL_FLAG(bool, allow_non_object_records, false,
          "run: store records that are not JSON objects (default: they go to the dead letters)");

namespace {

constexpr char kUsage[] =
    "start and follow ETL jobs on the collector.\n"
    "\n"
    "  etlctl run --cliente=2151 --rota=pedidos --url=URL --pagination=page [flags]   start a job "
    "and follow it\n"
    "  etlctl run JOBFILE [flags]               run the job(s) of a YAML/JSON job file (flags "
    "override it)\n"
    "  etlctl run --spec=job.json [flags]       the same from a JobSpec in proto3 JSON (flags "
    "override it)\n"
    "  etlctl validate JOBFILE                  check a job file without running it (StartJob's "
    "messages)\n"
    "  etlctl retry JOB                         run a finished job again: only its pages not "
    "committed\n"
    "  etlctl dead-letters [JOB] [--limit=N] [--export=FILE]   records the database refused\n"
    "  etlctl cursors [--cliente=C] [--rota=R]  incremental high-water marks\n"
    "  etlctl status JOB                        a job's state, progress, error and failed pages\n"
    "  etlctl list [--cliente=C] [--rota=R] [--state=S,..] [--unfinished] [--limit=N] "
    "[--page-token=T]\n"
    "  etlctl cancel JOB                        stop a job (what was sent is committed)\n"
    "  etlctl watch JOB                         follow a job's progress until it ends\n"
    "  etlctl writer-status                     the writer's counters\n"
    "\n"
    "Exit status: 0 = success (run/watch/retry: the job SUCCEEDED), 2 = the job ended PARTIAL, 1 = "
    "the job\n"
    "FAILED or was CANCELLED, an RPC failed, or validate found an error, 64 = usage error.\n"
    "Environment: ETL_COLLECTOR, ETL_WRITER (addresses), ETL_LOG_LEVEL.\n"
    "Flags may be spelled with '-' or '_' (--page-size = --page_size); --param and --header "
    "repeat.\n"
    "Example: etlctl run --cliente=2151 --rota=pedidos "
    "--url=http://127.0.0.1:8080/v1/clientes/2151/pedidos/page \\\n"
    "           --pagination=page --page-size=1000 --records-path=/data "
    "--total-pages-path=/total_pages \\\n"
    "           --param=fields=id,status --header='Accept-Language: pt-BR' "
    "--bearer-token-env=API_TOKEN";

std::string RandomRequestId() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  char buf[17];
  char buf2[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(gen()));
  std::snprintf(buf2, sizeof(buf2), "%016llx", static_cast<unsigned long long>(gen()));
  return std::string("etlctl-") + buf + buf2;
}

int Usage(const std::string& message) {
  std::cerr << "etlctl: " << message << "\nRun 'etlctl --help' for the commands and flags."
            << std::endl;
  return etl::cli::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // --param/--header may repeat and their values may contain commas: take them out before absl
  // parses.
  std::vector<std::string> args(argv, argv + argc);
  // "--export" is the documented spelling of --export_file (absl has no flag aliases).
  for (std::string& a : args) {
    if (a == "--export" || a == "-export") a = "--export_file";
    if (absl::StartsWith(a, "--export=")) a = "--export_file=" + a.substr(9);
  }
  auto repeated = etl::cli::ExtractRepeatedFlags(&args, {"param", "header"});
  if (!repeated.ok()) return Usage(std::string(repeated.status().message()));
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  std::vector<std::string> positional =
      etl::ParseFlags(static_cast<int>(cargs.size()), cargs.data(), kUsage);

  if (positional.size() < 2) {
    return Usage(
        "missing command (run, validate, status, list, cancel, watch, retry, dead-letters, "
        "cursors, writer-status)");
  }
  const std::string command = positional[1];

  etl::cli::CommandContext ctx;
  ctx.collector = absl::GetFlag(FLAGS_collector);
  if (ctx.collector.empty()) ctx.collector = etl::EnvOr("ETL_COLLECTOR", "localhost:50051");
  ctx.writer = absl::GetFlag(FLAGS_writer);
  if (ctx.writer.empty()) ctx.writer = etl::EnvOr("ETL_WRITER", "localhost:50052");
  ctx.rpc_timeout_seconds = absl::GetFlag(FLAGS_rpc_timeout);
  ctx.json = absl::GetFlag(FLAGS_json);
  ctx.live = !absl::GetFlag(FLAGS_plain) && isatty(STDERR_FILENO);
  ctx.request_id = absl::GetFlag(FLAGS_request_id);
  if (ctx.request_id.empty()) ctx.request_id = RandomRequestId();
  ctx.out = &std::cout;
  ctx.err = &std::cerr;
  ctx.security.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  ctx.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  ctx.security.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  ctx.security.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  ctx.security.token_file = absl::GetFlag(FLAGS_token_file);
  if (ctx.security.token_file.empty()) ctx.security.token_file = etl::EnvOr("ETL_TOKEN_FILE", "");
  if (auto checked = etl::CreateSecureChannel("localhost:1", ctx.security); !checked.ok()) {
    return Usage(std::string(checked.status().message()));
  }

  auto job_arg = [&](std::string* id) {
    if (positional.size() != 3) return false;
    *id = positional[2];
    return !id->empty();
  };
  const std::set<std::string> given = etl::cli::FlagsNamedIn(args);
  // The job inputs given on the command line (they override a --spec or job file).
  auto command_line_inputs = [&]() {
    etl::cli::SpecInputs in;
    for (const std::string& name : etl::cli::JobSpecFlagNames()) {
      absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      const bool negated =
          (name == "full_refresh" && given.count("nofull_refresh") > 0) ||
          (name == "allow_non_object_records" && given.count("noallow_non_object_records") > 0) ||
          (name == "fixed_fetch_concurrency" && given.count("nofixed_fetch_concurrency") > 0);
      if (flag != nullptr && (given.count(name) > 0 || negated)) {
        in.flags[name] = flag->CurrentValue();
      }
    }
    in.params = (*repeated)["param"];
    in.headers = (*repeated)["header"];
    return in;
  };
  std::string job_id;
  if (command == "run" || command == "validate") {
    const bool validate = command == "validate";
    if (positional.size() > 3 || (validate && positional.size() != 3)) {
      return Usage(validate ? "usage: etlctl validate JOBFILE"
                            : "usage: etlctl run [JOBFILE] [flags]");
    }
    etl::cli::SpecInputs cli = command_line_inputs();
    std::vector<etl::cli::JobFileEntry> jobs;
    if (positional.size() == 3) {
      auto loaded = etl::cli::LoadJobFile(positional[2]);
      if (!loaded.ok()) {
        std::cerr << "etlctl: " << loaded.status().message() << std::endl;
        return validate ? 1 : etl::cli::kExitUsage;
      }
      jobs = *std::move(loaded);
    } else {
      jobs.emplace_back();
      jobs.back().origin = "command line";
    }
    const std::string spec_path = absl::GetFlag(FLAGS_spec);
    std::string spec_json;
    if (!spec_path.empty()) {
      std::ifstream f(spec_path);
      if (!f) return Usage("--spec: cannot read " + spec_path);
      std::stringstream ss;
      ss << f.rdbuf();
      spec_json = ss.str();
    }
    std::vector<etl::v1::JobSpec> specs;
    int errors = 0;
    for (etl::cli::JobFileEntry& e : jobs) {
      etl::cli::SpecInputs in = e.inputs;
      if (!spec_path.empty()) {
        in.spec_json = spec_json;
        in.spec_origin = "--spec " + spec_path;
      }
      for (const auto& [k, v] : cli.flags) in.flags[k] = v;
      in.params.insert(in.params.end(), cli.params.begin(), cli.params.end());
      in.headers.insert(in.headers.end(), cli.headers.begin(), cli.headers.end());
      auto spec = etl::cli::BuildJobSpec(in);
      if (spec.ok()) {
        // The collector's own checks: StartJob would answer INVALID_ARGUMENT with this message.
        absl::Status collector_check = etl::ValidateJobSpec(*spec);
        if (!collector_check.ok()) spec = collector_check;
      }
      if (!spec.ok()) {
        ++errors;
        std::cerr << "etlctl: "
                  << (jobs.size() > 1 || positional.size() == 3 ? e.origin + ": " : "")
                  << spec.status().message() << std::endl;
        continue;
      }
      if (validate) {
        std::cout << e.origin << ": OK (" << spec->cliente_id() << "/" << spec->rota() << ", "
                  << etl::v1::PaginationStyle_Name(spec->pagination().style()) << ")" << std::endl;
      }
      specs.push_back(*std::move(spec));
    }
    if (validate) return errors == 0 ? 0 : 1;
    if (errors > 0) return etl::cli::kExitUsage;
    // Jobs of a file run one after the other; the exit status is the worst: 1 (failed) > 2 > 0.
    auto severity = [](int rc) { return rc == 0 ? 0 : rc == 2 ? 1 : 2; };
    int worst = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      etl::v1::JobSpec& spec = specs[i];
      // One idempotency key per job of the file (the spec's own, if it names one).
      if (spec.request_id().empty()) {
        spec.set_request_id(specs.size() == 1 ? ctx.request_id
                                              : absl::StrCat(ctx.request_id, "-", i + 1));
      }
      int rc = etl::cli::RunJob(ctx, spec, absl::GetFlag(FLAGS_detach));
      if (severity(rc) > severity(worst)) worst = rc;
    }
    return worst;
  }
  if (command == "retry") {
    if (!job_arg(&job_id)) return Usage("usage: etlctl retry JOB [--detach]");
    return etl::cli::RetryJob(ctx, job_id, absl::GetFlag(FLAGS_detach));
  }
  if (command == "dead-letters" || command == "dead_letters") {
    if (positional.size() > 3)
      return Usage("usage: etlctl dead-letters [JOB] [--limit=N] [--export=FILE]");
    std::string job = positional.size() == 3 ? positional[2] : "";
    std::string export_path = absl::GetFlag(FLAGS_export_file);
    int64_t limit = absl::GetFlag(FLAGS_limit);
    if (!export_path.empty() && given.count("limit") == 0) limit = 0;
    if (limit < 0) return Usage("--limit must not be negative");
    return etl::cli::DeadLetters(ctx, job, limit, export_path);
  }
  if (command == "cursors") {
    if (positional.size() != 2) return Usage("usage: etlctl cursors [--cliente=C] [--rota=R]");
    return etl::cli::Cursors(ctx, absl::GetFlag(FLAGS_cliente), absl::GetFlag(FLAGS_rota));
  }
  if (command == "status") {
    if (!job_arg(&job_id)) return Usage("usage: etlctl status JOB");
    return etl::cli::ShowJob(ctx, job_id);
  }
  if (command == "watch") {
    if (!job_arg(&job_id)) return Usage("usage: etlctl watch JOB");
    return etl::cli::WatchJob(ctx, job_id);
  }
  if (command == "cancel") {
    if (!job_arg(&job_id)) return Usage("usage: etlctl cancel JOB");
    return etl::cli::CancelJob(ctx, job_id);
  }
  if (command == "list") {
    if (positional.size() != 2) {
      return Usage(
          "usage: etlctl list [--cliente=C] [--rota=R] [--state=S,...] [--unfinished] [--limit=N] "
          "[--page-token=T]");
    }
    etl::v1::ListJobsRequest req;
    req.set_unfinished_only(absl::GetFlag(FLAGS_unfinished));
    req.set_limit(absl::GetFlag(FLAGS_limit));
    req.set_cliente_id(absl::GetFlag(FLAGS_cliente));
    req.set_rota(absl::GetFlag(FLAGS_rota));
    req.set_page_token(absl::GetFlag(FLAGS_page_token));
    for (absl::string_view st :
         absl::StrSplit(absl::GetFlag(FLAGS_state), ',', absl::SkipWhitespace())) {
      etl::v1::JobState state;
      if (!etl::v1::JobState_Parse(absl::AsciiStrToUpper(absl::StripAsciiWhitespace(st)), &state) ||
          state == etl::v1::JOB_STATE_UNSPECIFIED) {
        return Usage(
            absl::StrCat("--state: unknown state \"", st,
                         "\"; use pending, running, succeeded, partial, failed, cancelled"));
      }
      req.add_states(state);
    }
    return etl::cli::ListJobs(ctx, req);
  }
  if (command == "writer-status" || command == "writer_status") {
    if (positional.size() != 2) return Usage("usage: etlctl writer-status [--writer=host:port]");
    return etl::cli::WriterStatus(ctx);
  }
  return Usage("unknown command \"" + command + "\"");
}
