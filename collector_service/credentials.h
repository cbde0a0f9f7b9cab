// Credentials declared by the operator and bound to the hosts they may be sent to.
//
// A job never names an environment variable or a file: it names a credential (JobSpec.credential),
// and the operator's credentials file (collector_server --credentials=FILE, reloaded on SIGHUP)
// says where its secret lives and which hosts may receive it:
//
//   {"pedidos_api": {"type": "bearer", "env": "PEDIDOS_TOKEN", "hosts": ["api.example.com",
//   "*.example.org"]},
//    "erp":         {"type": "api_key", "file": "/run/secrets/erp", "header": "X-Api-Key", "hosts":
//    ["erp.example.com"]}, "legacy":      {"type": "basic", "username": "etl", "env": "LEGACY_PW",
//    "hosts": ["10.0.0.5"]}}
//
// Host patterns: an exact host name or IP literal, or "*.domain.tld" for any host below that domain
// (not the domain itself). Matching is case-insensitive and ignores a trailing dot. Secrets are
// read when a job starts (so a rotated file or variable is picked up), never logged and never part
// of an error message: messages name the credential and its source kind only.
//
// Thread-safety: CredentialStore is thread-safe (Reload may run while jobs resolve credentials).
// The free functions are pure and thread-safe.
#ifndef ETL_COLLECTOR_SERVICE_CREDENTIALS_H_
#define ETL_COLLECTOR_SERVICE_CREDENTIALS_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace etl {

enum class CredentialKind { kBearer, kApiKey, kBasic };

// One entry of the credentials file.
struct CredentialDef {
  CredentialKind kind = CredentialKind::kBearer;
  std::string env;   // Environment variable holding the secret (exactly one of env / file).
  std::string file;  // File holding the secret (trailing newline stripped).
  std::string
      header;  // kApiKey: header carrying the secret; default "X-API-Key" unless param is set.
  std::string param;     // kApiKey: send as this query parameter instead of a header.
  std::string username;  // kBasic: the user name (not secret); the secret is the password.
  std::vector<std::string> hosts;  // Host patterns the secret may be sent to; never empty.
};

// Parses the credentials file's JSON text. INVALID_ARGUMENT naming the entry and the field for an
// unknown type or field, a missing/duplicate source, no hosts or a malformed host pattern.
absl::StatusOr<std::map<std::string, CredentialDef>> ParseCredentialsFile(absl::string_view json);

// OK when `pattern` is an exact host or "*.domain" with at least two labels after the '*'.
absl::Status ValidateHostPattern(absl::string_view pattern);

// True when `host` matches `pattern` (see above). Both may be in any case.
bool HostMatchesPattern(absl::string_view host, absl::string_view pattern);
bool HostMatchesAny(absl::string_view host, const std::vector<std::string>& patterns);

// The lower-cased host of an absolute URL (IPv6 literals without brackets); INVALID_ARGUMENT when
// the URL has none.
absl::StatusOr<std::string> UrlHost(const std::string& url);

// What a request carries for a credential, ready for HttpRequest.
struct ResolvedCredential {
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Authorization: Bearer ...
  std::string query_param;                                   // Non-empty: add ?query_param=secret.
  std::string basic_username;
  std::string basic_password;
  std::vector<std::string> hosts;  // The patterns it may be sent to.
  std::string secret;              // For redaction of messages.
};

class CredentialStore {
 public:
  // Reads and parses `path`; an empty path gives an empty store (every named credential unknown).
  static absl::StatusOr<std::unique_ptr<CredentialStore>> Load(const std::string& path);
  // A store with the given entries and no file (Reload keeps them).
  static std::unique_ptr<CredentialStore> FromDefs(std::map<std::string, CredentialDef> defs);

  CredentialStore(const CredentialStore&) = delete;
  CredentialStore& operator=(const CredentialStore&) = delete;

  // Re-reads the file (SIGHUP). On error the previous entries stay in force and the error is
  // returned.
  absl::Status Reload();

  // INVALID_ARGUMENT when `name` is unknown or `url`'s host is not one of its hosts. Reads no
  // secret.
  absl::Status CheckAllowed(const std::string& name, const std::string& url) const;

  // CheckAllowed, then reads the secret: FAILED_PRECONDITION when its variable/file is missing or
  // empty.
  absl::StatusOr<ResolvedCredential> Resolve(const std::string& name, const std::string& url) const;

  std::vector<std::string> Names() const;

 private:
  CredentialStore(std::string path, std::map<std::string, CredentialDef> defs)
      : path_(std::move(path)), defs_(std::move(defs)) {}
  absl::StatusOr<CredentialDef> Find(const std::string& name, const std::string& url) const;

  const std::string path_;
  mutable absl::Mutex mu_;
  std::map<std::string, CredentialDef> defs_ ABSL_GUARDED_BY(mu_);
};

// Reads a secret from an environment variable or a file (trailing CR/LF stripped).
// FAILED_PRECONDITION naming `what` and the source kind when missing, empty or containing a line
// break or NUL byte; the value never appears in the message.
absl::StatusOr<std::string> ReadSecretFrom(absl::string_view what, const std::string& env,
                                           const std::string& file);

}  // namespace etl

#endif  // ETL_COLLECTOR_SERVICE_CREDENTIALS_H_
