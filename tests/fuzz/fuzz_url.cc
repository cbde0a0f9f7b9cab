// URL building: query parameters appended to a base URL, relative references resolved (next URLs
// and Link targets come from the API), a credential parameter removed, secrets redacted, host
// patterns. Input: fields separated by NUL bytes (base, reference, key, value).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "collector_service/credentials.h"
#include "collector_service/http_fetcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> f = absl::StrSplit(input, absl::MaxSplits('\0', 3));
  f.resize(4);
  const std::string& base = f[0];
  const std::string& reference = f[1];
  const std::string& key = f[2];
  const std::string& value = f[3];

  std::string encoded = etl::PercentEncode(value);
  for (char c : encoded) {
    if (!(absl::ascii_isalnum(c) || absl::StrContains("-._~%ABCDEF", c))) abort();
  }
  auto appended = etl::AppendQueryParams(base, {{key, value}});
  if (appended.ok() && !key.empty()) {
    std::string removed = etl::RemoveQueryParam(*appended, key);
    (void)removed;
  }
  auto resolved = etl::ResolveUrl(base, reference);
  if (resolved.ok()) {
    if (!absl::StartsWithIgnoreCase(*resolved, "http://") &&
        !absl::StartsWithIgnoreCase(*resolved, "https://")) {
      abort();
    }
    auto host = etl::UrlHost(*resolved);
    (void)host;
  }
  // (A secret sharing characters with the placeholder "[REDACTED]" could reappear through it.)
  if (!value.empty() && value.find_first_of("[]REDACT") == std::string::npos) {
    std::string redacted = etl::Redact(base + value + encoded, {value});
    if (absl::StrContains(redacted, value)) abort();
  }
  (void)etl::HostMatchesPattern(base, reference);
  return 0;
}
