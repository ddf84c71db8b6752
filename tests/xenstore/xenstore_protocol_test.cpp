// xs::Protocol driven directly, without sockets: what tests/fuzz/xenstore_wire_fuzz found.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "sim/xenstore/protocol.hpp"

namespace pvback::test {
namespace {

using namespace sim::xs;

std::string z(const std::string& s) { return s + std::string(1, '\0'); }

struct Reply {
  xsd_sockmsg header{};
  std::string payload;
};

// The messages queued for a session (it must hold whole ones only); empties the queue.
std::vector<Reply> take(Session& session) {
  std::vector<Reply> out;
  std::string_view rest(session.out);
  while (rest.size() >= sizeof(xsd_sockmsg)) {
    Reply r;
    std::memcpy(&r.header, rest.data(), sizeof r.header);
    rest.remove_prefix(sizeof r.header);
    if (rest.size() < r.header.len) break;
    r.payload = rest.substr(0, r.header.len);
    rest.remove_prefix(r.header.len);
    out.push_back(std::move(r));
  }
  EXPECT_TRUE(rest.empty()) << "a partial message queued";
  session.out.clear();
  return out;
}

class XenStoreProtocolTest : public ::testing::Test {
 protected:
  XenStoreProtocolTest() {
    dom0_.caller = Caller{0, true};
    protocol_.attach(dom0_);
  }
  ~XenStoreProtocolTest() override { protocol_.detach(dom0_); }

  std::vector<Reply> request(Session& session, std::uint32_t type, const std::string& payload, std::uint32_t tx = 0) {
    const xsd_sockmsg header{type, 7, tx, static_cast<std::uint32_t>(payload.size())};
    protocol_.handle_message(session, header, payload);
    return take(session);
  }

  Protocol protocol_{{}};
  Session dom0_;
};

TEST_F(XenStoreProtocolTest, OverlongWatchEventIsDroppedNotSent) {
  const std::string token(3000, 't');
  auto replies = request(dom0_, XS_WATCH, z("/e") + z(token));
  ASSERT_EQ(replies.size(), 2u);  // OK, then the first event (as long as the request: it fits)
  EXPECT_EQ(replies[1].payload, z("/e") + z(token));

  // An event for this node would carry 1223 + 1 + 3000 + 1 bytes, more than any client accepts.
  std::string deep = "/e";
  for (int i = 0; i < 20; ++i) deep += "/" + std::string(60, 'z');
  replies = request(dom0_, XS_WRITE, z(deep) + "v");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].header.type, static_cast<std::uint32_t>(XS_WRITE));
  EXPECT_LE(replies[0].header.len, XENSTORE_PAYLOAD_MAX);

  // Events that fit still come.
  replies = request(dom0_, XS_WRITE, z("/e/short") + "v");
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1].header.type, static_cast<std::uint32_t>(XS_WATCH_EVENT));
  EXPECT_EQ(replies[1].payload, z("/e/short") + z(token));
}

TEST_F(XenStoreProtocolTest, GuestNodeQuotaHoldsAcrossConcurrentTransactions) {
  ASSERT_EQ(request(dom0_, XS_INTRODUCE, z("5") + z("1") + z("1"))[0].payload, z("OK"));
  ASSERT_EQ(request(dom0_, XS_MKDIR, z("/local/domain/5"))[0].payload, z("OK"));
  ASSERT_EQ(request(dom0_, XS_SET_PERMS, z("/local/domain/5") + z("n5"))[0].payload, z("OK"));
  Session guest;
  guest.caller = Caller{5, false};
  protocol_.attach(guest);
  ASSERT_EQ(request(guest, XS_MKDIR, z("a"))[0].payload, z("OK"));
  ASSERT_EQ(request(guest, XS_MKDIR, z("b"))[0].payload, z("OK"));

  // Each transaction alone stays within the quota, and they touch no common node (so neither
  // conflicts), but together they would make the guest own more than kMaxNodesPerGuest.
  std::string deep;
  for (int i = 0; i < 600; ++i) deep += "/q";
  ASSERT_EQ(request(guest, XS_TRANSACTION_START, z(""))[0].payload, z("1"));
  ASSERT_EQ(request(guest, XS_TRANSACTION_START, z(""))[0].payload, z("2"));
  ASSERT_EQ(request(guest, XS_WRITE, z("a" + deep), 1)[0].payload, z("OK"));
  ASSERT_EQ(request(guest, XS_WRITE, z("b" + deep), 2)[0].payload, z("OK"));
  ASSERT_EQ(request(guest, XS_TRANSACTION_END, z("T"), 1)[0].payload, z("OK"));
  const auto second = request(guest, XS_TRANSACTION_END, z("T"), 2);
  EXPECT_EQ(second[0].header.type, static_cast<std::uint32_t>(XS_ERROR));
  EXPECT_EQ(second[0].payload, z("ENOSPC"));

  std::size_t owned = 0;
  for (const auto& [path, node] : protocol_.store().tree()) owned += node.perms.front().domid == 5;
  EXPECT_LE(owned, kMaxNodesPerGuest);
  EXPECT_FALSE(protocol_.store().tree().contains("/local/domain/5/b/q"));  // nothing of it applied
  protocol_.detach(guest);
}

}  // namespace
}  // namespace pvback::test
