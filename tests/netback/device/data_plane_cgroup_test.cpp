// pvback-net's data plane in a control group of its own (plane/cgroup_leaf.hpp), as pvback-blk's
// (VbdDataPlaneTest's neighbours in tests/blkback/device/data_plane_test.cpp): the limits reach the
// kernel's files, the data plane (and a replacement, and one adopted by a successor) is in the leaf,
// the leaf goes with the connection or with the data plane a dead control part left, and a parent
// the operator named that cannot hold it fails the vif. Root, and the TAP in the test's own network
// namespace (main: data_plane_test.cpp).
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "sandbox/cgroup.hpp"
#include "tests/netback/device/vif_data_plane_fixture.hpp"

namespace pvback::test {
namespace {

class VifCgroupTest : public VifDataPlaneTest {
 protected:
  // Every directory of the leaf (one per hierarchy used) holds `pid`, and nothing else.
  void expect_alone_in_leaf(pid_t pid) {
    const auto dirs = cgroup_dirs();
    ASSERT_FALSE(dirs.empty()) << stats_text();
    for (const auto& dir : dirs) {
      EXPECT_EQ(std::filesystem::path(dir).filename().string(), leaf_name()) << dir;
      EXPECT_EQ(procs_of(dir), std::vector<pid_t>{pid}) << dir;
    }
  }
};

// The operator's limits reach the kernel's files for the vif's data plane, which is alone in its
// leaf (the control part is not held to them); a replacement after a SIGKILL goes into the same
// leaf before it serves, and the leaf goes with the connection.
TEST_F(VifCgroupTest, RunsInAControlGroupOfItsOwnWithItsLimits) {
  ASSERT_NO_FATAL_FAILURE(connect(2, tap_args(2, {"--data-plane-memory-max", "200M", "--data-plane-tasks-max", "77",
                                                   "--data-plane-cpu-max", "150"})));
  const pid_t dp = data_plane();
  ASSERT_GT(dp, 0);
  ASSERT_NO_FATAL_FAILURE(expect_limits(dp, 200u << 20, 77, 150));
  auto control = sandbox::applied_limits(backend_->pid());
  ASSERT_TRUE(control.has_value());
  EXPECT_NE(control->tasks, std::optional<std::uint64_t>(77));
  ASSERT_NO_FATAL_FAILURE(expect_alone_in_leaf(dp));
  EXPECT_NE(log_text().find("vif 1/0: data plane control group "), std::string::npos) << log_text();
  guest_to_host(0, 30);
  host_to_guest(100, 30);

  ASSERT_EQ(::kill(dp, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    const pid_t now = data_plane();
    return now > 0 && now != dp && stats_text().find("\"restarts\": 1,") != std::string::npos;
  })) << stats_text();
  ASSERT_NO_FATAL_FAILURE(expect_alone_in_leaf(data_plane()));
  ASSERT_NO_FATAL_FAILURE(expect_limits(data_plane(), 200u << 20, 77, 150));
  guest_to_host(200, 30);
  host_to_guest(300, 30);

  const auto dirs = cgroup_dirs();
  ASSERT_EQ(front_->detach(), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }));
  EXPECT_TRUE(eventually([&] { return all_gone(dirs); })) << dirs.front() << " outlived the connection";
  EXPECT_TRUE(backend_->running());
}

// The defaults follow the queues negotiated (VifDriver::make_cgroup): memory 32 MiB + 32 MiB per
// queue, 16 tasks + one per queue, no CPU limit; under AddressSanitizer no memory limit by default.
// Traffic both ways on every queue fits in them (tests/netback/e2e runs TCP with 64 KiB GSO frames
// across a data plane under them).
TEST_F(VifCgroupTest, DefaultLimitsFollowTheQueuesAndTrafficFitsInThem) {
  netfront::Options o;
  o.multicast_control = true;
  ASSERT_NO_FATAL_FAILURE(connect(3, tap_args(4), o));
  ASSERT_EQ(front_->num_queues(), 3u);
  const pid_t dp = data_plane();
#if defined(__SANITIZE_ADDRESS__)
  const std::optional<std::uint64_t> memory;
#else
  const std::optional<std::uint64_t> memory = (32u << 20) + 3 * (32u << 20);
#endif
  ASSERT_NO_FATAL_FAILURE(expect_limits(dp, memory, 16 + 3, std::nullopt));
  guest_to_host(0, 300);
  host_to_guest(1000, 300);
  EXPECT_EQ(data_plane(), dp) << "the data plane died under its default limits\n" << log_text();
  EXPECT_NE(stats_text().find("\"restarts\": 0,"), std::string::npos) << stats_text();
}

// A parent the operator named that cannot hold the leaf fails the connection with the cause in the
// log, naming the vif: the guest's attach fails rather than a data plane running unlimited.
TEST_F(VifCgroupTest, ACgroupParentThatCannotHoldTheGroupFailsTheVif) {
  ASSERT_NO_FATAL_FAILURE(add_vif_and_start(tap_args(1, {"--cgroup-parent", "/pvback-no-such-parent"})));
  netfront::Options o;
  o.connect_timeout = 3s;
  o.close_timeout = 200ms;
  auto front = netfront::NetFront::attach(*guest_platform_, frontend_path(), o);
  EXPECT_FALSE(front.has_value()) << "the guest connected to a vif whose data plane has no control group";
  EXPECT_TRUE(eventually([&] {
    return log_text().find("vif 1/0: cannot give the data plane its control group") != std::string::npos &&
           log_text().find("/pvback-no-such-parent") != std::string::npos;
  })) << log_text();
  EXPECT_TRUE(children_of(backend_->pid()).empty());
}

// --cgroup-parent none: no leaf, the data plane serves as before.
TEST_F(VifCgroupTest, NoCgroupWhenAskedForNone) {
  ASSERT_NO_FATAL_FAILURE(connect(1, tap_args(1, {"--cgroup-parent", "none"})));
  EXPECT_NE(stats_text().find("\"cgroup\": []"), std::string::npos) << stats_text();
  guest_to_host(0, 10);
  host_to_guest(100, 10);
}

// A successor of a SIGKILLed control part adopts the data plane in the leaf its predecessor made,
// reuses that leaf (the limits set again), and removes it when it stops the data plane.
TEST_F(VifCgroupTest, AnAdoptedDataPlaneKeepsItsGroupWhichGoesWithIt) {
  const auto args = tap_args(2, {"--data-plane-tasks-max", "55"});
  ASSERT_NO_FATAL_FAILURE(connect(2, args));
  const pid_t dp = data_plane();
  const auto dirs = cgroup_dirs();
  ASSERT_FALSE(dirs.empty()) << stats_text();
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  guest_to_host(0, 20);  // no control part at all
  EXPECT_EQ(procs_of(dirs.front()), std::vector<pid_t>{dp});

  start_successor(args);
  ASSERT_TRUE(eventually([&] { return data_plane() == dp; })) << stats_text() << log_text();
  EXPECT_EQ(cgroup_dirs(), dirs) << stats_text();
  ASSERT_NO_FATAL_FAILURE(expect_alone_in_leaf(dp));
  auto limits = sandbox::applied_limits(dp);
  ASSERT_TRUE(limits.has_value()) << limits.error();
  EXPECT_EQ(limits->tasks, std::optional<std::uint64_t>(55));
  host_to_guest(100, 20);

  ASSERT_EQ(::kill(backend_->pid(), SIGTERM), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  EXPECT_TRUE(eventually([&] { return process_gone(dp); }));
  EXPECT_TRUE(eventually([&] { return all_gone(dirs); })) << dirs.front() << " outlived the adopted data plane";
}

// A successor that finds the frontend gone stops the data plane its dead predecessor left serving
// and removes the leaf that predecessor made (VifDriver::settle_after_start).
TEST_F(VifCgroupTest, AnOrphanedDataPlanesGroupGoesWhenItsSuccessorStopsIt) {
  const auto args = tap_args(1);
  ASSERT_NO_FATAL_FAILURE(connect(1, args));
  const pid_t dp = data_plane();
  const auto dirs = cgroup_dirs();
  ASSERT_FALSE(dirs.empty()) << stats_text();
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  // The guest left meanwhile (its side Closed, as a frontend that gave up on its backend is).
  ASSERT_EQ(dom0_xs_.write(frontend_path() + "/state", std::to_string(XenbusStateClosed)), 0);
  EXPECT_FALSE(process_gone(dp));

  start_successor(args);
  EXPECT_TRUE(eventually([&] { return process_gone(dp); })) << log_text();
  EXPECT_TRUE(eventually([&] { return all_gone(dirs); })) << dirs.front() << " outlived its data plane\n"
                                                          << log_text();
  EXPECT_TRUE(backend_->running());
}

}  // namespace
}  // namespace pvback::test
