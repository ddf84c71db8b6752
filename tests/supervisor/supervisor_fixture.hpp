// The supervisor's sim tests' fixture: the simulated host, the supervisor as a child process, the
// test acting as toolstack (and, through the userspace blkfront, as guest).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "blkfront/blkfront.hpp"
#include "sim/hypervisor.hpp"
#include "sim/toolstack/vbd.hpp"
#include "sim/toolstack/vif.hpp"
#include "tests/support/backend_process.hpp"
#include "tests/support/eventually.hpp"
#include "tests/support/notify_listener.hpp"
#include "tests/support/sim_host.hpp"
#include "xenbus/xenstore.hpp"


namespace pvback::test {

using namespace std::chrono_literals;

constexpr std::uint32_t kDevid = 51712;

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Live (not zombie) children of `parent` whose command line contains `needle`.
inline std::vector<pid_t> children_of(pid_t parent, const std::string& needle = {}) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_text(entry.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 4 >= stat.size()) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 2, "%c %d", &state, &ppid) != 2) continue;
    if (ppid != parent || state == 'Z') continue;
    std::string cmdline = read_text(entry.path() / "cmdline");
    for (auto& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.find(needle) == std::string::npos) continue;
    out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

class SupervisorTest : public SimHostTest {
 protected:
  SupervisorTest() : SimHostTest("pvback-sup") {}

  void SetUp() override {
    SimHostTest::SetUp();
    if (HasFatalFailure()) return;
    disk_ = dir_ / "disk.img";
    int fd = ::open(disk_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 4 << 20), 0);
    ::close(fd);
    log_ = dir_ / "supervisor.log";
  }

  void TearDown() override {
    supervisor_.reset();  // SIGKILL; its children follow (PR_SET_PDEATHSIG)
    if (HasFailure()) std::fprintf(stderr, "--- supervisor log ---\n%s\n", read_text(log_).c_str());
    SimHostTest::TearDown();
  }

  // The options every test gives: the former mode (a backend process per device, whose decisions
  // these tests watch) and a DPDK vif; HostTest gives its own.
  virtual std::vector<std::string> mode_args() const {
    return {"--process-per-device", "--net-arg", "--exit",         "--net-arg", "dpdk",
            "--net-arg",            "--dpdk-devargs", "--net-arg", "net_null0"};
  }

  void start_supervisor(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--blk-binary", PVBACK_BLK, "--net-binary", PVBACK_NET,
                                     "--blk-arg", "--stats-interval-ms", "--blk-arg", "50",
                                     "--restart-delay-ms", "200",
                                     // The test's own (absent unless a test writes it), never the host's.
                                     "--config", (dir_ / "pvback.conf").string()};
    const auto mode = mode_args();
    args.insert(args.end(), mode.begin(), mode.end());
    args.insert(args.end(), extra.begin(), extra.end());
    supervisor_.emplace(PVBACK_SUPERVISOR, 30s);
    for (const auto& e : supervisor_env_) supervisor_->add_environment(e);
    supervisor_->spawn(hv_->run_dir(), std::move(args), log_);
    ASSERT_TRUE(eventually([&] { return log_text().find("watching") != std::string::npos; })) << log_text();
  }

  std::optional<int> wait_supervisor_exit() { return supervisor_->wait_exit(); }
  bool supervisor_running() { return supervisor_ && supervisor_->running(); }
  pid_t supervisor_pid() const { return supervisor_ ? supervisor_->pid() : -1; }

  std::string log_text() { return read_text(log_); }
  std::size_t log_count(const std::string& needle) {
    const std::string text = log_text();
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }

  std::string vbd_path(std::uint32_t devid = kDevid) const { return sim::vbd_backend_path(0, kGuest, devid); }
  std::string vif_path() const { return sim::vif_backend_path(0, kGuest, 0); }
  std::filesystem::path vbd_stats(std::uint32_t devid = kDevid) const {
    return hv_->run_dir() / "stats" / ("vbd-1-" + std::to_string(devid) + ".json");
  }
  void add_vbd(std::uint32_t devid = kDevid) {
    sim::VbdSpec spec;
    spec.frontend_domid = kGuest;
    spec.devid = devid;
    spec.params = disk_.string();
    ASSERT_EQ(sim::add_vbd(dom0_xs_, spec), 0);
  }
  int state(const std::string& backend_path) {
    auto v = dom0_xs_.read_uint(backend_path + "/state", 100);
    return v ? static_cast<int>(*v) : -1;
  }
  // The one backend the supervisor runs for `backend_path`, or -1.
  pid_t child_for(const std::string& backend_path) {
    auto pids = children_of(supervisor_pid(), backend_path + " ");
    return pids.size() == 1 ? pids[0] : -1;
  }

  std::unique_ptr<blkfront::BlkFront> attach() {
    blkfront::Options options;
    options.max_queues = 2;
    options.close_timeout = 2s;
    auto front = blkfront::BlkFront::attach(*guest_platform_, sim::vbd_frontend_path(kGuest, kDevid), options);
    EXPECT_TRUE(front.has_value()) << "attach: " << (front ? "" : std::strerror(front.error()));
    return front ? std::move(*front) : nullptr;
  }

  std::filesystem::path disk_;
  std::filesystem::path log_;
  std::vector<std::string> supervisor_env_;  // "NAME=VALUE" for the next start_supervisor()
  std::optional<BackendProcess> supervisor_;
};

inline std::vector<std::byte> pattern(std::size_t bytes, unsigned seed) {
  std::vector<std::byte> out(bytes);
  for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<std::byte>((i * 131 + seed * 7 + (i >> 9)) & 0xff);
  return out;
}

}  // namespace pvback::test
