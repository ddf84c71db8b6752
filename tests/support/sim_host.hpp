// A simulated host for tests that run a pvback daemon as a child process: a temporary directory,
// the simulated hypervisor in this process, guest domain kGuest created, a dom0 XenStore
// connection (the toolstack's) and the guest's platform (for the userspace frontends).
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "grant/sim_control.hpp"
#include "grant/sim_protocol.hpp"
#include "sim/hypervisor.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::test {

inline constexpr DomId kGuest = 1;

class SimHostTest : public ::testing::Test {
 protected:
  // `dir_prefix` names the temporary directory (/tmp/<prefix>-XXXXXX), so a leftover says whose.
  explicit SimHostTest(std::string dir_prefix) : dir_prefix_(std::move(dir_prefix)) {}

  void SetUp() override {
    std::string dir = "/tmp/" + dir_prefix_ + "-XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    hv_ = std::make_unique<sim::SimHypervisor>(dir_ / "sim");
    create_domain(kGuest);
    if (HasFatalFailure()) return;
    auto xs = xenbus::XenStore::open(hv_->platform(0).xenstore_path());
    ASSERT_TRUE(xs.has_value());
    dom0_xs_ = std::move(*xs);
    guest_platform_.emplace(hv_->platform(kGuest));
  }

  // A guest domain of 256 MiB.
  void create_domain(DomId domid) {
    auto ctl = grant::SimControl::connect(hv_->run_dir(), 0);
    ASSERT_TRUE(ctl.has_value());
    sim_protocol::Request req;
    req.op = sim_protocol::Op::CreateDomain;
    req.domid = domid;
    req.memory_bytes = 256ull << 20;
    ASSERT_TRUE(ctl->call(req).has_value());
  }

  // A subclass stops its daemons first, then calls this.
  void TearDown() override {
    hv_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::filesystem::path dir_;
  std::unique_ptr<sim::SimHypervisor> hv_;
  xenbus::XenStore dom0_xs_;
  std::optional<grant::Platform> guest_platform_;

 private:
  std::string dir_prefix_;
};

}  // namespace pvback::test
