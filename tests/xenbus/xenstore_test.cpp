#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/xenbus/sim_fixture.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::xenbus {
namespace {

using XenStoreSim = testing::SimXenStoreTest;

TEST_F(XenStoreSim, ReadWriteMkdirRmDirectory) {
  XenStore xs = connect();
  ASSERT_TRUE(xs);
  EXPECT_EQ(xs.write("/test/a", "hello"), 0);
  EXPECT_EQ(xs.read("/test/a").value(), "hello");
  EXPECT_EQ(xs.write("/test/empty", ""), 0);
  EXPECT_EQ(xs.read("/test/empty").value(), "");
  EXPECT_EQ(xs.mkdir("/test/dir"), 0);
  EXPECT_TRUE(xs.exists("/test/dir").value());
  EXPECT_FALSE(xs.exists("/test/missing").value());
  EXPECT_EQ(xs.read("/test/missing").error(), ENOENT);

  auto names = xs.directory("/test");
  ASSERT_TRUE(names.has_value());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "dir", "empty"}));

  EXPECT_EQ(xs.rm("/test/a"), 0);
  EXPECT_EQ(xs.read("/test/a").error(), ENOENT);
  EXPECT_EQ(xs.rm("/test/a"), 0) << "removing a node that is gone is not an error";
  EXPECT_EQ(xs.directory("/test/missing").error(), ENOENT);
}

TEST_F(XenStoreSim, StrictIntegerReads) {
  XenStore xs = connect();
  ASSERT_TRUE(xs);
  ASSERT_EQ(xs.write("/n/good", "4096"), 0);
  ASSERT_EQ(xs.write("/n/neg", "-12"), 0);
  ASSERT_EQ(xs.write("/n/junk", "12abc"), 0);
  ASSERT_EQ(xs.write("/n/huge", "999999999999999999999999999999"), 0);
  EXPECT_EQ(xs.read_uint("/n/good").value(), 4096u);
  EXPECT_EQ(xs.read_uint("/n/good", 1024).error(), ERANGE);
  EXPECT_EQ(xs.read_int("/n/neg").value(), -12);
  EXPECT_EQ(xs.read_uint("/n/neg").error(), EINVAL);
  EXPECT_EQ(xs.read_uint("/n/junk").error(), EINVAL);
  EXPECT_EQ(xs.read_uint("/n/huge").error(), ERANGE);
  EXPECT_EQ(xs.read_int("/n/missing").error(), ENOENT);
}

TEST_F(XenStoreSim, PermissionsRoundTrip) {
  XenStore xs = connect();
  ASSERT_TRUE(xs);
  ASSERT_EQ(xs.write("/perm/node", "x"), 0);
  const std::vector<Permission> perms{{0, PermAccess::None}, {5, PermAccess::Read}, {7, PermAccess::ReadWrite}};
  ASSERT_EQ(xs.set_permissions("/perm/node", perms), 0);
  auto got = xs.get_permissions("/perm/node");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, perms);
  EXPECT_EQ(xs.set_permissions("/perm/node", std::vector<Permission>{}), EINVAL);
  EXPECT_EQ(xs.get_permissions("/perm/missing").error(), ENOENT);
}

TEST_F(XenStoreSim, TransactionCommitsAtomically) {
  XenStore xs = connect();
  XenStore other = connect();
  ASSERT_TRUE(xs && other);
  auto txn = xs.transaction_start();
  ASSERT_TRUE(txn.has_value());
  ASSERT_EQ(xs.write("/tx/a", "1", *txn), 0);
  EXPECT_EQ(other.read("/tx/a").error(), ENOENT) << "uncommitted write must not be visible";
  ASSERT_EQ(xs.transaction_end(*txn, /*abort=*/false), 0);
  EXPECT_EQ(other.read("/tx/a").value(), "1");
}

TEST_F(XenStoreSim, TransactRetriesOnRealConflict) {
  XenStore xs = connect();
  XenStore other = connect();
  ASSERT_TRUE(xs && other);
  ASSERT_EQ(xs.write("/counter", "10"), 0);
  unsigned attempts = 0;
  unsigned bodies = 0;
  const int rc = xs.transact(
      [&](Txn txn) -> int {
        ++bodies;
        auto value = xs.read_uint("/counter", UINT64_MAX, txn);
        if (!value) return value.error();
        // Another connection changes what this transaction read: its commit must fail with
        // EAGAIN and the body must run again on the new value.
        if (bodies == 1 && other.write("/counter", "100") != 0) return EIO;
        return xs.write("/counter", std::to_string(*value + 1), txn);
      },
      XenStore::kDefaultTransactionAttempts, &attempts);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(attempts, 2u);
  EXPECT_EQ(xs.read("/counter").value(), "101");
}

TEST_F(XenStoreSim, TransactGivesUpAfterBoundedAttempts) {
  XenStore xs = connect();
  XenStore other = connect();
  ASSERT_TRUE(xs && other);
  ASSERT_EQ(xs.write("/hot", "0"), 0);
  unsigned attempts = 0;
  unsigned bodies = 0;
  const int rc = xs.transact(
      [&](Txn txn) -> int {
        ++bodies;
        auto value = xs.read("/hot", txn);
        if (!value) return value.error();
        if (other.write("/hot", std::to_string(bodies)) != 0) return EIO;
        return xs.write("/hot", "mine", txn);
      },
      3, &attempts);
  EXPECT_EQ(rc, EAGAIN);
  EXPECT_EQ(attempts, 3u);
  EXPECT_EQ(xs.read("/hot").value(), "3");
}

TEST_F(XenStoreSim, TransactBodyErrorAborts) {
  XenStore xs = connect();
  ASSERT_TRUE(xs);
  unsigned attempts = 0;
  const int rc = xs.transact(
      [&](Txn txn) -> int {
        if (xs.write("/aborted", "x", txn) != 0) return EIO;
        return EPERM;
      },
      XenStore::kDefaultTransactionAttempts, &attempts);
  EXPECT_EQ(rc, EPERM);
  EXPECT_EQ(attempts, 1u);
  EXPECT_EQ(xs.read("/aborted").error(), ENOENT);
}

// Reads watch events until one with `token` arrives (or the deadline passes).
std::vector<WatchEvent> events_until_token(XenStore& xs, const std::string& token) {
  std::vector<WatchEvent> seen;
  testing::SimXenStoreTest::pump_until(
      xs.fd(),
      [&] {
        while (auto event = xs.read_watch()) seen.push_back(*event);
      },
      [&] {
        for (const auto& e : seen)
          if (e.token == token) return true;
        return false;
      });
  return seen;
}

TEST_F(XenStoreSim, WatchesDeliverThroughFdAndUnwatchStopsThem) {
  XenStore xs = connect();
  XenStore writer = connect();
  ASSERT_TRUE(xs && writer);
  ASSERT_GE(xs.fd(), 0);
  EXPECT_EQ(xs.read_watch().error(), EAGAIN);

  ASSERT_EQ(xs.watch("/w", "tok"), 0);
  auto initial = events_until_token(xs, "tok");
  ASSERT_FALSE(initial.empty());
  EXPECT_EQ(initial.back().path, "/w") << "a new watch fires once for its own path";

  ASSERT_EQ(writer.write("/w/child", "1"), 0);
  auto changed = events_until_token(xs, "tok");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].path, "/w/child");
  EXPECT_EQ(xs.read_watch().error(), EAGAIN) << "drained";

  ASSERT_EQ(xs.unwatch("/w", "tok"), 0);
  ASSERT_EQ(xs.watch("/marker", "marker"), 0);
  events_until_token(xs, "marker");  // the registration event
  ASSERT_EQ(writer.write("/w/child", "2"), 0);
  ASSERT_EQ(writer.write("/marker", "1"), 0);
  // Events on one connection arrive in order: nothing for "tok" may come before the marker.
  auto after = events_until_token(xs, "marker");
  ASSERT_FALSE(after.empty());
  for (const auto& e : after) EXPECT_NE(e.token, "tok") << e.path;
  EXPECT_EQ(xs.unwatch("/nowatch", "tok"), ENOENT);
}

// XSA-349: events nobody reads yet are coalesced per token as they arrive: a path already pending
// is not queued twice, and past kMaxPendingPathsPerToken distinct paths the token's events become
// one event for the watched path, in the place of its oldest. Other tokens keep their own events.
TEST_F(XenStoreSim, PendingWatchEventsAreBoundedPerToken) {
  XenStore xs = connect();
  XenStore writer = connect();
  ASSERT_TRUE(xs && writer);
  ASSERT_EQ(xs.watch("/other", "other"), 0);
  ASSERT_EQ(xs.watch("/flood", "flood"), 0);
  const std::uint64_t registrations = 2;
  for (int i = 0; i < 50; ++i) ASSERT_EQ(writer.write("/other/same", std::to_string(i)), 0);
  const int children = static_cast<int>(kMaxPendingPathsPerToken) * 4;
  for (int round = 0; round < 3; ++round)
    for (int c = 0; c < children; ++c) ASSERT_EQ(writer.write("/flood/c" + std::to_string(c), "x"), 0);
  ASSERT_EQ(writer.write("/other/last", "1"), 0);
  const std::uint64_t sent = registrations + 50 + 3 * children + 1;
  // Taken from libxenstore without anyone calling read_watch().
  ASSERT_TRUE(testing::SimXenStoreTest::pump_until(xs.fd(), [] {}, [&] { return xs.watch_stats().received >= sent; }));
  const WatchQueueStats stats = xs.watch_stats();
  EXPECT_EQ(stats.received, sent);
  EXPECT_EQ(stats.delivered, 0u);
  EXPECT_EQ(stats.pending, 4u) << "/other, /other/same, /flood (all of it), /other/last";

  std::vector<WatchEvent> events;
  while (auto event = xs.read_watch()) events.push_back(*event);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].token, "other");
  EXPECT_EQ(events[0].path, "/other");
  EXPECT_EQ(events[1].token, "flood");
  EXPECT_EQ(events[1].path, "/flood") << "the watched path: re-read everything under it";
  EXPECT_EQ(events[2].token, "other");
  EXPECT_EQ(events[2].path, "/other/same");
  EXPECT_EQ(events[3].path, "/other/last");
  pollfd p{xs.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "the fd is quiet once everything was read";

  // Once delivered, a token starts afresh: single events keep their paths again.
  ASSERT_EQ(writer.write("/flood/c1", "y"), 0);
  auto after = events_until_token(xs, "flood");
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].path, "/flood/c1");
}

// The server goes away (issue 14): libxenstore closes its socket, every later call fails with a
// connection error, which the handle remembers, and probe() says so at once. Once without and
// once with libxenstore's reader thread (the first watch starts it), which see the hang-up in
// different places.
class XenStoreLoss : public testing::SimXenStoreTest {
 protected:
  void check_loss_is_noticed(XenStore& xs) {
    EXPECT_EQ(xs.probe("/local"), 0) << "ENOENT is an answer";
    EXPECT_FALSE(xs.connection_lost());
    EXPECT_EQ(xs.read_watch().error(), EAGAIN);
    server_->stop();
    server_thread_.join();
    EXPECT_NE(xs.probe("/local"), 0);
    EXPECT_TRUE(xs.connection_lost());
    EXPECT_TRUE(is_connection_error(xs.connection_error())) << std::strerror(xs.connection_error());
    EXPECT_TRUE(is_connection_error(xs.read("/local").error()));
    EXPECT_TRUE(is_connection_error(xs.write("/x", "1")));
    auto event = xs.read_watch();
    ASSERT_FALSE(event.has_value());
    EXPECT_TRUE(is_connection_error(event.error())) << std::strerror(event.error());
    XenStore moved = std::move(xs);
    EXPECT_TRUE(moved.connection_lost()) << "the loss moves with the handle";
  }
};

TEST_F(XenStoreLoss, NoticedWithoutWatches) {
  XenStore xs = connect();
  ASSERT_TRUE(xs);
  check_loss_is_noticed(xs);
}

TEST_F(XenStoreLoss, NoticedWithTheReaderThreadRunning) {
  XenStore xs = connect();
  ASSERT_TRUE(xs);
  ASSERT_EQ(xs.watch("/w", "tok"), 0);
  ASSERT_FALSE(events_until_token(xs, "tok").empty());
  check_loss_is_noticed(xs);
}

}  // namespace
}  // namespace pvback::xenbus
