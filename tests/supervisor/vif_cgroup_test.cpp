// A vif's data plane in its control group when pvback-supervisor runs it (plane/cgroup_leaf.hpp):
// the host daemon gives it the leaf and the limits from --net-arg, as it does a vbd's; and the
// leaf of a vif whose pvback-net died and is not restarted goes with the data plane it left
// (Supervisor::stop_orphan). Part of supervisor_host_tests (root: the TAPs live in the binary's
// own network namespace, main in host_test.cpp).
#include <signal.h>

#include <thread>

#include "grant/platform.hpp"
#include "netfront/netfront.hpp"
#include "sandbox/cgroup.hpp"
#include "tests/support/cgroup.hpp"
#include "tests/supervisor/supervisor_fixture.hpp"

namespace pvback::test {
namespace {

// Exited (a zombie of whoever reaps orphans counts as gone).
bool gone(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'Z' || stat[close + 2] == 'X';
}

class SupervisedVifTest : public SupervisorTest {
 protected:
  void TearDown() override {
    front_.reset();
    grant::PlatformConfig config;
    config.kind = grant::PlatformConfig::Kind::Sim;
    config.sim_dir = hv_->run_dir().string();
    SupervisorTest::TearDown();
    // A data plane a test left (it outlives a SIGKILLed control part), then its control group.
    if (dp_ > 0 && !gone(dp_) && read_text("/proc/" + std::to_string(dp_) + "/comm") == "pvback-net-dp\n")
      ::kill(dp_, SIGKILL);
    sandbox::remove_leaf("", config.host_tag() + "vif-1-0");
  }

  std::filesystem::path vif_stats() const { return hv_->run_dir() / "stats" / "vif-1-0.json"; }

  // The vif added, served, a netfront of one queue connected to it; its data plane's pid.
  pid_t add_vif_and_connect(const std::string& data_plane_needle) {
    sim::VifSpec spec;
    spec.frontend_domid = kGuest;
    EXPECT_EQ(sim::add_vif(dom0_xs_, spec), 0);
    EXPECT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s)) << log_text();
    netfront::Options o;
    o.max_queues = 1;
    o.close_timeout = 200ms;
    auto front = netfront::NetFront::attach(*guest_platform_, sim::vif_frontend_path(kGuest, 0), o);
    EXPECT_TRUE(front.has_value()) << "attach: " << (front ? "" : std::strerror(front.error())) << log_text();
    if (!front) return -1;
    front_ = std::move(*front);
    pid_t dp = -1;
    EXPECT_TRUE(eventually([&] {
      const auto planes = data_planes(data_plane_needle);
      dp = planes.size() == 1 ? planes[0] : -1;
      return dp > 0 && !cgroup_dirs_in(read_text(vif_stats())).empty();
    })) << read_text(vif_stats()) << log_text();
    dp_ = dp;
    return dp;
  }

  // The vif's data planes: children of the supervisor (host daemon) or of its pvback-net.
  std::vector<pid_t> data_planes(const std::string& needle) {
    auto planes = children_of(supervisor_pid(), "pvback-net --data-plane");
    for (pid_t net : children_of(supervisor_pid(), needle))
      for (pid_t dp : children_of(net, "pvback-net --data-plane")) planes.push_back(dp);
    return planes;
  }

  std::unique_ptr<netfront::NetFront> front_;
  pid_t dp_ = -1;
};

class HostVifCgroupTest : public SupervisedVifTest {
 protected:
  std::vector<std::string> mode_args() const override {
    return {"--net-arg", "--stats-interval-ms", "--net-arg", "50", "--net-arg", "--data-plane-tasks-max",
            "--net-arg", "44"};
  }
};

// The host daemon serves the vif in its own process and gives its data plane a leaf of its own with
// the limits its --net-arg set (and the default memory limit of one queue); the leaf goes with the vif.
TEST_F(HostVifCgroupTest, AVifsDataPlaneRunsInAControlGroupOfItsOwn) {
  start_supervisor();
  const pid_t dp = add_vif_and_connect("--backend-path");
  ASSERT_GT(dp, 0);
  EXPECT_TRUE(children_of(supervisor_pid(), "--backend-path").empty()) << "not served by the host daemon";
#if defined(__SANITIZE_ADDRESS__)
  const std::optional<std::uint64_t> memory;
#else
  const std::optional<std::uint64_t> memory = 64u << 20;  // 32 MiB + 32 MiB for its one queue
#endif
  ASSERT_NO_FATAL_FAILURE(expect_limits(dp, memory, 44, std::nullopt));
  const auto dirs = cgroup_dirs_in(read_text(vif_stats()));
  for (const auto& dir : dirs) EXPECT_TRUE(dir.ends_with("vif-1-0")) << dir;
  // Unplugged as libxl does it: the backend goes Closing, the guest closes its end (as Linux
  // netfront does), the backend follows to Closed, then the nodes go.
  std::thread toolstack([&] {
    auto xs = xenbus::XenStore::open(hv_->platform(0).xenstore_path());
    ASSERT_TRUE(xs.has_value());
    EXPECT_EQ(sim::remove_vif(*xs, 0, kGuest, 0, 30000), 0);
  });
  EXPECT_TRUE(eventually([&] {
    front_->process_xenstore();
    return !front_->connected();
  }, 30s));
  front_->detach();
  toolstack.join();
  EXPECT_TRUE(eventually([&] { return all_gone(dirs); })) << dirs.front() << " outlived the vif\n" << log_text();
  EXPECT_TRUE(eventually([&] { return data_planes("--backend-path").empty(); }));
}

class PerDeviceVifCgroupTest : public SupervisedVifTest {
 protected:
  // A pvback-net per device, on the TAP exit; one that died waits long for its restart.
  std::vector<std::string> mode_args() const override {
    return {"--process-per-device", "--net-arg", "--stats-interval-ms", "--net-arg", "50"};
  }
};

// pvback-net SIGKILLed after its vif was unplugged (it was stopped and could not follow): the
// supervisor, which will not restart it, stops the data plane it left serving and removes the leaf
// it had made for it.
TEST_F(PerDeviceVifCgroupTest, AVifGoneWithItsBackendKilledLosesItsGroup) {
  start_supervisor();
  const pid_t dp = add_vif_and_connect("pvback-net --backend-path");
  ASSERT_GT(dp, 0);
  const pid_t net = child_for(vif_path());
  ASSERT_GT(net, 0);
  const auto dirs = cgroup_dirs_in(read_text(vif_stats()));
  ASSERT_EQ(::kill(net, SIGSTOP), 0);
  ASSERT_EQ(sim::remove_vif(dom0_xs_, 0, kGuest, 0, 200), 0);
  ASSERT_EQ(::kill(net, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return log_text().find("vif 1/0: device removed, not restarted") != std::string::npos; }))
      << log_text();
  EXPECT_TRUE(eventually([&] { return gone(dp); })) << "the orphaned data plane was not stopped";
  EXPECT_TRUE(eventually([&] { return all_gone(dirs); })) << dirs.front() << " outlived the vif\n" << log_text();
}

// pvback-net SIGKILLed and its vif unplugged while it waits for its restart: the supervisor forgets
// the device, and first stops the data plane it left and removes its leaf.
TEST_F(PerDeviceVifCgroupTest, AVifUnpluggedWhileItsBackendWaitsForARestartLosesItsGroup) {
  start_supervisor({"--restart-delay-ms", "30000"});
  const pid_t dp = add_vif_and_connect("pvback-net --backend-path");
  ASSERT_GT(dp, 0);
  const pid_t net = child_for(vif_path());
  ASSERT_GT(net, 0);
  const auto dirs = cgroup_dirs_in(read_text(vif_stats()));
  ASSERT_EQ(::kill(net, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return log_text().find("vif 1/0: restarting in 30000 ms") != std::string::npos; }))
      << log_text();
  EXPECT_FALSE(gone(dp)) << "the data plane died with its control part";
  ASSERT_EQ(sim::remove_vif(dom0_xs_, 0, kGuest, 0, 200), 0);
  ASSERT_TRUE(eventually([&] { return log_text().find("vif 1/0: device removed") != std::string::npos; }))
      << log_text();
  EXPECT_TRUE(eventually([&] { return gone(dp); })) << "the orphaned data plane was not stopped";
  EXPECT_TRUE(eventually([&] { return all_gone(dirs); })) << dirs.front() << " outlived the vif\n" << log_text();
}

}  // namespace
}  // namespace pvback::test
