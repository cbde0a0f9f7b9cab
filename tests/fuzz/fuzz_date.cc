// Date handling: date validation and strftime formatting with an arbitrary format, as a job spec's
// date filter would give them. Input: "<date>\0<format>".
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "collector_service/job_spec.h"
#include "etl.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string date = input.substr(0, nul);
  std::string format = nul == std::string::npos ? "%Y-%m-%d" : input.substr(nul + 1);
  if (etl::ValidateDate("start_date", date).ok()) {
    auto formatted = etl::FormatDate(date, format);
    (void)formatted;
  }
  // The same through the validator, which checks the format before anything runs.
  etl::v1::JobSpec spec;
  spec.set_cliente_id("c");
  spec.set_rota("r");
  spec.set_url("https://api.example.com/x");
  spec.mutable_pagination()->set_style(etl::v1::NONE);
  spec.mutable_date_filter()->set_start_date(date);
  spec.mutable_date_filter()->set_format(format);
  (void)etl::ValidateJobSpec(spec);
  return 0;
}
