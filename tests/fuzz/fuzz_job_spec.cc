// The job-spec validator on arbitrary specs: the input is a JobSpec in proto3 JSON (what etlctl
// --spec reads) or, when that does not parse, in binary (what StartJob receives).
// Invariant: a spec that validates still validates after WithDefaults.
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "collector_service/job_spec.h"
#include "etl.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  etl::v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(input, &spec, options).ok()) {
    spec.Clear();
    if (!spec.ParseFromString(input)) return 0;
  }
  if (etl::ValidateJobSpec(spec).ok()) {
    etl::v1::JobSpec filled = etl::WithDefaults(spec, 4);
    if (!etl::ValidateJobSpec(filled).ok()) abort();
  }
  return 0;
}
