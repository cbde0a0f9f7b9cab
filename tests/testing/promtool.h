// Runs `promtool check metrics` (Debian's prometheus package) on an exposition text, the strict
// parser and linter the metrics tests hold both services to.
#ifndef ETL_TESTS_TESTING_PROMTOOL_H_
#define ETL_TESTS_TESTING_PROMTOOL_H_

#include <string>

#include "absl/status/status.h"

namespace etl::testing {

bool PromtoolAvailable();
// OK when promtool parses the text and finds no lint problem; else its output in the message.
absl::Status PromtoolCheck(const std::string& exposition);
// Fails the calling test unless PromtoolCheck is OK; skips the check (with a note) without
// promtool.
void ExpectPromtoolAccepts(const std::string& exposition);

}  // namespace etl::testing

#endif  // ETL_TESTS_TESTING_PROMTOOL_H_
