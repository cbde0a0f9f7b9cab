// Transport security and caller authorization for the gRPC servers and channels.
//
// Servers: TLS (--tls-cert/--tls-key), mutual TLS (--tls-client-ca: a client certificate signed by
// that CA is required and verified), and bearer tokens (--auth-token-file: every call must carry
// "authorization: Bearer <token>", compared in constant time; UNAUTHENTICATED otherwise). Tokens
// need TLS: a server refuses to start with a token over plaintext, which anyone on the path could
// read. Some methods can be reserved to one peer (the writer's Write and ledger RPCs to the
// collector): its identity is either a separate token (--collector-token-file) or a name in its
// verified client certificate (CN or SAN, --collector-identity); others get PERMISSION_DENIED. The
// standard health service is always open, for probes. The authorization header is consumed, so
// handlers never see it.
//
// Channels: TLS against a CA file, an optional client certificate, an optional bearer token.
//
// Thread-safety: the functions are thread-safe; the credentials they return are immutable.
#ifndef ETL_COMMON_GRPC_SECURITY_H_
#define ETL_COMMON_GRPC_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace etl {

struct ServerSecurityOptions {
  std::string tls_cert_file;       // PEM certificate chain; empty = plaintext.
  std::string tls_key_file;        // PEM private key of tls_cert_file.
  std::string tls_client_ca_file;  // Non-empty: require a client certificate signed by this CA.
  std::string auth_token_file;     // Non-empty: callers must present this bearer token (needs TLS).
  std::string peer_token_file;     // Non-empty: bearer token identifying the privileged peer.
  std::vector<std::string> peer_names;  // Client-certificate CN/SAN names of the privileged peer.
  // Methods only the privileged peer may call: full names ("/etl.v1.WriterService/Write") or a
  // service prefix ending in '/'. Empty = no method is reserved.
  std::vector<std::string> peer_methods;
};

// True when `options` asks for anything beyond plaintext without authorization.
bool IsSecured(const ServerSecurityOptions& options);

// Server credentials for `options` (InsecureServerCredentials when nothing is set).
// INVALID_ARGUMENT for an inconsistent set (key without cert, token without TLS...),
// FAILED_PRECONDITION when a file cannot be read or is empty.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> BuildServerCredentials(
    const ServerSecurityOptions& options);

struct ChannelSecurityOptions {
  std::string tls_ca_file;    // Non-empty: TLS; the server certificate must chain to this CA.
  std::string tls_cert_file;  // Client certificate for mTLS (with tls_key_file).
  std::string tls_key_file;
  std::string token_file;       // Non-empty: sent as "authorization: Bearer <token>" (needs TLS).
  std::string tls_server_name;  // Name expected in the server certificate when the address differs.
};

// A channel to `address` secured by `options` (plaintext when nothing is set); `args` are kept.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateSecureChannel(
    const std::string& address, const ChannelSecurityOptions& options,
    grpc::ChannelArguments args = {});

// Constant-time equality (time depends only on the lengths).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// A small file of secret material (PEM or token) read whole; tokens are trimmed of surrounding
// whitespace. FAILED_PRECONDITION naming the path (never the content) when unreadable or empty.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path, bool trim);

}  // namespace etl

#endif  // ETL_COMMON_GRPC_SECURITY_H_
