// The pure reader of a netfront's XenStore keys (netback/frontend_keys.hpp): what it accepts, and
// each refusal with its errno, its key and its value. Its libFuzzer target is
// tests/fuzz/vif_frontend_keys_fuzz.cpp.
#include <map>

#include <gtest/gtest.h>

#include "netback/frontend_keys.hpp"

namespace pvback::netback {
namespace {

using Keys = std::map<std::string, std::string>;

xenbus::FrontendKeyReader reader(const Keys& keys, std::vector<std::string>* asked = nullptr) {
  return [&keys, asked](const std::string& k) -> std::expected<std::string, int> {
    if (asked != nullptr) asked->push_back(k);
    auto it = keys.find(k);
    if (it == keys.end()) return std::unexpected(ENOENT);
    return it->second;
  };
}

// What Linux's xen-netfront writes for one queue.
Keys linux_single() {
  return {{"request-rx-copy", "1"}, {"feature-rx-notify", "1"}, {"feature-sg", "1"},
          {"feature-gso-tcpv4", "1"}, {"feature-gso-tcpv6", "1"}, {"feature-ipv6-csum-offload", "1"},
          {"tx-ring-ref", "8"}, {"rx-ring-ref", "9"}, {"event-channel", "5"}};
}

VifFrontendLimits offered(unsigned queues = 4) {
  VifFrontendLimits l;
  l.max_queues = queues;
  l.split_event_channels = l.ctrl_ring = l.multicast_control = l.xdp_headroom = true;
  return l;
}

TEST(VifFrontendKeys, ASingleQueueLinuxFrontend) {
  const Keys k = linux_single();
  auto r = read_vif_frontend(reader(k), offered());
  ASSERT_TRUE(r) << r.error().why;
  EXPECT_EQ(r->queues, 1u);
  EXPECT_TRUE(r->offloads.csum && r->offloads.ipv6_csum && r->offloads.sg);
  EXPECT_TRUE(r->offloads.gso_tcpv4 && r->offloads.gso_tcpv6);
  EXPECT_FALSE(r->multicast_control);
  EXPECT_EQ(r->xdp_headroom, 0);
  ASSERT_EQ(r->rings.size(), 1u);
  EXPECT_EQ(r->rings[0].tx_ring_ref, 8u);
  EXPECT_EQ(r->rings[0].rx_ring_ref, 9u);
  EXPECT_EQ(r->rings[0].tx_event_channel, 5u);
  EXPECT_EQ(r->rings[0].rx_event_channel, 5u);
  EXPECT_FALSE(r->rings[0].split_event_channels);
  EXPECT_FALSE(r->ctrl);
}

TEST(VifFrontendKeys, QueuesSplitChannelsAndTheControlRing) {
  Keys k = linux_single();
  k.erase("tx-ring-ref");  // with two queues the top-level ring keys are never read
  k.insert({{"multi-queue-num-queues", "2"}, {"queue-0/tx-ring-ref", "10"}, {"queue-0/rx-ring-ref", "11"},
            {"queue-0/event-channel-tx", "3"}, {"queue-0/event-channel-rx", "4"}, {"queue-1/tx-ring-ref", "20"},
            {"queue-1/rx-ring-ref", "21"}, {"queue-1/event-channel", "7"}, {"ctrl-ring-ref", "30"},
            {"event-channel-ctrl", "31"}, {"request-multicast-control", "1"}, {"xdp-headroom", "256"}});
  auto r = read_vif_frontend(reader(k), offered(2));
  ASSERT_TRUE(r) << r.error().why;
  ASSERT_EQ(r->rings.size(), 2u);
  EXPECT_TRUE(r->rings[0].split_event_channels);
  EXPECT_EQ(r->rings[0].tx_event_channel, 3u);
  EXPECT_EQ(r->rings[0].rx_event_channel, 4u);
  EXPECT_FALSE(r->rings[1].split_event_channels);
  EXPECT_EQ(r->rings[1].rx_ring_ref, 21u);
  EXPECT_EQ(r->rings[1].tx_event_channel, 7u);
  ASSERT_TRUE(r->ctrl);
  EXPECT_EQ(r->ctrl->ring_ref, 30u);
  EXPECT_EQ(r->ctrl->event_channel, 31u);
  EXPECT_TRUE(r->multicast_control);
  EXPECT_EQ(r->xdp_headroom, 256);

  // Not offered: the same keys are not acted on (and the split queue needs its event-channel).
  VifFrontendLimits none;
  none.max_queues = 2;
  k["queue-0/event-channel"] = "6";
  auto n = read_vif_frontend(reader(k), none);
  ASSERT_TRUE(n) << n.error().why;
  EXPECT_FALSE(n->rings[0].split_event_channels);
  EXPECT_EQ(n->rings[0].tx_event_channel, 6u);
  EXPECT_FALSE(n->ctrl);
  EXPECT_FALSE(n->multicast_control);
  EXPECT_EQ(n->xdp_headroom, 0);
}

TEST(VifFrontendKeys, OffloadsFollowLinux) {
  Keys k = linux_single();
  k["feature-no-csum-offload"] = "1";  // no IPv4 checksum offload: no GSO over IPv4 either
  k["feature-sg"] = "0x1";             // malformed booleans are false, not refusals
  auto r = read_vif_frontend(reader(k), offered());
  ASSERT_TRUE(r) << r.error().why;
  EXPECT_FALSE(r->offloads.csum);
  EXPECT_FALSE(r->offloads.sg);
  EXPECT_FALSE(r->offloads.gso_tcpv4 || r->offloads.gso_tcpv6);  // both need sg
  k["feature-sg"] = "4294967295";
  k["feature-ipv6-csum-offload"] = "0";
  r = read_vif_frontend(reader(k), offered());
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->offloads.sg);
  EXPECT_FALSE(r->offloads.gso_tcpv4);  // no csum
  EXPECT_FALSE(r->offloads.gso_tcpv6);  // no ipv6 csum
}

TEST(VifFrontendKeys, EveryRefusalNamesItsKeyAndValue) {
  struct Case {
    std::string key;
    const char* value;  // nullptr: the key left out
    int error;
    std::string why;
  };
  const Case cases[] = {
      {"request-rx-copy", nullptr, EOPNOTSUPP, "request-rx-copy: missing, page flipping is not supported"},
      {"request-rx-copy", "0", EOPNOTSUPP, "request-rx-copy: not set, page flipping is not supported (\"0\")"},
      {"request-rx-copy", "yes", EOPNOTSUPP, "request-rx-copy: not set, page flipping is not supported (\"yes\")"},
      {"feature-rx-notify", nullptr, EINVAL, "feature-rx-notify: missing, which is mandatory"},
      {"feature-rx-notify", "4294967296", EINVAL, "feature-rx-notify: not set, which is mandatory (\"4294967296\")"},
      {"multi-queue-num-queues", "0", EINVAL, "multi-queue-num-queues: 0 queues (1..4 allowed)"},
      {"multi-queue-num-queues", "5", EINVAL, "multi-queue-num-queues: 5 queues (1..4 allowed)"},
      {"multi-queue-num-queues", "two", EINVAL, "multi-queue-num-queues: invalid (\"two\")"},
      {"multi-queue-num-queues", "4294967296", EINVAL, "multi-queue-num-queues: invalid (\"4294967296\")"},
      {"xdp-headroom", "2048", EINVAL, "xdp-headroom: 2048 (0..2047 allowed)"},
      {"xdp-headroom", "-1", EINVAL, "xdp-headroom: invalid (\"-1\")"},
      {"tx-ring-ref", nullptr, ENOENT, "tx-ring-ref: missing"},
      {"tx-ring-ref", "", EINVAL, "tx-ring-ref: invalid (\"\")"},
      {"rx-ring-ref", "0x9", EINVAL, "rx-ring-ref: invalid (\"0x9\")"},
      {"event-channel", nullptr, ENOENT, "event-channel: missing"},
      {"event-channel", " 5", EINVAL, "event-channel: invalid (\" 5\")"},
      {"event-channel-tx", "3", ENOENT, "event-channel-rx: missing"},  // split asked, half written
      {"ctrl-ring-ref", "30", ENOENT, "event-channel-ctrl: missing"},
      {"ctrl-ring-ref", "ring", EINVAL, "ctrl-ring-ref: invalid (\"ring\")"},
  };
  for (const Case& c : cases) {
    Keys k = linux_single();
    if (c.value != nullptr) k[c.key] = c.value;
    else k.erase(c.key);
    auto r = read_vif_frontend(reader(k), offered());
    ASSERT_FALSE(r) << c.key << "=" << (c.value ? c.value : "(none)");
    EXPECT_EQ(r.error().error, c.error) << c.why;
    EXPECT_EQ(r.error().why, c.why);
  }
}

TEST(VifFrontendKeys, AnUnreadableValueIsInvalidAndAPerQueueRefusalNamesItsQueue) {
  Keys k = linux_single();
  xenbus::FrontendKeyReader failing = [&k](const std::string& key) -> std::expected<std::string, int> {
    if (key == "rx-ring-ref") return std::unexpected(EACCES);
    auto it = k.find(key);
    if (it == k.end()) return std::unexpected(ENOENT);
    return it->second;
  };
  auto r = read_vif_frontend(failing, offered());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().error, EINVAL);  // as the vif driver always answered an unreadable key
  EXPECT_EQ(r.error().why, "rx-ring-ref: unreadable");

  k["multi-queue-num-queues"] = "2";
  k.insert({{"queue-0/tx-ring-ref", "1"}, {"queue-0/rx-ring-ref", "2"}, {"queue-0/event-channel", "3"},
            {"queue-1/tx-ring-ref", "4"}, {"queue-1/event-channel", "6"}});
  auto q = read_vif_frontend(reader(k), offered());
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().why, "queue-1/rx-ring-ref: missing");
}

TEST(VifFrontendKeys, ReadsOnlyWhatItNeeds) {
  const Keys k = linux_single();
  std::vector<std::string> asked;
  VifFrontendLimits none;
  ASSERT_TRUE(read_vif_frontend(reader(k, &asked), none));
  for (const auto& key : asked) {
    EXPECT_NE(key, "xdp-headroom");
    EXPECT_NE(key, "request-multicast-control");
    EXPECT_NE(key, "ctrl-ring-ref");
    EXPECT_NE(key, "event-channel-tx");
  }
  EXPECT_LE(asked.size(), 12u);
}

TEST(VifFrontendKeys, XdpHeadroomAloneForAReconfigure) {
  Keys k{{"xdp-headroom", "2047"}};
  EXPECT_EQ(read_xdp_headroom(reader(k), true), 2047);
  EXPECT_EQ(read_xdp_headroom(reader(k), false), 0);
  EXPECT_EQ(read_xdp_headroom(reader(Keys{}), true), 0);
  k["xdp-headroom"] = "4000";
  auto r = read_xdp_headroom(reader(k), true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().why, "xdp-headroom: 4000 (0..2047 allowed)");
}

}  // namespace
}  // namespace pvback::netback
