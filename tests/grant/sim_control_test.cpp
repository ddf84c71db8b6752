// The simulated hypervisor's domain control: CreateDomain/DestroyDomain rules and pvback-sim-ctl.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "tests/grant/sim_fixture.hpp"

namespace pvback::test {
namespace {

using SimControlTest = SimHypervisorTest;

std::string run(const std::string& command, int* status) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  std::array<char, 256> buf;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) output += buf.data();
  *status = ::pclose(pipe);
  return output;
}

TEST_F(SimControlTest, CreateAndDestroyCallHooksAndCheckRights) {
  EXPECT_EQ(create_domain(1), EEXIST);
  EXPECT_EQ(create_domain(3, /*as=*/1), EPERM) << "only domain 0 creates domains";
  EXPECT_EQ(create_domain(0x7FF0), EINVAL);
  EXPECT_EQ(create_domain(3), 0);
  auto created_list = created();
  ASSERT_EQ(created_list.size(), 3u);
  EXPECT_EQ(created_list[2].first, 3);
  EXPECT_EQ(created_list[2].second, "domain-3");
  EXPECT_EQ(destroy_domain(3), 0);
  EXPECT_EQ(destroyed(), std::vector<DomId>{3});
}

// The domid is 32 bits on the wire: it must not be truncated to 16 past the checks.
TEST_F(SimControlTest, DestroyRejectsDomidsBeyond16Bits) {
  sim_protocol::Request req;
  req.op = sim_protocol::Op::DestroyDomain;
  req.domid = 0x10000;
  EXPECT_EQ(control_call(req), ESRCH) << "would truncate to domain 0";
  req.domid = 0x10001;
  EXPECT_EQ(control_call(req), ESRCH) << "would truncate to domain 1";
  EXPECT_TRUE(destroyed().empty());
  auto control = grant::SimControl::connect(run_dir_, 1);
  ASSERT_TRUE(control);
  req.op = sim_protocol::Op::OpenDomain;
  req.domid = 0;
  EXPECT_TRUE(control->call(req)) << "domain 0 still exists";
}

TEST_F(SimControlTest, GuestGetsNoPinCountsForItsOwnDomain) {
  auto control = grant::SimControl::connect(run_dir_, 1);
  ASSERT_TRUE(control);
  sim_protocol::Request req;
  req.op = sim_protocol::Op::OpenDomain;
  req.domid = 1;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(control->call(req, &fds));
  EXPECT_EQ(fds.size(), 2u);
  fds.clear();
  req.domid = 2;
  ASSERT_TRUE(control->call(req, &fds));
  EXPECT_EQ(fds.size(), 3u);
  // Event channels act as the connection's own domain only.
  req.op = sim_protocol::Op::AllocUnbound;
  req.domid = 2;
  req.remote = 0;
  auto spoofed = control->call(req);
  ASSERT_FALSE(spoofed);
  EXPECT_EQ(spoofed.error(), EPERM);
}

TEST_F(SimControlTest, NoHypervisorGivesAClearError) {
  grant::PlatformConfig config;
  config.kind = grant::PlatformConfig::Kind::Sim;
  config.sim_dir = (run_dir_ / "nowhere").string();
  grant::Platform nowhere(config);
  try {
    nowhere.open_mapper();
    FAIL() << "opening without a hypervisor succeeded";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("simulated hypervisor"), std::string::npos) << e.what();
  }
}

TEST_F(SimControlTest, CtlCreatesListsAndDestroysDomains) {
  const std::string ctl = std::string(PVBACK_SIM_CTL) + " --run-dir " + run_dir_.string() + " ";
  int status = -1;
  run(ctl + "create-domain 7 --name web --memory-mib 64", &status);
  EXPECT_EQ(status, 0);
  std::string listing = run(ctl + "list", &status);
  EXPECT_EQ(status, 0);
  EXPECT_NE(listing.find("Domain-0"), std::string::npos) << listing;
  EXPECT_NE(listing.find("web"), std::string::npos) << listing;
  EXPECT_NE(listing.find("64"), std::string::npos) << listing;
  EXPECT_EQ(created().back(), (std::pair<DomId, std::string>{7, "web"}));
  run(ctl + "create-domain 7 2>/dev/null", &status);
  EXPECT_NE(status, 0) << "duplicate domain id accepted";
  run(ctl + "destroy-domain 7", &status);
  EXPECT_EQ(status, 0);
  listing = run(ctl + "list", &status);
  EXPECT_EQ(listing.find("web"), std::string::npos) << listing;
  run(ctl + "bogus 2>/dev/null", &status);
  EXPECT_NE(status, 0);
}

}  // namespace
}  // namespace pvback::test
