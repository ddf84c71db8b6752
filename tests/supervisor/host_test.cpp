// pvback-supervisor as the host's control plane (issue 14): one process holding the only XenStore
// connection, every device's XenbusState machine and driver, the data planes as its children, and
// the control socket. The test is the toolstack and, through the userspace blkfront, the guests.
// The vif is a TAP, in a network namespace of this test's own (main below).
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <cstdlib>
#include <thread>

#include "tests/support/confinement.hpp"
#include "tests/support/data_plane.hpp"
#include "tests/support/own_net_namespace.hpp"
#include "tests/support/prometheus_text.hpp"
#include "tests/supervisor/host_fixture.hpp"

namespace pvback::test {
namespace {

TEST_F(HostTest, TwoGuestsVbdsAndAVifAreServedByOneProcess) {
  start_supervisor();
  add_vbd();
  add_guest2_vbd();
  sim::VifSpec spec;
  spec.frontend_domid = kGuest;
  ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
  const std::string vbd2 = sim::vbd_backend_path(0, kGuest2, kDevid);
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  ASSERT_TRUE(eventually([&] { return state(vbd2) == XenbusStateInitWait; })) << log_text();
  ASSERT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s)) << log_text();
  grant::Platform guest2(hv_->platform(kGuest2));
  auto front1 = attach();
  auto front2 = attach_guest(guest2, kGuest2);
  ASSERT_NE(front1, nullptr);
  ASSERT_NE(front2, nullptr);
  write_and_verify(*front1, 1);
  write_and_verify(*front2, 2);
  // No control process per device: the supervisor's children are the two vbds' data planes.
  EXPECT_TRUE(children_of(supervisor_pid(), "--backend-path").empty());
  EXPECT_EQ(children_of(supervisor_pid(), "pvback-blk --data-plane").size(), 2u);
  // The host's one privileged XenStore connection is the supervisor's.
  EXPECT_EQ(xenstore_clients(), std::vector<pid_t>{supervisor_pid()});
  EXPECT_EQ(log_count("started in this process"), 3u) << log_text();
}

TEST_F(HostTest, ControlSocketListsAndShowsStatisticsAndRefusesNonsense) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  write_and_verify(*front, 3);
  const std::string list = control("1 list");
  EXPECT_NE(list.find("\"ok\": true"), std::string::npos) << list;
  EXPECT_NE(list.find("\"device\": \"vbd-1-51712\""), std::string::npos) << list;
  EXPECT_NE(list.find("\"served_by\": \"host\", \"state\": 4"), std::string::npos) << list;
  EXPECT_NE(list.find("\"storage\": \"" + disk_.string() + "\""), std::string::npos) << list;
  EXPECT_EQ(list.find("\"data_plane_pid\": -1"), std::string::npos) << list;
  const std::string stats = control("1 stats vbd-1-51712");
  EXPECT_NE(stats.find("\"ok\": true, \"stats\": {"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"queues\""), std::string::npos) << stats;
  for (const char* bad : {"hello", "1", "2 list", "1 stats", "1 stats vbd-9-9", "1 list x", "1 \x01"}) {
    const std::string answer = control(bad);
    EXPECT_NE(answer.find("\"ok\": false, \"error\": "), std::string::npos) << bad << ": " << answer;
  }
  EXPECT_TRUE(supervisor_running());
}

// --prometheus-textfile: one file, <dir>/pvback.prom, for every device the host daemon serves,
// rewritten at the statistics period, gone when the daemon stops.
TEST_F(HostTest, ThePrometheusTextfileHoldsTheDevicesServedInTheHostDaemon) {
  const auto textfile_dir = dir_ / "textfile";
  const auto prom = textfile_dir / "pvback.prom";
  start_supervisor({"--prometheus-textfile", textfile_dir.string()});
  add_vbd();
  add_guest2_vbd();
  sim::VifSpec vif;
  vif.frontend_domid = kGuest;
  ASSERT_EQ(sim::add_vif(dom0_xs_, vif), 0);
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  ASSERT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s)) << log_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  write_and_verify(*front, 4);  // 64 KiB written and read back at sector 128
  PromText p;
  ASSERT_TRUE(eventually([&] {
    p = parse_prometheus_file(prom);
    // Every counter of the last answer (the read's), which the file may show a period apart.
    return p.error.empty() && p.sum("pvback_vbd_bytes_total", {{"op", "read"}, {"domid", "1"}}) == 65536 &&
           p.sum("pvback_vbd_kernel_rd_sect_total", {{"domid", "1"}}) == 128;
  })) << p.error;
  EXPECT_EQ(p.sum("pvback_devices", {{"kind", "vbd"}, {"served_by", "host"}}), 2);
  EXPECT_EQ(p.sum("pvback_devices", {{"kind", "vif"}, {"served_by", "host"}}), 1);
  EXPECT_EQ(p.sum("pvback_vif_state", {{"domid", "1"}, {"handle", "0"}}), XenbusStateInitWait);
  EXPECT_EQ(p.sum("pvback_vif_packets_total"), 0);  // its frontend never connected: queue="past" alone
  EXPECT_GE(p.count("pvback_vif_packets_total"), 2u);
  EXPECT_EQ(p.sum("pvback_vbd_bytes_total", {{"op", "write"}, {"domid", "1"}, {"devid", "51712"}}), 65536);
  EXPECT_EQ(p.sum("pvback_vbd_kernel_wr_sect_total", {{"domid", "1"}}), 128);
  EXPECT_EQ(p.sum("pvback_vbd_kernel_rd_sect_total", {{"domid", "1"}}), 128);
  EXPECT_EQ(p.sum("pvback_vbd_state", {{"domid", "1"}}), XenbusStateConnected);
  // Guest 2's vbd is there too, not connected.
  EXPECT_EQ(p.sum("pvback_vbd_queues", {{"domid", "2"}}), 0);
  EXPECT_EQ(p.count("pvback_vbd_state"), 2u);
  if (const auto checked = promtool_check(prom)) {
    EXPECT_EQ(checked->first, 0) << checked->second;
  }
  // No file per device from the host daemon's own devices.
  EXPECT_FALSE(std::filesystem::exists(textfile_dir / "pvback-vbd-1-51712.prom"));
  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  EXPECT_FALSE(std::filesystem::exists(prom));
}

TEST_F(HostTest, ARemovedDeviceGoesWhileAnotherKeepsServing) {
  start_supervisor();
  TwoGuests g;
  ASSERT_NO_FATAL_FAILURE(attach_two_guests(g));
  auto& front1 = g.front1;
  auto& front2 = g.front2;
  std::thread toolstack([&] {
    auto xs = xenbus::XenStore::open(hv_->platform(0).xenstore_path());
    ASSERT_TRUE(xs.has_value());
    EXPECT_EQ(sim::remove_vbd(*xs, 0, kGuest, kDevid), 0);
  });
  ASSERT_TRUE(eventually([&] {
    front1->process_xenstore();
    return !front1->connected();
  }));
  toolstack.join();
  // The device ends Closed and offline (libxl's unplug) and its nodes then go: the host daemon
  // sees the first ("device closed") or, had it looked later, only the second ("device removed");
  // either way it is forgotten once the nodes are gone.
  ASSERT_TRUE(eventually([&] { return control("1 list").find("vbd-1-51712") == std::string::npos; })) << log_text();
  const std::string log = log_text();
  EXPECT_TRUE(log.find("vbd 1/51712: device removed, not restarted") != std::string::npos ||
              log.find("vbd 1/51712: device closed, not restarted") != std::string::npos)
      << log;
  write_and_verify(*front2, 4);
  EXPECT_TRUE(eventually([&] { return children_of(supervisor_pid(), "pvback-blk --data-plane").size() == 1u; }));
  EXPECT_TRUE(supervisor_running());
}

// SIGKILL of the control plane: the data plane keeps serving with nobody above it, and the next
// supervisor adopts that very process.
TEST_F(HostTest, KilledHostDaemonLeavesTheDataPlaneServingAndItsSuccessorAdoptsIt) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  write_and_verify(*front, 5);
  const auto planes = children_of(supervisor_pid(), "pvback-blk --data-plane");
  ASSERT_EQ(planes.size(), 1u);
  ASSERT_EQ(::kill(supervisor_pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  write_and_verify(*front, 6);  // no control plane at all
  EXPECT_EQ(::kill(planes[0], 0), 0);
  start_supervisor();
  ASSERT_TRUE(eventually([&] { return control("1 list").find("\"data_plane_pid\": " + std::to_string(planes[0])) !=
                                      std::string::npos; }))
      << control("1 list") << log_text();
  write_and_verify(*front, 7);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
}

// An orderly stop (SIGTERM: `systemctl restart`, a package upgrade) with --on-stop leave, which is
// what auto does for data planes in systemd scopes of their own: the data planes serve on through
// the gap, and the next supervisor adopts those very processes. Without it (auto outside systemd,
// or stop) the same SIGTERM stops them, and the next supervisor's new data planes resume the rings.
TEST_F(HostTest, SigtermWithOnStopLeaveHandsTheRunningDataPlanesToTheNextSupervisor) {
  const std::vector<std::string> leave = {"--blk-arg", "--on-stop", "--blk-arg", "leave"};
  start_supervisor(leave);
  TwoGuests g;
  ASSERT_NO_FATAL_FAILURE(attach_two_guests(g));
  auto& front1 = g.front1;
  auto& front2 = g.front2;
  const std::string vbd2 = sim::vbd_backend_path(0, kGuest2, kDevid);
  write_and_verify(*front1, 1);
  write_and_verify(*front2, 2);
  const pid_t plane1 = listed_data_plane_pid("vbd-1-51712");
  const pid_t plane2 = listed_data_plane_pid("vbd-2-51712");
  ASSERT_GT(plane1, 0);
  ASSERT_GT(plane2, 0);
  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  auto status = wait_supervisor_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_EQ(log_count("leaving the data plane"), 2u) << log_text();
  write_and_verify(*front1, 3);  // no control plane at all
  write_and_verify(*front2, 4);
  start_supervisor();  // adopting needs no option
  ASSERT_TRUE(eventually([&] {
    const std::string list = control("1 list");
    return list.find("\"data_plane_pid\": " + std::to_string(plane1)) != std::string::npos &&
           list.find("\"data_plane_pid\": " + std::to_string(plane2)) != std::string::npos;
  })) << control("1 list") << log_text();
  write_and_verify(*front1, 5);
  write_and_verify(*front2, 6);
  EXPECT_EQ(front1->queue(0).error(), 0);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  EXPECT_EQ(state(vbd2), XenbusStateConnected);

  // The default outside systemd (auto, no scope): the same SIGTERM stops the data planes, and the
  // next supervisor starts new ones, which resume the rings.
  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  EXPECT_TRUE(eventually([&] { return process_gone(plane1) && process_gone(plane2); }));
  start_supervisor();
  write_and_verify(*front1, 7);
  const pid_t next1 = listed_data_plane_pid("vbd-1-51712");
  EXPECT_GT(next1, 0);
  EXPECT_NE(next1, plane1);
}

// A qcow2 image in the host daemon: the device's control part and its qemu-storage-daemon in the
// host daemon, its rings in a confined data plane like a file's; no pvback-blk process for it.
// The storage daemon killed under the guest's writes restarts that device's data plane alone,
// with a new daemon, and the writes are answered once, successfully; the other guest's file vbd
// and the host daemon go on as they were.
TEST_F(HostTest, AnImageIsServedInTheHostDaemonAndItsStorageDaemonsDeathRestartsOnlyItsDataPlane) {
  const auto image = dir_ / "disk2.qcow2";
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 " + image.string() + " 8M").c_str()), 0);
  start_supervisor();
  TwoGuests g;
  ASSERT_NO_FATAL_FAILURE(attach_two_guests(g, "qcow2:" + image.string()));
  auto& front1 = g.front1;
  auto& front2 = g.front2;
  const std::string vbd2 = sim::vbd_backend_path(0, kGuest2, kDevid);
  write_and_verify(*front1, 8);
  write_and_verify(*front2, 9);
  EXPECT_TRUE(children_of(supervisor_pid(), "--backend-path").empty()) << "a pvback-blk process serves the image";
  EXPECT_EQ(xenstore_clients(), std::vector<pid_t>{supervisor_pid()});
  const pid_t file_plane = listed_data_plane_pid("vbd-1-51712");
  const pid_t image_plane = listed_data_plane_pid("vbd-2-51712");
  ASSERT_GT(file_plane, 0) << control("1 list");
  ASSERT_GT(image_plane, 0) << control("1 list");
  if (::geteuid() == 0) {
    ASSERT_NO_FATAL_FAILURE(expect_confined(image_plane, kGuest2));
  }
  const auto daemons = children_of(supervisor_pid(), "qemu-storage-daemon");
  ASSERT_EQ(daemons.size(), 1u);
  const pid_t host = supervisor_pid();

  ASSERT_EQ(::kill(daemons[0], SIGKILL), 0);
  write_and_verify(*front2, 10);  // meets the dead daemon, and is answered by the next data plane
  write_and_verify(*front1, 11);
  EXPECT_EQ(front2->queue(0).error(), 0);
  EXPECT_EQ(supervisor_pid(), host);
  EXPECT_TRUE(supervisor_running());
  EXPECT_EQ(listed_data_plane_pid("vbd-1-51712"), file_plane);
  EXPECT_NE(listed_data_plane_pid("vbd-2-51712"), image_plane);
  const auto now = children_of(supervisor_pid(), "qemu-storage-daemon");
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], daemons[0]);
  EXPECT_NE(log_text().find("its storage is gone"), std::string::npos) << log_text();
  EXPECT_EQ(state(vbd2), XenbusStateConnected);
}

TEST_F(HostTest, LostXenStoreConnectionEndsTheHostDaemonWithStatus1) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; }));
  hv_->stop_xenstore();
  auto status = supervisor_->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "pvback-supervisor still runs 10 s after the XenStore server died\n" << log_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status;
}

// Coexistence on Xen 4.19+: with --vbd-dir vbd3 the host daemon serves the disks libxl wrote under
// backend/vbd3 (an xl disk spec with backendtype=tap) and leaves backend/vbd to xen-blkback: it
// never touches a vbd there, not even its state.
TEST_F(HostTest, WithVbdDirVbd3OnlyTheMarkedDisksAreServedAndBackendVbdIsLeftAlone) {
  start_supervisor({"--vbd-dir", "vbd3"});
  add_vbd();  // backend/vbd: the kernel's
  constexpr std::uint32_t kXvdb = 51728;
  const auto disk2 = dir_ / "disk2.img";
  std::filesystem::copy_file(disk_, disk2);
  sim::VbdSpec spec;
  spec.frontend_domid = kGuest;
  spec.devid = kXvdb;
  spec.dev_name = "xvdb";
  spec.params = "raw:" + disk2.string();  // as libxl 4.19 writes a vbd3's params
  spec.backend_kind = "vbd3";
  ASSERT_EQ(sim::add_vbd(dom0_xs_, spec), 0);
  const std::string vbd3 = sim::vbd_backend_path(0, kGuest, kXvdb, "vbd3");
  ASSERT_TRUE(eventually([&] { return state(vbd3) == XenbusStateInitWait; })) << log_text();
  blkfront::Options options;
  options.close_timeout = 2s;
  auto front = blkfront::BlkFront::attach(*guest_platform_, sim::vbd_frontend_path(kGuest, kXvdb), options);
  ASSERT_TRUE(front.has_value()) << log_text();
  write_and_verify(**front, 1);
  EXPECT_EQ(state(vbd3), XenbusStateConnected);
  const std::string list = control("1 list");
  EXPECT_NE(list.find("\"device\": \"vbd-1-51728\""), std::string::npos) << list;
  EXPECT_EQ(list.find("vbd-1-51712"), std::string::npos) << list;
  // xentop's route to a vbd3 disk (Xen 4.19+'s libxenstat): kthread-pid, then tapdisk3's binary
  // statistics file under /dev/shm/td3-<pid>, with the kernel's counters of the write and the read.
  const std::string pid = dom0_xs_.read(vbd3 + "/kthread-pid").value_or("");
  EXPECT_EQ(pid, std::to_string(supervisor_pid()));
  const std::string td3 = "/dev/shm/td3-" + pid + "/vbd-1-51728";
  std::array<std::uint64_t, 12> stats{};  // version and pad, then the eleven counters
  ASSERT_TRUE(eventually([&] {
    const std::string bytes = read_text(td3);
    if (bytes.size() != sizeof stats) return false;
    std::memcpy(stats.data(), bytes.data(), sizeof stats);
    return stats[2] >= 1 && stats[6] >= 1;  // read_reqs_submitted, write_reqs_submitted
  })) << td3 << " " << log_text();
  EXPECT_EQ(stats[0] & 0xffffffff, 1u);  // version
  EXPECT_EQ(stats[1], 0u);               // oo_reqs
  EXPECT_EQ(stats[2], 1u);               // read_reqs_submitted
  EXPECT_EQ(stats[4], 128u);             // read_sectors: 64 KiB
  EXPECT_EQ(stats[6], 1u);               // write_reqs_submitted
  EXPECT_EQ(stats[8], 128u);             // write_sectors
  // A successor replaces a dead predecessor's file with its own.
  ASSERT_EQ(::kill(supervisor_pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  start_supervisor({"--vbd-dir", "vbd3"});
  const std::string pid2 = std::to_string(supervisor_pid());
  ASSERT_TRUE(eventually([&] { return dom0_xs_.read(vbd3 + "/kthread-pid").value_or("") == pid2; })) << log_text();
  EXPECT_TRUE(eventually([&] { return read_text("/dev/shm/td3-" + pid2 + "/vbd-1-51728").size() == sizeof stats; }));
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/td3-" + pid)) << "the dead one's directory";
  write_and_verify(**front, 2);
  front->reset();
  supervisor_.reset();  // SIGKILL: its file is the test's to remove
  std::filesystem::remove_all("/dev/shm/td3-" + pid2);
  // backend/vbd/1/51712 was seen by no one: still as the toolstack wrote it.
  EXPECT_EQ(state(vbd_path()), XenbusStateInitialising);
  EXPECT_EQ(log_text().find("vbd 1/51712"), std::string::npos) << log_text();
  EXPECT_NE(log_text().find("backend/vbd3"), std::string::npos) << log_text();
}

// A package upgrade under a running host daemon: the data-plane binary on disk is replaced by one
// of another protocol version. A data plane that dies is started again from the binary the host
// daemon was started with (pinned), not the new file; pvbackctl restart onto the new file is
// refused, saying why, and the data plane keeps serving; once the file speaks the daemon's
// protocol again, restart moves the device onto it.
TEST_F(HostTest, AnUpgradedBinaryOfAnotherVersionIsNeitherRestartedOntoNorRunAfterACrash) {
  const auto bin = dir_ / "bin";
  std::filesystem::create_directories(bin);
  const auto blk = bin / "pvback-blk";
  std::filesystem::copy_file(PVBACK_BLK, blk);
  start_supervisor({"--blk-binary", blk.string()});
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  write_and_verify(*front, 1);
  const pid_t first = listed_data_plane_pid();
  ASSERT_GT(first, 0);

  // The upgrade: another version's binary renamed over the path, as dpkg does.
  const auto next = bin / "pvback-blk.dpkg-new";
  std::ofstream(next) << "#!/bin/sh\necho '70766470 4'\n";
  std::filesystem::permissions(next, std::filesystem::perms::owner_all);
  std::filesystem::rename(next, blk);

  std::string answer = control("1 restart vbd-1-51712");
  EXPECT_NE(answer.find("of another pvback version than this host daemon"), std::string::npos) << answer;
  EXPECT_NE(log_text().find("answers protocol '70766470 4', this control part speaks '70766470 6'"), std::string::npos)
      << log_text();
  EXPECT_EQ(listed_data_plane_pid(), first);
  write_and_verify(*front, 2);

  // A crash: the data plane started again runs the pinned binary (the file at the path is gone).
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  pid_t second = -1;
  ASSERT_TRUE(eventually([&] {
    second = listed_data_plane_pid();
    return second > 0 && second != first;
  })) << control("1 list") << log_text();
  write_and_verify(*front, 3);
  std::error_code ec;
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(second) + "/exe", ec).string(),
            blk.string() + " (deleted)");

  // The daemon's version on disk again: restart moves the device onto it.
  std::filesystem::copy_file(PVBACK_BLK, next);
  std::filesystem::rename(next, blk);
  answer = control("1 restart vbd-1-51712", 20s);
  EXPECT_NE(answer.find("\"ok\": true"), std::string::npos) << answer << log_text();
  const pid_t third = listed_data_plane_pid();
  EXPECT_NE(third, second);
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(third) + "/exe", ec), blk);
  write_and_verify(*front, 4);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
}

}  // namespace
}  // namespace pvback::test

// The vif's TAP (and the supervisor that makes it) in a network namespace of this test's own.
int main(int argc, char** argv) { return pvback::test::run_all_tests_in_own_net_namespace(argc, argv); }
