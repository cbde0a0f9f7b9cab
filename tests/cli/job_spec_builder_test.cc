#include "cli/job_spec_builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace etl::cli {
namespace {

using ::testing::HasSubstr;

SpecInputs Minimal() {
  SpecInputs in;
  in.flags = {{"cliente", "2151"},
              {"rota", "pedidos"},
              {"url", "http://127.0.0.1:8080/v1/x"},
              {"pagination", "page"}};
  return in;
}

TEST(ExtractRepeatedFlagsTest, KeepsCommasAndEqualsInRepeatedValues) {
  std::vector<std::string> args = {
      "etlctl",   "run",     "--param=fields=id,status", "--cliente=1",   "--param",
      "sort=a,b", "-header", "Accept: a/b, c/d",         "--header=X-Y:z"};
  auto found = ExtractRepeatedFlags(&args, {"param", "header"});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ((*found)["param"], (std::vector<std::string>{"fields=id,status", "sort=a,b"}));
  EXPECT_EQ((*found)["header"], (std::vector<std::string>{"Accept: a/b, c/d", "X-Y:z"}));
  EXPECT_EQ(args, (std::vector<std::string>{"etlctl", "run", "--cliente=1"}));
}

TEST(ExtractRepeatedFlagsTest, StopsAtDoubleDashAndRejectsMissingValue) {
  std::vector<std::string> args = {"etlctl", "--", "--param=a=b"};
  auto found = ExtractRepeatedFlags(&args, {"param"});
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->empty());
  EXPECT_EQ(args.size(), 3u);

  std::vector<std::string> bad = {"etlctl", "run", "--param"};
  auto missing = ExtractRepeatedFlags(&bad, {"param"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--param"));
}

TEST(FlagsNamedInTest, NormalizesHyphensAndStopsAtDoubleDash) {
  auto names = FlagsNamedIn(
      {"etlctl", "run", "--page-size=10", "-records-path=", "--url", "x", "--", "--rota=r"});
  EXPECT_TRUE(names.count("page_size"));
  EXPECT_TRUE(names.count("records_path"));
  EXPECT_TRUE(names.count("url"));
  EXPECT_FALSE(names.count("rota"));
}

TEST(BuildJobSpecTest, MapsEveryFlagToItsField) {
  SpecInputs in = Minimal();
  in.flags.insert({{"page_param", "p"},
                   {"size_param", "n"},
                   {"page_size", "500"},
                   {"start_page", "0"},
                   {"total_pages_path", "/meta/pages"},
                   {"total_count_path", "/meta/total"},
                   {"records_path", "/data"},
                   {"max_pages", "77"},
                   {"start_date", "2024-01-01"},
                   {"end_date", "2024-02-29"},
                   {"start_param", "data_inicio"},
                   {"end_param", "data_fim"},
                   {"id_path", "/id"},
                   {"max_attempts", "5"},
                   {"backoff_scale", "0.01"},
                   {"max_backoff", "2s"},
                   {"fetch_concurrency", "8"},
                   {"fixed_fetch_concurrency", "true"},
                   {"timeout", "15"},
                   {"connect_timeout", "3"},
                   {"bearer_token_env", "API_TOKEN"}});
  in.params = {"fields=id,status", "q=a=b"};
  in.headers = {"Accept-Language:  pt-BR ", "X-Trace: 1,2"};
  auto spec = BuildJobSpec(in);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->cliente_id(), "2151");
  EXPECT_EQ(spec->rota(), "pedidos");
  EXPECT_EQ(spec->pagination().style(), etl::v1::PAGE);
  EXPECT_EQ(spec->pagination().page_param(), "p");
  EXPECT_EQ(spec->pagination().size_param(), "n");
  EXPECT_EQ(spec->pagination().page_size(), 500);
  EXPECT_EQ(spec->pagination().start_page(), 0);
  EXPECT_EQ(spec->pagination().total_pages_path(), "/meta/pages");
  EXPECT_EQ(spec->pagination().total_count_path(), "/meta/total");
  EXPECT_EQ(spec->pagination().records_path(), "/data");
  EXPECT_EQ(spec->pagination().max_pages(), 77);
  EXPECT_EQ(spec->date_filter().start_date(), "2024-01-01");
  EXPECT_EQ(spec->date_filter().end_date(), "2024-02-29");
  EXPECT_EQ(spec->date_filter().start_param(), "data_inicio");
  EXPECT_EQ(spec->date_filter().end_param(), "data_fim");
  EXPECT_EQ(spec->id_path(), "/id");
  EXPECT_EQ(spec->retry().max_attempts(), 5);
  EXPECT_DOUBLE_EQ(spec->retry().backoff_scale(), 0.01);
  EXPECT_DOUBLE_EQ(spec->retry().max_backoff_seconds(), 2);
  EXPECT_EQ(spec->fetch_concurrency(), 8);
  EXPECT_TRUE(spec->fixed_fetch_concurrency());
  EXPECT_DOUBLE_EQ(spec->timeout_seconds(), 15);
  EXPECT_DOUBLE_EQ(spec->connect_timeout_seconds(), 3);
  EXPECT_EQ(spec->auth().type(), etl::v1::BEARER);
  EXPECT_EQ(spec->auth().secret_env(), "API_TOKEN");
  ASSERT_EQ(spec->query_params_size(), 2);
  EXPECT_EQ(spec->query_params(0).key(), "fields");
  EXPECT_EQ(spec->query_params(0).value(), "id,status");
  EXPECT_EQ(spec->query_params(1).value(), "a=b");
  ASSERT_EQ(spec->headers_size(), 2);
  EXPECT_EQ(spec->headers(0).key(), "Accept-Language");
  EXPECT_EQ(spec->headers(0).value(), "pt-BR");
  EXPECT_EQ(spec->headers(1).value(), "1,2");
}

TEST(BuildJobSpecTest, FlagsOverrideTheSpecFile) {
  SpecInputs in;
  in.spec_json = R"({"cliente_id":"7","rota":"notas","url":"https://api.example.com/v1/notas",
    "pagination":{"style":"CURSOR","cursor_path":"/next","page_size":50},
    "query_params":[{"key":"fields","value":"a"},{"key":"keep","value":"1"}],
    "headers":[{"key":"accept","value":"x"}],
    "retry":{"max_attempts":4}})";
  in.flags = {{"rota", "pedidos"}, {"page_size", "200"}};
  in.params = {"fields=b,c"};
  in.headers = {"Accept: application/json"};
  auto spec = BuildJobSpec(in);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->cliente_id(), "7");
  EXPECT_EQ(spec->rota(), "pedidos");
  EXPECT_EQ(spec->pagination().style(), etl::v1::CURSOR);
  EXPECT_EQ(spec->pagination().cursor_path(), "/next");
  EXPECT_EQ(spec->pagination().page_size(), 200);
  EXPECT_EQ(spec->retry().max_attempts(), 4);
  ASSERT_EQ(spec->query_params_size(), 2);
  EXPECT_EQ(spec->query_params(0).key(), "keep");
  EXPECT_EQ(spec->query_params(1).key(), "fields");
  EXPECT_EQ(spec->query_params(1).value(), "b,c");
  ASSERT_EQ(spec->headers_size(), 1);
  EXPECT_EQ(spec->headers(0).value(), "application/json");
}

TEST(BuildJobSpecTest, ExplicitlyEmptyFlagClearsTheFileValue) {
  SpecInputs in = Minimal();
  in.spec_json = R"({"pagination":{"records_path":"/data"}})";
  in.flags["records_path"] = "";
  auto spec = BuildJobSpec(in);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->pagination().records_path(), "");
}

struct BadCase {
  const char* flag;
  const char* value;
  const char* expected_message;
};

class BuildJobSpecRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(BuildJobSpecRejects, InvalidValueWithMessageNamingTheFlag) {
  SpecInputs in = Minimal();
  in.flags[GetParam().flag] = GetParam().value;
  auto spec = BuildJobSpec(in);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(GetParam().expected_message));
}

INSTANTIATE_TEST_SUITE_P(
    Flags, BuildJobSpecRejects,
    ::testing::Values(
        BadCase{"pagination", "pages", "--pagination: unknown style \"pages\""},
        BadCase{"page_size", "ten", "--page-size: \"ten\" is not an integer"},
        BadCase{"page_size", "-1", "--page-size: must be >= 0"},
        BadCase{"max_attempts", "0", "--max-attempts: must be >= 1"},
        BadCase{"fetch_concurrency", "1e3", "--fetch-concurrency"},
        BadCase{"fixed_fetch_concurrency", "maybe", "--fixed-fetch-concurrency"},
        BadCase{"timeout", "soon", "--timeout: \"soon\" is not a number"},
        BadCase{"start_date", "2024-02-30", "--start-date: \"2024-02-30\" is not a date"},
        BadCase{"end_date", "01/02/2024", "--end-date"},
        BadCase{"records_path", "data", "--records-path: \"data\" is not a JSON pointer"},
        BadCase{"id_path", "id", "--id-path"},
        BadCase{"url", "ftp://x/y", "--url: \"ftp://x/y\" must start with http:// or https://"},
        BadCase{"cliente", "ACME", "--cliente"}, BadCase{"rota", "pedidos-v2", "--rota"},
        BadCase{"bearer_token_env", "s3cr3t token", "NAME of an environment variable"}),
    [](const ::testing::TestParamInfo<BadCase>& info) {
      return std::string(info.param.flag) + "_" + std::to_string(info.index);
    });

TEST(BuildJobSpecTest, RejectsMissingRequiredFlags) {
  for (const char* flag : {"cliente", "rota", "url", "pagination"}) {
    SpecInputs in = Minimal();
    in.flags.erase(flag);
    auto spec = BuildJobSpec(in);
    ASSERT_FALSE(spec.ok()) << flag;
    EXPECT_THAT(std::string(spec.status().message()),
                HasSubstr(std::string("--") + flag + " is required"));
  }
}

TEST(BuildJobSpecTest, RejectsStyleSpecificOmissionsAndDateOrder) {
  SpecInputs cursor = Minimal();
  cursor.flags["pagination"] = "cursor";
  EXPECT_THAT(std::string(BuildJobSpec(cursor).status().message()),
              HasSubstr("--cursor-path is required"));
  SpecInputs next = Minimal();
  next.flags["pagination"] = "next-url";
  EXPECT_THAT(std::string(BuildJobSpec(next).status().message()),
              HasSubstr("--next-url-path is required"));
  SpecInputs dates = Minimal();
  dates.flags["start_date"] = "2024-03-01";
  dates.flags["end_date"] = "2024-02-01";
  EXPECT_THAT(std::string(BuildJobSpec(dates).status().message()), HasSubstr("precedes"));
}

TEST(BuildJobSpecTest, RejectsMalformedParamsHeadersAndCredentialHeaders) {
  SpecInputs p = Minimal();
  p.params = {"novalue"};
  EXPECT_THAT(std::string(BuildJobSpec(p).status().message()),
              HasSubstr("--param: \"novalue\" is not key=value"));
  SpecInputs h = Minimal();
  h.headers = {"NoColon"};
  EXPECT_THAT(std::string(BuildJobSpec(h).status().message()), HasSubstr("--header"));
  SpecInputs a = Minimal();
  a.headers = {"Authorization: Bearer abc"};
  auto spec = BuildJobSpec(a);
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("--bearer-token-env"));
  EXPECT_THAT(std::string(spec.status().message()), ::testing::Not(HasSubstr("abc")));
}

TEST(BuildJobSpecTest, AuthMethodsAreExclusiveAndCarryOnlyTheSecretsLocation) {
  SpecInputs two = Minimal();
  two.flags["bearer_token_env"] = "A";
  two.flags["api_key_env"] = "B";
  EXPECT_THAT(std::string(BuildJobSpec(two).status().message()),
              HasSubstr("one authentication method"));

  SpecInputs key = Minimal();
  key.flags["api_key_file"] = "/run/secrets/key";
  key.flags["api_key_header"] = "X-Token";
  auto spec = BuildJobSpec(key);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->auth().type(), etl::v1::API_KEY);
  EXPECT_EQ(spec->auth().secret_file(), "/run/secrets/key");
  EXPECT_EQ(spec->auth().header_name(), "X-Token");

  SpecInputs basic = Minimal();
  basic.flags["basic_user"] = "ana";
  EXPECT_THAT(std::string(BuildJobSpec(basic).status().message()),
              HasSubstr("--basic-password-env"));
  basic.flags["basic_password_env"] = "PW";
  spec = BuildJobSpec(basic);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->auth().type(), etl::v1::BASIC);
  EXPECT_EQ(spec->auth().username(), "ana");
  EXPECT_EQ(spec->auth().secret_env(), "PW");
}

TEST(BuildJobSpecTest, ReportsABrokenSpecFile) {
  SpecInputs in = Minimal();
  in.spec_origin = "--spec job.json";
  in.spec_json = R"({"cliente_id": "1", "no_such_field": 3})";
  auto spec = BuildJobSpec(in);
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("--spec job.json: not a JobSpec"));
}

TEST(ParsePaginationStyleTest, AcceptsEveryStyleInAnyCase) {
  EXPECT_EQ(*ParsePaginationStyle("PAGE"), etl::v1::PAGE);
  EXPECT_EQ(*ParsePaginationStyle("offset"), etl::v1::OFFSET);
  EXPECT_EQ(*ParsePaginationStyle("Cursor"), etl::v1::CURSOR);
  EXPECT_EQ(*ParsePaginationStyle("link"), etl::v1::LINK);
  EXPECT_EQ(*ParsePaginationStyle("next-url"), etl::v1::NEXT_URL);
  EXPECT_EQ(*ParsePaginationStyle("none"), etl::v1::NONE);
  EXPECT_FALSE(ParsePaginationStyle("").ok());
}

}  // namespace
}  // namespace etl::cli

namespace etl::cli {
namespace {

TEST(BuildJobSpecTest, CredentialFlagNamesTheOperatorsCredential) {
  SpecInputs in = Minimal();
  in.flags["credential"] = "pedidos_api";
  auto spec = BuildJobSpec(in);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->credential(), "pedidos_api");
  EXPECT_EQ(spec->auth().type(), etl::v1::AUTH_NONE);
  in.flags["bearer_token_env"] = "API_TOKEN";
  EXPECT_EQ(BuildJobSpec(in).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace etl::cli
