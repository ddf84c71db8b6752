// pvback-supervisor in its former mode (--process-per-device), and for the kinds the host daemon
// leaves to a backend process (a DPDK vif): spawning the real pvback-blk / pvback-net, with the test
// acting as toolstack and guest. Waits are bounded (eventually); the supervisor's own log lines mark
// its decisions. The host daemon serving devices in its own process: host_test.cpp.
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "tests/support/prometheus_text.hpp"
#include "tests/supervisor/supervisor_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;

TEST_F(SupervisorTest, VbdAddedAfterStartIsServedAndDoesIo) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << state(vbd_path());
  EXPECT_NE(child_for(vbd_path()), -1);
  auto front = attach();
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  const auto data = pattern(128 << 10, 1);
  ASSERT_EQ(front->write(64, data), 0);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(64, back), 0);
  EXPECT_TRUE(back == data);
  EXPECT_EQ(log_count("vbd 1/51712: started"), 1u);
}

// A backend process the supervisor starts writes its own textfile beside the supervisor's.
TEST_F(SupervisorTest, BackendProcessesGetThePrometheusTextfileDirectory) {
  const auto textfile_dir = dir_ / "textfile";
  start_supervisor({"--prometheus-textfile", textfile_dir.string()});
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << state(vbd_path());
  PromText p;
  ASSERT_TRUE(eventually([&] {
    p = parse_prometheus_file(textfile_dir / "pvback-vbd-1-51712.prom");
    return p.error.empty() && p.count("pvback_vbd_state") == 1;
  })) << p.error << log_text();
  EXPECT_EQ(p.sum("pvback_vbd_state", {{"domid", "1"}, {"devid", "51712"}}), XenbusStateInitWait);
}

TEST_F(SupervisorTest, VifAddedIsServedByPvbackNet) {
  start_supervisor();
  sim::VifSpec spec;
  spec.frontend_domid = kGuest;
  ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
  ASSERT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s)) << state(vif_path());
  EXPECT_EQ(children_of(supervisor_pid(), "pvback-net --backend-path " + vif_path()).size(), 1u);
  EXPECT_EQ(log_count("vif 1/0: started"), 1u);
}

TEST_F(SupervisorTest, OnlyVbdLeavesVifsAlone) {
  start_supervisor({"--only", "vbd"});
  sim::VifSpec spec;
  spec.frontend_domid = kGuest;
  ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  EXPECT_EQ(state(vif_path()), XenbusStateInitialising);
  EXPECT_EQ(log_count("vif 1/0"), 0u);
}

// A backend that dies without a goodbye is started again; with the rings attached where their
// responses stand the guest does not notice beyond a pause.
TEST_F(SupervisorTest, KilledBackendIsRestartedAndTheGuestKeepsWorking) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const auto data = pattern(256 << 10, 2);
  ASSERT_EQ(front->write(0, data), 0);

  const pid_t first = child_for(vbd_path());
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return log_count("killed by signal 9") == 1; })) << log_text();
  std::filesystem::remove(vbd_stats());
  pid_t second = -1;
  ASSERT_TRUE(eventually([&] {
    second = child_for(vbd_path());
    return second > 0 && second != first;
  })) << log_text();
  ASSERT_TRUE(eventually([&] { return read_text(vbd_stats()).find("\"state\": \"Connected\"") != std::string::npos; }))
      << read_text(vbd_stats());
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  EXPECT_TRUE(front->connected());
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(0, back), 0);
  EXPECT_TRUE(back == data);
  const auto more = pattern(64 << 10, 3);
  ASSERT_EQ(front->write(4096, more), 0);
  std::vector<std::byte> more_back(more.size());
  ASSERT_EQ(front->read(4096, more_back), 0);
  EXPECT_TRUE(more_back == more);
  EXPECT_EQ(log_count("vbd 1/51712: restarting in 200 ms"), 1u);
}

// A backend killed while its guest is between two connections (frontend and backend Closed, the
// device still online) is restarted: the guest's next connection needs it. Found by the soak
// (scripts/soak.sh): the supervisor took any exit with the device Closed for the end of the
// device, and the guest's next connection timed out.
TEST_F(SupervisorTest, BackendKilledBetweenTwoConnectionsIsRestarted) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  const auto data = pattern(64 << 10, 4);
  {
    auto front = attach();
    ASSERT_NE(front, nullptr);
    ASSERT_EQ(front->write(0, data), 0);
  }  // the guest disconnects
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateClosed; })) << log_text();
  const pid_t first = child_for(vbd_path());
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return log_count("killed by signal 9") == 1; })) << log_text();
  pid_t second = -1;
  ASSERT_TRUE(eventually([&] {
    second = child_for(vbd_path());
    return second > 0 && second != first;
  })) << log_text();
  EXPECT_EQ(log_count("device closed, not restarted"), 0u);
  auto front = attach();
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(0, back), 0);
  EXPECT_TRUE(back == data);
}

TEST_F(SupervisorTest, UnpluggedDeviceIsNotRestarted) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const pid_t child = child_for(vbd_path());
  ASSERT_GT(child, 0);
  std::thread toolstack([&] {
    auto xs = xenbus::XenStore::open(hv_->platform(0).xenstore_path());
    ASSERT_TRUE(xs.has_value());
    EXPECT_EQ(sim::remove_vbd(*xs, 0, kGuest, kDevid), 0);
  });
  ASSERT_TRUE(eventually([&] {
    front->process_xenstore();
    return !front->connected();
  }));
  toolstack.join();
  // The backend exits by itself once its device is gone; the supervisor only takes note.
  ASSERT_TRUE(eventually([&] { return log_text().find("(pid " + std::to_string(child) + ") exited with status 0") !=
                                      std::string::npos; }))
      << log_text();
  ASSERT_TRUE(eventually([&] {
    const std::string text = log_text();
    return text.find("vbd 1/51712: device removed") != std::string::npos ||
           text.find("vbd 1/51712: device closed, not restarted") != std::string::npos;
  })) << log_text();
  EXPECT_EQ(dom0_xs_.exists(vbd_path()).value_or(true), false);
  // A later event (another device) makes it rescan: the unplugged one stays unserved.
  add_vbd(51728);
  ASSERT_TRUE(eventually([&] { return state(vbd_path(51728)) == XenbusStateInitWait; }));
  EXPECT_EQ(log_count("vbd 1/51712: started"), 1u);
  EXPECT_EQ(log_count("restarting"), 0u);
  EXPECT_EQ(children_of(supervisor_pid(), "pvback-blk").size(), 1u);
}

TEST_F(SupervisorTest, SigtermStopsEveryBackendAndExitsZero) {
  start_supervisor();
  add_vbd();
  sim::VifSpec spec;
  spec.frontend_domid = kGuest;
  ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  ASSERT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s));
  const auto children = children_of(supervisor_pid());
  ASSERT_EQ(children.size(), 2u);
  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  auto status = wait_supervisor_exit();
  ASSERT_TRUE(status.has_value()) << log_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  for (pid_t c : children) EXPECT_TRUE(::kill(c, 0) != 0 && errno == ESRCH) << "child " << c << " still exists";
  EXPECT_EQ(log_count("exited with status 0"), 2u) << log_text();
  EXPECT_EQ(log_count("killing it"), 0u);
}

// Under systemd (Type=notify, WatchdogSec=): READY=1 once the directories are watched, WATCHDOG=1
// every half WATCHDOG_USEC from the main loop, STOPPING=1 on SIGTERM. The backends it starts do not
// inherit NOTIFY_SOCKET (systemd would refuse, and log, a notification from a process not the
// unit's main one).
TEST_F(SupervisorTest, NotifiesTheServiceManagerReadyWatchdogAndStopping) {
  NotifyListener manager(dir_ / "notify");
  ASSERT_TRUE(manager.bound());
  supervisor_env_ = {"NOTIFY_SOCKET=" + manager.path().string(), "WATCHDOG_USEC=300000"};
  start_supervisor();
  ASSERT_TRUE(manager.wait_for("READY=1")) << log_text();
  ASSERT_TRUE(manager.wait_for("WATCHDOG=1", 4, 5s)) << log_text();  // every 150 ms, from the loop
  EXPECT_EQ(manager.received().front().substr(0, 8), "READY=1\n");  // READY before the first ping
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  const pid_t backend = child_for(vbd_path());
  ASSERT_GT(backend, 0);
  const std::string environment = read_text("/proc/" + std::to_string(backend) + "/environ");
  EXPECT_EQ(environment.find("NOTIFY_SOCKET="), std::string::npos);
  EXPECT_EQ(environment.find("WATCHDOG_USEC="), std::string::npos);
  EXPECT_EQ(manager.count("READY=1"), 1u);  // the backend sent nothing
  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  EXPECT_EQ(manager.count("STOPPING=1"), 1u);
}

// pvback-blk on its own, as the pvback-blk@ unit runs it: READY=1 once its device's watches are set.
TEST_F(SupervisorTest, APerDeviceBackendNotifiesReadyAndStopping) {
  NotifyListener manager(dir_ / "notify");
  ASSERT_TRUE(manager.bound());
  add_vbd();
  BackendProcess blk(PVBACK_BLK, 10s);
  blk.add_environment("NOTIFY_SOCKET=" + manager.path().string());
  blk.add_environment("WATCHDOG_USEC=200000");
  blk.start(hv_->run_dir(), vbd_path(), {}, (dir_ / "vbd.json").string(), log_);
  ASSERT_TRUE(manager.wait_for("READY=1")) << log_text();
  EXPECT_EQ(state(vbd_path()), XenbusStateInitWait);  // watches set, InitWait written: ready
  ASSERT_TRUE(manager.wait_for("WATCHDOG=1", 3, 5s)) << log_text();
  blk.terminate();
  ASSERT_TRUE(blk.wait_exit().has_value());
  EXPECT_EQ(manager.count("STOPPING=1"), 1u);
}

// The XenStore server dies (issue 14). The supervisor notices by itself (libxenstore's pollable
// fd never reports it), stops its backends as on SIGTERM and exits with status 1, so that its
// service manager (Restart=on-failure) starts it again; it restarts no backend meanwhile.
TEST_F(SupervisorTest, LostXenStoreConnectionStopsTheBackendsAndExitsWithStatus1) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  const auto children = children_of(supervisor_pid());
  ASSERT_EQ(children.size(), 1u);
  hv_->stop_xenstore();
  auto status = supervisor_->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "pvback-supervisor still runs 10 s after the XenStore server died\n"
                                  << log_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status;
  EXPECT_EQ(log_count("<3>pvback-supervisor: lost the XenStore connection"), 1u) << log_text();
  for (pid_t c : children) EXPECT_TRUE(::kill(c, 0) != 0 && errno == ESRCH) << "child " << c << " still exists";
  EXPECT_EQ(log_count("vbd 1/51712: pvback-blk (pid " + std::to_string(children[0]) + ")"), 1u) << log_text();
  EXPECT_EQ(log_count("restarting"), 0u) << log_text();
  EXPECT_EQ(log_count("vbd 1/51712: started"), 1u) << log_text();
  EXPECT_EQ(log_count("killing it"), 0u) << log_text();
}

// Restarting the supervisor under a connected guest: its backends stop with SIGTERM (leaving the
// device Connected), the new supervisor finds the device at startup and its backend resumes.
TEST_F(SupervisorTest, RestartedSupervisorReattachesToAConnectedGuest) {
  add_vbd();
  start_supervisor();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const auto data = pattern(64 << 10, 4);
  ASSERT_EQ(front->write(8, data), 0);
  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  auto status = wait_supervisor_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  std::filesystem::remove(vbd_stats());

  start_supervisor();
  ASSERT_TRUE(eventually([&] { return read_text(vbd_stats()).find("\"state\": \"Connected\"") != std::string::npos; }))
      << log_text();
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(8, back), 0);
  EXPECT_TRUE(back == data);
  ASSERT_EQ(front->write(1024, data), 0);
}

TEST_F(SupervisorTest, BogusEntriesAreIgnored) {
  for (const char* bogus : {"/local/domain/0/backend/vbd/abc/51712/state", "/local/domain/0/backend/vbd/007/51712/state",
                            "/local/domain/0/backend/vbd/40000/51712/state", "/local/domain/0/backend/vbd/1/xvda/state",
                            "/local/domain/0/backend/vbd/1/0512/state", "/local/domain/0/backend/vif/-1/0/state"})
    ASSERT_EQ(dom0_xs_.write(bogus, "1"), 0) << bogus;
  start_supervisor();
  add_vbd();  // served as usual next to the junk
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  EXPECT_TRUE(supervisor_running());
  EXPECT_EQ(children_of(supervisor_pid()).size(), 1u);
  const std::string text = log_text();
  for (const char* what : {"backend/vbd/abc: not a domain id", "backend/vbd/007: not a domain id",
                           "backend/vbd/40000: not a domain id", "backend/vbd/1/xvda: not a device id",
                           "backend/vbd/1/0512: not a device id", "backend/vif/-1: not a domain id"})
    EXPECT_NE(text.find(what), std::string::npos) << what << "\n" << text;
  // Each is logged once, not on every rescan.
  EXPECT_EQ(log_count("ignoring /local/domain/0/backend/vbd/abc"), 1u);
}

TEST_F(SupervisorTest, MaxDevicesCapsTheBackends) {
  start_supervisor({"--max-devices", "1"});
  add_vbd(51712);
  ASSERT_TRUE(eventually([&] { return state(vbd_path(51712)) == XenbusStateInitWait; }));
  add_vbd(51728);
  ASSERT_TRUE(eventually([&] { return log_text().find("--max-devices 1 reached") != std::string::npos; }))
      << log_text();
  EXPECT_EQ(state(vbd_path(51728)), XenbusStateInitialising);
  EXPECT_EQ(children_of(supervisor_pid()).size(), 1u);
  EXPECT_TRUE(supervisor_running());
}

}  // namespace
}  // namespace pvback::test
