// HostTest: pvback-supervisor as the host daemon (its default mode), with the test as toolstack
// and, through the userspace blkfront, as the guests: a second guest, the control socket, the
// host's Dom0 XenStore clients. Shared by host_test.cpp and host_kill_test.cpp.
#pragma once
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "tests/supervisor/supervisor_fixture.hpp"

namespace pvback::test {

constexpr DomId kGuest2 = 2;

class HostTest : public SupervisorTest {
 protected:
  std::vector<std::string> mode_args() const override {
    return {"--net-arg", "--stats-interval-ms", "--net-arg", "50"};
  }

  // Guest 2 with a vbd on `params` (default: a copy of the test's disk).
  void add_guest2_vbd(std::string params = {}) {
    if (params.empty()) {
      const auto disk2 = dir_ / "disk2.img";
      std::filesystem::copy_file(disk_, disk2);
      params = disk2.string();
    }
    create_domain(kGuest2);
    if (HasFatalFailure()) return;
    sim::VbdSpec spec;
    spec.frontend_domid = kGuest2;
    spec.devid = kDevid;
    spec.params = params;
    ASSERT_EQ(sim::add_vbd(dom0_xs_, spec), 0);
  }

  std::unique_ptr<blkfront::BlkFront> attach_guest(const grant::Platform& platform, DomId domid) {
    blkfront::Options options;
    options.max_queues = 2;
    options.close_timeout = 2s;
    auto front = blkfront::BlkFront::attach(platform, sim::vbd_frontend_path(domid, kDevid), options);
    EXPECT_TRUE(front.has_value()) << "attach: " << (front ? "" : std::strerror(front.error()));
    return front ? std::move(*front) : nullptr;
  }

  // Guest 1's vbd on the test's disk and guest 2's on `params2` (add_guest2_vbd's default: a copy),
  // both at InitWait, and a blkfront attached to each (guest 2's platform kept with them).
  struct TwoGuests {
    std::optional<grant::Platform> guest2;
    std::unique_ptr<blkfront::BlkFront> front1;
    std::unique_ptr<blkfront::BlkFront> front2;
  };
  void attach_two_guests(TwoGuests& g, std::string params2 = {}) {
    add_vbd();
    ASSERT_NO_FATAL_FAILURE(add_guest2_vbd(std::move(params2)));
    const std::string vbd2 = sim::vbd_backend_path(0, kGuest2, kDevid);
    ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait && state(vbd2) == XenbusStateInitWait; }))
        << log_text();
    g.guest2.emplace(hv_->platform(kGuest2));
    g.front1 = attach();
    g.front2 = attach_guest(*g.guest2, kGuest2);
    ASSERT_NE(g.front1, nullptr);
    ASSERT_NE(g.front2, nullptr);
  }

  static void write_and_verify(blkfront::BlkFront& front, unsigned seed) {
    const auto data = pattern(64 << 10, seed);
    ASSERT_EQ(front.write(128, data), 0);
    std::vector<std::byte> back(data.size());
    ASSERT_EQ(front.read(128, back), 0);
    EXPECT_TRUE(back == data);
  }

  // A connection to the control socket: a request sent now, its answer taken later (the host daemon
  // answers a restart or a pause when it is done).
  class ControlConnection {
   public:
    explicit ControlConnection(const std::string& path) : sock_(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) {
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      if (::connect(sock_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) sock_.reset();
    }
    bool send(const std::string& request) {
      return sock_ && ::send(sock_.get(), request.data(), request.size(), MSG_NOSIGNAL) >= 0;
    }
    // Whether an answer is there to read (after waiting up to `wait`).
    bool answered(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
      pollfd p{sock_.get(), POLLIN, 0};
      return sock_ && ::poll(&p, 1, static_cast<int>(wait.count())) == 1;
    }
    // The answer ("" if none came within `timeout`).
    std::string answer(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
      if (!answered(timeout)) return "";
      std::string text(1 << 20, '\0');
      const ssize_t n = ::recv(sock_.get(), text.data(), text.size(), MSG_DONTWAIT);
      text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
      return text;
    }

   private:
    UniqueFd sock_;
  };

  ControlConnection control_connection() {
    return ControlConnection((hv_->run_dir() / "stats" / "control.sock").string());
  }

  // One request on the control socket, its answer ("" if none came within `timeout`).
  std::string control(const std::string& request, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto c = control_connection();
    if (!c.send(request)) return "";
    return c.answer(timeout);
  }

  // The data-plane pid the host daemon's list gives `device` (-1: not there, none, or no answer).
  pid_t listed_data_plane_pid(const std::string& device = "vbd-1-51712") {
    const std::string list = control("1 list");
    const auto at = list.find("\"device\": \"" + device + "\"");
    if (at == std::string::npos) return -1;
    const std::string key = "\"data_plane_pid\": ";
    const auto pid = list.find(key, at);
    if (pid == std::string::npos || pid > list.find('}', at)) return -1;
    return static_cast<pid_t>(std::atoi(list.c_str() + pid + key.size()));
  }

  // Processes other than this test connected to Dom0's XenStore socket.
  std::vector<pid_t> xenstore_clients() const {
    auto pids = hv_->xenstore_dom0_clients();
    std::erase(pids, ::getpid());
    return pids;
  }
};

}  // namespace pvback::test
