// pvback-net's data-plane process on the TAP exit: what it runs as, that it serves every path
// of the rings confined (TX, RX, several queues, the control ring, multicast extras: the seccomp
// filter lets through what they need), and what happens when it or its control part dies. The
// test process enters a network namespace of its own (root), where pvback-net's TAP lives; the
// host's side of the vif is an AF_PACKET socket on it.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "netback/data_plane.hpp"
#include "sandbox/sandbox.hpp"
#include "tests/netback/device/vif_data_plane_fixture.hpp"
#include "tests/support/confinement.hpp"

namespace pvback::test {

bool g_netns = false;

namespace {

// As the issue asks the verdict to show from /proc: a uid of its own (base + the guest's domid), no
// capability in any set, no_new_privs, the seccomp filter, its own mount and network namespaces
// with an empty root; and it serves, confined.
TEST_F(VifDataPlaneTest, RunsAsTheGuestsUidWithNoCapabilitiesUnderSeccompInItsOwnNamespaces) {
  ASSERT_NO_FATAL_FAILURE(connect(2, tap_args(2)));
  const pid_t dp = data_plane();
  ASSERT_GT(dp, 0);
  EXPECT_EQ(comm_of(dp), "pvback-net-dp");
  EXPECT_EQ(children_of(backend_->pid()), std::vector<pid_t>{dp});
  // (Its network namespace too is a new, empty one: the TAP's fds need none.)
  ASSERT_NO_FATAL_FAILURE(expect_confined(dp, kGuest));
  auto control = sandbox::describe(backend_->pid());
  ASSERT_TRUE(control.has_value());
  EXPECT_EQ(control->uid[0], 0u);
  // It serves both ways, confined, and nothing else holds the TAP's packets.
  guest_to_host(0, 50);
  host_to_guest(100, 50);
  EXPECT_EQ(data_plane(), dp);
}

// (queues, split event channels): every path of the rings crosses the confined data plane: TX and
// RX on several queues, the control ring (the netfront sets up the hash), multicast extras.
class VifDataPlaneTrafficTest : public VifDataPlaneTest,
                                public ::testing::WithParamInterface<std::tuple<unsigned, bool>> {};

TEST_P(VifDataPlaneTrafficTest, FramesCrossTheConfinedDataPlaneBothWays) {
  const auto [queues, split] = GetParam();
  netfront::Options o;
  o.split_event_channels = split;
  o.multicast_control = true;
  ASSERT_NO_FATAL_FAILURE(connect(queues, tap_args(4), o));
  ASSERT_EQ(front_->num_queues(), queues);
  ASSERT_TRUE(front_->negotiated().ctrl_ring);
  ASSERT_EQ(front_->set_hash_algorithm(netif::kHashAlgorithmToeplitz).value().status, netif::kCtrlStatusSuccess);
  ASSERT_EQ(front_->set_hash_flags(netif::kHashTypeAll).value().status, netif::kCtrlStatusSuccess);
  ASSERT_EQ(front_->queue(0).add_multicast({0x01, 0x00, 0x5e, 0x00, 0x00, 0x05}), 0);
  guest_to_host(0, 200);
  host_to_guest(1000, 200);
  ASSERT_TRUE(eventually([&] { return stat("tx_packets") >= 200 && stat("rx_packets") >= 200; })) << stats_text();
  EXPECT_EQ(stat("mcast_add"), 1);
  for (unsigned q = 0; q < queues; ++q) {
    const auto& s = front_->queue(q).stats();
    EXPECT_EQ(s.tx_error + s.tx_dropped + s.tx_bad_response, 0u) << "queue " << q;
    EXPECT_EQ(s.rx_dropped_frames, 0u) << "queue " << q;
  }
  EXPECT_EQ(ipv4_frame_is_hashed(), std::optional<bool>(true));
  // Still the first data plane: none was killed by its filter.
  EXPECT_NE(stats_text().find("\"restarts\": 0,"), std::string::npos) << stats_text();
  // A clean goodbye: the data plane stops with the connection; the vif stays.
  const pid_t dp = data_plane();
  ASSERT_EQ(front_->detach(), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }));
  EXPECT_TRUE(eventually([&] { return process_gone(dp); })) << "the data plane outlived its connection";
  EXPECT_TRUE(backend_->running());
}

INSTANTIATE_TEST_SUITE_P(Queues, VifDataPlaneTrafficTest,
                         ::testing::Values(std::make_tuple(1u, false), std::make_tuple(3u, true)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "q_" +
                                  (std::get<1>(info.param) ? "split" : "shared");
                         });

// Killed, it is replaced under the same connection: the guest keeps its rings, its hash
// configuration (restored from the vif's record) and sees a pause; the counters go on.
TEST_F(VifDataPlaneTest, AKilledDataPlaneIsReplacedAndTheGuestsSettingsAndCountersGoOn) {
  ASSERT_NO_FATAL_FAILURE(connect(2, tap_args(2)));
  ASSERT_EQ(front_->set_hash_algorithm(netif::kHashAlgorithmToeplitz).value().status, netif::kCtrlStatusSuccess);
  ASSERT_EQ(front_->set_hash_flags(netif::kHashTypeIpv4 | netif::kHashTypeIpv4Tcp).value().status,
            netif::kCtrlStatusSuccess);
  ASSERT_EQ(ipv4_frame_is_hashed(), std::optional<bool>(true));
  guest_to_host(0, 40);
  ASSERT_TRUE(eventually([&] { return stat("tx_packets") >= 40; })) << stats_text();
  const long long before = stat("tx_packets");
  const pid_t dp = data_plane(), control = backend_->pid();
  ASSERT_EQ(::kill(dp, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    const pid_t now = data_plane();
    return now > 0 && now != dp && stats_text().find("\"restarts\": 1,") != std::string::npos;
  })) << stats_text();
  EXPECT_NE(log_text().find("starting another, which resumes the rings"), std::string::npos) << log_text();
  guest_to_host(100, 40);
  host_to_guest(200, 40);
  EXPECT_EQ(ipv4_frame_is_hashed(), std::optional<bool>(true))
      << "the guest's hash configuration was lost (it is not sent again)\n" << log_text();
  EXPECT_TRUE(eventually([&] { return stat("tx_packets") >= before + 40; })) << stats_text();
  EXPECT_EQ(backend_->pid(), control);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  EXPECT_TRUE(front_->connected());
  auto c = sandbox::describe(data_plane());
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->no_new_privs, 1) << "the new data plane is not confined";
}

// The control part killed alone (a crash, an upgrade by SIGKILL): the data plane serves on without
// it, and the control part's successor adopts that very process, with the TAP's queues it holds;
// the counters go on. An orderly stop of the successor stops it.
TEST_F(VifDataPlaneTest, AKilledControlPartLeavesTheDataPlaneServingUntilItsSuccessorAdoptsIt) {
  const auto args = tap_args(2);
  ASSERT_NO_FATAL_FAILURE(connect(2, args));
  guest_to_host(0, 20);
  const pid_t dp = data_plane();
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  // No control part at all: traffic still flows both ways.
  guest_to_host(100, 30);
  host_to_guest(200, 30);
  EXPECT_FALSE(process_gone(dp)) << "the data plane died with its control part";

  start_successor(args);
  ASSERT_TRUE(eventually([&] { return data_plane() == dp; }))
      << "the successor did not adopt the running data plane: " << stats_text() << log_text();
  EXPECT_NE(log_text().find("adopted the data plane"), std::string::npos) << log_text();
  EXPECT_NE(log_text().find("taken over from the data plane serving it"), std::string::npos) << log_text();
  EXPECT_TRUE(children_of(backend_->pid()).empty()) << "the successor started a data plane of its own";
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  guest_to_host(300, 20);
  host_to_guest(400, 20);
  // The counters went on: the frames sent while no control part existed are counted.
  EXPECT_TRUE(eventually([&] { return stat("tx_packets") >= 70; })) << stats_text();
  ASSERT_EQ(::kill(backend_->pid(), SIGTERM), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  EXPECT_TRUE(eventually([&] { return process_gone(dp); })) << "the adopted data plane outlived its control part";
}

// --on-stop leave (what auto does for a data plane in a systemd scope of its own): an orderly stop
// of the control part (SIGTERM: `systemctl restart`, an upgrade) leaves the data plane serving, its
// TAP's link up, and the successor adopts that very process; the guest's traffic never stops.
TEST_F(VifDataPlaneTest, ASigtermedControlPartWithOnStopLeaveLeavesTheDataPlaneForItsSuccessor) {
  const auto args = tap_args(2, {"--on-stop", "leave"});
  ASSERT_NO_FATAL_FAILURE(connect(2, args));
  guest_to_host(0, 20);
  const pid_t dp = data_plane();
  ASSERT_EQ(::kill(backend_->pid(), SIGTERM), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  EXPECT_NE(log_text().find("leaving the data plane (pid " + std::to_string(dp) + ") serving"), std::string::npos)
      << log_text();
  guest_to_host(100, 30);
  host_to_guest(200, 30);
  EXPECT_FALSE(process_gone(dp)) << "the data plane stopped with its control part";
  start_successor(args);
  ASSERT_TRUE(eventually([&] { return data_plane() == dp; }))
      << "the successor did not adopt the running data plane: " << stats_text() << log_text();
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  guest_to_host(300, 20);
  host_to_guest(400, 20);
  EXPECT_TRUE(eventually([&] { return stat("tx_packets") >= 70; })) << stats_text();
}

// The control part killed and its vif then removed (the supervisor does not restart it): the
// data plane left serving is told to stop through its listening socket.
TEST_F(VifDataPlaneTest, AnOrphanedDataPlaneIsStoppedThroughItsSocket) {
  ASSERT_NO_FATAL_FAILURE(connect(1, tap_args(1)));
  const pid_t dp = data_plane();
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(process_gone(dp)) << "it died with its control part";
  const std::string path = (hv_->run_dir() / "recovery" / "vif-1-0.dp").string();
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(netback::stop_orphan_data_plane(path), 0);
  EXPECT_TRUE(eventually([&] { return process_gone(dp); })) << "the orphan did not stop";
  EXPECT_EQ(netback::stop_orphan_data_plane(path), 0) << "nothing left there is not an error";
}

// A guest that found a way to crash its data plane could keep a core busy restarting it: past the
// restart burst the vif fails, with an error node naming why.
TEST_F(VifDataPlaneTest, ADataPlaneThatKeepsDyingFailsTheVif) {
  ASSERT_NO_FATAL_FAILURE(connect(1, tap_args(1, {"--data-plane-restart-burst", "2"})));
  pid_t dp = data_plane();
  for (int kill = 0; kill < 3; ++kill) {
    ASSERT_EQ(::kill(dp, SIGKILL), 0);
    if (kill == 2) break;
    ASSERT_TRUE(eventually([&] {
      auto now = children_of(backend_->pid());
      return now.size() == 1 && now[0] != dp && data_plane() == now[0];
    })) << "kill " << kill << ": " << stats_text();
    dp = data_plane();
  }
  ASSERT_TRUE(eventually([&] { return backend_state() >= XenbusStateClosing; }))
      << "the vif stayed up across a third death within the burst";
  EXPECT_NE(backend_key("error").find("the data plane keeps dying"), std::string::npos) << backend_key("error");
  EXPECT_TRUE(children_of(backend_->pid()).empty());
}

// A TAP of many queues: the data plane holds every queue's fd (those the frontend does not use
// stay detached), passed in one message with the others.
TEST_F(VifDataPlaneTest, ADataPlaneHoldsEveryQueueOfAManyQueueTap) {
  ASSERT_NO_FATAL_FAILURE(connect(2, tap_args(40)));
  const pid_t dp = data_plane();
  unsigned tun = 0;
  std::error_code ec;
  for (const auto& fd : std::filesystem::directory_iterator(std::filesystem::path("/proc") / std::to_string(dp) / "fd", ec))
    tun += std::filesystem::read_symlink(fd.path(), ec) == "/dev/net/tun";
  EXPECT_EQ(tun, 40u);
  guest_to_host(0, 20);
  host_to_guest(100, 20);
}

TEST_F(VifDataPlaneTest, NoSandboxLeavesItUnconfined) {
  ASSERT_NO_FATAL_FAILURE(connect(1, tap_args(1, {"--no-sandbox"})));
  auto c = sandbox::describe(data_plane());
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->uid[0], ::geteuid());
  EXPECT_EQ(c->seccomp, 0);
  guest_to_host(0, 10);
}

// --data-plane thread: the rings on threads of pvback-net, as before the split (and as the DPDK
// exit always is).
TEST_F(VifDataPlaneTest, ThreadModeServesOnTheControlPartsThreads) {
  ASSERT_NO_FATAL_FAILURE(connect(2, tap_args(2, {"--data-plane", "thread"})));
  EXPECT_TRUE(children_of(backend_->pid()).empty());
  EXPECT_EQ(data_plane(), -1);
  guest_to_host(0, 20);
  host_to_guest(100, 20);
}

}  // namespace
}  // namespace pvback::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Before any thread: the TAP devices pvback-net creates live and die with this namespace.
  if (::geteuid() == 0) pvback::test::g_netns = pvback::test::enter_private_netns();
  return RUN_ALL_TESTS();
}
