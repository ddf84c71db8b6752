// Issue 14 for the host daemon (pvback-supervisor's default mode): SIGKILLs at random moments of a
// verifying workload on a vbd it serves (tests/support/verifying_workload.hpp, as VbdRandomKillTest
// runs it on pvback-blk alone), and every request is answered exactly once and the disk verifies.
// What is killed:
//   host_daemon            the host daemon; its successor, started as systemd's Restart= would,
//                          adopts the data plane that served on (the very same process) before the
//                          next kill
//   host_daemon_mid_start  the same, the next kill not waiting for the adoption: successors die
//                          while they start, while they adopt, just after
//   data_plane             the data plane; the host daemon, the same process throughout, starts
//                          another, which resumes the rings from their recovery records
//   either                 one or the other at random (a data plane a successor adopted, no child
//                          of it, killed in turn)
//   host_daemon_sigterm_leave  not a kill: SIGTERM (systemctl restart, an upgrade) with --on-stop
//                          leave, what auto does under systemd; the successor adopts the data plane
//                          left serving (the very same process)
//   host_daemon_sigterm_stop   SIGTERM with --on-stop stop: the data plane answers what it took and
//                          exits; the successor's new one resumes the rings from the records
// PVBACK_KILL_ROUNDS sets the number of kills (default 100, 5 to 20 s a case here; the long run:
// PVBACK_KILL_ROUNDS=1000, 2 to 3 minutes a case). PVBACK_REPORT_PAUSE=1 prints the guest's pause at
// each kill (bench/blk_kill_pause.sh).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <random>

#include "tests/support/data_plane.hpp"
#include "tests/support/verifying_workload.hpp"
#include "tests/supervisor/host_fixture.hpp"

namespace pvback::test {
namespace {

enum class Victim { HostDaemon, HostDaemonMidStart, DataPlane, Either, TermLeave, TermStop };

// As bench/blk_kill_pause.sh and the test names have it.
const char* name(Victim victim) {
  switch (victim) {
    case Victim::HostDaemon: return "host_daemon";
    case Victim::HostDaemonMidStart: return "host_daemon_mid_start";
    case Victim::DataPlane: return "data_plane";
    case Victim::TermLeave: return "host_daemon_sigterm_leave";
    case Victim::TermStop: return "host_daemon_sigterm_stop";
    case Victim::Either: break;
  }
  return "either";
}

class HostRandomKillTest : public HostTest, public ::testing::WithParamInterface<Victim> {
 protected:
  void TearDown() override {
    // An adopted data plane is no child of the host daemon, and one whose host daemon died serves
    // on (until its orphan timeout): neither outlives the test.
    const pid_t listed = supervisor_running() ? listed_data_plane_pid() : -1;
    supervisor_.reset();
    for (const pid_t pid : {listed, plane_})
      if (is_data_plane(pid)) ::kill(pid, SIGKILL);
    HostTest::TearDown();
  }

  static bool is_data_plane(pid_t pid) {
    return pid > 1 && read_text("/proc/" + std::to_string(pid) + "/comm") == "pvback-blk-dp\n";
  }

  // The vbd's options, for the host daemon and each successor: two queues, storage latency that
  // varies per operation (completions come back out of order, a kill finds requests in every
  // state), and no limit to the data plane's restarts.
  // A SIGTERM victim also says what the host daemon does with the data plane when it stops.
  static std::vector<std::string> vbd_args(Victim victim) {
    std::vector<std::string> args;
    for (const char* a : {"--max-queues", "2", "--inject-latency-us", "2000", "--data-plane-restart-burst", "100000"})
      args.insert(args.end(), {"--blk-arg", a});
    if (victim == Victim::TermLeave || victim == Victim::TermStop)
      args.insert(args.end(), {"--blk-arg", "--on-stop", "--blk-arg", victim == Victim::TermLeave ? "leave" : "stop"});
    return args;
  }

  pid_t plane_ = -1;  // the data plane last seen, for TearDown
};

TEST_P(HostRandomKillTest, EveryRequestIsAnsweredExactlyOnceAcrossRandomSigkills) {
  const int rounds = VerifyingWorkload::rounds_from_env(100);
  const Victim victim = GetParam();
  VerifyingWorkload::Options load;
  ASSERT_EQ(::truncate(disk_.c_str(), static_cast<off_t>(load.blocks * 4096)), 0);
  start_supervisor(vbd_args(victim));
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->num_queues(), 2u);
  const pid_t host = supervisor_pid();
  plane_ = listed_data_plane_pid();
  ASSERT_TRUE(is_data_plane(plane_)) << "pid " << plane_ << "\n" << control("1 list");
  ASSERT_EQ(children_of(host, "pvback-blk --data-plane"), std::vector<pid_t>{plane_}) << "not served by the host daemon";
  const pid_t first_plane = plane_;

  std::mt19937 chooser(11);  // Either: which one, each round
  int daemon_kills = 0;
  VerifyingWorkload workload(*front, load);
  workload.run(rounds, [&](int) {
    if (victim == Victim::TermLeave || victim == Victim::TermStop) {
      ++daemon_kills;
      const pid_t daemon = supervisor_pid();
      if (daemon <= 1 || ::kill(daemon, SIGTERM) != 0) return false;
      const auto status = wait_supervisor_exit();
      if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) return false;
      const pid_t old = plane_;
      start_supervisor(vbd_args(victim));  // as systemd's restart would
      return eventually([&] {
        const pid_t now = listed_data_plane_pid();
        if (victim == Victim::TermLeave) return now == old;  // adopted: that very process
        if (now <= 1 || now == old) return false;  // a new one, from the records
        plane_ = now;
        return true;
      });
    }
    if (victim == Victim::HostDaemon || victim == Victim::HostDaemonMidStart ||
        (victim == Victim::Either && chooser() % 2 == 0)) {
      ++daemon_kills;
      const pid_t daemon = supervisor_pid();
      if (daemon <= 1 || ::kill(daemon, SIGKILL) != 0) return false;
      const auto status = wait_supervisor_exit();
      if (!status || !WIFSIGNALED(*status)) return false;
      start_supervisor(vbd_args(victim));  // as systemd's Restart= would
      // Mid-start: the next kill may come before the successor has adopted the data plane, even
      // in the middle of its adoption.
      if (victim == Victim::HostDaemonMidStart) return true;
      // Until the successor has adopted it: that very process, not a new one.
      return eventually([&] { return listed_data_plane_pid() == plane_; });
    }
    const pid_t old = plane_;
    if (!is_data_plane(old) || ::kill(old, SIGKILL) != 0) return false;
    // Until the host daemon has started its successor from the recovery record.
    return eventually([&] {
      const pid_t now = listed_data_plane_pid();
      if (now <= 1 || now == old) return false;
      plane_ = now;
      return true;
    });
  });
  ASSERT_FALSE(HasFatalFailure());
  if (victim == Victim::HostDaemonMidStart) {  // the last successor may be starting still
    EXPECT_TRUE(eventually([&] { return listed_data_plane_pid() == plane_; })) << control("1 list");
  }
  EXPECT_EQ(workload.disturbances(), rounds) << log_text();
  EXPECT_GT(workload.completed(), static_cast<std::uint64_t>(rounds)) << "too little I/O between the kills to mean anything";
  workload.verify_disk();
  EXPECT_EQ(front->queue(0).error(), 0);
  EXPECT_EQ(front->queue(1).error(), 0);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  if (victim == Victim::HostDaemon || victim == Victim::HostDaemonMidStart) {
    EXPECT_NE(supervisor_pid(), host);
    EXPECT_EQ(plane_, first_plane);
    EXPECT_TRUE(is_data_plane(first_plane)) << "the data plane that served from the start is gone";
    // Mid-start, a successor killed before it adopted the data plane leaves it to the next one.
    const auto adoptions = log_count("adopted the data plane (pid " + std::to_string(first_plane) + ")");
    if (victim == Victim::HostDaemon) {
      EXPECT_EQ(adoptions, static_cast<std::size_t>(rounds)) << "not every successor adopted the data plane";
    } else {
      EXPECT_GT(adoptions, 0u);
    }
  } else if (victim == Victim::TermLeave) {
    EXPECT_NE(supervisor_pid(), host);
    EXPECT_EQ(plane_, first_plane);
    EXPECT_TRUE(is_data_plane(first_plane)) << "the data plane that served from the start is gone";
    EXPECT_EQ(log_count("leaving the data plane (pid " + std::to_string(first_plane) + ")"),
              static_cast<std::size_t>(rounds));
    EXPECT_EQ(log_count("adopted the data plane (pid " + std::to_string(first_plane) + ")"),
              static_cast<std::size_t>(rounds));
  } else if (victim == Victim::TermStop) {
    EXPECT_NE(supervisor_pid(), host);
    EXPECT_NE(plane_, first_plane);
    EXPECT_TRUE(process_gone(first_plane));
    EXPECT_EQ(log_count("leaving the data plane"), 0u);
    EXPECT_EQ(log_count("adopted the data plane"), 0u);
  } else if (victim == Victim::DataPlane) {
    EXPECT_EQ(supervisor_pid(), host) << "the host daemon did not survive its data plane's deaths";
    EXPECT_TRUE(supervisor_running());
    EXPECT_NE(plane_, first_plane);
    EXPECT_EQ(children_of(host, "pvback-blk --data-plane"), std::vector<pid_t>{plane_});
    const std::string stats = control("1 stats vbd-1-51712");
    EXPECT_NE(stats.find("\"restarts\": " + std::to_string(rounds) + ","), std::string::npos)
        << "the statistics do not count every restart of the data plane: " << stats;
  } else {
    EXPECT_GT(daemon_kills, 0);
    EXPECT_LT(daemon_kills, rounds);
    EXPECT_TRUE(is_data_plane(listed_data_plane_pid())) << control("1 list");
  }
  workload.report_pauses(name(victim));
  RecordProperty("kills", workload.disturbances());
  RecordProperty("requests", static_cast<int>(workload.completed()));
  std::printf("%d disturbances (%d of the host daemon, %d of the data plane), %llu requests answered exactly once, disk "
              "verified\n",
              workload.disturbances(), daemon_kills, workload.disturbances() - daemon_kills,
              static_cast<unsigned long long>(workload.completed()));
}
INSTANTIATE_TEST_SUITE_P(Victims, HostRandomKillTest,
                         ::testing::Values(Victim::HostDaemon, Victim::HostDaemonMidStart, Victim::DataPlane,
                                           Victim::Either, Victim::TermLeave, Victim::TermStop),
                         [](const auto& info) { return std::string(name(info.param)); });

}  // namespace
}  // namespace pvback::test
