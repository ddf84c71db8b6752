// The fixture of pvback-net's data-plane tests on the TAP exit (data_plane_test.cpp,
// data_plane_cgroup_test.cpp): the test process enters a network namespace of its own (root; main
// in data_plane_test.cpp), where pvback-net's TAP lives; the host's side of the vif is an AF_PACKET
// socket on it, the guest's the userspace netfront.
#pragma once
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "grant/platform.hpp"
#include "sandbox/cgroup.hpp"
#include "tests/netback/device/vif_fixture.hpp"
#include "tests/netback/exits/net_support.hpp"
#include "tests/support/cgroup.hpp"
#include "tests/support/data_plane.hpp"

namespace pvback::test {

// Set by main once the test process is in a network namespace of its own.
extern bool g_netns;

using namespace std::chrono_literals;

inline std::vector<std::byte> as_bytes(const std::vector<std::uint8_t>& f) {
  std::vector<std::byte> out(f.size());
  std::memcpy(out.data(), f.data(), f.size());
  return out;
}
inline std::vector<std::uint8_t> as_u8(const std::vector<std::byte>& f) {
  std::vector<std::uint8_t> out(f.size());
  std::memcpy(out.data(), f.data(), f.size());
  return out;
}
inline std::size_t frame_size(std::uint32_t seq) { return 60 + (seq * 97) % 1400; }

class VifDataPlaneTest : public VifTest {
 protected:
  void SetUp() override {
    if (!g_netns) GTEST_SKIP() << "needs root: the TAP lives in a network namespace of the test's own";
    VifTest::SetUp();
    if (HasFatalFailure()) return;
    backend_log_ = dir_ / "backend.log";
  }
  void TearDown() override {
    // A control part SIGKILLed leaves its data plane serving for a successor: not across tests.
    if (backend_)
      for (pid_t pid : children_of(backend_->pid())) ::kill(pid, SIGKILL);
    if (const pid_t pid = data_plane(); pid > 0 && comm_of(pid) == "pvback-net-dp") ::kill(pid, SIGKILL);
    front_.reset();
    backend_.reset();
    // The data plane's control group, which a SIGKILLed control part leaves behind.
    sandbox::remove_leaf("", leaf_name());
    VifTest::TearDown();
  }

  // The vif's control-group leaf, as pvback-net names it on this simulated host.
  std::string leaf_name() const {
    grant::PlatformConfig config;
    config.kind = grant::PlatformConfig::Kind::Sim;
    config.sim_dir = hv_->run_dir().string();
    return config.host_tag() + "vif-" + std::to_string(kGuest) + "-" + std::to_string(kHandle);
  }
  // The data plane's control-group directories as the statistics list them (none: empty).
  std::vector<std::string> cgroup_dirs() { return cgroup_dirs_in(stats_text()); }

  // Each test's TAP has a name of its own: the vif is persistent, and one left by an earlier test
  // (of another queue count) would not take this one's queues.
  std::vector<std::string> tap_args(unsigned queues, std::vector<std::string> more = {}) {
    static int next = 0;
    tap_ = "pvbt" + std::to_string(::getpid() % 10000) + "." + std::to_string(next++);
    std::vector<std::string> a = {"--tap-up", "--tap-name", tap_, "--max-queues", std::to_string(queues)};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  pid_t data_plane() { return data_plane_pid_in(stats_text()); }
  // The successor of a SIGKILLed control part, started with `args` (the dead one's statistics file
  // removed first, so that what a test reads is the successor's).
  void start_successor(const std::vector<std::string>& args) {
    std::filesystem::remove(stats_);
    backend_ = std::make_unique<BackendProcess>(PVBACK_NET, std::chrono::seconds(30));
    backend_->start(hv_->run_dir(), backend_path(), args, stats_.string(), backend_log_);
  }
  // pvback-net on the TAP with `args`, a netfront of `queues` queues connected to it, its data
  // plane serving, and the host's side of the vif ready (a frame from the host reaches the guest).
  void connect(unsigned queues, std::vector<std::string> args, netfront::Options o = {}) {
    ASSERT_NO_FATAL_FAILURE(add_vif_and_start(std::move(args)));
    o.max_queues = queues;
    o.close_timeout = 200ms;  // a test may leave it without a backend to say goodbye to
    front_ = attach(o);
    ASSERT_NE(front_, nullptr);
    ASSERT_TRUE(eventually([&] { return stats_text().find("\"data_plane\"") != std::string::npos; })) << stats_text();
    host_ = std::make_unique<PacketSocket>(tap_);
    ASSERT_TRUE(host_->ok());
    settle();
  }

  // After carrier on, the kernel activates the vif's qdisc asynchronously: markers from the host
  // until one reaches the guest, then the guest's queues drained.
  void settle() {
    const std::uint32_t marker = 0xfffffff0u;
    ASSERT_TRUE(eventually([&] {
      host_->send(test_frame(60, marker));
      for (int i = 0; i < 10; ++i)
        for (auto& f : guest_frames(5ms))
          if (test_seq(f) == marker) return true;
      return false;
    }, 20s)) << "no frame from the host reached the guest\n" << stats_text() << log_text();
    while (!guest_frames(20ms).empty()) {
    }
  }

  // What the guest received meanwhile (test frames only), waiting up to `wait` on each queue.
  std::vector<std::vector<std::uint8_t>> guest_frames(std::chrono::milliseconds wait) {
    std::vector<std::vector<std::uint8_t>> out;
    for (unsigned q = 0; q < front_->num_queues(); ++q) {
      auto& queue = front_->queue(q);
      queue.wait(wait);
      queue.reap_tx();
      netfront::RxFrame f;
      while (queue.receive(f)) {
        auto bytes = as_u8(f.data);
        if (is_test_frame(bytes)) out.push_back(std::move(bytes));
      }
    }
    return out;
  }

  // Frames seq first..first+n-1, sent by the guest round robin over its queues, all reach the
  // host byte for byte.
  void guest_to_host(std::uint32_t first, unsigned n) {
    std::set<std::uint32_t> want;
    for (std::uint32_t seq = first; seq < first + n; ++seq) {
      const auto frame = as_bytes(test_frame(frame_size(seq), seq));
      auto& q = front_->queue(seq % front_->num_queues());
      int rc = EAGAIN;
      ASSERT_TRUE(eventually([&] {
        rc = q.send(frame);
        if (rc == EAGAIN) {
          q.wait(5ms);
          q.reap_tx();
        }
        return rc != EAGAIN;
      }, 20s));
      ASSERT_EQ(rc, 0) << "seq " << seq;
      want.insert(seq);
    }
    while (!want.empty()) {
      auto f = host_->recv([&](const auto& fr) { return is_test_frame(fr) && want.contains(test_seq(fr)); }, 10000);
      ASSERT_TRUE(f.has_value()) << want.size() << " of " << n << " frames from the guest never reached the host\n"
                                 << stats_text();
      EXPECT_EQ(*f, test_frame(frame_size(test_seq(*f)), test_seq(*f)));
      want.erase(test_seq(*f));
    }
    for (unsigned q = 0; q < front_->num_queues(); ++q) front_->queue(q).reap_tx();
  }

  // Frames from the host all reach the guest byte for byte (the host retries a frame the kernel
  // dropped: only what arrives is compared).
  void host_to_guest(std::uint32_t first, unsigned n) {
    std::set<std::uint32_t> want;
    for (std::uint32_t seq = first; seq < first + n; ++seq) want.insert(seq);
    for (int round = 0; round < 20 && !want.empty(); ++round) {
      for (std::uint32_t seq : want) host_->send(test_frame(frame_size(seq), seq));
      const auto deadline = std::chrono::steady_clock::now() + 1s;
      while (!want.empty() && std::chrono::steady_clock::now() < deadline)
        for (auto& f : guest_frames(10ms)) {
          if (!want.contains(test_seq(f))) continue;
          EXPECT_EQ(f, test_frame(frame_size(test_seq(f)), test_seq(f)));
          want.erase(test_seq(f));
        }
    }
    EXPECT_TRUE(want.empty()) << want.size() << " of " << n << " frames from the host never reached the guest\n"
                              << stats_text();
  }

  // Whether an IPv4 UDP frame from the host reaches the guest with a hash (the control ring's
  // Toeplitz configuration at work); nullopt if none arrived.
  std::optional<bool> ipv4_frame_is_hashed() {
    const auto frame = ipv4_frame(false, 100, 4000, 5000, false, 0x77);
    for (int round = 0; round < 50; ++round) {
      host_->send(frame);
      for (unsigned q = 0; q < front_->num_queues(); ++q) {
        auto& queue = front_->queue(q);
        queue.wait(10ms);
        netfront::RxFrame f;
        while (queue.receive(f))
          if (as_u8(f.data) == frame) return f.meta.has_hash && f.meta.hash_algorithm == netif::kHashAlgorithmToeplitz;
      }
    }
    return std::nullopt;
  }

  std::string tap_;
  std::unique_ptr<netfront::NetFront> front_;
  std::unique_ptr<PacketSocket> host_;
};

}  // namespace pvback::test
