// A simulated host for whole-device tests: the simulated hypervisor in-process, guest domain 1,
// a disk file, the vbd nodes the toolstack writes, and pvback-blk as a separate process (as it
// runs in production). The test process then acts as the guest through the userspace blkfront.
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "blkfront/blkfront.hpp"
#include "grant/platform.hpp"
#include "sandbox/cgroup.hpp"
#include "sim/hypervisor.hpp"
#include "sim/toolstack/vbd.hpp"
#include "tests/support/backend_process.hpp"
#include "tests/support/data_plane.hpp"
#include "tests/support/eventually.hpp"
#include "tests/support/fill_pattern.hpp"
#include "tests/support/sim_host.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::test {

inline constexpr std::uint32_t kDevid = 51712;

class VbdTest : public SimHostTest {
 protected:
  VbdTest() : SimHostTest("pvback-vbd") {}

  void SetUp() override {
    SimHostTest::SetUp();
    if (HasFatalFailure()) return;
    disk_ = dir_ / "disk.img";
    stats_ = dir_ / "stats.json";
  }

  void TearDown() override {
    // A control part SIGKILLed leaves its data plane serving for a successor: not across tests.
    for (pid_t pid : data_planes()) ::kill(pid, SIGKILL);
    if (const pid_t pid = data_plane_pid(); pid > 0 && comm_of(pid) == "pvback-blk-dp") ::kill(pid, SIGKILL);
    backend_.reset();
    // The data plane's control group, which a SIGKILLed control part leaves behind.
    grant::PlatformConfig config;
    config.kind = grant::PlatformConfig::Kind::Sim;
    config.sim_dir = hv_->run_dir().string();
    sandbox::remove_leaf("", config.host_tag() + "vbd-" + std::to_string(kGuest) + "-" + std::to_string(kDevid));
    SimHostTest::TearDown();
  }

  void make_disk(std::uint64_t bytes) {
    int fd = ::open(disk_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
    ::close(fd);
  }

  std::string backend_path() const { return sim::vbd_backend_path(0, kGuest, kDevid); }
  std::string frontend_path() const { return sim::vbd_frontend_path(kGuest, kDevid); }

  // Adds the vbd nodes and starts pvback-blk with `args`, without waiting for anything (a test
  // that expects the device to fail).
  void add_vbd_and_launch(std::vector<std::string> args = {}, sim::VbdSpec spec = {}) {
    spec.frontend_domid = kGuest;
    spec.devid = kDevid;
    if (spec.params.empty()) spec.params = disk_.string();
    ASSERT_EQ(sim::add_vbd(dom0_xs_, spec), 0);
    backend_ = std::make_unique<BackendProcess>(PVBACK_BLK, std::chrono::seconds(20));
    backend_->start(hv_->run_dir(), backend_path(), std::move(args), stats_.string(), backend_log_);
  }
  // The same, then waits for InitWait.
  void add_vbd_and_start(std::vector<std::string> args = {}, sim::VbdSpec spec = {}) {
    ASSERT_NO_FATAL_FAILURE(add_vbd_and_launch(std::move(args), std::move(spec)));
    ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateInitWait; })) << "backend never reached InitWait";
  }

  // A successor pvback-blk on the same device (after kill9(), or to replace a running one).
  void restart(std::vector<std::string> args, const std::string& binary = PVBACK_BLK) {
    backend_ = std::make_unique<BackendProcess>(binary, std::chrono::seconds(20));
    backend_->start(hv_->run_dir(), backend_path(), std::move(args), stats_.string(), backend_log_);
  }
  std::string log_text() {
    std::ifstream in(backend_log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  bool log_contains(const std::string& text) { return log_text().find(text) != std::string::npos; }
  // The pids of the backend's data-plane processes (its children).
  std::vector<pid_t> data_planes() const { return backend_ ? children_of(backend_->pid()) : std::vector<pid_t>{}; }
  // Kills the data plane alone (SIGKILL): its control part starts another. Returns its pid.
  pid_t kill9_data_plane() {
    auto pids = data_planes();
    EXPECT_EQ(pids.size(), 1u) << "not one data plane";
    if (pids.empty()) return -1;
    EXPECT_EQ(::kill(pids[0], SIGKILL), 0);
    return pids[0];
  }
  static bool process_gone(pid_t pid) { return test::process_gone(pid); }
  // The data plane's pid as the statistics file says (-1: none there yet).
  pid_t data_plane_pid() { return data_plane_pid_in(stats_text()); }
  // Kills the control part alone (SIGKILL): its data plane serves on, for a successor to adopt.
  void kill9_control_part() {
    ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
    auto status = backend_->wait_exit();
    ASSERT_TRUE(status.has_value());
  }
  // Kills the whole backend, data plane and control part, with SIGKILL (a crash of everything,
  // an OOM kill of the unit).
  void kill9() {
    const auto planes = data_planes();
    for (pid_t pid : planes) ::kill(pid, SIGKILL);
    ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
    // Dead, not merely signalled: a successor (or the test) may rely on its files being released.
    for (pid_t pid : planes) ASSERT_TRUE(eventually([&] { return process_gone(pid); })) << "data plane " << pid;
    auto status = backend_->wait_exit();
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << "status " << *status;
  }

  // The toolstack removes the vbd (from a thread of its own, as xl does), the frontend follows the
  // backend's Closing, and the backend exits.
  void unplug(blkfront::BlkFront& front) {
    std::thread toolstack([&] {
      auto xs = xenbus::XenStore::open(hv_->platform(0).xenstore_path());
      ASSERT_TRUE(xs.has_value());
      EXPECT_EQ(sim::remove_vbd(*xs, 0, kGuest, kDevid), 0);
    });
    EXPECT_TRUE(eventually([&] {
      front.process_xenstore();
      return !front.connected();
    }));
    toolstack.join();
  }

  int backend_state() {
    auto v = dom0_xs_.read_uint(backend_path() + "/state", 100);
    return v ? static_cast<int>(*v) : -1;
  }

  std::unique_ptr<blkfront::BlkFront> attach(const blkfront::Options& options = {}) {
    auto front = blkfront::BlkFront::attach(*guest_platform_, frontend_path(), options);
    EXPECT_TRUE(front.has_value()) << "attach: " << (front ? "" : std::strerror(front.error()));
    return front ? std::move(*front) : nullptr;
  }

  // A counter from the backend's statistics file ("total" section), or -1.
  long long stat(const std::string& key) {
    std::ifstream in(stats_);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const auto total = text.find("\"total\"");
    if (total == std::string::npos) return -1;
    const auto at = text.find("\"" + key + "\": ", total);
    if (at == std::string::npos) return -1;
    return std::atoll(text.c_str() + at + key.size() + 4);
  }
  std::string stats_text() {
    std::ifstream in(stats_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::filesystem::path disk_;
  std::filesystem::path stats_;
  std::filesystem::path backend_log_;  // set before starting: the backend's stderr goes there
  std::unique_ptr<BackendProcess> backend_;
};

// A XenStore node's value, or "<missing>".
inline std::string read_key(xenbus::XenStore& xs, const std::string& path) { return xs.read(path).value_or("<missing>"); }

}  // namespace pvback::test
