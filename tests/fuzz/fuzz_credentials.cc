// The operator's credentials file: parsing arbitrary JSON and matching hosts against its patterns.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "collector_service/credentials.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = etl::ParseCredentialsFile(text);
  if (!parsed.ok()) return 0;
  for (const auto& [name, def] : *parsed) {
    if (def.hosts.empty()) abort();
    for (const std::string& pattern : def.hosts)
      (void)etl::HostMatchesPattern("api.example.com", pattern);
  }
  return 0;
}
