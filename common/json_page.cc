#include "common/json_page.h"

#include <simdjson.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_page_internal.h"

namespace etl {

absl::StatusOr<std::vector<std::string>> ParseJsonPointer(absl::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON pointer \"", pointer, "\" must be empty or start with '/' (RFC 6901)"));
  }
  std::string current;
  for (size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(std::move(current));
      current.clear();
      continue;
    }
    char c = pointer[i];
    if (c == '~') {
      if (i + 1 < pointer.size() && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
        current.push_back(pointer[i + 1] == '0' ? '~' : '/');
        ++i;
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "JSON pointer \"", pointer, "\" has a '~' not followed by '0' or '1' (RFC 6901)"));
    }
    current.push_back(c);
  }
  return tokens;
}

std::optional<int64_t> JsonScalarToInt(const JsonScalar& s) {
  if (s.kind != JsonScalar::Kind::kNumber && s.kind != JsonScalar::Kind::kString)
    return std::nullopt;
  int64_t v = 0;
  absl::string_view text = absl::StripAsciiWhitespace(s.text);
  if (absl::SimpleAtoi(text, &v)) {
    if (v < 0) return std::nullopt;
    return v;
  }
  double d = 0;
  if (absl::SimpleAtod(text, &d) && d >= 0 && d < 9.0e18 && std::floor(d) == d) return int64_t(d);
  return std::nullopt;
}

using json_page_internal::Bit;
using json_page_internal::Engine;
using json_page_internal::FastOutcome;
using json_page_internal::FastPathBuffers;
using json_page_internal::ParseRequest;
using json_page_internal::Targets;

struct JsonParseBuffers::Impl {
  simdjson::ondemand::parser parser;  // The full walk's; allocated only when it runs.
  FastPathBuffers fast;
};

struct JsonPageParser::Impl {
  Targets targets;
  std::string records_path;
  size_t max_records = 0;
  Engine engine = Engine::kAuto;
  JsonParseBuffers own_buffers;  // Used when Parse is given none.
};

JsonPageParser::JsonPageParser(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JsonPageParser::~JsonPageParser() = default;

absl::StatusOr<std::unique_ptr<JsonPageParser>> JsonPageParser::Create(
    const PageParseOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->records_path = options.records_path;
  impl->max_records = options.max_records;
  struct {
    int target;
    const std::string* pointer;
    const char* name;
    bool always;
  } specs[] = {
      {json_page_internal::kRecords, &options.records_path, "records_path", true},
      {json_page_internal::kCursor, &options.cursor_path, "cursor_path", false},
      {json_page_internal::kNextUrl, &options.next_url_path, "next_url_path", false},
      {json_page_internal::kTotalPages, &options.total_pages_path, "total_pages_path", false},
      {json_page_internal::kTotalCount, &options.total_count_path, "total_count_path", false},
      {json_page_internal::kId, &options.id_path, "id_path", false},
  };
  for (const auto& s : specs) {
    if (!s.always && s.pointer->empty()) continue;
    auto tokens = ParseJsonPointer(*s.pointer);
    if (!tokens.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(s.name, ": ", tokens.status().message()));
    }
    impl->targets.tokens[s.target] = std::move(*tokens);
    impl->targets.enabled |= Bit(s.target);
  }
  return std::unique_ptr<JsonPageParser>(new JsonPageParser(std::move(impl)));
}

void JsonPageParser::ReleaseBuffers() { impl_->own_buffers.Release(); }

JsonParseBuffers::JsonParseBuffers() : impl_(std::make_unique<Impl>()) {}
JsonParseBuffers::~JsonParseBuffers() = default;
void JsonParseBuffers::Release() {
  impl_->parser = simdjson::ondemand::parser();
  impl_->fast.Release();
}

absl::StatusOr<ParsedPage> JsonPageParser::Parse(std::string* body, JsonParseBuffers* buffers) {
  JsonParseBuffers::Impl& memory = buffers ? *buffers->impl() : *impl_->own_buffers.impl();
  const size_t len = body->size();
  if (body->capacity() < len + simdjson::SIMDJSON_PADDING)
    body->reserve(len + simdjson::SIMDJSON_PADDING);
  const char* data = body->data();
  ParseRequest request;
  request.targets = &impl_->targets;
  request.records_path = &impl_->records_path;
  request.max_records = impl_->max_records;
  if (impl_->engine != Engine::kFullWalk) {
    ParsedPage page;
    if (json_page_internal::FastParse(request, &memory.fast, data, len, &page) ==
        FastOutcome::kParsed) {
      return page;
    }
    if (impl_->engine == Engine::kFastOnly) {
      return absl::UnavailableError("the fast path declined this page");
    }
  }
  return json_page_internal::FullWalkParse(request, &memory.parser, data, len, body->capacity());
}

namespace json_page_internal {

void JsonPageParserPeer::SetEngine(JsonPageParser* parser, Engine engine) {
  parser->impl_->engine = engine;
}

void JsonPageParserPeer::SetStage1Implementation(JsonPageParser* parser,
                                                 const simdjson::implementation* implementation) {
  parser->impl_->own_buffers.impl()->fast.set_implementation(implementation);
}

}  // namespace json_page_internal
}  // namespace etl
