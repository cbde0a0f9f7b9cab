// etl_health_probe against an in-process gRPC server with the standard health service.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "etl.grpc.pb.h"

namespace {

int Probe(const std::string& args) {
  std::string cmd = std::string(ETL_BIN_DIR) + "/etl_health_probe --quiet " + args;
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class HealthProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&service_);  // gRPC needs one service besides health to start
    server_ = b.BuildAndStart();
    ASSERT_GT(port_, 0);
    addr_ = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  etl::v1::CollectorService::Service service_;
  int port_ = 0;
  std::string addr_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(HealthProbeTest, ExitsZeroOnlyWhileServing) {
  EXPECT_EQ(Probe(addr_), 0);
  EXPECT_EQ(Probe("--addr=" + addr_), 0);
  server_->GetHealthCheckService()->SetServingStatus(false);
  EXPECT_EQ(Probe(addr_), 1);
  server_->GetHealthCheckService()->SetServingStatus(true);
  EXPECT_EQ(Probe(addr_), 0);
}

TEST_F(HealthProbeTest, UnknownServiceAndUnreachableServerFail) {
  EXPECT_EQ(Probe("--service=no.such.Service " + addr_), 1);
  EXPECT_EQ(Probe("--timeout=0.5 127.0.0.1:1"), 1);
  EXPECT_EQ(Probe(""), 64);
}

}  // namespace
