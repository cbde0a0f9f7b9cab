#include "common/job_modes.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace etl {
namespace {

v1::JobSpec Incremental(v1::CursorType type, const std::string& param) {
  v1::JobSpec spec;
  spec.set_id_path("/id");
  spec.mutable_incremental()->set_cursor_path("/updated_at");
  spec.mutable_incremental()->set_cursor_type(type);
  spec.mutable_incremental()->set_param(param);
  return spec;
}

TEST(JobModesTest, LookbackMovesATimestampMarkBackInUtc) {
  auto v = CursorStartValue(v1::TIMESTAMP, "2024-05-01T10:30:00+02:00", 3600);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "2024-05-01T07:30:00Z");
  EXPECT_EQ(*CursorStartValue(v1::TIMESTAMP, "2024-05-01T10:30:00Z", 0), "2024-05-01T10:30:00Z");
  EXPECT_EQ(*CursorStartValue(v1::INTEGER, "42", 3600), "42");
  EXPECT_FALSE(CursorStartValue(v1::TIMESTAMP, "yesterday", 60).ok());
}

TEST(JobModesTest, StartGoesToTheNamedParameterReplacingAnEarlierOne) {
  v1::JobSpec spec = Incremental(v1::INTEGER, "since_id");
  v1::KeyValue* kv = spec.add_query_params();
  kv->set_key("since_id");
  kv->set_value("1");
  ASSERT_TRUE(ApplyIncrementalStart(&spec, "450").ok());
  ASSERT_EQ(spec.query_params_size(), 1);
  EXPECT_EQ(spec.query_params(0).value(), "450");
  EXPECT_EQ(spec.incremental().start_value(), "450");
}

TEST(JobModesTest, WithoutParameterTheStartDayReplacesAnEarlierDateFilterStart) {
  v1::JobSpec spec = Incremental(v1::TIMESTAMP, "");
  spec.mutable_date_filter()->set_start_param("data_inicio");
  spec.mutable_date_filter()->set_start_date("2024-01-01");
  ASSERT_TRUE(ValidateJobModes(spec).ok());
  ASSERT_TRUE(ApplyIncrementalStart(&spec, "2024-05-01T23:30:00-03:00").ok());
  EXPECT_EQ(spec.date_filter().start_date(), "2024-05-02");  // The mark's UTC day, inclusive.
  EXPECT_EQ(spec.query_params_size(), 0);
}

TEST(JobModesTest, RefusesSpecsThatCannotWork) {
  v1::JobSpec merge;
  merge.set_write_mode(v1::MERGE);
  EXPECT_TRUE(absl::StrContains(ValidateJobModes(merge).message(), "id_path"));
  v1::JobSpec no_type = Incremental(v1::CURSOR_TYPE_UNSPECIFIED, "since");
  EXPECT_FALSE(ValidateJobModes(no_type).ok());
  v1::JobSpec int_no_param = Incremental(v1::INTEGER, "");
  int_no_param.mutable_date_filter()->set_start_param("de");
  EXPECT_FALSE(ValidateJobModes(int_no_param).ok());
  v1::JobSpec replace = Incremental(v1::TIMESTAMP, "since");
  replace.set_write_mode(v1::REPLACE);
  EXPECT_FALSE(ValidateJobModes(replace).ok());
  v1::JobSpec bad_initial = Incremental(v1::TIMESTAMP, "since");
  bad_initial.mutable_incremental()->set_initial_value("soon");
  EXPECT_FALSE(ValidateJobModes(bad_initial).ok());
  EXPECT_TRUE(ValidateJobModes(Incremental(v1::TIMESTAMP, "since")).ok());
}

TEST(JobModesTest, DurationsAndEnumsParseLikeUsersWriteThem) {
  EXPECT_EQ(*ParseDurationSeconds("1h"), 3600);
  EXPECT_EQ(*ParseDurationSeconds("90"), 90);
  EXPECT_EQ(*ParseDurationSeconds("2d"), 172800);
  EXPECT_EQ(*ParseDurationSeconds("1h30m"), 5400);
  EXPECT_FALSE(ParseDurationSeconds("-5").ok());
  EXPECT_FALSE(ParseDurationSeconds("soon").ok());
  EXPECT_EQ(*ParseWriteMode("MeRgE"), v1::MERGE);
  EXPECT_FALSE(ParseWriteMode("upsert").ok());
  EXPECT_EQ(*ParseCursorType("Integer"), v1::INTEGER);
}

}  // namespace
}  // namespace etl
