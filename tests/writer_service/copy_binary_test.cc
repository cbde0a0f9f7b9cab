#include "writer_service/copy_binary.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/test_support.h"
#include "writer_service/pg_conn.h"

namespace etl {
namespace {

using namespace std::string_literals;

TEST(CopyBinaryTest, HeaderAndTrailerAreTheFormatsFixedBytes) {
  std::string out;
  AppendCopyBinaryHeader(&out);
  EXPECT_EQ(out, "PGCOPY\n\xff\r\n\0"s + "\0\0\0\0"s + "\0\0\0\0"s);
  out.clear();
  AppendCopyBinaryTrailer(&out);
  EXPECT_EQ(out, "\xff\xff"s);
}

TEST(CopyBinaryTest, FieldsAreLengthPrefixedInNetworkOrder) {
  std::string out;
  AppendCopyBinaryRow(&out, 4);
  AppendCopyBinaryJsonb(&out, "{}");
  AppendCopyBinaryText(&out, "a\tb");
  AppendCopyBinaryNull(&out);
  AppendCopyBinaryInt8(&out, -2);
  EXPECT_EQ(out, "\0\x04"s + "\0\0\0\x03\x01{}"s +
                     "\0\0\0\x03"
                     "a\tb"s +
                     "\xff\xff\xff\xff"s + "\0\0\0\x08\xff\xff\xff\xff\xff\xff\xff\xfe"s);
  out.clear();
  AppendCopyBinaryInt8(&out, 0x0102030405060708);
  EXPECT_EQ(out, "\0\0\0\x08\x01\x02\x03\x04\x05\x06\x07\x08"s);
}

// The bytes PostgreSQL reads back are the bytes sent, for values the text format had to escape.
TEST(CopyBinaryTest, PostgresStoresEveryValueExactly) {
  const std::string conninfo = testing::PostgresConnString();
  if (conninfo.empty()) GTEST_SKIP() << "no PostgreSQL configured";
  auto conn = PgConnection::Connect(conninfo, "copy_binary_test");
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)
                  ->Exec("CREATE TEMP TABLE t (n serial, payload jsonb NOT NULL, natural_key text, "
                         "job_id text NOT NULL, page_number bigint NOT NULL)")
                  .ok());
  struct Row {
    std::string json;
    const char* key;
    std::string job;
    int64_t page;
  };
  const std::vector<Row> rows = {
      {"{\r\n\t\"a\\\\b\":\t\"tab\\tnl\\n\\\\N \\\\. \xF0\x9F\x98\x80 \xD0\x9F\"}", "k\t\\N\n",
       "j\\1", 0},
      {"123456789012345678901234567890", nullptr, "\xE6\xBC\xA2",
       std::numeric_limits<int64_t>::max()},
      {"[1e400, -0.0, {\"\": null}]", "", "", std::numeric_limits<int64_t>::min()},
  };
  std::string data;
  AppendCopyBinaryHeader(&data);
  for (const Row& r : rows) {
    AppendCopyBinaryRow(&data, 4);
    AppendCopyBinaryJsonb(&data, r.json);
    if (r.key == nullptr) {
      AppendCopyBinaryNull(&data);
    } else {
      AppendCopyBinaryText(&data, r.key);
    }
    AppendCopyBinaryText(&data, r.job);
    AppendCopyBinaryInt8(&data, r.page);
  }
  AppendCopyBinaryTrailer(&data);
  ASSERT_TRUE(
      (*conn)
          ->CopyBegin(
              "COPY t (payload, natural_key, job_id, page_number) FROM STDIN (FORMAT binary)")
          .ok());
  // In two pieces: a field may straddle the chunks PostgreSQL receives.
  ASSERT_TRUE((*conn)->CopyPut(absl::string_view(data).substr(0, 30)).ok());
  ASSERT_TRUE((*conn)->CopyPut(absl::string_view(data).substr(30)).ok());
  absl::Status end = (*conn)->CopyEnd();
  ASSERT_TRUE(end.ok()) << end;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto r = (*conn)->Query(
        "SELECT payload = $1::jsonb, natural_key IS NULL, coalesce(natural_key, ''), job_id, "
        "page_number::text FROM t WHERE n = $2::int",
        {PgParam::Text(rows[i].json), PgParam::Text(absl::StrCat(i + 1))});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->rows(), 1);
    EXPECT_EQ(r->Get(0, 0), "t") << i;
    EXPECT_EQ(r->Get(0, 1), rows[i].key == nullptr ? "t" : "f") << i;
    EXPECT_EQ(r->Get(0, 2), rows[i].key == nullptr ? "" : rows[i].key) << i;
    EXPECT_EQ(r->Get(0, 3), rows[i].job) << i;
    EXPECT_EQ(r->Get(0, 4), absl::StrCat(rows[i].page)) << i;
  }
}

// A value its column type refuses fails the COPY as a data error (SQLSTATE class 22), which the
// writer isolates down to the record, exactly as with the text format.
TEST(CopyBinaryTest, InvalidJsonIsADataError) {
  const std::string conninfo = testing::PostgresConnString();
  if (conninfo.empty()) GTEST_SKIP() << "no PostgreSQL configured";
  auto conn = PgConnection::Connect(conninfo, "copy_binary_test");
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)->Exec("CREATE TEMP TABLE t (payload jsonb NOT NULL)").ok());
  for (std::string bad : {"{\"a\": tru}"s, "\"\\u0000\""s, "\"\xC3\x28\""s}) {
    std::string data;
    AppendCopyBinaryHeader(&data);
    AppendCopyBinaryRow(&data, 1);
    AppendCopyBinaryJsonb(&data, bad);
    AppendCopyBinaryTrailer(&data);
    ASSERT_TRUE((*conn)->CopyBegin("COPY t FROM STDIN (FORMAT binary)").ok());
    ASSERT_TRUE((*conn)->CopyPut(data).ok());
    absl::Status s = (*conn)->CopyEnd();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad << ": " << s;
  }
}

}  // namespace
}  // namespace etl
