#include "common/names.h"

#include <gtest/gtest.h>

#include <string>

namespace etl {
namespace {

TEST(RawTableNameTest, BuildsNameFromValidParts) {
  auto name = RawTableName("2151", "pedidos");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "dados_raw_cliente_2151_pedidos");
}

TEST(RawTableNameTest, RefusesCharactersOutsideTheAlphabet) {
  for (const char* bad :
       {"Pedidos", "pe-didos", "pe didos", "pe\"didos", "pedidos;drop", "é", "a.b", "x\n"}) {
    auto name = RawTableName("1", bad);
    EXPECT_EQ(name.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(RawTableName("", "x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RawTableName("1", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RawTableName(std::string("1\0", 2), "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RawTableNameTest, RefusesNamesOverSixtyThreeBytes) {
  // "dados_raw_cliente_" (18) + "1" + "_" = 20 bytes before the route.
  EXPECT_TRUE(RawTableName("1", std::string(43, 'a')).ok());
  auto too_long = RawTableName("1", std::string(44, 'a'));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(QuoteIdentifierTest, DoublesEmbeddedQuotes) {
  EXPECT_EQ(QuoteIdentifier("abc"), "\"abc\"");
  EXPECT_EQ(QuoteIdentifier("a\"b"), "\"a\"\"b\"");
}

}  // namespace
}  // namespace etl
