// Port -> guest: sizes from 60 B to 64 KiB byte for byte, offload flags and extras, what a guest
// without sg/GSO/csum gets, XDP headroom, waiting for buffers, a poll-mode port.
#include "tests/netback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

netback::PacketMeta gso_meta(std::uint8_t type, std::uint16_t mss, std::uint16_t start) {
  netback::PacketMeta m;
  m.csum_partial = true;
  m.csum_start = start;
  m.csum_offset = 16;
  m.gso_type = type;
  m.gso_size = mss;
  return m;
}

TEST_F(NetQueueTest, RxFramesByteExact) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  fe.post_rx(256);
  const std::size_t sizes[] = {60, 61, 100, 1514, 4095, 4096, 4097, 9000, 20000, 65535};
  std::vector<Bytes> frames;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    frames.push_back(make_raw(sizes[i], static_cast<std::uint32_t>(100 + i)));
    q.port->inject(frames.back());
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    auto p = fe.next_rx();
    ASSERT_TRUE(p) << i;
    EXPECT_FALSE(p->error);
    EXPECT_EQ(p->bytes, frames[i]) << sizes[i];
    EXPECT_EQ(p->slots, (sizes[i] + kXenPageSize - 1) / kXenPageSize);
    EXPECT_EQ(p->flags & (netif::kRxfCsumBlank | netif::kRxfDataValidated | netif::kRxfExtraInfo), 0);
  }
  EXPECT_EQ(q.stats.rx_packets.get(), frames.size());
  EXPECT_TRUE(eventually([&] { return q.port->rx_outstanding() == 0; }));
}

TEST_F(NetQueueTest, RxGso64KiBWithExtra) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  fe.post_rx(64);
  Flow f4, f6;
  f6.v6 = true;
  const Bytes p4 = make_partial(f4, make_tcp(f4, 65535 - 54 + 14, 1));  // 65549 bytes: a host-stack GSO frame
  const Bytes p6 = make_partial(f6, make_tcp(f6, 30000, 2));
  q.port->inject(p4, gso_meta(netif::kGsoTypeTcpv4, 1448, 34));
  q.port->inject(p6, gso_meta(netif::kGsoTypeTcpv6, 1428, 54));
  auto a = fe.next_rx(), b = fe.next_rx();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->bytes, p4);
  EXPECT_EQ(a->flags & (netif::kRxfCsumBlank | netif::kRxfDataValidated | netif::kRxfExtraInfo),
            netif::kRxfCsumBlank | netif::kRxfDataValidated | netif::kRxfExtraInfo);
  ASSERT_EQ(a->extras.size(), 1u);
  EXPECT_EQ(a->extras[0].type, netif::kExtraTypeGso);
  EXPECT_EQ(a->extras[0].u.gso.type, netif::kGsoTypeTcpv4);
  EXPECT_EQ(a->extras[0].u.gso.size, 1448);
  EXPECT_EQ(a->slots, 17u + 1u);
  EXPECT_EQ(b->bytes, p6);
  ASSERT_EQ(b->extras.size(), 1u);
  EXPECT_EQ(b->extras[0].u.gso.type, netif::kGsoTypeTcpv6);
  EXPECT_EQ(q.stats.rx_packets.get(), 2u);
}

TEST_F(NetQueueTest, RxChecksumFlags) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  fe.post_rx(8);
  Flow f;
  const Bytes full = make_tcp(f, 500, 1);
  netback::PacketMeta partial;
  partial.csum_partial = true;
  partial.csum_start = 34;
  partial.csum_offset = 16;
  netback::PacketMeta validated;
  validated.csum_validated = true;
  q.port->inject(make_partial(f, full), partial);
  q.port->inject(full, validated);
  q.port->inject(full);
  auto a = fe.next_rx(), b = fe.next_rx(), c = fe.next_rx();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->flags, netif::kRxfCsumBlank | netif::kRxfDataValidated);
  EXPECT_EQ(a->bytes, make_partial(f, full));
  EXPECT_EQ(b->flags, netif::kRxfDataValidated);
  EXPECT_EQ(c->flags, 0);
  EXPECT_EQ(q.stats.rx_packets.get(), 3u);
}

TEST_F(NetQueueTest, RxChecksumCompletedForGuestWithoutCsumOffload) {
  NetFrontend fe(platform(1));
  Options o;
  o.guest.csum = false;
  o.guest.ipv6_csum = false;
  auto& q = start(fe, o);
  fe.post_rx(8);
  Flow f4, f6;
  f6.v6 = true;
  netback::PacketMeta m4;
  m4.csum_partial = true;
  m4.csum_start = 34;
  m4.csum_offset = 16;
  netback::PacketMeta m6 = m4;
  m6.csum_start = 54;
  q.port->inject(make_partial(f4, make_tcp(f4, 1001, 1)), m4);
  q.port->inject(make_partial(f6, make_tcp(f6, 1001, 2)), m6);
  auto a = fe.next_rx(), b = fe.next_rx();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->flags, netif::kRxfDataValidated);
  EXPECT_TRUE(tcp_checksum_ok(f4, a->bytes));
  EXPECT_EQ(b->flags, netif::kRxfDataValidated);
  EXPECT_TRUE(tcp_checksum_ok(f6, b->bytes));
  EXPECT_EQ(q.stats.rx_packets.get(), 2u);
}

TEST_F(NetQueueTest, RxGuestWithoutSgOrGso) {
  NetFrontend fe(platform(1));
  Options o;
  o.guest.sg = false;
  o.guest.gso_tcpv4 = false;
  o.guest.gso_tcpv6 = false;
  auto& q = start(fe, o);
  fe.post_rx(8);
  Flow f;
  const Bytes small = make_raw(1514, 1), big = make_raw(5000, 2), last = make_raw(4096, 3);
  q.port->inject(small);
  q.port->inject(big);
  q.port->inject(make_partial(f, make_tcp(f, 1000, 4)), gso_meta(netif::kGsoTypeTcpv4, 500, 34));
  q.port->inject(last);
  auto a = fe.next_rx(), b = fe.next_rx();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->bytes, small);
  EXPECT_EQ(b->bytes, last);
  EXPECT_TRUE(eventually([&] { return q.stats.rx_too_big_for_guest.get() == 1; }));
  EXPECT_EQ(q.stats.rx_gso_not_negotiated.get(), 1u);
  EXPECT_EQ(q.stats.rx_packets.get(), 2u);
}

TEST_F(NetQueueTest, RxXdpHeadroom) {
  NetFrontend fe(platform(1));
  auto& q = start(fe, opt([](Options& o) { o.xdp_headroom = 256; }));
  fe.post_rx(8);
  const Bytes frame = make_raw(5000, 1);
  q.port->inject(frame);
  auto p = fe.next_rx();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->bytes, frame);
  EXPECT_EQ(p->offset, 256);
  EXPECT_EQ(p->slots, 2u);  // 3840 + 1160
  EXPECT_EQ(q.stats.rx_packets.get(), 1u);
}

// Packets wait (in the port, or at most one batch in the queue) until the guest posts buffers.
TEST_F(NetQueueTest, RxWaitsForBuffers) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  std::vector<Bytes> frames;
  for (int i = 0; i < 10; ++i) {
    frames.push_back(make_raw(9000, i));  // 3 slots each
    q.port->inject(frames.back());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(q.stats.rx_packets.get(), 0u);
  fe.post_rx(4);  // room for one packet
  auto first = fe.next_rx();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->bytes, frames[0]);
  EXPECT_LE(q.port->max_rx_outstanding(), 4u);  // never asked for more than the guest posted
  fe.post_rx(27);
  for (int i = 1; i < 10; ++i) {
    auto p = fe.next_rx();
    ASSERT_TRUE(p) << i;
    EXPECT_EQ(p->bytes, frames[i]);
  }
  EXPECT_EQ(q.stats.rx_no_buffers.get(), 0u);
  EXPECT_EQ(q.stats.rx_stalls.get(), 0u);
}

TEST_F(NetQueueTest, PollModePortBothDirections) {
  NetFrontend fe(platform(1));
  auto& q = start(fe, opt([](Options& o) { o.poll_mode = true; }));
  fe.post_rx(32);
  for (int round = 0; round < 3; ++round) {
    const Bytes out = make_raw(1514, round), in = make_raw(3000, 10 + round);
    fe.put_packet(out);
    fe.push_tx();
    ASSERT_EQ(fe.collect_tx(1).size(), 1u);
    q.port->inject(in);
    auto p = fe.next_rx();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->bytes, in);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the queue back off
  }
  EXPECT_TRUE(eventually([&] { return q.port->transmitted_count() == 3; }));
}

TEST_F(NetQueueTest, RxHashExtraMatchesReference) {
  NetFrontend fe(platform(1));
  make_vif(1);
  netback::HashConfig h;
  h.algorithm = netif::kHashAlgorithmToeplitz;
  h.flags = netif::kHashTypeIpv4Tcp;
  h.key_len = 40;
  for (unsigned i = 0; i < 40; ++i) h.key[i] = static_cast<std::uint8_t>(0x6d + 7 * i);
  shared->set_hash(h);
  auto& q = start(fe);
  fe.post_rx(16);
  Flow f;
  const Bytes frame = make_tcp(f, 100, 1);
  q.port->inject(frame);
  q.port->inject(make_raw(100, 2));  // not hashable: no extra
  auto a = fe.next_rx(), b = fe.next_rx();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->bytes, frame);
  ASSERT_EQ(a->extras.size(), 1u);
  EXPECT_EQ(a->extras[0].type, netif::kExtraTypeHash);
  EXPECT_EQ(a->extras[0].u.hash.type, netif::kHashTypeBitIpv4Tcp);
  EXPECT_EQ(a->extras[0].u.hash.algorithm, netif::kHashAlgorithmToeplitz);
  const std::uint32_t v = std::uint32_t{a->extras[0].u.hash.value[0]} | std::uint32_t{a->extras[0].u.hash.value[1]} << 8 |
                          std::uint32_t{a->extras[0].u.hash.value[2]} << 16 |
                          std::uint32_t{a->extras[0].u.hash.value[3]} << 24;
  EXPECT_EQ(v, reference_tcp4_hash(std::span(h.key.data(), 40), f));
  EXPECT_TRUE(b->extras.empty());
  EXPECT_EQ(q.stats.rx_packets.get(), 2u);
}

}  // namespace
}  // namespace pvback::test
