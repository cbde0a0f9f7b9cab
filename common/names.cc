#include "common/names.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace etl {

absl::Status ValidateNamePart(absl::string_view what, absl::string_view value) {
  if (value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty; it must match [a-z0-9_]+"));
  }
  for (char c : value) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " \"", absl::CHexEscape(value), "\" must match [a-z0-9_]+"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RawTableName(absl::string_view cliente_id, absl::string_view rota) {
  if (absl::Status s = ValidateNamePart("cliente_id", cliente_id); !s.ok()) return s;
  if (absl::Status s = ValidateNamePart("rota", rota); !s.ok()) return s;
  std::string name = absl::StrCat("dados_raw_cliente_", cliente_id, "_", rota);
  if (name.size() > kMaxIdentifierBytes) {
    return absl::InvalidArgumentError(absl::StrCat("table name ", name, " is ", name.size(),
                                                   " bytes; PostgreSQL allows at most ",
                                                   kMaxIdentifierBytes));
  }
  return name;
}

std::string QuoteIdentifier(absl::string_view name) {
  return absl::StrCat("\"", absl::StrReplaceAll(name, {{"\"", "\"\""}}), "\"");
}

}  // namespace etl
