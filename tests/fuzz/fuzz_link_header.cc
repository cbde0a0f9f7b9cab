// RFC 8288 Link header parsing and Retry-After parsing on arbitrary header values.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "collector_service/http_fetcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string value(reinterpret_cast<const char*>(data), size);
  std::vector<etl::LinkValue> links = etl::ParseLinkHeader(value);
  for (const etl::LinkValue& link : links) {
    if (link.target.size() > value.size()) abort();
  }
  std::string next = etl::FindNextLink({value, value});
  if (next.size() > value.size()) abort();
  double wait = etl::ParseRetryAfter(value, 1.7e9);
  if (!(wait == -1 || wait >= 0)) abort();
  return 0;
}
