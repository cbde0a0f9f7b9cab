#include "cli/job_file.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "cli/dead_letter_format.h"
#include "cli/job_spec_builder.h"

namespace etl::cli {
namespace {

absl::StatusOr<etl::v1::JobSpec> Build(const JobFileEntry& e) { return BuildJobSpec(e.inputs); }

TEST(JobFileTest, YamlJobGivesTheSameSpecAsTheFlags) {
  auto jobs = ParseJobFile("job.yaml", R"(
# comment
cliente: "2151"
rota: pedidos
url: http://127.0.0.1:8080/v1/clientes/2151/pedidos/page
pagination: PAGE          # enum values are case-insensitive
page-size: 500
records_path: /data
start_date: 2024-01-01
start_param: data_inicio
id_path: /id
write_mode: Merge
incremental_path: /updated_at
incremental_type: TIMESTAMP
lookback: 1h
params:
  fields: id,status
headers:
  - "Accept-Language: pt-BR"
)");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  auto spec = Build((*jobs)[0]);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->cliente_id(), "2151");
  EXPECT_EQ(spec->pagination().style(), etl::v1::PAGE);
  EXPECT_EQ(spec->pagination().page_size(), 500);
  EXPECT_EQ(spec->date_filter().start_date(), "2024-01-01");
  EXPECT_EQ(spec->write_mode(), etl::v1::MERGE);
  EXPECT_EQ(spec->incremental().cursor_path(), "/updated_at");
  EXPECT_EQ(spec->incremental().cursor_type(), etl::v1::TIMESTAMP);
  EXPECT_EQ(spec->incremental().lookback_seconds(), 3600);
  ASSERT_EQ(spec->query_params_size(), 1);
  EXPECT_EQ(spec->query_params(0).value(), "id,status");
  ASSERT_EQ(spec->headers_size(), 1);
  EXPECT_EQ(spec->headers(0).key(), "Accept-Language");

  SpecInputs flags;
  flags.flags = {{"cliente", "2151"},
                 {"rota", "pedidos"},
                 {"url", "http://127.0.0.1:8080/v1/clientes/2151/pedidos/page"},
                 {"pagination", "page"},
                 {"page_size", "500"},
                 {"records_path", "/data"},
                 {"start_date", "2024-01-01"},
                 {"start_param", "data_inicio"},
                 {"id_path", "/id"},
                 {"write_mode", "merge"},
                 {"incremental_path", "/updated_at"},
                 {"incremental_type", "timestamp"},
                 {"lookback", "3600"}};
  flags.params = {"fields=id,status"};
  flags.headers = {"Accept-Language: pt-BR"};
  auto from_flags = BuildJobSpec(flags);
  ASSERT_TRUE(from_flags.ok()) << from_flags.status();
  EXPECT_EQ(from_flags->SerializeAsString(), spec->SerializeAsString());
}

TEST(JobFileTest, JsonListOfJobs) {
  auto jobs = ParseJobFile("jobs.json", R"([
    {"cliente": "1", "rota": "a", "url": "http://x/a", "pagination": "none"},
    {"cliente": "2", "rota": "b", "url": "http://x/b", "pagination": "Cursor", "cursor_path": "/next"}
  ])");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_TRUE(absl::StrContains((*jobs)[1].origin, "job 2")) << (*jobs)[1].origin;
  auto b = Build((*jobs)[1]);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->pagination().style(), etl::v1::CURSOR);
}

TEST(JobFileTest, ErrorsNameTheFileJobLineAndField) {
  auto unknown =
      ParseJobFile("j.yaml", "jobs:\n  - cliente: a\n  - cliente: b\n    page_sise: 10\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "j.yaml job 2 (line 3)"))
      << unknown.status();
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "page_sise: unknown field"))
      << unknown.status();
  auto syntax = ParseJobFile("j.yaml", "cliente: [a\n");
  ASSERT_FALSE(syntax.ok());
  EXPECT_TRUE(absl::StrContains(syntax.status().message(), "j.yaml: line")) << syntax.status();
  EXPECT_FALSE(ParseJobFile("j.yaml", "").ok());
  EXPECT_FALSE(ParseJobFile("j.yaml", "url:\n  nested: 1\n").ok());
}

TEST(JobFileTest, InvalidModesGetTheCollectorsMessages) {
  auto merge = ParseJobFile(
      "j.yaml", "cliente: a\nrota: b\nurl: http://x/\npagination: none\nwrite_mode: merge\n");
  ASSERT_TRUE(merge.ok());
  auto s = Build((*merge)[0]);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.status().message(), "--id-path")) << s.status();
  auto bad = ParseJobFile(
      "j.yaml", "cliente: a\nrota: b\nurl: http://x/\npagination: none\nwrite_mode: upsert\n");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(Build((*bad)[0]).ok());
  auto lookback_int = ParseJobFile("j.yaml",
                                   "cliente: a\nrota: b\nurl: http://x/\npagination: "
                                   "none\nincremental_path: /id\nincremental_type: integer\n"
                                   "incremental_param: since_id\nlookback: 1h\n");
  ASSERT_TRUE(lookback_int.ok());
  auto li = Build((*lookback_int)[0]);
  ASSERT_FALSE(li.ok());
  EXPECT_TRUE(absl::StrContains(li.status().message(), "timestamp cursors only")) << li.status();
}

TEST(DeadLetterFormatTest, JsonLinesKeepExactBytes) {
  etl::v1::DeadLetter d;
  d.set_id(7);
  d.set_job_id("j");
  d.set_raw("{\"a\": \"tab\\t\xc3\xa9\"}\n");
  std::string line = DeadLetterJsonLine(d);
  EXPECT_TRUE(absl::StrContains(line, R"("raw": "{\"a\": \"tab\\t)"
                                      "\xc3\xa9"
                                      R"(\"}\n")"))
      << line;
  d.set_raw("{\"a\": \"\xff\"}");
  line = DeadLetterJsonLine(d);
  EXPECT_TRUE(absl::StrContains(line, "\"raw_base64\": \"eyJhIjogIv8ifQ==\"")) << line;
  EXPECT_EQ(Excerpt("ab\xff"
                    "c\n",
                    10),
            "ab\\xffc\\x0a");
  EXPECT_EQ(Excerpt("abcdef", 3), "abc...");
}

}  // namespace
}  // namespace etl::cli
