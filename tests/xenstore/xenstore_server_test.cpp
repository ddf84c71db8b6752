// XenStoreServer driven by the real libxenstore, plus raw-socket clients that misbehave.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/io/xs_wire.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "tests/xenstore/xenstore_test_support.hpp"

namespace pvback::test {
namespace {

using Event = std::pair<std::string, std::string>;

class XenStoreServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dom0_ = open_xs(server_.dom0_socket());
    ASSERT_TRUE(dom0_) << strerror(errno);
  }

  xs_handle* dom0() { return dom0_.get(); }

  std::vector<std::string> directory(xs_handle* h, const std::string& path) {
    unsigned num = 0;
    char** names = xs_directory(h, XBT_NULL, path.c_str(), &num);
    if (!names) return {};
    std::vector<std::string> out(names, names + num);
    free(names);
    return out;
  }

  // Creates /local/domain/<domid> owned by the guest, introduces it and connects as the guest.
  XsHandle introduce_guest(DomId domid) {
    const std::string home = "/local/domain/" + std::to_string(domid);
    EXPECT_TRUE(xs_mkdir(dom0(), XBT_NULL, home.c_str()));
    xs_permissions perms[1] = {{domid, XS_PERM_NONE}};
    EXPECT_TRUE(xs_set_permissions(dom0(), XBT_NULL, home.c_str(), perms, 1));
    EXPECT_TRUE(xs_introduce_domain(dom0(), domid, 0x1234, 7));
    return open_xs(server_.guest_socket(domid));
  }

  // Consumes events until the one for `path`, returning those seen before it.
  std::vector<Event> events_until(xs_handle* h, const std::string& path) {
    std::vector<Event> seen;
    while (auto event = next_event(h)) {
      if (event->first == path) return seen;
      seen.push_back(*event);
    }
    ADD_FAILURE() << "no event for " << path;
    return seen;
  }

  ServerThread server_;
  XsHandle dom0_;
};

TEST_F(XenStoreServerTest, InitialTree) {
  EXPECT_EQ(directory(dom0(), "/"), (std::vector<std::string>{"local", "tool"}));
  EXPECT_EQ(directory(dom0(), "/local/domain"), (std::vector<std::string>{"0"}));
  unsigned num = 0;
  xs_permissions* perms = xs_get_permissions(dom0(), XBT_NULL, "/tool", &num);
  ASSERT_NE(perms, nullptr);
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(perms[0].id, 0u);
  EXPECT_EQ(perms[0].perms & (XS_PERM_READ | XS_PERM_WRITE), XS_PERM_NONE);
  free(perms);
  EXPECT_TRUE(xs_is_domain_introduced(dom0(), 0));
  EXPECT_FALSE(xs_is_domain_introduced(dom0(), 3));
  char* path = xs_get_domain_path(dom0(), 42);
  ASSERT_NE(path, nullptr);
  EXPECT_STREQ(path, "/local/domain/42");
  free(path);
}

TEST_F(XenStoreServerTest, ReadWriteMkdirRm) {
  EXPECT_TRUE(write_node(dom0(), "/a/b/c", "hello"));
  EXPECT_EQ(read_node(dom0(), "/a/b/c"), "hello");
  EXPECT_EQ(read_node(dom0(), "/a/b"), "");  // parents are created empty
  EXPECT_TRUE(write_node(dom0(), "/a/b/c", std::string("bin\0ary", 7)));
  EXPECT_EQ(read_node(dom0(), "/a/b/c"), std::string("bin\0ary", 7));

  EXPECT_FALSE(read_node(dom0(), "/nope"));
  EXPECT_EQ(errno, ENOENT);

  EXPECT_TRUE(xs_mkdir(dom0(), XBT_NULL, "/a/d"));
  EXPECT_TRUE(xs_mkdir(dom0(), XBT_NULL, "/a/d"));  // existing: fine
  EXPECT_EQ(directory(dom0(), "/a"), (std::vector<std::string>{"b", "d"}));

  EXPECT_TRUE(xs_rm(dom0(), XBT_NULL, "/a/b"));
  EXPECT_FALSE(read_node(dom0(), "/a/b/c"));
  EXPECT_EQ(directory(dom0(), "/a"), (std::vector<std::string>{"d"}));
  EXPECT_TRUE(xs_rm(dom0(), XBT_NULL, "/a/gone"));  // parent exists: fine
  EXPECT_FALSE(xs_rm(dom0(), XBT_NULL, "/x/y/z"));
  EXPECT_EQ(errno, ENOENT);
  EXPECT_FALSE(xs_rm(dom0(), XBT_NULL, "/"));
  EXPECT_EQ(errno, EINVAL);

  // Relative paths of a Dom0 connection live under /local/domain/0.
  EXPECT_TRUE(write_node(dom0(), "rel/node", "1"));
  EXPECT_EQ(read_node(dom0(), "/local/domain/0/rel/node"), "1");
}

TEST_F(XenStoreServerTest, InvalidPathsAreRejected) {
  for (const char* bad : {"/a//b", "/a/", "/a b", "/a/b!", "", "/\xc3\xa9"}) {
    EXPECT_FALSE(write_node(dom0(), bad, "x")) << bad;
    EXPECT_EQ(errno, EINVAL) << bad;
  }
  std::string too_long(XENSTORE_ABS_PATH_MAX + 1, 'a');  // not "/" + string: see GuestQuotasOn...
  too_long[0] = '/';
  EXPECT_FALSE(write_node(dom0(), too_long, "x"));
  const std::string rel_too_long(XENSTORE_REL_PATH_MAX + 1, 'a');
  EXPECT_FALSE(write_node(dom0(), rel_too_long, "x"));
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(write_node(dom0(), "/ok-_@/Z9", "x"));
}

TEST_F(XenStoreServerTest, PermissionsRoundTrip) {
  ASSERT_TRUE(write_node(dom0(), "/p", "v"));
  xs_permissions set[3] = {{5, XS_PERM_READ}, {7, XS_PERM_WRITE}, {9, XS_PERM_READ | XS_PERM_WRITE}};
  ASSERT_TRUE(xs_set_permissions(dom0(), XBT_NULL, "/p", set, 3));
  unsigned num = 0;
  xs_permissions* got = xs_get_permissions(dom0(), XBT_NULL, "/p", &num);
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(num, 3u);
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].id, set[i].id);
    EXPECT_EQ(got[i].perms & (XS_PERM_READ | XS_PERM_WRITE), set[i].perms);
  }
  free(got);
  // New children inherit the parent's permissions.
  ASSERT_TRUE(write_node(dom0(), "/p/child", "v"));
  got = xs_get_permissions(dom0(), XBT_NULL, "/p/child", &num);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(num, 3u);
  EXPECT_EQ(got[0].id, 5u);
  free(got);
}

TEST_F(XenStoreServerTest, TransactionCommitAndAbort) {
  xs_transaction_t t = xs_transaction_start(dom0());
  ASSERT_NE(t, XBT_NULL);
  ASSERT_TRUE(write_node(dom0(), "/tx/a", "1", t));
  EXPECT_EQ(read_node(dom0(), "/tx/a", t), "1");
  EXPECT_FALSE(read_node(dom0(), "/tx/a"));  // invisible outside until commit
  ASSERT_TRUE(xs_transaction_end(dom0(), t, false));
  EXPECT_EQ(read_node(dom0(), "/tx/a"), "1");

  t = xs_transaction_start(dom0());
  ASSERT_NE(t, XBT_NULL);
  ASSERT_TRUE(write_node(dom0(), "/tx/a", "2", t));
  ASSERT_TRUE(xs_rm(dom0(), t, "/tx"));
  ASSERT_TRUE(xs_transaction_end(dom0(), t, true));
  EXPECT_EQ(read_node(dom0(), "/tx/a"), "1");

  // The transaction is gone after its end.
  EXPECT_FALSE(read_node(dom0(), "/tx/a", t));
  EXPECT_EQ(errno, ENOENT);
  EXPECT_FALSE(xs_transaction_end(dom0(), t, false));
}

TEST_F(XenStoreServerTest, ConflictingTransactionFailsWithEagain) {
  ASSERT_TRUE(write_node(dom0(), "/c/x", "0"));
  xs_transaction_t t = xs_transaction_start(dom0());
  ASSERT_NE(t, XBT_NULL);
  EXPECT_EQ(read_node(dom0(), "/c/x", t), "0");
  ASSERT_TRUE(write_node(dom0(), "/c/x", "other"));  // someone else changes what t read
  EXPECT_EQ(read_node(dom0(), "/c/x", t), "0");       // t still sees its snapshot
  ASSERT_TRUE(write_node(dom0(), "/c/y", "mine", t));
  EXPECT_FALSE(xs_transaction_end(dom0(), t, false));
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_FALSE(read_node(dom0(), "/c/y"));
  EXPECT_EQ(read_node(dom0(), "/c/x"), "other");

  // A node created after the start that the transaction then looks at also conflicts.
  t = xs_transaction_start(dom0());
  ASSERT_TRUE(write_node(dom0(), "/c/new", "1"));
  EXPECT_FALSE(read_node(dom0(), "/c/new", t));
  ASSERT_TRUE(write_node(dom0(), "/c/z", "1", t));
  EXPECT_FALSE(xs_transaction_end(dom0(), t, false));
  EXPECT_EQ(errno, EAGAIN);

  // Unrelated changes do not.
  t = xs_transaction_start(dom0());
  ASSERT_TRUE(write_node(dom0(), "/elsewhere", "1"));
  ASSERT_TRUE(write_node(dom0(), "/c/x", "t", t));
  EXPECT_TRUE(xs_transaction_end(dom0(), t, false));
  EXPECT_EQ(read_node(dom0(), "/c/x"), "t");
}

TEST_F(XenStoreServerTest, WatchFiresOnRegistrationAndForDescendants) {
  ASSERT_TRUE(xs_watch(dom0(), "/w", "tok"));
  EXPECT_EQ(next_event(dom0()), (Event{"/w", "tok"}));  // even though /w does not exist
  ASSERT_TRUE(write_node(dom0(), "/w/a/b", "1"));
  EXPECT_EQ(next_event(dom0()), (Event{"/w/a/b", "tok"}));
  ASSERT_TRUE(write_node(dom0(), "/wx", "1"));  // not below /w
  ASSERT_TRUE(write_node(dom0(), "/w", "2"));
  EXPECT_EQ(next_event(dom0()), (Event{"/w", "tok"}));
  xs_permissions perms[1] = {{0, XS_PERM_READ}};
  ASSERT_TRUE(xs_set_permissions(dom0(), XBT_NULL, "/w/a", perms, 1));
  EXPECT_EQ(next_event(dom0()), (Event{"/w/a", "tok"}));

  EXPECT_FALSE(xs_watch(dom0(), "/w", "tok"));
  EXPECT_EQ(errno, EEXIST);
  ASSERT_TRUE(xs_unwatch(dom0(), "/w", "tok"));
  ASSERT_TRUE(xs_watch(dom0(), "/other", "sentinel"));
  EXPECT_EQ(next_event(dom0()), (Event{"/other", "sentinel"}));
  ASSERT_TRUE(write_node(dom0(), "/w/after", "1"));
  ASSERT_TRUE(write_node(dom0(), "/other", "1"));
  EXPECT_EQ(next_event(dom0()), (Event{"/other", "sentinel"}));  // nothing for the unwatched /w
}

TEST_F(XenStoreServerTest, TransactionEventsOnlyOnCommit) {
  // The sentinels exist beforehand: creating them would change /tw's child list, which the
  // transactions depend on, and make them fail with EAGAIN.
  ASSERT_TRUE(write_node(dom0(), "/tw/sentinel1", "0"));
  ASSERT_TRUE(write_node(dom0(), "/tw/sentinel2", "0"));
  ASSERT_TRUE(xs_watch(dom0(), "/tw", "tok"));
  events_until(dom0(), "/tw");

  xs_transaction_t t = xs_transaction_start(dom0());
  ASSERT_TRUE(write_node(dom0(), "/tw/in-tx", "1", t));
  ASSERT_TRUE(write_node(dom0(), "/tw/sentinel1", "1"));
  EXPECT_EQ(next_event(dom0()), (Event{"/tw/sentinel1", "tok"}));  // nothing before commit
  ASSERT_TRUE(xs_transaction_end(dom0(), t, false));
  EXPECT_EQ(next_event(dom0()), (Event{"/tw/in-tx", "tok"}));

  t = xs_transaction_start(dom0());
  ASSERT_TRUE(write_node(dom0(), "/tw/aborted", "1", t));
  ASSERT_TRUE(xs_transaction_end(dom0(), t, true));
  ASSERT_TRUE(write_node(dom0(), "/tw/sentinel2", "1"));
  EXPECT_EQ(next_event(dom0()), (Event{"/tw/sentinel2", "tok"}));  // nothing on abort
}

TEST_F(XenStoreServerTest, RemovingASubtreeFiresExactEventsForWatchedDescendants) {
  ASSERT_TRUE(write_node(dom0(), "/r/a/b/c", "1"));
  ASSERT_TRUE(xs_watch(dom0(), "/r", "ancestor"));
  ASSERT_TRUE(xs_watch(dom0(), "/r/a/b", "descendant"));
  ASSERT_TRUE(xs_watch(dom0(), "/r/a/b/c/never", "absent"));
  ASSERT_TRUE(write_node(dom0(), "/sync", "1"));
  ASSERT_TRUE(xs_watch(dom0(), "/sync", "sync"));
  events_until(dom0(), "/sync");

  ASSERT_TRUE(xs_rm(dom0(), XBT_NULL, "/r/a"));
  ASSERT_TRUE(write_node(dom0(), "/sync", "2"));
  const auto seen = events_until(dom0(), "/sync");
  EXPECT_EQ(std::multiset<Event>(seen.begin(), seen.end()),
            (std::multiset<Event>{{"/r/a", "ancestor"}, {"/r/a/b", "descendant"}}));
}

TEST_F(XenStoreServerTest, LargeDirectoryIsListedInParts) {
  // ~600 names of 20 bytes are well over one 4096-byte payload: DIRECTORY says E2BIG and
  // libxenstore continues with DIRECTORY_PART.
  std::set<std::string> expected;
  xs_transaction_t t = xs_transaction_start(dom0());
  for (int i = 0; i < 600; ++i) {
    std::string name = "child-with-long-name-" + std::to_string(i);
    ASSERT_TRUE(write_node(dom0(), "/big/" + name, "", t));
    expected.insert(name);
  }
  ASSERT_TRUE(xs_transaction_end(dom0(), t, false));
  const auto names = directory(dom0(), "/big");
  EXPECT_EQ(names.size(), 600u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected);
}

TEST_F(XenStoreServerTest, OversizePayloadIsRefusedByTheLibrary) {
  const std::string big(XENSTORE_PAYLOAD_MAX, 'x');
  EXPECT_FALSE(write_node(dom0(), "/big-value", big));
  EXPECT_EQ(errno, E2BIG);
  const std::string fits(XENSTORE_PAYLOAD_MAX - sizeof("/big-value"), 'x');
  EXPECT_TRUE(write_node(dom0(), "/big-value", fits));
  EXPECT_EQ(read_node(dom0(), "/big-value"), fits);
}

// ---- guests

TEST_F(XenStoreServerTest, GuestUsesRelativePathsAndIsConfinedByPermissions) {
  XsHandle guest = introduce_guest(5);
  ASSERT_TRUE(guest) << strerror(errno);
  EXPECT_TRUE(xs_is_domain_introduced(dom0(), 5));

  ASSERT_TRUE(write_node(guest.get(), "device/vbd/768/state", "1"));
  EXPECT_EQ(read_node(dom0(), "/local/domain/5/device/vbd/768/state"), "1");
  unsigned num = 0;
  xs_permissions* perms = xs_get_permissions(dom0(), XBT_NULL, "/local/domain/5/device/vbd/768/state", &num);
  ASSERT_NE(perms, nullptr);
  EXPECT_EQ(perms[0].id, 5u);  // the creating guest owns what it creates
  free(perms);

  // Dom0's home and the toolstack's nodes are "n0": neither readable nor writable.
  EXPECT_FALSE(read_node(guest.get(), "/local/domain/0"));
  EXPECT_EQ(errno, EACCES);
  EXPECT_FALSE(write_node(guest.get(), "/tool/x", "1"));
  EXPECT_EQ(errno, EACCES);
  EXPECT_FALSE(write_node(guest.get(), "/local/domain/6/x", "1"));
  EXPECT_EQ(errno, EACCES);
  EXPECT_FALSE(xs_rm(guest.get(), XBT_NULL, "/local"));
  EXPECT_EQ(errno, EACCES);
  xs_permissions mine[1] = {{5, XS_PERM_READ}};
  EXPECT_FALSE(xs_set_permissions(guest.get(), XBT_NULL, "/tool", mine, 1));
  EXPECT_EQ(errno, EACCES);
  unsigned dummy = 0;
  EXPECT_EQ(xs_get_permissions(guest.get(), XBT_NULL, "/tool", &dummy), nullptr);
  EXPECT_EQ(errno, EACCES);
  EXPECT_FALSE(xs_introduce_domain(guest.get(), 9, 1, 1));
  EXPECT_EQ(errno, EACCES);

  // Backend-style sharing: a Dom0-owned node the guest may read but not write.
  ASSERT_TRUE(write_node(dom0(), "/local/domain/0/backend/vbd/5/768/state", "4"));
  xs_permissions shared[2] = {{0, XS_PERM_NONE}, {5, XS_PERM_READ}};
  ASSERT_TRUE(xs_set_permissions(dom0(), XBT_NULL, "/local/domain/0/backend/vbd/5/768/state", shared, 2));
  EXPECT_EQ(read_node(guest.get(), "/local/domain/0/backend/vbd/5/768/state"), "4");
  EXPECT_FALSE(write_node(guest.get(), "/local/domain/0/backend/vbd/5/768/state", "5"));
  EXPECT_EQ(errno, EACCES);

  // The guest may hand its own node to others.
  ASSERT_TRUE(xs_set_permissions(guest.get(), XBT_NULL, "device/vbd/768/state", mine, 1));
}

TEST_F(XenStoreServerTest, GuestWatchesAreRelativeAndFiltered) {
  XsHandle guest = introduce_guest(7);
  ASSERT_TRUE(guest);
  ASSERT_TRUE(xs_watch(guest.get(), "data", "rel"));
  EXPECT_EQ(next_event(guest.get()), (Event{"data", "rel"}));
  ASSERT_TRUE(write_node(dom0(), "/local/domain/7/data/x", "1"));
  EXPECT_EQ(next_event(guest.get()), (Event{"data/x", "rel"}));

  // A guest watching "/" hears only about nodes it may read.
  ASSERT_TRUE(xs_watch(guest.get(), "/", "root"));
  EXPECT_EQ(next_event(guest.get()), (Event{"/", "root"}));
  ASSERT_TRUE(write_node(dom0(), "/tool/secret", "1"));
  ASSERT_TRUE(write_node(dom0(), "/local/domain/7/visible", "1"));
  EXPECT_EQ(next_event(guest.get()), (Event{"/local/domain/7/visible", "root"}));
}

TEST_F(XenStoreServerTest, IntroduceAndReleaseFireSpecialWatchesAndDropTheGuest) {
  ASSERT_TRUE(xs_watch(dom0(), "@introduceDomain", "intro"));
  ASSERT_TRUE(xs_watch(dom0(), "@releaseDomain", "release"));
  EXPECT_EQ(next_event(dom0()), (Event{"@introduceDomain", "intro"}));
  EXPECT_EQ(next_event(dom0()), (Event{"@releaseDomain", "release"}));

  XsHandle guest = introduce_guest(3);
  ASSERT_TRUE(guest);
  EXPECT_EQ(next_event(dom0()), (Event{"@introduceDomain", "intro"}));
  ASSERT_TRUE(write_node(guest.get(), "x", "1"));
  EXPECT_TRUE(std::filesystem::exists(server_.guest_socket(3)));

  ASSERT_TRUE(xs_release_domain(dom0(), 3));
  EXPECT_EQ(next_event(dom0()), (Event{"@releaseDomain", "release"}));
  EXPECT_FALSE(std::filesystem::exists(server_.guest_socket(3)));
  EXPECT_FALSE(xs_is_domain_introduced(dom0(), 3));
  EXPECT_FALSE(write_node(guest.get(), "x", "2"));  // its connection is gone
  EXPECT_FALSE(xs_release_domain(dom0(), 3));
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(XenStoreServerTest, GuestQuotasOnWatchesAndTransactions) {
  XsHandle guest = introduce_guest(4);
  ASSERT_TRUE(guest);
  int accepted = 0;
  for (int i = 0; i < 200; ++i) {
    // snprintf rather than "t" + std::to_string(i): GCC 12 at -O2 and above raises a false
    // -Wrestrict inside libstdc++'s string insert for the latter.
    char token[16];
    std::snprintf(token, sizeof token, "t%d", i);
    if (!xs_watch(guest.get(), "w", token)) {
      EXPECT_EQ(errno, E2BIG);
      break;
    }
    ++accepted;
  }
  EXPECT_EQ(accepted, 128);

  std::vector<xs_transaction_t> open;
  for (int i = 0; i < 20; ++i) {
    xs_transaction_t t = xs_transaction_start(guest.get());
    if (t == XBT_NULL) {
      EXPECT_EQ(errno, ENOSPC);
      break;
    }
    open.push_back(t);
  }
  EXPECT_EQ(open.size(), 10u);
  ASSERT_TRUE(xs_transaction_end(guest.get(), open.back(), true));
  EXPECT_NE(xs_transaction_start(guest.get()), XBT_NULL);
}

TEST_F(XenStoreServerTest, GuestNodeQuota) {
  XsHandle guest = introduce_guest(8);
  ASSERT_TRUE(guest);
  // The guest owns its home already; it may create up to the quota in total.
  xs_transaction_t t = xs_transaction_start(guest.get());
  ASSERT_NE(t, XBT_NULL);
  int created = 0;
  for (int i = 0; i < 1100; ++i) {
    std::string name = "n";
    name += std::to_string(i);  // not "n" + std::to_string(i): GCC 12's false -Wrestrict
    if (!write_node(guest.get(), name, "", t)) {
      EXPECT_EQ(errno, ENOSPC);
      break;
    }
    ++created;
  }
  EXPECT_EQ(created, 999);
  ASSERT_TRUE(xs_transaction_end(guest.get(), t, false));
  EXPECT_FALSE(write_node(guest.get(), "one-more", ""));
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_TRUE(write_node(guest.get(), "n0", "existing nodes stay writable"));
  EXPECT_TRUE(write_node(dom0(), "/local/domain/8/by-dom0", ""));  // Dom0 is not limited
}

TEST_F(XenStoreServerTest, GuestMayNotGiveAwayOwnership) {
  XsHandle guest = introduce_guest(10);
  ASSERT_TRUE(guest);
  ASSERT_TRUE(write_node(guest.get(), "data/mine", "1"));
  // Handing the node to Dom0 or another guest would escape the node quota (cxenstored: EPERM).
  xs_permissions to_dom0[1] = {{0, XS_PERM_NONE}};
  EXPECT_FALSE(xs_set_permissions(guest.get(), XBT_NULL, "data/mine", to_dom0, 1));
  EXPECT_EQ(errno, EPERM);
  xs_permissions to_other[2] = {{11, XS_PERM_NONE}, {10, XS_PERM_READ | XS_PERM_WRITE}};
  EXPECT_FALSE(xs_set_permissions(guest.get(), XBT_NULL, "data/mine", to_other, 2));
  EXPECT_EQ(errno, EPERM);
  unsigned num = 0;
  xs_permissions* perms = xs_get_permissions(dom0(), XBT_NULL, "/local/domain/10/data/mine", &num);
  ASSERT_NE(perms, nullptr);
  EXPECT_EQ(perms[0].id, 10u);
  free(perms);
  // Keeping the owner and changing the rest is fine; Dom0 may change the owner.
  xs_permissions shared[2] = {{10, XS_PERM_NONE}, {0, XS_PERM_READ}};
  EXPECT_TRUE(xs_set_permissions(guest.get(), XBT_NULL, "data/mine", shared, 2));
  EXPECT_TRUE(xs_set_permissions(dom0(), XBT_NULL, "/local/domain/10/data/mine", to_dom0, 1));
}

TEST_F(XenStoreServerTest, GuestTransactionMayNotLookAtUnboundedNodes) {
  XsHandle guest = introduce_guest(12);
  ASSERT_TRUE(guest);
  xs_transaction_t t = xs_transaction_start(guest.get());
  ASSERT_NE(t, XBT_NULL);
  // Every node a transaction reads, present or not, is remembered for the commit check.
  int looked = 0;
  for (int i = 0; i < 2000; ++i) {
    if (read_node(guest.get(), "made-up-" + std::to_string(i), t)) break;
    if (errno != ENOENT) break;
    ++looked;
  }
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_LT(looked, 2000);
  EXPECT_GE(looked, 1000);
  ASSERT_TRUE(xs_transaction_end(guest.get(), t, true));
  // Outside a transaction, and in Dom0's transactions, there is no such limit.
  EXPECT_FALSE(read_node(guest.get(), "made-up-x"));
  EXPECT_EQ(errno, ENOENT);
  xs_transaction_t t0 = xs_transaction_start(dom0());
  ASSERT_NE(t0, XBT_NULL);
  for (int i = 0; i < 1100; ++i) ASSERT_FALSE(read_node(dom0(), "/made-up-" + std::to_string(i), t0));
  EXPECT_EQ(errno, ENOENT);
  ASSERT_TRUE(xs_transaction_end(dom0(), t0, true));
}

// ---- raw clients

class RawClient {
 public:
  explicit RawClient(const std::filesystem::path& socket) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{10, 0};  // turns a hang into a failure
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  bool connected() const { return connected_; }

  bool send_raw(const void* data, std::size_t len) {
    return ::send(fd_.get(), data, len, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
  }
  bool send(std::uint32_t type, std::uint32_t tx_id, const std::string& payload, std::uint32_t req_id = 77) {
    xsd_sockmsg header{type, req_id, tx_id, static_cast<std::uint32_t>(payload.size())};
    return send_raw(&header, sizeof(header)) && (payload.empty() || send_raw(payload.data(), payload.size()));
  }
  bool read_exact(void* data, std::size_t len) {
    auto* p = static_cast<char*>(data);
    while (len > 0) {
      const ssize_t got = ::recv(fd_.get(), p, len, 0);
      if (got <= 0) return false;
      p += got;
      len -= static_cast<std::size_t>(got);
    }
    return true;
  }
  std::optional<std::pair<xsd_sockmsg, std::string>> receive() {
    xsd_sockmsg header;
    if (!read_exact(&header, sizeof(header))) return std::nullopt;
    if (header.len > XENSTORE_PAYLOAD_MAX) return std::nullopt;
    std::string payload(header.len, '\0');
    if (!read_exact(payload.data(), payload.size())) return std::nullopt;
    return std::pair{header, payload};
  }
  // True once the server closed the connection (after draining what it had queued).
  bool closed_by_server() {
    char buffer[65536];
    for (;;) {
      const ssize_t got = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
      if (got == 0) return true;
      if (got < 0) return false;
    }
  }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  bool connected_ = false;
};

std::string z(const std::string& s) { return s + std::string(1, '\0'); }

TEST_F(XenStoreServerTest, RawClientGetsErrorsForMalformedRequests) {
  RawClient raw(server_.dom0_socket());
  ASSERT_TRUE(raw.connected());
  auto expect_error = [&](std::uint32_t type, std::uint32_t tx_id, const std::string& payload, const char* err) {
    ASSERT_TRUE(raw.send(type, tx_id, payload));
    auto reply = raw.receive();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->first.type, static_cast<std::uint32_t>(XS_ERROR)) << type;
    EXPECT_EQ(reply->first.req_id, 77u);
    EXPECT_EQ(reply->second, z(err)) << type;
  };
  expect_error(999, 0, "", "EINVAL");                     // unknown type
  expect_error(XS_WATCH_EVENT, 0, "", "EINVAL");          // server-to-client type
  expect_error(XS_READ, 0, "/local", "EINVAL");           // missing NUL
  expect_error(XS_READ, 0, z("/a") + z("/b"), "EINVAL");  // extra argument
  expect_error(XS_READ, 12345, z("/local"), "ENOENT");    // unknown transaction
  expect_error(XS_WRITE, 0, "/no-nul", "EINVAL");
  expect_error(XS_SET_PERMS, 0, z("/local") + z("x9"), "EINVAL");
  expect_error(XS_SET_PERMS, 0, z("/local") + z("r99999"), "EINVAL");
  expect_error(XS_DIRECTORY_PART, 0, z("/local") + z("abc"), "EINVAL");
  expect_error(XS_TRANSACTION_END, 0, z("T"), "ENOENT");
  expect_error(XS_TRANSACTION_END, 0, z("maybe"), "EINVAL");
  expect_error(XS_GET_DOMAIN_PATH, 0, z("-1"), "EINVAL");
  expect_error(XS_INTRODUCE, 0, z("0") + z("1") + z("2"), "EINVAL");
  expect_error(XS_WATCH, 0, z("@bogus") + z("t"), "EINVAL");
  expect_error(XS_UNWATCH, 0, z("/never") + z("t"), "ENOENT");

  // Replies arrive in order and echo req_id; a request split over several writes is fine.
  const std::string payload = z("/local/domain");
  xsd_sockmsg header{XS_DIRECTORY, 4242, 0, static_cast<std::uint32_t>(payload.size())};
  const char* bytes = reinterpret_cast<const char*>(&header);
  ASSERT_TRUE(raw.send_raw(bytes, 5));
  ASSERT_TRUE(raw.send_raw(bytes + 5, sizeof(header) - 5));
  ASSERT_TRUE(raw.send_raw(payload.data(), 3));
  ASSERT_TRUE(raw.send_raw(payload.data() + 3, payload.size() - 3));
  auto reply = raw.receive();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->first.type, static_cast<std::uint32_t>(XS_DIRECTORY));
  EXPECT_EQ(reply->first.req_id, 4242u);
  EXPECT_EQ(reply->second, z("0"));
}

TEST_F(XenStoreServerTest, DirectoryPartOffsetsWalkTheList) {
  ASSERT_TRUE(write_node(dom0(), "/dp/aa", ""));
  ASSERT_TRUE(write_node(dom0(), "/dp/bbb", ""));
  RawClient raw(server_.dom0_socket());
  ASSERT_TRUE(raw.send(XS_DIRECTORY_PART, 0, z("/dp") + z("0")));
  auto first = raw.receive();
  ASSERT_TRUE(first);
  const std::string generation = first->second.substr(0, first->second.find('\0'));
  EXPECT_EQ(first->second, z(generation) + z("aa") + z("bbb") + z(""));
  ASSERT_TRUE(raw.send(XS_DIRECTORY_PART, 0, z("/dp") + z("3")));
  auto second = raw.receive();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->second, z(generation) + z("bbb") + z(""));
  ASSERT_TRUE(raw.send(XS_DIRECTORY_PART, 0, z("/dp") + z("100")));
  auto past_end = raw.receive();
  ASSERT_TRUE(past_end);
  EXPECT_EQ(past_end->second, z(generation) + z(""));
  // Any change to the child list changes the generation.
  ASSERT_TRUE(write_node(dom0(), "/dp/c", ""));
  ASSERT_TRUE(raw.send(XS_DIRECTORY_PART, 0, z("/dp") + z("0")));
  auto after = raw.receive();
  ASSERT_TRUE(after);
  EXPECT_NE(after->second.substr(0, after->second.find('\0')), generation);
}

TEST_F(XenStoreServerTest, HugeLengthDisconnectsOnlyThatClient) {
  RawClient raw(server_.dom0_socket());
  ASSERT_TRUE(raw.connected());
  xsd_sockmsg header{XS_WRITE, 1, 0, XENSTORE_PAYLOAD_MAX + 1};
  ASSERT_TRUE(raw.send_raw(&header, sizeof(header)));
  EXPECT_TRUE(raw.closed_by_server());
  ASSERT_TRUE(write_node(dom0(), "/still", "alive"));
  EXPECT_EQ(read_node(dom0(), "/still"), "alive");
}

TEST_F(XenStoreServerTest, GarbageAndTruncatedFramesDoNotHurtOthers) {
  {
    RawClient garbage(server_.dom0_socket());
    const std::string noise(1000, '\xff');  // a header with len 0xffffffff
    garbage.send_raw(noise.data(), noise.size());
    EXPECT_TRUE(garbage.closed_by_server());
  }
  {
    RawClient partial(server_.dom0_socket());
    xsd_sockmsg header{XS_WRITE, 1, 0, 100};
    ASSERT_TRUE(partial.send_raw(&header, sizeof(header)));
    ASSERT_TRUE(partial.send_raw("/abc", 4));
  }  // closed mid-frame
  EXPECT_TRUE(write_node(dom0(), "/fine", "1"));
  EXPECT_EQ(read_node(dom0(), "/fine"), "1");
  EXPECT_FALSE(read_node(dom0(), "/abc"));
}

TEST_F(XenStoreServerTest, ClientThatStopsReadingIsDisconnected) {
  RawClient slow(server_.dom0_socket());
  const std::string token(3000, 't');
  ASSERT_TRUE(slow.send(XS_WATCH, 0, z("/flood") + z(token)));
  // The watch's events go unread; once its queue passes the limit the server drops it.
  const std::string value(100, 'v');
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(write_node(dom0(), "/flood/n", value)) << i;
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_EQ(read_node(dom0(), "/flood/n"), value);
}

}  // namespace
}  // namespace pvback::test
