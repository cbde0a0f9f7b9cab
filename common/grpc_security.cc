#include "common/grpc_security.h"

#include <grpcpp/security/auth_metadata_processor.h>

#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace etl {
namespace {

constexpr size_t kMaxSecretFileBytes = 1 << 20;
constexpr absl::string_view kHealthPrefix = "/grpc.health.v1.Health/";

std::string Ref(const grpc::string_ref& s) { return std::string(s.data(), s.size()); }

// Decides every call on a TLS server: who the caller is (token or certificate) and whether the
// method is open to it.
class CallAuthorizer : public grpc::AuthMetadataProcessor {
 public:
  CallAuthorizer(std::string token, std::string peer_token, std::vector<std::string> peer_names,
                 std::vector<std::string> peer_methods)
      : token_(std::move(token)),
        peer_token_(std::move(peer_token)),
        peer_names_(std::move(peer_names)),
        peer_methods_(std::move(peer_methods)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata* response) override {
    std::string method;
    auto path = auth_metadata.find(":path");
    if (path != auth_metadata.end()) method = Ref(path->second);
    std::string bearer;
    bool has_bearer = false;
    auto auth = auth_metadata.find("authorization");
    if (auth != auth_metadata.end()) {
      std::string value = Ref(auth->second);
      consumed->insert(std::make_pair(std::string("authorization"), value));
      if (absl::StartsWithIgnoreCase(value, "Bearer ")) {
        bearer = std::string(absl::StripAsciiWhitespace(value.substr(7)));
        has_bearer = true;
      }
    }
    if (absl::StartsWith(method, kHealthPrefix)) return grpc::Status::OK;

    const bool peer_by_token =
        !peer_token_.empty() && has_bearer && ConstantTimeEquals(bearer, peer_token_);
    bool peer_by_cert = false;
    if (!peer_names_.empty()) {
      for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
        for (const grpc::string_ref& name : context->FindPropertyValues(property)) {
          for (const std::string& want : peer_names_) peer_by_cert |= Ref(name) == want;
        }
      }
    }
    const bool is_peer = peer_by_token || peer_by_cert;
    const bool token_ok = token_.empty() || (has_bearer && ConstantTimeEquals(bearer, token_));
    if (!is_peer && !token_ok) {
      return grpc::Status(
          grpc::StatusCode::UNAUTHENTICATED,
          has_bearer ? "invalid bearer token" : "missing bearer token (authorization metadata)");
    }
    if (ReservedForPeer(method) && !is_peer && (!peer_token_.empty() || !peer_names_.empty())) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat(method, " is reserved to the collector's identity"));
    }
    context->AddProperty("etl_caller", is_peer ? "peer" : "client");
    return grpc::Status::OK;
  }

 private:
  bool ReservedForPeer(const std::string& method) const {
    // An unknown method name is treated as reserved: nothing open by accident.
    if (method.empty()) return true;
    for (const std::string& m : peer_methods_) {
      if (method == m || (absl::EndsWith(m, "/") && absl::StartsWith(method, m))) return true;
    }
    return false;
  }

  const std::string token_;
  const std::string peer_token_;
  const std::vector<std::string> peer_names_;
  const std::vector<std::string> peer_methods_;
};

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = b.size();
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = a.empty() ? 0 : static_cast<unsigned char>(a[i % a.size()]);
    diff = diff | (x ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0 && !b.empty();
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, bool trim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read ", path));
  std::string text;
  text.resize(kMaxSecretFileBytes + 1);
  in.read(&text[0], std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  if (text.size() > kMaxSecretFileBytes)
    return absl::FailedPreconditionError(absl::StrCat(path, " is over 1 MiB"));
  if (trim) text = std::string(absl::StripAsciiWhitespace(text));
  if (text.empty()) return absl::FailedPreconditionError(absl::StrCat(path, " is empty"));
  if (trim && text.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": a token is one line"));
  }
  return text;
}

bool IsSecured(const ServerSecurityOptions& o) {
  return !o.tls_cert_file.empty() || !o.tls_key_file.empty() || !o.tls_client_ca_file.empty() ||
         !o.auth_token_file.empty() || !o.peer_token_file.empty() || !o.peer_names.empty();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> BuildServerCredentials(
    const ServerSecurityOptions& o) {
  if (!IsSecured(o)) return grpc::InsecureServerCredentials();
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls-cert and --tls-key; client CAs, tokens and peer identities need TLS "
        "(a bearer token over plaintext is readable by anyone on the path)");
  }
  if (!o.peer_names.empty() && o.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "a collector identity by certificate name needs --tls-client-ca");
  }
  grpc::SslServerCredentialsOptions ssl(
      o.tls_client_ca_file.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadSecretFile(o.tls_cert_file, false));
  ASSIGN_OR_RETURN(pair.private_key, ReadSecretFile(o.tls_key_file, false));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!o.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadSecretFile(o.tls_client_ca_file, false));
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::SslServerCredentials(ssl);
  std::string token, peer_token;
  if (!o.auth_token_file.empty()) {
    ASSIGN_OR_RETURN(token, ReadSecretFile(o.auth_token_file, true));
  }
  if (!o.peer_token_file.empty()) {
    ASSIGN_OR_RETURN(peer_token, ReadSecretFile(o.peer_token_file, true));
  }
  creds->SetAuthMetadataProcessor(std::make_shared<CallAuthorizer>(
      std::move(token), std::move(peer_token), o.peer_names, o.peer_methods));
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateSecureChannel(const std::string& address,
                                                                   const ChannelSecurityOptions& o,
                                                                   grpc::ChannelArguments args) {
  const bool tls = !o.tls_ca_file.empty();
  if (!tls && (!o.tls_cert_file.empty() || !o.tls_key_file.empty() || !o.token_file.empty())) {
    return absl::InvalidArgumentError(
        "client certificates and tokens need TLS: give the CA of the server's certificate "
        "(--*-tls-ca)");
  }
  if (!tls) return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both its certificate and key files");
  }
  grpc::SslCredentialsOptions ssl;
  ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadSecretFile(o.tls_ca_file, false));
  if (!o.tls_cert_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadSecretFile(o.tls_cert_file, false));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadSecretFile(o.tls_key_file, false));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(ssl);
  if (!o.token_file.empty()) {
    ASSIGN_OR_RETURN(std::string token, ReadSecretFile(o.token_file, true));
    creds = grpc::CompositeChannelCredentials(creds, grpc::AccessTokenCredentials(token));
  }
  if (!o.tls_server_name.empty()) args.SetSslTargetNameOverride(o.tls_server_name);
  return grpc::CreateCustomChannel(address, creds, args);
}

}  // namespace etl
