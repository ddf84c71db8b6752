// pvback-net's control part <-> data plane encoding (netback/data_plane_protocol.hpp): what is
// encoded is decoded the same, and anything malformed is refused rather than guessed (a confined
// data plane taken over by a guest can send its control part, or a successor, anything).
#include <gtest/gtest.h>

#include "netback/data_plane_protocol.hpp"

namespace pvback::netback {
namespace {

PlaneSpec two_queues() {
  PlaneSpec spec;
  VifRingsSpec& v = spec.rings;
  v.name = "vif 3/0";
  v.frontend_domid = 3;
  v.multicast_control = true;
  v.rate = {125000, 20000};
  v.resume = true;
  v.ctrl = ControlRingConfig{"vif 3/0 ctrl", 3, 12, 24, std::chrono::milliseconds(5000), {}};
  for (unsigned i = 0; i < 2; ++i) {
    QueueConfig q;
    q.name = "vif 3/0 q" + std::to_string(i);
    q.index = i;
    q.frontend_domid = 3;
    q.tx_ring_ref = 8 + 2 * i;
    q.rx_ring_ref = 9 + 2 * i;
    q.tx_event_channel = 20 + 2 * i;
    q.rx_event_channel = 21 + 2 * i;
    q.split_event_channels = i == 1;
    q.guest = {.csum = true, .ipv6_csum = false, .sg = true, .gso_tcpv4 = true, .gso_tcpv6 = false};
    q.exit = {.tx_csum = true, .tx_tso4 = true, .tx_tso6 = false, .rx_gso = true, .poll_mode = false};
    q.multicast_control = true;
    q.xdp_headroom = 256;
    q.max_slots = 18;
    q.fatal_slots = 20;
    q.rx_stall_timeout = std::chrono::milliseconds(60000);
    q.bind_patience = std::chrono::milliseconds(5000);
    v.queues.push_back(q);
  }
  spec.tap_name = "vif3.0";
  spec.tap_fds = 4;
  spec.uid = spec.gid = 0x70000003;
  spec.orphan_timeout_ms = 60000;
  return spec;
}

TEST(NetDataPlaneProtocol, StartRoundTrips) {
  const PlaneSpec spec = two_queues();
  auto back = decode_plane_spec(encode_plane_spec(spec));
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(back->rings.name, "vif 3/0");
  EXPECT_EQ(back->rings.frontend_domid, 3);
  EXPECT_TRUE(back->rings.multicast_control);
  EXPECT_EQ(back->rings.rate.bytes, 125000u);
  EXPECT_EQ(back->rings.rate.usec, 20000u);
  EXPECT_TRUE(back->rings.resume);
  EXPECT_EQ(back->tap_name, "vif3.0");
  EXPECT_EQ(back->tap_fds, 4u);
  EXPECT_EQ(back->uid, 0x70000003u);
  EXPECT_EQ(back->orphan_timeout_ms, 60000u);
  ASSERT_TRUE(back->rings.ctrl.has_value());
  EXPECT_EQ(back->rings.ctrl->ring_ref, 12u);
  EXPECT_EQ(back->rings.ctrl->event_channel, 24u);
  EXPECT_EQ(back->rings.ctrl->frontend_domid, 3);
  EXPECT_EQ(back->rings.ctrl->bind_patience, std::chrono::milliseconds(5000));
  ASSERT_EQ(back->rings.queues.size(), 2u);
  for (unsigned i = 0; i < 2; ++i) {
    const QueueConfig &a = spec.rings.queues[i], &b = back->rings.queues[i];
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.index, a.index);
    EXPECT_EQ(b.tx_ring_ref, a.tx_ring_ref);
    EXPECT_EQ(b.rx_ring_ref, a.rx_ring_ref);
    EXPECT_EQ(b.tx_event_channel, a.tx_event_channel);
    EXPECT_EQ(b.rx_event_channel, a.rx_event_channel);
    EXPECT_EQ(b.split_event_channels, a.split_event_channels);
    EXPECT_EQ(b.guest.sg, a.guest.sg);
    EXPECT_EQ(b.guest.ipv6_csum, a.guest.ipv6_csum);
    EXPECT_EQ(b.guest.gso_tcpv4, a.guest.gso_tcpv4);
    EXPECT_EQ(b.exit.tx_tso6, a.exit.tx_tso6);
    EXPECT_EQ(b.exit.rx_gso, a.exit.rx_gso);
    EXPECT_EQ(b.xdp_headroom, 256);
    EXPECT_EQ(b.max_slots, 18u);
    EXPECT_EQ(b.fatal_slots, 20u);
    EXPECT_EQ(b.rx_stall_timeout, a.rx_stall_timeout);
    EXPECT_EQ(b.bind_patience, a.bind_patience);
  }
  EXPECT_EQ(record_key(back->rings), record_key(spec.rings));
}

TEST(NetDataPlaneProtocol, AdoptedIsTheSameSpecUnderItsOwnType) {
  const auto msg = encode_plane_spec(two_queues(), PlaneMsg::Adopted);
  EXPECT_TRUE(decode_plane_spec(msg, PlaneMsg::Adopted).has_value());
  EXPECT_FALSE(decode_plane_spec(msg).has_value()) << "an Adopted taken for a Start";
  EXPECT_EQ(plane::message_type(kPlaneProtocol, msg).value(), static_cast<std::uint32_t>(PlaneMsg::Adopted));
}

TEST(NetDataPlaneProtocol, EveryTruncationAndTrailingByteIsRefused) {
  const auto msg = encode_plane_spec(two_queues());
  for (std::size_t n = 0; n < msg.size(); ++n)
    EXPECT_FALSE(decode_plane_spec(std::span(msg).first(n)).has_value()) << "accepted " << n << " of " << msg.size();
  auto longer = msg;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode_plane_spec(longer).has_value());
}

TEST(NetDataPlaneProtocol, AnotherVersionOrBackendIsRefusedByName) {
  auto msg = encode_plane_spec(two_queues());
  auto other_version = msg;
  other_version[4] = std::byte{99};
  auto r = decode_plane_spec(other_version);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("version"), std::string::npos) << r.error();
  auto blk_magic = msg;
  blk_magic[1] = std::byte{0x64};  // "pvdp": pvback-blk's
  EXPECT_FALSE(decode_plane_spec(blk_magic).has_value());
}

TEST(NetDataPlaneProtocol, WhatDoesNotFitTheVifIsRefused) {
  auto spec = two_queues();
  spec.tap_fds = 1;  // fewer TAP queues than rings
  EXPECT_FALSE(decode_plane_spec(encode_plane_spec(spec)).has_value());
  spec = two_queues();
  spec.tap_fds = kMaxTapFds + 1;
  EXPECT_FALSE(decode_plane_spec(encode_plane_spec(spec)).has_value());
  spec = two_queues();
  spec.rings.queues.clear();
  EXPECT_FALSE(decode_plane_spec(encode_plane_spec(spec)).has_value());
  spec = two_queues();
  spec.rings.queues[1].frontend_domid = 4;  // another guest's ring
  EXPECT_FALSE(decode_plane_spec(encode_plane_spec(spec)).has_value());
  spec = two_queues();
  spec.rings.queues[1].index = 0;
  EXPECT_FALSE(decode_plane_spec(encode_plane_spec(spec)).has_value());
  spec = two_queues();
  spec.rings.queues[0].rx_stall_timeout = std::chrono::milliseconds(-1);
  EXPECT_FALSE(decode_plane_spec(encode_plane_spec(spec)).has_value());
  spec = two_queues();
  spec.rings.frontend_domid = 0xFFFF;  // fits; a domid above 16 bits cannot be encoded
  for (auto& q : spec.rings.queues) q.frontend_domid = 0xFFFF;
  EXPECT_TRUE(decode_plane_spec(encode_plane_spec(spec)).has_value());
}

TEST(NetDataPlaneProtocol, OrdersRoundTripAndMalformedOnesAreRefused) {
  auto rate = decode_set_rate(encode_set_rate({5000, 100}));
  ASSERT_TRUE(rate.has_value()) << rate.error();
  EXPECT_EQ(rate->bytes, 5000u);
  EXPECT_EQ(rate->usec, 100u);
  auto headroom = decode_set_xdp_headroom(encode_set_xdp_headroom(512));
  ASSERT_TRUE(headroom.has_value()) << headroom.error();
  EXPECT_EQ(*headroom, 512);
  auto msg = encode_set_rate({1, 2});
  msg.pop_back();
  EXPECT_FALSE(decode_set_rate(msg).has_value());
  EXPECT_FALSE(decode_set_rate(encode_set_xdp_headroom(1)).has_value()) << "a headroom taken for a rate";
  EXPECT_FALSE(decode_set_xdp_headroom(encode_set_rate({1, 2})).has_value());
  // The notices: Stop, Adopt, Ready, Fatal, and nothing else.
  for (std::uint32_t t : {plane::kStop, plane::kAdopt, plane::kReady, plane::kFatal})
    EXPECT_TRUE(plane::decode_notice(kPlaneProtocol, plane::encode_notice(kPlaneProtocol, {t, 0, {}})).has_value());
  EXPECT_FALSE(plane::decode_notice(kPlaneProtocol, encode_set_rate({1, 2})).has_value());
}

}  // namespace
}  // namespace pvback::netback
