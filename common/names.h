// Validation of the identifiers that become PostgreSQL table names.
//
// cliente_id and rota are user input that ends up in DDL, so they are checked against a strict
// alphabet ([a-z0-9_]) and the resulting table name against PostgreSQL's 63-byte identifier limit;
// the name is still quoted wherever it is used.
#ifndef ETL_COMMON_NAMES_H_
#define ETL_COMMON_NAMES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace etl {

// PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 = 63 bytes; we refuse them instead.
inline constexpr size_t kMaxIdentifierBytes = 63;

// OK when `value` is non-empty and only [a-z0-9_]. `what` names the field in the error message.
absl::Status ValidateNamePart(absl::string_view what, absl::string_view value);

// "dados_raw_cliente_{cliente_id}_{rota}", or INVALID_ARGUMENT naming the offending field.
absl::StatusOr<std::string> RawTableName(absl::string_view cliente_id, absl::string_view rota);

// `"name"` with embedded quotes doubled: safe to splice into SQL as an identifier.
std::string QuoteIdentifier(absl::string_view name);

}  // namespace etl

#endif  // ETL_COMMON_NAMES_H_
