// base/service_notify: what a service manager listening on NOTIFY_SOCKET receives.
#include "base/service_notify.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/notify_listener.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;
using service::Notifier;

class ServiceNotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = "/tmp/pvback-notify-XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    listener_.emplace(dir_ / "notify");
    ASSERT_TRUE(listener_->bound());
  }
  void TearDown() override {
    listener_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::optional<NotifyListener> listener_;
};

TEST_F(ServiceNotifyTest, ReadyAndStoppingReachTheSocket) {
  Notifier notifier(listener_->path(), 0us);
  EXPECT_TRUE(notifier.enabled());
  EXPECT_FALSE(notifier.watchdog_enabled());
  notifier.ready("watching");
  notifier.stopping();
  ASSERT_TRUE(listener_->wait_for("STOPPING=1"));
  ASSERT_EQ(listener_->received().size(), 2u);
  EXPECT_EQ(listener_->received()[0], "READY=1\nSTATUS=watching");
  EXPECT_EQ(listener_->received()[1], "STOPPING=1");
  EXPECT_EQ(notifier.watchdog(), -1);  // no watchdog: nothing sent, no cap on a poll
  EXPECT_EQ(listener_->count("WATCHDOG=1"), 0u);
}

TEST_F(ServiceNotifyTest, WatchdogPingsEveryHalfInterval) {
  Notifier notifier(listener_->path(), 400ms);
  ASSERT_TRUE(notifier.watchdog_enabled());
  notifier.ready();
  const auto t0 = Notifier::Clock::now();
  EXPECT_EQ(notifier.watchdog(t0), 200);  // the first ping at once, the next in half the interval
  EXPECT_EQ(notifier.watchdog(t0 + 150ms), 50);
  EXPECT_EQ(notifier.watchdog(t0 + 200ms), 200);
  ASSERT_TRUE(listener_->wait_for("WATCHDOG=1", 2));
  EXPECT_EQ(listener_->count("WATCHDOG=1"), 2u);
}

TEST_F(ServiceNotifyTest, AbstractSocketName) {
  // "@name": a socket in the abstract namespace.
  const std::string name = "@pvback-notify-test-" + std::to_string(::getpid());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, name.data(), name.size());
  address.sun_path[0] = '\0';
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())),
            0);
  EXPECT_EQ(Notifier(name, 0us).send("READY=1"), 0);
  char buffer[64] = {};
  EXPECT_EQ(::recv(fd.get(), buffer, sizeof buffer, 0), 7);
  EXPECT_STREQ(buffer, "READY=1");
}

TEST_F(ServiceNotifyTest, NoSocketNoNotificationsAndNoFailure) {
  Notifier notifier;
  EXPECT_FALSE(notifier.enabled());
  EXPECT_EQ(notifier.send("READY=1"), 0);
  notifier.ready();
  EXPECT_EQ(notifier.watchdog(), -1);
  EXPECT_EQ(Notifier("relative/path", 0us).send("READY=1"), EINVAL);
}

TEST_F(ServiceNotifyTest, FromEnvironmentTakesTheVariablesAway) {
  ::setenv("NOTIFY_SOCKET", listener_->path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  Notifier notifier = Notifier::from_environment();
  EXPECT_TRUE(notifier.watchdog_enabled());
  // What this process starts is not the unit's main process: it must not inherit them.
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  EXPECT_EQ(std::getenv("WATCHDOG_PID"), nullptr);
  notifier.ready();
  EXPECT_EQ(notifier.watchdog(), 1000);
  ASSERT_TRUE(listener_->wait_for("WATCHDOG=1"));
  EXPECT_EQ(listener_->count("READY=1"), 1u);
}

TEST_F(ServiceNotifyTest, AWatchdogForAnotherPidIsNotOurs) {
  ::setenv("NOTIFY_SOCKET", listener_->path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  Notifier notifier = Notifier::from_environment();
  EXPECT_TRUE(notifier.enabled());
  EXPECT_FALSE(notifier.watchdog_enabled());
  ::setenv("WATCHDOG_USEC", "not a number", 1);
  EXPECT_FALSE(Notifier::from_environment().watchdog_enabled());
}

TEST(ServiceNotifyCap, CapsAPollTimeoutByTheNextPing) {
  EXPECT_EQ(service::cap_for_watchdog(-1, -1), -1);
  EXPECT_EQ(service::cap_for_watchdog(1000, -1), 1000);
  EXPECT_EQ(service::cap_for_watchdog(-1, 300), 300);
  EXPECT_EQ(service::cap_for_watchdog(1000, 300), 300);
  EXPECT_EQ(service::cap_for_watchdog(100, 300), 100);
}

}  // namespace
}  // namespace pvback::test
