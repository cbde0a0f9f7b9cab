// TLS, mTLS and token authorization of a real gRPC server on loopback, with certificates made by
// openssl for this test (tests/testing/make_test_certs.sh): no certificate, a stranger's CA, a
// wrong token and a non-collector identity on Write are all refused; the right ones work; health
// stays open.
#include "common/grpc_security.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "etl.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace etl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A writer stand-in: answers GetStatus and Write, and remembers whether a handler ever saw the
// authorization header.
class FakeWriter final : public v1::WriterService::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext* ctx, const v1::GetStatusRequest*,
                         v1::WriterStatus* out) override {
    Note(ctx);
    out->set_serving(true);
    return grpc::Status::OK;
  }
  grpc::Status Write(grpc::ServerContext* ctx, grpc::ServerReader<v1::RecordBatch>* reader,
                     v1::WriteSummary* out) override {
    Note(ctx);
    v1::RecordBatch batch;
    while (reader->Read(&batch))
      out->set_records_received(out->records_received() + batch.records_size());
    return grpc::Status::OK;
  }
  std::atomic<bool> saw_authorization{false};

 private:
  void Note(grpc::ServerContext* ctx) {
    if (ctx->client_metadata().count("authorization")) saw_authorization = true;
  }
};

class GrpcSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(::testing::TempDir(), "/etl-certs-", getpid()));
    std::string cmd = absl::StrCat(ETL_SOURCE_DIR, "/tests/testing/make_test_certs.sh ", *dir_);
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::ofstream(F("token")) << "operator-token-5e1f\n";
    std::ofstream(F("collector-token")) << "collector-token-9b2d\n";
    std::ofstream(F("wrong-token")) << "operator-token-5e1g\n";
  }
  static std::string F(const std::string& name) { return absl::StrCat(*dir_, "/", name); }

  void Start(ServerSecurityOptions options) {
    options.peer_methods = {"/etl.v1.WriterService/Write", "/etl.v1.WriterService/RegisterJob"};
    auto creds = BuildServerCredentials(options);
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::shared_ptr<grpc::Channel> Channel(const ChannelSecurityOptions& options) {
    auto channel = CreateSecureChannel(absl::StrCat("localhost:", port_), options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *channel : nullptr;
  }
  static grpc::Status Status(const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetStatusRequest req;
    v1::WriterStatus out;
    return v1::WriterService::NewStub(channel)->GetStatus(&ctx, req, &out);
  }
  static grpc::Status Write(const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::WriteSummary summary;
    auto writer = v1::WriterService::NewStub(channel)->Write(&ctx, &summary);
    v1::RecordBatch batch;
    batch.add_records("{}");
    writer->Write(batch);
    writer->WritesDone();
    return writer->Finish();
  }
  static bool Healthy(const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse out;
    auto s = grpc::health::v1::Health::NewStub(channel)->Check(&ctx, req, &out);
    return s.ok() && out.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  }
  static ChannelSecurityOptions Tls(const std::string& ca = "ca.pem") {
    ChannelSecurityOptions o;
    o.tls_ca_file = F(ca);
    return o;
  }
  static ServerSecurityOptions ServerTls() {
    ServerSecurityOptions o;
    o.tls_cert_file = F("server.pem");
    o.tls_key_file = F("server.key");
    return o;
  }

  static std::string* dir_;
  FakeWriter service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};
std::string* GrpcSecurityTest::dir_ = nullptr;

TEST_F(GrpcSecurityTest, TlsRefusesPlaintextAndAStrangersCa) {
  Start(ServerTls());
  EXPECT_EQ(Status(Channel({})).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Status(Channel(Tls("other-ca.pem"))).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Status(Channel(Tls())).ok());
}

TEST_F(GrpcSecurityTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  ServerSecurityOptions options = ServerTls();
  options.tls_client_ca_file = F("ca.pem");
  Start(options);
  EXPECT_EQ(Status(Channel(Tls())).error_code(), grpc::StatusCode::UNAVAILABLE);  // No certificate.
  ChannelSecurityOptions stranger = Tls();
  stranger.tls_cert_file = F("stranger-collector.pem");
  stranger.tls_key_file = F("stranger-collector.key");
  EXPECT_EQ(Status(Channel(stranger)).error_code(), grpc::StatusCode::UNAVAILABLE);
  ChannelSecurityOptions good = Tls();
  good.tls_cert_file = F("operator.pem");
  good.tls_key_file = F("operator.key");
  EXPECT_TRUE(Status(Channel(good)).ok());
}

TEST_F(GrpcSecurityTest, TokensAreCheckedOnEveryCallButHealthStaysOpen) {
  ServerSecurityOptions options = ServerTls();
  options.auth_token_file = F("token");
  Start(options);
  auto none = Channel(Tls());
  grpc::Status s = Status(none);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("missing bearer token"));
  ChannelSecurityOptions wrong = Tls();
  wrong.token_file = F("wrong-token");
  s = Status(Channel(wrong));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), Not(HasSubstr("operator-token")));
  ChannelSecurityOptions right = Tls();
  right.token_file = F("token");
  EXPECT_TRUE(Status(Channel(right)).ok());
  EXPECT_TRUE(Healthy(none));
  EXPECT_FALSE(service_.saw_authorization.load());  // Consumed by the authorizer.
}

TEST_F(GrpcSecurityTest, WriteNeedsTheCollectorsTokenOrCertificate) {
  ServerSecurityOptions options = ServerTls();
  options.tls_client_ca_file = F("ca.pem");
  options.auth_token_file = F("token");
  options.peer_token_file = F("collector-token");
  options.peer_names = {"collector"};
  Start(options);
  // An operator (right token, operator certificate) may read status but not write.
  ChannelSecurityOptions op = Tls();
  op.tls_cert_file = F("operator.pem");
  op.tls_key_file = F("operator.key");
  op.token_file = F("token");
  auto operator_channel = Channel(op);
  EXPECT_TRUE(Status(operator_channel).ok());
  grpc::Status w = Write(operator_channel);
  EXPECT_EQ(w.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(w.error_message(), HasSubstr("reserved to the collector"));
  // The collector's certificate alone is enough...
  ChannelSecurityOptions by_cert = Tls();
  by_cert.tls_cert_file = F("collector.pem");
  by_cert.tls_key_file = F("collector.key");
  EXPECT_TRUE(Write(Channel(by_cert)).ok());
  // ... and so is the collector's token with any certificate of the CA.
  ChannelSecurityOptions by_token = op;
  by_token.token_file = F("collector-token");
  EXPECT_TRUE(Write(Channel(by_token)).ok());
  EXPECT_TRUE(Status(Channel(by_token)).ok());
}

TEST(GrpcSecurityConfigTest, RefusesTokensOverPlaintextAndHalfConfigurations) {
  ServerSecurityOptions token_only;
  token_only.auth_token_file = "/dev/null";
  EXPECT_EQ(BuildServerCredentials(token_only).status().code(), absl::StatusCode::kInvalidArgument);
  ServerSecurityOptions cert_only;
  cert_only.tls_cert_file = "/x.pem";
  EXPECT_EQ(BuildServerCredentials(cert_only).status().code(), absl::StatusCode::kInvalidArgument);
  ServerSecurityOptions missing;
  missing.tls_cert_file = "/nonexistent/cert.pem";
  missing.tls_key_file = "/nonexistent/key.pem";
  EXPECT_EQ(BuildServerCredentials(missing).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(BuildServerCredentials({}).ok());
  ChannelSecurityOptions plaintext_token;
  plaintext_token.token_file = "/dev/null";
  EXPECT_EQ(CreateSecureChannel("localhost:1", plaintext_token).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GrpcSecurityConfigTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace etl
