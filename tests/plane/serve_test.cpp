// serve_control, the data plane's main thread, with the test as its control parts: the first on a
// socket pair (as Process::launch makes it), a successor on the listening socket (as
// Process::adopt reaches it). No process, no hypervisor: the loop alone.
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "base/fd_passing.hpp"
#include "plane/protocols.hpp"
#include "plane/serve.hpp"

namespace pvback::plane {
namespace {

using namespace std::chrono_literals;

class ServeControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = "/tmp/pvback-plane-XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    control_ = UniqueFd(pair[0]);
    plane_end_ = UniqueFd(pair[1]);
    auto listener = listen_seqpacket((dir_ / "dp").string(), 0600, 2);
    ASSERT_TRUE(listener.has_value());
    listener_ = std::move(*listener);
    int signals[2];  // stands for the signalfd: no signal comes
    ASSERT_EQ(::pipe2(signals, O_CLOEXEC), 0);
    signal_fd_ = UniqueFd(signals[0]);
    signal_write_ = UniqueFd(signals[1]);
    link_.emplace(plane_end_.get(), kBlkProtocol);
    // As a data plane does before it serves: Ready, which the control part reads.
    link_->say(kReady, 0);
    auto ready = next_notice(control_.get());
    ASSERT_TRUE(ready.has_value());
    ASSERT_EQ(ready->type, kReady);
    hooks_.adopted = [] { return encode_notice(kBlkProtocol, {kAdopted, 0, {}}); };
    thread_ = std::thread([this] {
      serve_control(*link_, listener_, signal_fd_, "test", kBlkProtocol, 10s, hooks_);
      returned_.store(true);
    });
  }
  void TearDown() override {
    if (thread_.joinable()) {
      // However the test ended: a successor's Stop ends the loop (or it ended already).
      if (!returned_.load()) stop_through_listener();
      thread_.join();
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A successor's Adopt on the listening socket; its connection, once the data plane answered
  // Adopted (invalid if it never did within 2 s, as Process::adopt waits).
  UniqueFd adopt() {
    auto sock = connect_seqpacket((dir_ / "dp").string());
    if (!sock) return {};
    if (send_message(sock->get(), encode_notice(kBlkProtocol, {kAdopt, 0, {}})) != 0) return {};
    pollfd p{sock->get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return {};
    std::vector<std::byte> answer(256);
    auto n = recv_message(sock->get(), answer);
    if (!n || *n == 0) return {};
    auto type = message_type(kBlkProtocol, std::span(answer).first(*n));
    if (!type || *type != kAdopted) return {};
    return std::move(*sock);
  }
  void stop_through_listener() {
    auto sock = connect_seqpacket((dir_ / "dp").string());
    if (sock) static_cast<void>(send_message(sock->get(), encode_notice(kBlkProtocol, {kStop, 0, {}})));
  }

  // The next notice on `fd` within 2 s.
  static std::optional<Notice> next_notice(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return std::nullopt;
    std::vector<std::byte> buf(512);
    auto n = recv_message(fd, buf);
    if (!n || *n == 0) return std::nullopt;
    auto notice = decode_notice(kBlkProtocol, std::span(buf).first(*n));
    if (!notice) return std::nullopt;
    return *notice;
  }

  std::filesystem::path dir_;
  UniqueFd control_, plane_end_, listener_, signal_fd_, signal_write_;
  std::optional<ControlLink> link_;
  ServeHooks hooks_;
  std::atomic<bool> returned_{false};
  std::thread thread_;
};

TEST_F(ServeControlTest, AControlPartThatDiesServesOnForASuccessorWhoStopsIt) {
  control_.reset();
  UniqueFd successor = adopt();
  ASSERT_TRUE(successor) << "the orphaned data plane did not answer a successor's Adopt";
  EXPECT_FALSE(returned_.load());
  ASSERT_EQ(send_message(successor.get(), encode_notice(kBlkProtocol, {kStop, 0, {}})), 0);
  thread_.join();
  EXPECT_TRUE(returned_.load());
}

// A control part that dies with a message of the data plane's unread resets the connection: the
// data plane's recv says ECONNRESET, not 0. That is its death all the same, and the data plane
// serves on for a successor. (It used to stop: under the host daemon, a successor SIGKILLed after
// the data plane had answered its Adopt and before it read the answer made the data plane stop,
// and the next successor, finding nobody on the socket, started a new data plane that resumed the
// rings from their records: a pause the guest saw where an adoption was due.
// HostRandomKillTest/host_daemon_mid_start found it.)
TEST_F(ServeControlTest, ASuccessorKilledBeforeItReadTheAdoptedAnswerLeavesItServingForTheNext) {
  control_.reset();
  {
    auto killed = connect_seqpacket((dir_ / "dp").string());
    ASSERT_TRUE(killed.has_value());
    ASSERT_EQ(send_message(killed->get(), encode_notice(kBlkProtocol, {kAdopt, 0, {}})), 0);
    pollfd p{killed->get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 2000), 1) << "no answer to Adopt";
  }  // closed with the answer unread
  UniqueFd next = adopt();
  ASSERT_TRUE(next) << "the data plane stopped when a successor died with its Adopted answer unread";
  EXPECT_FALSE(returned_.load());
}

// The same with the first control part, a Fatal of the data plane's unread.
TEST_F(ServeControlTest, AControlPartThatDiesWithAFatalUnreadLeavesItServingForASuccessor) {
  link_->fatal(EPROTO, "test");
  control_.reset();
  UniqueFd successor = adopt();
  ASSERT_TRUE(successor) << "the data plane stopped when its control part died with a Fatal unread";
  EXPECT_FALSE(returned_.load());
}

// A control part that read the Fatal and died before it acted on it (the device disconnected): its
// successor hears it again when it adopts the data plane, and so does the next one. (Each control
// part used to hear only a Fatal raised while none was attached: the device stayed connected with
// its queue stopped.)
TEST_F(ServeControlTest, EverySuccessorHearsAFatalItsPredecessorDiedWithout) {
  link_->fatal(EPROTO, "ring overflow");
  link_->fatal(EIO, "a second one");  // dropped: the first stands
  auto first = next_notice(control_.get());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, kFatal);
  EXPECT_EQ(first->error, EPROTO);
  control_.reset();  // read, not acted on
  for (int successor = 0; successor < 2; ++successor) {
    UniqueFd s = adopt();
    ASSERT_TRUE(s) << "successor " << successor;
    auto told = next_notice(s.get());
    ASSERT_TRUE(told.has_value()) << "successor " << successor << " never heard of the Fatal";
    EXPECT_EQ(told->type, kFatal);
    EXPECT_EQ(told->error, EPROTO);
    EXPECT_EQ(told->reason, "ring overflow");
  }
}

// Process::launch reads nothing but the Ready until it comes (it dropped anything else): a queue
// thread that hits a broken ring, or pauses, before the main thread said Ready has its message held
// and sent after the Ready, in order. (A restarted pvback-blk under a hostile rsp_prod stayed
// Connected with its queue stopped: VbdTest.RestartedBackendRefusesAHostileRspProd failed under
// load, its Fatal dropped as "unexpected notice 101 while waiting".)
TEST(ControlLinkTest, WhatQueueThreadsSayBeforeReadyFollowTheReady) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd control(pair[0]), plane_end(pair[1]);
  ControlLink link(plane_end.get(), kBlkProtocol);
  const auto own = encode_notice(kBlkProtocol, {104, 0, {}});  // one of pvback-blk's own (LockOwner)
  link.send(own);
  link.fatal(EPROTO, "ring overflow");
  link.fatal(EIO, "a second one");  // dropped: the first stands
  pollfd p{control.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 100), 0) << "something reached the control part before Ready";
  link.say(kReady, 0);
  std::vector<std::uint32_t> types;
  std::string reason;
  for (int i = 0; i < 3; ++i) {
    std::vector<std::byte> buf(512);
    ASSERT_EQ(::poll(&p, 1, 2000), 1) << "message " << i;
    auto n = recv_message(control.get(), buf);
    ASSERT_TRUE(n.has_value() && *n > 0);
    auto notice = decode_notice(kBlkProtocol, std::span(buf).first(*n));
    ASSERT_TRUE(notice.has_value());
    types.push_back(notice->type);
    if (notice->type == kFatal) reason = notice->reason;
  }
  EXPECT_EQ(types, (std::vector<std::uint32_t>{kReady, 104, kFatal}));
  EXPECT_EQ(reason, "ring overflow");
  EXPECT_EQ(::poll(&p, 1, 100), 0) << "more than the three messages";
  // After Ready, they go out as they come.
  link.send(own);
  EXPECT_EQ(::poll(&p, 1, 2000), 1);
}

}  // namespace
}  // namespace pvback::plane
