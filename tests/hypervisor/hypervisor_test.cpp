// The simulated hypervisor as a whole: creating and destroying a domain through the control
// socket must look to XenStore clients the way a real toolstack + xenstored make it look.
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include "grant/platform.hpp"
#include "grant/sim_control.hpp"
#include "grant/sim_layout.hpp"
#include "sim/hypervisor.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback {
namespace {

class HypervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pvback-hv-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    hv_ = std::make_unique<sim::SimHypervisor>(dir_);
  }
  void TearDown() override {
    hv_.reset();
    std::filesystem::remove_all(dir_);
  }

  xenbus::XenStore open_dom0() {
    auto xs = xenbus::XenStore::open(sim_layout::xenstore_socket(dir_));
    EXPECT_TRUE(xs.has_value());
    return std::move(*xs);
  }

  // Collects watch events (paths) until `want` was seen or 5 s passed.
  static std::set<std::string> wait_for_event(xenbus::XenStore& xs, const std::string& want) {
    std::set<std::string> seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!seen.contains(want) && std::chrono::steady_clock::now() < deadline) {
      pollfd p{xs.fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      while (auto ev = xs.read_watch()) seen.insert(ev->path);
    }
    return seen;
  }

  sim_protocol::Request request(sim_protocol::Op op, DomId domid, const char* name = "") {
    sim_protocol::Request req;
    req.op = op;
    req.domid = domid;
    std::strncpy(req.name, name, sizeof req.name - 1);
    return req;
  }

  std::filesystem::path dir_;
  std::unique_ptr<sim::SimHypervisor> hv_;
};

TEST_F(HypervisorTest, CreatingADomainWritesItsSubtreeAndIntroducesIt) {
  auto xs = open_dom0();
  ASSERT_EQ(xs.watch("@introduceDomain", "intro"), 0);
  wait_for_event(xs, "@introduceDomain");  // the registration event

  auto ctl = grant::SimControl::connect(dir_, 0);
  ASSERT_TRUE(ctl.has_value());
  ASSERT_TRUE(ctl->call(request(sim_protocol::Op::CreateDomain, 7, "guest7")).has_value());

  EXPECT_TRUE(wait_for_event(xs, "@introduceDomain").contains("@introduceDomain"));
  EXPECT_EQ(xs.read("/local/domain/7/name").value_or(""), "guest7");
  EXPECT_EQ(xs.read("/local/domain/7/domid").value_or(""), "7");

  // The guest reaches XenStore as domain 7: its own device/ is writable, name/ is not.
  auto guest = xenbus::XenStore::open(sim_layout::guest_xenstore_socket(dir_, 7));
  ASSERT_TRUE(guest.has_value());
  EXPECT_EQ(guest->write("device/vbd/768/state", "1"), 0);
  EXPECT_EQ(guest->read("/local/domain/7/device/vbd/768/state").value_or(""), "1");
  EXPECT_EQ(guest->write("/local/domain/7/name", "evil"), EACCES);
  auto foreign = guest->read("/local/domain/0/name");
  ASSERT_FALSE(foreign.has_value());
  EXPECT_EQ(foreign.error(), EACCES);
}

TEST_F(HypervisorTest, DestroyingADomainReleasesItAndRemovesItsSubtree) {
  auto ctl = grant::SimControl::connect(dir_, 0);
  ASSERT_TRUE(ctl.has_value());
  ASSERT_TRUE(ctl->call(request(sim_protocol::Op::CreateDomain, 3, "doomed")).has_value());

  // The domain shares a page with Dom0, which maps it: the mapping must survive the destroy
  // (a zombie domain), while new maps are refused.
  grant::Platform guest_platform(hv_->platform(3));
  grant::Platform dom0_platform(hv_->platform(0));
  auto sharer = guest_platform.open_sharer();
  auto shared = sharer->share(0, 1, Access::ReadWrite);
  ASSERT_TRUE(shared.has_value());
  std::memcpy(shared->data(), "before destroy", 15);
  auto mapper = dom0_platform.open_mapper();
  const GrantRef ref = shared->refs()[0];
  auto mapped = mapper->map(3, {&ref, 1}, Access::ReadOnly);
  ASSERT_TRUE(mapped.has_value());

  auto xs = open_dom0();
  ASSERT_EQ(xs.watch("@releaseDomain", "rel"), 0);
  wait_for_event(xs, "@releaseDomain");
  ASSERT_TRUE(ctl->call(request(sim_protocol::Op::DestroyDomain, 3)).has_value());

  EXPECT_TRUE(wait_for_event(xs, "@releaseDomain").contains("@releaseDomain"));
  EXPECT_EQ(xs.exists("/local/domain/3").value_or(true), false);
  EXPECT_FALSE(std::filesystem::exists(sim_layout::guest_xenstore_socket(dir_, 3)));
  EXPECT_STREQ(static_cast<const char*>(mapped->data()), "before destroy");
  EXPECT_FALSE(mapper->map(3, {&ref, 1}, Access::ReadOnly).has_value());
}

}  // namespace
}  // namespace pvback
