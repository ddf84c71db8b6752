// pvbackctl against pvback-supervisor in host mode on the simulated host: the test is the
// toolstack and, through the userspace blkfront, the guest; pvbackctl runs as the operator would
// run it (a child process, its stdout, stderr and exit status checked).
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "base/fd_passing.hpp"
#include "ctl/json.hpp"
#include "tests/support/stop_and_join.hpp"
#include "tests/support/own_net_namespace.hpp"
#include "tests/supervisor/supervisor_fixture.hpp"

namespace pvback::test {
namespace {

struct CtlRun {
  int status = -1;  // the exit status; -1 if it did not exit normally
  std::string out;
  std::string err;
};

class CtlHostTest : public SupervisorTest {
 protected:
  std::vector<std::string> mode_args() const override {
    return {"--net-arg", "--stats-interval-ms", "--net-arg", "50"};
  }
  std::string socket() const { return (hv_->run_dir() / "stats" / "control.sock").string(); }
  std::string vbd() const { return "vbd-1-" + std::to_string(kDevid); }

  // pvbackctl with `args`, in the simulated host's environment (its default socket is the
  // supervisor's); as the user nobody if `unprivileged`.
  CtlRun ctl(const std::vector<std::string>& args, bool unprivileged = false) {
    const auto out = dir_ / "ctl.out";
    const auto err = dir_ / "ctl.err";
    std::vector<std::string> words = {PVBACKCTL};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    std::vector<std::string> env = {"PVBACK_PLATFORM=sim", "PVBACK_SIM_DIR=" + hv_->run_dir().string(),
                                    "PATH=/usr/bin:/bin", "LC_ALL=C"};
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(126);
      if (unprivileged && (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0))
        ::_exit(126);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    CtlRun run;
    EXPECT_GT(pid, 1);
    if (pid <= 1) return run;
    int status = 0;
    const bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 60s);
    if (!exited) {
      ADD_FAILURE() << "pvbackctl did not exit within 60 s";
      ::kill(pid, SIGKILL);  // our own child, > 1
      ::waitpid(pid, &status, 0);
    }
    run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = read_text(out);
    run.err = read_text(err);
    return run;
  }

  ctl::Json json_of(const CtlRun& run) {
    EXPECT_EQ(run.status, 0) << run.err;
    auto doc = ctl::parse_json(run.out);
    EXPECT_TRUE(doc.has_value()) << run.out;
    return doc ? *doc : ctl::Json{};
  }

  void serve_vbd_and_vif() {
    start_supervisor();
    add_vbd();
    sim::VifSpec spec;
    spec.frontend_domid = kGuest;
    ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
    ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
    ASSERT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s)) << log_text();
  }

  pid_t data_plane() {
    const auto planes = children_of(supervisor_pid(), "pvback-blk --data-plane");
    return planes.size() == 1 ? planes[0] : -1;
  }
};

const ctl::Json& at(const ctl::Json& v, std::string_view key) {
  static const ctl::Json null;
  const ctl::Json* m = v.find(key);
  return m != nullptr ? *m : null;
}

TEST_F(CtlHostTest, ListInfoAndStatsShowWhatXenStoreAndTheStatisticsFileHold) {
  serve_vbd_and_vif();
  if (HasFatalFailure()) return;
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const auto data = pattern(64 << 10, 1);
  ASSERT_EQ(front->write(128, data), 0);
  const pid_t plane = data_plane();
  ASSERT_GT(plane, 1);

  const CtlRun list = ctl({"list"});
  ASSERT_EQ(list.status, 0) << list.err;
  std::printf("%s", list.out.c_str());
  EXPECT_NE(list.out.find("DEVICE"), std::string::npos) << list.out;
  const auto line_of = [&](const std::string& device) {
    const auto at = list.out.find(device + " ");
    return at == std::string::npos ? std::string() : list.out.substr(at, list.out.find('\n', at) - at);
  };
  const std::string vbd_line = line_of(vbd());
  EXPECT_NE(vbd_line.find(" Connected "), std::string::npos) << list.out;
  EXPECT_NE(vbd_line.find(" host "), std::string::npos) << list.out;
  EXPECT_NE(vbd_line.find(" " + std::to_string(plane) + " "), std::string::npos) << list.out;
  EXPECT_NE(vbd_line.find(disk_.string()), std::string::npos) << list.out;
  EXPECT_NE(line_of("vif-1-0").find(" InitWait "), std::string::npos) << list.out;

  const ctl::Json listed = json_of(ctl({"list", "--json"}));
  ASSERT_EQ(at(listed, "devices").items.size(), 2u) << list.out;
  for (const auto& d : at(listed, "devices").items) {
    const std::string path = at(d, "kind").text == "vbd" ? vbd_path() : vif_path();
    EXPECT_EQ(at(d, "state").integer(), state(path));
  }

  const CtlRun info = ctl({"info", vbd()});
  ASSERT_EQ(info.status, 0) << info.err;
  std::printf("%s", info.out.c_str());
  EXPECT_NE(info.out.find("feature-max-indirect-segments"), std::string::npos) << info.out;
  const ctl::Json i = at(json_of(ctl({"info", vbd(), "--json"})), "info");
  for (const char* key : {"feature-max-indirect-segments", "feature-persistent", "multi-queue-max-queues",
                          "max-ring-page-order", "sectors"})
    EXPECT_EQ(at(at(i, "backend"), key).text, dom0_xs_.read(vbd_path() + "/" + key).value_or("(none)")) << key;
  const std::string frontend = dom0_xs_.read(vbd_path() + "/frontend").value_or("");
  EXPECT_EQ(at(i, "frontend_path").text, frontend);
  EXPECT_EQ(at(at(i, "frontend"), "multi-queue-num-queues").text,
            dom0_xs_.read(frontend + "/multi-queue-num-queues").value_or("(none)"));
  EXPECT_EQ(at(at(at(i, "stats"), "negotiated"), "queues").integer(), 2);

  // The counters as the statistics file has them (written every 50 ms; no I/O runs now).
  ASSERT_TRUE(eventually([&] {
    auto file = ctl::parse_json(read_text(vbd_stats()));
    const ctl::Json s = at(json_of(ctl({"stats", vbd(), "--json"})), "stats");
    return file && to_json(at(*file, "total")) == to_json(at(s, "total")) && at(at(s, "total"), "writes").integer() > 0;
  }, 10s));
  const CtlRun stats = ctl({"stats", vbd()});
  ASSERT_EQ(stats.status, 0) << stats.err;
  std::printf("%s", stats.out.c_str());
  EXPECT_NE(stats.out.find("COUNTER"), std::string::npos);
  EXPECT_NE(stats.out.find("  Q1\n"), std::string::npos) << stats.out;
  const ctl::Json q1 = json_of(ctl({"stats", vbd(), "--queue", "1", "--json"}));
  const CtlRun queue1 = ctl({"stats", vbd(), "--queue", "1"});
  EXPECT_NE(queue1.out.find("QUEUE-1"), std::string::npos) << queue1.out;
  EXPECT_NE(queue1.out.find("writes"), std::string::npos);
  EXPECT_TRUE(at(q1, "writes").is(ctl::Json::Type::Number)) << to_json(q1);
  const CtlRun queue5 = ctl({"stats", vbd(), "--queue", "5"});
  EXPECT_EQ(queue5.status, 1);
  EXPECT_NE(queue5.err.find("no queue 5: the connection has 2 (0 to 1)"), std::string::npos) << queue5.err;
  const CtlRun vif = ctl({"stats", "vif-1-0"});
  EXPECT_EQ(vif.status, 0) << vif.err;
  EXPECT_NE(vif.out.find("InitWait"), std::string::npos) << vif.out;

  const CtlRun watch = ctl({"stats", vbd(), "--watch", "0.2", "--count", "3"});
  ASSERT_EQ(watch.status, 0) << watch.err;
  std::printf("%s\n", watch.out.c_str());
  std::size_t reports = 0;
  for (auto p = watch.out.find(vbd() + " total"); p != std::string::npos; p = watch.out.find(vbd() + " total", p + 1))
    ++reports;
  EXPECT_EQ(reports, 3u) << watch.out;
  EXPECT_NE(watch.out.find("PER-SECOND"), std::string::npos) << watch.out;
}

// An operator's restart under I/O: requests in flight on both queues throughout, every one answered
// once (a second answer is a bad id to the blkfront, a lost one never completes), the data read back
// as last written, a new data-plane pid each time and the counters going on.
TEST_F(CtlHostTest, RestartUnderIoAnswersEveryRequestOnceAndKeepsTheCounters) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  constexpr std::uint64_t kBlocks = 256;  // of 4 KiB, in the disk's first MiB
  std::vector<unsigned> version(kBlocks, 0);
  std::atomic<bool> done{false};
  std::uint64_t completed = 0;
  std::thread io([&] {
    struct Pending {
      std::uint64_t block;
      unsigned version;  // 0: a read
      std::vector<std::byte> buf;
    };
    std::map<std::uint64_t, Pending> pending;
    std::vector<bool> busy(kBlocks, false);
    std::mt19937_64 rng(7);
    std::uint64_t tag = 1;
    unsigned next_version = 1;
    auto last_progress = std::chrono::steady_clock::now();
    while ((!done.load() || !pending.empty()) && std::chrono::steady_clock::now() - last_progress < 30s) {
      for (unsigned qi = 0; qi < 2; ++qi) {
        auto& q = front->queue(qi);
        while (!done.load() && q.in_flight() < 16) {
          const std::uint64_t block = rng() % kBlocks;
          if (busy[block]) break;
          Pending p{block, rng() % 2 ? next_version++ : 0, std::vector<std::byte>(4096)};
          if (p.version != 0) p.buf = pattern(4096, p.version);
          const int rc = p.version != 0 ? q.submit_write(block * 8, p.buf, tag) : q.submit_read(block * 8, p.buf, tag);
          if (rc == EAGAIN) break;
          ASSERT_EQ(rc, 0);
          busy[block] = true;
          pending.emplace(tag++, std::move(p));
        }
        ASSERT_EQ(q.kick(), 0);
        q.wait(2ms);
        blkfront::Completion c[32];
        for (std::size_t n = q.poll(c), k = 0; k < n; ++k) {
          auto it = pending.find(c[k].tag);
          ASSERT_NE(it, pending.end()) << "an answer to a request never made or already answered";
          ASSERT_EQ(c[k].error, 0);
          Pending& p = it->second;
          if (p.version != 0) version[p.block] = p.version;
          else if (version[p.block] != 0) {
            ASSERT_TRUE(p.buf == pattern(4096, version[p.block])) << "block " << p.block;
          }
          busy[p.block] = false;
          pending.erase(it);
          ++completed;
          last_progress = std::chrono::steady_clock::now();
        }
        ASSERT_EQ(q.error(), 0) << "queue " << qi << " saw a bad answer";
      }
    }
    EXPECT_TRUE(pending.empty()) << pending.size() << " request(s) never answered";
  });
  StopAndJoin join_on_exit(done, io);
  std::set<pid_t> pids = {data_plane()};
  ASSERT_GT(*pids.begin(), 1);
  const auto writes = [&] {
    const ctl::Json s = at(json_of(ctl({"stats", vbd(), "--json"})), "stats");
    return at(at(s, "total"), "writes").integer().value_or(-1);
  };
  for (int round = 0; round < 3; ++round) {
    const auto before = writes();
    ASSERT_TRUE(eventually([&] { return writes() > before + 20; })) << "no I/O before restart " << round;
    const CtlRun restart = ctl({"restart", vbd()});
    ASSERT_EQ(restart.status, 0) << restart.err << log_text();
    std::printf("%s", restart.out.c_str());
    EXPECT_NE(restart.out.find("replaced by pid"), std::string::npos);
    const pid_t now = data_plane();
    EXPECT_GT(now, 1);
    EXPECT_TRUE(pids.insert(now).second) << "the data plane's pid did not change";
    EXPECT_NE(restart.out.find("replaced by pid " + std::to_string(now)), std::string::npos) << restart.out;
    EXPECT_GE(writes(), before) << "the counters went backwards";
  }
  const auto before = writes();
  ASSERT_TRUE(eventually([&] { return writes() > before + 20; })) << "no I/O after the last restart";
  done.store(true);
  io.join();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GT(completed, 100u);
  std::vector<std::byte> all(kBlocks * 4096);
  ASSERT_EQ(front->read(0, all), 0);
  for (std::uint64_t b = 0; b < kBlocks; ++b) {
    const auto want = version[b] != 0 ? pattern(4096, version[b]) : std::vector<std::byte>(4096);
    ASSERT_TRUE(std::equal(want.begin(), want.end(), all.begin() + static_cast<std::ptrdiff_t>(b * 4096))) << "block " << b;
  }
  const ctl::Json s = at(json_of(ctl({"stats", vbd(), "--json"})), "stats");
  EXPECT_EQ(at(at(s, "data_plane"), "restarts").integer(), 3);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  EXPECT_EQ(log_count("on request"), 3u) << log_text();
}

TEST_F(CtlHostTest, EveryErrorHasItsOwnMessageAndStatus) {
  // No daemon: no socket, then a dead daemon's socket.
  CtlRun absent = ctl({"list"});
  EXPECT_EQ(absent.status, 3);
  EXPECT_NE(absent.err.find("pvback-supervisor is not running"), std::string::npos) << absent.err;
  const std::string stale = (dir_ / "stale.sock").string();
  { auto l = listen_seqpacket(stale, 0600, 1); ASSERT_TRUE(l.has_value()); }
  CtlRun dead = ctl({"--socket", stale, "list"});
  EXPECT_EQ(dead.status, 3);
  EXPECT_NE(dead.err.find("a dead daemon's"), std::string::npos) << dead.err;
  // A malformed answer, from a stand-in daemon.
  const std::string fake = (dir_ / "fake.sock").string();
  auto listener = listen_seqpacket(fake, 0600, 1);
  ASSERT_TRUE(listener.has_value());
  std::thread stand_in([&] {
    pollfd p{listener->get(), POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) return;
    UniqueFd c(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
    char buf[256];
    if (::recv(c.get(), buf, sizeof buf, 0) > 0) ::send(c.get(), "{\"ok\": tru", 10, MSG_NOSIGNAL);
  });
  CtlRun malformed = ctl({"--socket", fake, "list"});
  stand_in.join();
  EXPECT_EQ(malformed.status, 5);
  EXPECT_NE(malformed.err.find("malformed answer from pvback-supervisor"), std::string::npos) << malformed.err;

  serve_vbd_and_vif();
  if (HasFatalFailure()) return;
  CtlRun unknown = ctl({"info", "vbd-9-9"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("no such device: vbd-9-9 (pvbackctl list shows the devices)"), std::string::npos)
      << unknown.err;
  CtlRun command = ctl({"frobnicate"});
  EXPECT_EQ(command.status, 2);
  EXPECT_NE(command.err.find("unknown command 'frobnicate'"), std::string::npos) << command.err;
  CtlRun idle = ctl({"restart", "vif-1-0"});
  EXPECT_EQ(idle.status, 1);
  EXPECT_NE(idle.err.find("no data-plane process to restart (its frontend is not connected)"), std::string::npos)
      << idle.err;
  CtlRun nobody = ctl({"list"}, /*unprivileged=*/true);
  EXPECT_EQ(nobody.status, 4) << nobody.err;
  EXPECT_NE(nobody.err.find("permission denied"), std::string::npos) << nobody.err;
  // Every error is on stderr alone.
  for (const CtlRun* r : {&absent, &dead, &malformed, &unknown, &command, &idle, &nobody}) EXPECT_EQ(r->out, "");
  EXPECT_TRUE(supervisor_running());
}

// set as an operator runs it: a line per device, info showing the value, refusals on stderr with
// status 1, a bad command line status 2.
TEST_F(CtlHostTest, SetSaysWhatChangedAndWhenAndRefusesWhatDoesNotApply) {
  serve_vbd_and_vif();
  if (HasFatalFailure()) return;
  CtlRun one = ctl({"set", "vbd-1-51712", "max_persistent_grants=8"});
  EXPECT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(one.out, "vbd-1-51712: max_persistent_grants 1056 -> 8, in effect now\n");
  CtlRun info = ctl({"info", "vbd-1-51712"});
  const auto line = info.out.find("\n  max_persistent_grants ");
  ASSERT_NE(line, std::string::npos) << info.out;
  EXPECT_TRUE(info.out.substr(line + 1, info.out.find('\n', line + 1) - line - 1).ends_with(" 8  (set: in effect now)"))
      << info.out;
  EXPECT_NE(info.out.find("(set: at the frontend's next connection)"), std::string::npos) << info.out;
  CtlRun all = ctl({"set", "all", "max_queues=1"});
  EXPECT_EQ(all.status, 0) << all.err;
  EXPECT_NE(all.out.find("vbd-1-51712: max_queues "), std::string::npos) << all.out;
  EXPECT_NE(all.out.find("vif-1-0: max_queues "), std::string::npos) << all.out;
  EXPECT_NE(all.out.find("devices started from now on take it too"), std::string::npos) << all.out;
  CtlRun refused = ctl({"set", "vif-1-0", "hash_cache_size=64"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.out, "");
  EXPECT_NE(refused.err.find("vif-1-0: hash_cache_size does not apply to pvback: "), std::string::npos) << refused.err;
  CtlRun usage = ctl({"set", "vbd-1-51712", "max_queues"});
  EXPECT_EQ(usage.status, 2) << usage.err;
}

// pause and resume as an operator runs them: what they print, their exit statuses, the state in
// list and info, and every refusal with its own message.
TEST_F(CtlHostTest, PauseAndResumeSayWhatTheyDidAndRefuseWhatTheyCannot) {
  serve_vbd_and_vif();
  if (HasFatalFailure()) return;
  CtlRun early = ctl({"pause", vbd()});
  EXPECT_EQ(early.status, 1);
  EXPECT_NE(early.err.find(vbd() + " cannot be paused: its frontend is not connected"), std::string::npos) << early.err;
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const auto data = pattern(64 << 10, 9);
  ASSERT_EQ(front->write(256, data), 0);

  const CtlRun paused = ctl({"pause", vbd(), "--timeout", "20"});
  ASSERT_EQ(paused.status, 0) << paused.err << log_text();
  std::printf("%s", paused.out.c_str());
  EXPECT_TRUE(paused.out.starts_with(vbd() + ": paused: ")) << paused.out;
  EXPECT_NE(paused.out.find(" request(s) in flight drained in "), std::string::npos) << paused.out;
  EXPECT_NE(paused.out.find(" ms, the storage flushed in "), std::string::npos) << paused.out;
  const CtlRun list = ctl({"list"});
  std::printf("%s", list.out.c_str());
  EXPECT_NE(list.out.find(" Connected,paused "), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(" InitWait "), std::string::npos) << "the vif is not paused\n" << list.out;
  const ctl::Json listed = json_of(ctl({"list", "--json"}));
  for (const auto& d : at(listed, "devices").items)
    EXPECT_EQ(at(d, "paused").boolean, at(d, "kind").text == "vbd") << ctl::to_json(d);
  const CtlRun info = ctl({"info", vbd()});
  EXPECT_NE(info.out.find("\npaused "), std::string::npos) << info.out;
  EXPECT_NE(info.out.find(" yes (pvbackctl resume " + vbd() + " ends it)\n"), std::string::npos) << info.out;

  CtlRun again = ctl({"pause", vbd()});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find(vbd() + " is paused already (pvbackctl resume " + vbd() + " ends the pause)"),
            std::string::npos) << again.err;
  CtlRun restart = ctl({"restart", vbd()});
  EXPECT_EQ(restart.status, 0) << "a paused vbd's data plane is restarted, paused: " << restart.err;
  EXPECT_TRUE(at(at(json_of(ctl({"info", vbd(), "--json"})), "info"), "paused").boolean);

  const CtlRun resumed = ctl({"resume", vbd(), "--json"});
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const ctl::Json r = at(json_of(resumed), "resume");
  EXPECT_FALSE(at(r, "paused").boolean) << resumed.out;
  EXPECT_EQ(at(r, "waiting").integer(), 0) << resumed.out;
  EXPECT_GE(at(r, "paused_ms").integer().value_or(-1), 0) << resumed.out;
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(256, back), 0);
  EXPECT_TRUE(back == data);
  CtlRun not_paused = ctl({"resume", vbd()});
  EXPECT_EQ(not_paused.status, 1);
  EXPECT_NE(not_paused.err.find(vbd() + " is not paused"), std::string::npos) << not_paused.err;
  ASSERT_EQ(ctl({"pause", vbd()}).status, 0);
  const CtlRun readable = ctl({"resume", vbd()});
  EXPECT_EQ(readable.status, 0) << readable.err;
  std::printf("%s", readable.out.c_str());
  EXPECT_TRUE(readable.out.starts_with(vbd() + ": resumed after ")) << readable.out;
  EXPECT_NE(readable.out.find(" s paused: 0 request(s) had waited in the rings"), std::string::npos) << readable.out;

  CtlRun vif = ctl({"pause", "vif-1-0"});
  EXPECT_EQ(vif.status, 1);
  EXPECT_NE(vif.err.find("vif-1-0 is a vif: only vbds can be paused"), std::string::npos) << vif.err;
  CtlRun unknown = ctl({"pause", "vbd-9-9"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("no such device: vbd-9-9"), std::string::npos) << unknown.err;
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"pause"}, {"resume"}, {"pause", vbd(), "--timeout", "0"}, {"resume", vbd(), "--timeout", "5"}}) {
    const CtlRun usage = ctl(bad);
    EXPECT_EQ(usage.status, 2) << bad[0] << ": " << usage.err;
    EXPECT_NE(usage.err.find("usage: pvbackctl"), std::string::npos) << usage.err;
  }
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
  EXPECT_TRUE(supervisor_running());
}

// A device with a backend process of its own (here every device: --process-per-device) is not
// restarted through the control socket: refused, naming the process.
class CtlPerDeviceTest : public CtlHostTest {
 protected:
  std::vector<std::string> mode_args() const override { return {"--process-per-device"}; }
};

TEST_F(CtlPerDeviceTest, RestartOfADeviceWithItsOwnProcessIsRefused) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  const pid_t backend = child_for(vbd_path());
  ASSERT_GT(backend, 1);
  CtlRun restart = ctl({"restart", vbd()});
  EXPECT_EQ(restart.status, 1);
  EXPECT_NE(restart.err.find("served by a backend process of its own (pid " + std::to_string(backend) + ")"),
            std::string::npos) << restart.err;
  CtlRun list = ctl({"list"});
  EXPECT_NE(list.out.find(" process "), std::string::npos) << list.out;
  EXPECT_EQ(child_for(vbd_path()), backend);
  for (const char* command : {"pause", "resume"}) {
    CtlRun refused = ctl({command, vbd()});
    EXPECT_EQ(refused.status, 1) << command;
    EXPECT_NE(refused.err.find("served by a backend process of its own (pid " + std::to_string(backend) +
                               "), not in the host daemon: pvbackctl " + command),
              std::string::npos)
        << refused.err;
  }
}

}  // namespace
}  // namespace pvback::test

// The vif's TAP (and the supervisor that makes it) in a network namespace of this test's own.
int main(int argc, char** argv) { return pvback::test::run_all_tests_in_own_net_namespace(argc, argv); }
