// A simulated host for whole-device tests of pvback-net: the simulated hypervisor in-process,
// guest domain 1, the vif nodes the toolstack writes, and pvback-net as a separate process (as it
// runs in production) with a DPDK vdev as its exit. The test process then acts as the guest,
// through the userspace netfront or by writing frontend keys by hand.
#pragma once
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "netfront/netfront.hpp"
#include "sim/hypervisor.hpp"
#include "sim/toolstack/vif.hpp"
#include "tests/support/backend_process.hpp"
#include "tests/support/eventually.hpp"
#include "tests/support/sim_host.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::test {

inline constexpr std::uint32_t kHandle = 0;

class VifTest : public SimHostTest {
 protected:
  VifTest() : SimHostTest("pvback-vif") {}

  void SetUp() override {
    SimHostTest::SetUp();
    if (HasFatalFailure()) return;
    stats_ = dir_ / "stats.json";
  }

  void TearDown() override {
    backend_.reset();
    SimHostTest::TearDown();
  }

  std::string backend_path() const { return sim::vif_backend_path(0, kGuest, kHandle); }
  std::string frontend_path() const { return sim::vif_frontend_path(kGuest, kHandle); }

  // The DPDK exit on a vdev, e.g. dpdk("net_ring", 3).
  static std::vector<std::string> dpdk(const std::string& driver, int n) {
    return {"--exit", "dpdk", "--dpdk-devargs", driver + std::to_string(n)};
  }

  // Adds the vif nodes, starts pvback-net with `args` and waits for InitWait.
  void add_vif_and_start(std::vector<std::string> args, sim::VifSpec spec = {}) {
    spec.frontend_domid = kGuest;
    spec.handle = kHandle;
    ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
    backend_ = std::make_unique<BackendProcess>(PVBACK_NET, std::chrono::seconds(30));
    backend_->start(hv_->run_dir(), backend_path(), std::move(args), stats_.string(), backend_log_);
    ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateInitWait; }, std::chrono::seconds(30)))
        << "backend never reached InitWait (state " << backend_state() << ")";
  }

  int backend_state() {
    auto v = dom0_xs_.read_uint(backend_path() + "/state", 100);
    return v ? static_cast<int>(*v) : -1;
  }
  std::string backend_key(const std::string& key) {
    return dom0_xs_.read(backend_path() + "/" + key).value_or("<missing>");
  }

  std::unique_ptr<netfront::NetFront> attach(netfront::Options options = {}) {
    options.connect_timeout = std::chrono::seconds(30);
    auto front = netfront::NetFront::attach(*guest_platform_, frontend_path(), options);
    EXPECT_TRUE(front.has_value()) << "attach: " << (front ? "" : std::strerror(front.error()));
    return front ? std::move(*front) : nullptr;
  }

  std::string stats_text() {
    std::ifstream in(stats_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // A counter from the statistics file's "total" section, or -1.
  long long stat(const std::string& key) {
    const std::string text = stats_text();
    const auto total = text.find("\"total\"");
    if (total == std::string::npos) return -1;
    const auto at = text.find("\"" + key + "\": ", total);
    if (at == std::string::npos) return -1;
    return std::atoll(text.c_str() + at + key.size() + 4);
  }

  // What the backend has logged so far (backend_log_).
  std::string log_text() const {
    std::ifstream in(backend_log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Starts pvback-net again with `args` on the same vif (after the last one was killed).
  void restart_backend(std::vector<std::string> args) {
    backend_ = std::make_unique<BackendProcess>(PVBACK_NET, std::chrono::seconds(30));
    backend_->start(hv_->run_dir(), backend_path(), std::move(args), stats_.string(), backend_log_);
  }

  std::filesystem::path stats_;
  std::filesystem::path backend_log_;  // set before starting: the backend's stderr goes there
  std::unique_ptr<BackendProcess> backend_;
};

}  // namespace pvback::test
