// pvback-blk's data-plane process: what it runs as, and what its control part does when it dies.
// (The exactly-once answers across its SIGKILLs: VbdRandomKillTest in recovery_test.cpp.)
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "blkback/data_plane.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/sandbox.hpp"
#include "tests/blkback/device/vbd_fixture.hpp"
#include "tests/support/cgroup.hpp"
#include "tests/support/confinement.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;

class VbdDataPlaneTest : public VbdTest {
 protected:
  // A connected guest with a disk it wrote a block to; the data plane's pid.
  pid_t connect_and_write(std::vector<std::string> args, std::unique_ptr<blkfront::BlkFront>& front) {
    make_disk(16 << 20);
    add_vbd_and_start(std::move(args));
    front = attach();
    EXPECT_NE(front, nullptr);
    if (front == nullptr) return -1;
    data_.resize(4096);
    fill_pattern(data_, 16, 9);
    EXPECT_EQ(front->write(16, data_), 0);
    auto pids = data_planes();
    EXPECT_EQ(pids.size(), 1u);
    return pids.empty() ? -1 : pids[0];
  }
  std::vector<std::byte> data_;
};

// As the issue asks the verdict to show from /proc: a uid of its own (base + the guest's domid),
// no capability in any set, no_new_privs, the seccomp filter, and namespaces of its own whose root
// is empty.
TEST_F(VbdDataPlaneTest, RunsAsTheGuestsUidWithNoCapabilitiesUnderSeccompInItsOwnNamespaces) {
  if (::geteuid() != 0) GTEST_SKIP() << "the data plane changes its uid only when started as root";
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "2"}, front);
  ASSERT_GT(dp, 0);
  ASSERT_NO_FATAL_FAILURE(expect_confined(dp, kGuest));
  // The control part stays what it was.
  auto control = sandbox::describe(backend_->pid());
  ASSERT_TRUE(control.has_value());
  EXPECT_EQ(control->uid[0], 0u);
  // And it serves, confined.
  std::vector<std::byte> back(4096);
  ASSERT_EQ(front->read(16, back), 0);
  EXPECT_TRUE(back == data_);
}

TEST_F(VbdDataPlaneTest, NoSandboxLeavesItUnconfined) {
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "1", "--no-sandbox"}, front);
  ASSERT_GT(dp, 0);
  auto c = sandbox::describe(dp);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->uid[0], ::geteuid());
  EXPECT_EQ(c->seccomp, 0);
  EXPECT_EQ(namespace_of(dp, "mnt"), namespace_of(::getpid(), "mnt"));
}

// Killed, it is replaced without the guest's connection noticing: the backend stays Connected,
// the guest's next read is answered, the control part is the same process.
TEST_F(VbdDataPlaneTest, AKilledDataPlaneIsReplacedUnderTheSameConnection) {
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "1"}, front);
  ASSERT_GT(dp, 0);
  const pid_t control = backend_->pid();
  ASSERT_EQ(::kill(dp, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto now = data_planes();
    return now.size() == 1 && now[0] != dp && stats_text().find("\"restarts\": 1,") != std::string::npos;
  })) << stats_text();
  std::vector<std::byte> back(4096);
  ASSERT_EQ(front->read(16, back), 0);
  EXPECT_TRUE(back == data_);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  EXPECT_EQ(backend_->pid(), control);
  EXPECT_EQ(front->queue(0).error(), 0);
}

// The control part killed alone (a crash, an upgrade by SIGKILL): the data plane serves on without
// it, the guest's I/O is answered meanwhile, and the control part's successor adopts that very
// process; it then stops it at unplug.
TEST_F(VbdDataPlaneTest, AKilledControlPartLeavesTheDataPlaneServingUntilItsSuccessorAdoptsIt) {
  std::unique_ptr<blkfront::BlkFront> front;
  const std::vector<std::string> args{"--max-queues", "2"};
  backend_log_ = dir_ / "backend.log";
  const pid_t dp = connect_and_write(args, front);
  ASSERT_GT(dp, 0);
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  // No control part at all: reads and writes are still answered.
  std::vector<std::byte> back(4096), other(4096);
  ASSERT_EQ(front->read(16, back), 0);
  EXPECT_TRUE(back == data_);
  fill_pattern(other, 64, 11);
  ASSERT_EQ(front->write(64, other), 0);
  EXPECT_EQ(::kill(dp, 0), 0) << "the data plane died with its control part";

  std::filesystem::remove(stats_);  // the dead control part's
  restart(args);
  ASSERT_TRUE(eventually([&] { return data_plane_pid() == dp; }))
      << "the successor did not adopt the running data plane: " << stats_text() << log_text();
  EXPECT_TRUE(log_contains("adopted the data plane")) << log_text();
  EXPECT_TRUE(data_planes().empty()) << "the successor started a data plane of its own";
  ASSERT_EQ(front->read(64, back), 0);
  // The counters went on: the successor reads the same statistics memory (the write while no
  // control part existed is counted).
  EXPECT_TRUE(eventually([&] { return stats_text().find("\"writes\": 2,") != std::string::npos; })) << stats_text();
  EXPECT_TRUE(back == other);
  EXPECT_EQ(front->queue(0).error(), 0);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  // An orderly stop of the successor stops the adopted data plane too.
  ASSERT_EQ(::kill(backend_->pid(), SIGTERM), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  EXPECT_TRUE(eventually([&] {
    std::ifstream stat("/proc/" + std::to_string(dp) + "/stat");
    std::string pid, comm, state;
    return !(stat >> pid >> comm >> state) || state == "Z";
  })) << "the adopted data plane outlived its control part's orderly stop";
}

// The control part killed and its device then removed (the supervisor does not restart it): the
// data plane left serving is told to stop through its listening socket, as the supervisor does.
TEST_F(VbdDataPlaneTest, AnOrphanedDataPlaneIsStoppedThroughItsSocket) {
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "1"}, front);
  ASSERT_GT(dp, 0);
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(process_gone(dp)) << "it died with its control part";
  const std::string path = (hv_->run_dir() / "recovery" / "vbd-1-51712.dp").string();
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(blkback::stop_orphan_data_plane(path), 0);
  EXPECT_TRUE(eventually([&] { return process_gone(dp); })) << "the orphan did not stop";
  EXPECT_EQ(blkback::stop_orphan_data_plane(path), 0) << "nothing left there is not an error";
}

// A guest that found a way to crash its data plane could keep a core busy restarting it: past
// the restart burst (5 within 10 s by default) the device fails, with an error node naming why.
TEST_F(VbdDataPlaneTest, ADataPlaneThatKeepsDyingFailsTheDevice) {
  std::unique_ptr<blkfront::BlkFront> front;
  pid_t dp = connect_and_write({"--max-queues", "1", "--data-plane-restart-burst", "2"}, front);
  ASSERT_GT(dp, 0);
  for (int kill = 0; kill < 3; ++kill) {
    ASSERT_EQ(::kill(dp, SIGKILL), 0);
    if (kill == 2) break;
    ASSERT_TRUE(eventually([&] {
      auto now = data_planes();
      return now.size() == 1 && now[0] != dp &&
             stats_text().find("\"pid\": " + std::to_string(now[0]) + ",") != std::string::npos;
    })) << "kill " << kill << ": " << stats_text();
    dp = data_planes()[0];
  }
  ASSERT_TRUE(eventually([&] { return backend_state() >= XenbusStateClosing; }))
      << "the device stayed up across a third death within the burst";
  EXPECT_NE(read_key(dom0_xs_, backend_path() + "/error").find("the data plane keeps dying"), std::string::npos)
      << read_key(dom0_xs_, backend_path() + "/error");
  EXPECT_TRUE(data_planes().empty());
}

// Each data plane has a control group of its own with memory, task and CPU limits; a replacement
// after a SIGKILL lands in the same group, and the group goes with the connection.
TEST_F(VbdDataPlaneTest, RunsInAControlGroupOfItsOwnWithItsLimits) {
  if (::geteuid() != 0) GTEST_SKIP() << "control groups need root here";
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "2", "--data-plane-memory-max", "200M",
                                      "--data-plane-tasks-max", "77", "--data-plane-cpu-max", "150"},
                                     front);
  ASSERT_GT(dp, 0);
  ASSERT_NO_FATAL_FAILURE(expect_limits(dp, 200u << 20, 77, 150));
  // The control part is not held to them.
  auto control = sandbox::applied_limits(backend_->pid());
  ASSERT_TRUE(control.has_value());
  EXPECT_NE(control->tasks, std::optional<std::uint64_t>(77));
  // Its leaf, named after the device, is in the statistics.
  const std::string stats = stats_text();
  const auto at = stats.find("vbd-1-51712\"");
  ASSERT_NE(at, std::string::npos) << stats;
  const auto open = stats.rfind('"', at);
  const std::string leaf = stats.substr(open + 1, at + 11 - open - 1);
  ASSERT_TRUE(std::filesystem::exists(leaf)) << leaf;

  // A replacement goes into the same group (before it serves: the statistics count it then).
  ASSERT_EQ(::kill(dp, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto now = data_planes();
    return now.size() == 1 && now[0] != dp && stats_text().find("\"restarts\": 1,") != std::string::npos;
  })) << stats_text();
  ASSERT_NO_FATAL_FAILURE(expect_limits(data_planes()[0], 200u << 20, 77, 150));
  std::vector<std::byte> back(4096);
  ASSERT_EQ(front->read(16, back), 0);
  EXPECT_TRUE(back == data_);

  // Unplugged: the group is removed.
  front->detach();
  front.reset();
  EXPECT_TRUE(eventually([&] { return !std::filesystem::exists(leaf); })) << leaf << " outlived the connection";
}

// The default limits follow the queues negotiated (64 MiB + 32 MiB per queue, threads for each
// queue and its io_uring workers); under AddressSanitizer no memory limit is set by default.
TEST_F(VbdDataPlaneTest, DefaultLimitsFollowTheQueues) {
  if (::geteuid() != 0) GTEST_SKIP() << "control groups need root here";
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "2"}, front);
  ASSERT_GT(dp, 0);
  auto limits = sandbox::applied_limits(dp);
  ASSERT_TRUE(limits.has_value()) << limits.error();
  const unsigned queues = front->negotiated().num_queues;
  ASSERT_GE(queues, 1u);
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_FALSE(limits->memory_bytes.has_value());
#else
  EXPECT_EQ(limits->memory_bytes, std::optional<std::uint64_t>((64u << 20) + queues * (32u << 20)));
#endif
  const std::uint64_t cpus = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(limits->tasks, std::optional<std::uint64_t>(32 + queues * (1 + 4 * cpus)));
  EXPECT_FALSE(limits->cpu_percent.has_value());
}

// A parent the operator named that cannot hold the group fails the connection, naming the cause;
// the guest's attach fails rather than a data plane running unlimited.
TEST_F(VbdDataPlaneTest, ACgroupParentThatCannotHoldTheGroupFailsTheDevice) {
  make_disk(16 << 20);
  backend_log_ = dir_ / "backend.log";
  add_vbd_and_start({"--max-queues", "1", "--cgroup-parent", "/pvback-no-such-parent"});
  blkfront::Options options;
  options.connect_timeout = 3s;
  auto front = blkfront::BlkFront::attach(*guest_platform_, frontend_path(), options);
  EXPECT_FALSE(front.has_value()) << "the guest connected to a device whose data plane has no control group";
  EXPECT_TRUE(eventually([&] { return log_contains("cannot give the data plane its control group"); })) << log_text();
  EXPECT_TRUE(data_planes().empty());
}

// --cgroup-parent none: no group, the data plane serves as before.
TEST_F(VbdDataPlaneTest, NoCgroupWhenAskedForNone) {
  std::unique_ptr<blkfront::BlkFront> front;
  const pid_t dp = connect_and_write({"--max-queues", "1", "--cgroup-parent", "none"}, front);
  ASSERT_GT(dp, 0);
  EXPECT_NE(stats_text().find("\"cgroup\": []"), std::string::npos) << stats_text();
}

}  // namespace
}  // namespace pvback::test
