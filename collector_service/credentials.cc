#include "collector_service/credentials.h"

#include <curl/curl.h>
#include <simdjson.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/json_page.h"
#include "common/status_macros.h"

namespace etl {
namespace {

constexpr size_t kMaxCredentialsFileBytes = 1 << 20;
constexpr size_t kMaxNameBytes = 128;

bool IsName(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

bool IsEnvName(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes || absl::ascii_isdigit(s[0])) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_')) return false;
  }
  return true;
}

bool IsHeaderToken(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || absl::StrContains("!#$%&'*+-.^_`|~", c))) return false;
  }
  return true;
}

// Host names: labels of [a-z0-9-_]; IPv4 literals fit; IPv6 literals are hex digits and ':' ('.'
// for an embedded IPv4).
bool IsHostText(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == ':')) return false;
  }
  return !absl::StrContains(s, "..") && s.front() != '.';
}

std::string NormalizeHost(absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  while (!h.empty() && h.back() == '.') h.pop_back();
  return h;
}

absl::Status Field(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("credentials: \"", name, "\": ", what));
}

}  // namespace

absl::Status ValidateHostPattern(absl::string_view pattern) {
  std::string p = NormalizeHost(pattern);
  if (absl::StartsWith(p, "*.")) {
    absl::string_view domain = absl::string_view(p).substr(2);
    if (!IsHostText(domain) || !absl::StrContains(domain, '.')) {
      return absl::InvalidArgumentError(
          absl::StrCat("host pattern \"", pattern,
                       "\" is too broad or malformed: use *.example.com (two labels or more)"));
    }
    return absl::OkStatus();
  }
  if (!IsHostText(p)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host pattern \"", pattern, "\" must be a host name, an IP address or *.domain"));
  }
  return absl::OkStatus();
}

bool HostMatchesPattern(absl::string_view host, absl::string_view pattern) {
  std::string h = NormalizeHost(host);
  std::string p = NormalizeHost(pattern);
  if (h.empty() || p.empty()) return false;
  if (absl::StartsWith(p, "*.")) {
    absl::string_view suffix = absl::string_view(p).substr(1);  // ".example.org"
    return suffix.size() > 2 && h.size() > suffix.size() && absl::EndsWith(h, suffix);
  }
  return h == p;
}

bool HostMatchesAny(absl::string_view host, const std::vector<std::string>& patterns) {
  for (const std::string& p : patterns) {
    if (HostMatchesPattern(host, p)) return true;
  }
  return false;
}

absl::StatusOr<std::string> UrlHost(const std::string& url) {
  CURLU* u = curl_url();
  if (u == nullptr) return absl::ResourceExhaustedError("out of memory");
  std::string host;
  bool ok = curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK;
  char* h = nullptr;
  if (ok && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h != nullptr) host = h;
  curl_free(h);
  curl_url_cleanup(u);
  host = NormalizeHost(host);
  if (host.empty()) return absl::InvalidArgumentError("the URL has no host");
  return host;
}

absl::StatusOr<std::map<std::string, CredentialDef>> ParseCredentialsFile(absl::string_view json) {
  if (json.size() > kMaxCredentialsFileBytes) {
    return absl::InvalidArgumentError("credentials: file larger than 1 MiB");
  }
  simdjson::dom::parser parser;
  if (parser.allocate(std::max<size_t>(json.size(), 64), kMaxJsonNestingDepth)) {
    return absl::ResourceExhaustedError("credentials: out of memory");
  }
  simdjson::dom::element root;
  simdjson::padded_string padded(json.data(), json.size());
  if (auto err = parser.parse(padded).get(root); err) {
    return absl::InvalidArgumentError(
        absl::StrCat("credentials: not valid JSON: ", simdjson::error_message(err)));
  }
  simdjson::dom::object entries;
  if (root.get_object().get(entries)) {
    return absl::InvalidArgumentError(
        "credentials: the file must be a JSON object of name -> credential");
  }
  std::map<std::string, CredentialDef> out;
  for (auto [key, value] : entries) {
    std::string name(key);
    if (!IsName(name)) {
      return absl::InvalidArgumentError(
          "credentials: names are 1-128 characters of [A-Za-z0-9_.-]");
    }
    if (out.count(name)) return Field(name, "declared twice");
    simdjson::dom::object obj;
    if (value.get_object().get(obj)) return Field(name, "must be an object");
    CredentialDef def;
    std::string type;
    bool have_hosts = false;
    for (auto [fkey, fvalue] : obj) {
      std::string field(fkey);
      if (field == "hosts") {
        simdjson::dom::array hosts;
        if (fvalue.get_array().get(hosts)) return Field(name, "hosts must be an array of strings");
        for (simdjson::dom::element h : hosts) {
          std::string_view s;
          if (h.get_string().get(s)) return Field(name, "hosts must be an array of strings");
          absl::Status valid = ValidateHostPattern(absl::string_view(s.data(), s.size()));
          if (!valid.ok()) return Field(name, valid.message());
          def.hosts.push_back(NormalizeHost(absl::string_view(s.data(), s.size())));
        }
        have_hosts = true;
        continue;
      }
      std::string_view sv;
      if (fvalue.get_string().get(sv)) return Field(name, absl::StrCat(field, " must be a string"));
      std::string s(sv);
      if (field == "type") {
        type = s;
      } else if (field == "env") {
        if (!IsEnvName(s)) return Field(name, "env must be an environment variable name");
        def.env = s;
      } else if (field == "file") {
        if (s.empty() || s[0] != '/' || s.find('\0') != std::string::npos) {
          return Field(name, "file must be an absolute path");
        }
        def.file = s;
      } else if (field == "header") {
        if (!IsHeaderToken(s)) return Field(name, "header is not a valid header name");
        def.header = s;
      } else if (field == "param") {
        if (s.empty() || s.size() > kMaxNameBytes) return Field(name, "param must be 1-128 bytes");
        def.param = s;
      } else if (field == "username") {
        if (s.empty() || s.size() > 256 || absl::StrContains(s, ':') ||
            s.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
          return Field(name, "username must be 1-256 bytes without ':' or line breaks");
        }
        def.username = s;
      } else {
        return Field(name, absl::StrCat("unknown field \"", absl::CHexEscape(field.substr(0, 64)),
                                        "\" (type, env, file, header, param, username, hosts)"));
      }
    }
    if (type == "bearer") {
      def.kind = CredentialKind::kBearer;
    } else if (type == "api_key") {
      def.kind = CredentialKind::kApiKey;
    } else if (type == "basic") {
      def.kind = CredentialKind::kBasic;
    } else {
      return Field(name, "type must be \"bearer\", \"api_key\" or \"basic\"");
    }
    if (def.env.empty() == def.file.empty()) return Field(name, "needs exactly one of env or file");
    if (!have_hosts || def.hosts.empty()) {
      return Field(name, "hosts must list the hosts it may be sent to");
    }
    if (def.kind == CredentialKind::kApiKey) {
      if (!def.header.empty() && !def.param.empty())
        return Field(name, "api_key takes header or param, not both");
      if (def.header.empty() && def.param.empty()) def.header = "X-API-Key";
    } else if (!def.header.empty() || !def.param.empty()) {
      return Field(name, "header and param are for type api_key");
    }
    if (def.kind == CredentialKind::kBasic && def.username.empty())
      return Field(name, "basic needs a username");
    if (def.kind != CredentialKind::kBasic && !def.username.empty()) {
      return Field(name, "username is for type basic");
    }
    out.emplace(std::move(name), std::move(def));
  }
  return out;
}

absl::StatusOr<std::string> ReadSecretFrom(absl::string_view what, const std::string& env,
                                           const std::string& file) {
  std::string secret;
  if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr || *v == '\0') {
      return absl::FailedPreconditionError(absl::StrCat(what, ": environment variable ", env,
                                                        " is not set (or empty) in the collector"));
    }
    secret = v;
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in)
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": cannot read its secret file ", file));
    std::ostringstream ss;
    ss << in.rdbuf();
    secret = ss.str();
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.empty())
      return absl::FailedPreconditionError(absl::StrCat(what, ": secret file ", file, " is empty"));
  }
  if (secret.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": the secret contains a line break or NUL byte"));
  }
  return secret;
}

absl::StatusOr<std::unique_ptr<CredentialStore>> CredentialStore::Load(const std::string& path) {
  std::unique_ptr<CredentialStore> store(new CredentialStore(path, {}));
  if (!path.empty()) RETURN_IF_ERROR(store->Reload());
  return store;
}

std::unique_ptr<CredentialStore> CredentialStore::FromDefs(
    std::map<std::string, CredentialDef> defs) {
  return std::unique_ptr<CredentialStore>(new CredentialStore("", std::move(defs)));
}

absl::Status CredentialStore::Reload() {
  if (path_.empty()) return absl::OkStatus();
  std::ifstream in(path_, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("credentials: cannot read ", path_));
  std::string text;
  text.resize(kMaxCredentialsFileBytes + 1);
  in.read(&text[0], std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  ASSIGN_OR_RETURN(auto defs, ParseCredentialsFile(text));
  absl::MutexLock l(&mu_);
  defs_ = std::move(defs);
  return absl::OkStatus();
}

std::vector<std::string> CredentialStore::Names() const {
  absl::MutexLock l(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, def] : defs_) names.push_back(name);
  return names;
}

absl::StatusOr<CredentialDef> CredentialStore::Find(const std::string& name,
                                                    const std::string& url) const {
  CredentialDef def;
  {
    absl::MutexLock l(&mu_);
    auto it = defs_.find(name);
    if (it == defs_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("credential \"", absl::CHexEscape(name.substr(0, kMaxNameBytes)),
                       "\" is not declared in the collector's credentials file"));
    }
    def = it->second;
  }
  ASSIGN_OR_RETURN(std::string host, UrlHost(url));
  if (!HostMatchesAny(host, def.hosts)) {
    return absl::InvalidArgumentError(
        absl::StrCat("credential \"", name, "\" may not be sent to host \"", host,
                     "\" (allowed: ", absl::StrJoin(def.hosts, ", "), ")"));
  }
  return def;
}

absl::Status CredentialStore::CheckAllowed(const std::string& name, const std::string& url) const {
  return Find(name, url).status();
}

absl::StatusOr<ResolvedCredential> CredentialStore::Resolve(const std::string& name,
                                                            const std::string& url) const {
  ASSIGN_OR_RETURN(CredentialDef def, Find(name, url));
  ASSIGN_OR_RETURN(std::string secret,
                   ReadSecretFrom(absl::StrCat("credential \"", name, "\""), def.env, def.file));
  ResolvedCredential out;
  out.hosts = def.hosts;
  switch (def.kind) {
    case CredentialKind::kBearer:
      out.headers.emplace_back("Authorization", absl::StrCat("Bearer ", secret));
      break;
    case CredentialKind::kApiKey:
      if (!def.param.empty()) {
        out.query_param = def.param;
      } else {
        out.headers.emplace_back(def.header, secret);
      }
      break;
    case CredentialKind::kBasic:
      out.basic_username = def.username;
      out.basic_password = secret;
      break;
  }
  out.secret = std::move(secret);
  return out;
}

}  // namespace etl
