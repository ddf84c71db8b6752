// Two queues of one vif: packets follow the guest's Toeplitz mapping table to the RX ring of the
// queue it selects, whichever queue's port received them.
#include <map>

#include "tests/netback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

// Microsoft's RSS verification key.
constexpr std::uint8_t kRssKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
                                      0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
                                      0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

std::uint16_t sport_of(const Bytes& b) { return static_cast<std::uint16_t>(b[34] << 8 | b[35]); }

TEST_F(NetQueueTest, SteeringFollowsToeplitzMapping) {
  NetFrontend fe0(platform(1)), fe1(platform(1));
  make_vif(2);
  netback::HashConfig h;
  h.algorithm = netif::kHashAlgorithmToeplitz;
  h.flags = netif::kHashTypeIpv4Tcp;
  h.key_len = 40;
  std::memcpy(h.key.data(), kRssKey, 40);
  h.mapping_size = 8;
  const std::uint32_t mapping[8] = {0, 1, 1, 0, 1, 0, 0, 1};
  std::copy(std::begin(mapping), std::end(mapping), h.mapping.begin());
  shared->set_hash(h);
  auto& q0 = start(fe0, {}, 0);
  auto& q1 = start(fe1, {}, 1);
  fe0.post_rx(256);
  fe1.post_rx(256);

  constexpr int kFlows = 100;
  std::map<std::uint16_t, Bytes> sent;
  std::map<std::uint16_t, unsigned> expected_queue;
  std::map<std::uint16_t, std::uint32_t> expected_hash;
  unsigned expected[2] = {0, 0};
  for (int i = 0; i < kFlows; ++i) {
    Flow f;
    f.sport = static_cast<std::uint16_t>(20000 + i);
    f.src[3] = static_cast<std::uint8_t>(1 + i % 7);
    const Bytes frame = make_tcp(f, 64 + i, static_cast<std::uint32_t>(i));
    const std::uint32_t hv = reference_tcp4_hash(kRssKey, f);
    sent[f.sport] = frame;
    expected_queue[f.sport] = mapping[hv % 8];
    expected_hash[f.sport] = hv;
    ++expected[mapping[hv % 8]];
    (i % 3 == 0 ? q1 : q0).port->inject(frame);  // arrives on either queue's port
  }
  ASSERT_GT(expected[0], 0u);
  ASSERT_GT(expected[1], 0u);
  NetFrontend* fes[2] = {&fe0, &fe1};
  for (unsigned qi = 0; qi < 2; ++qi) {
    for (unsigned k = 0; k < expected[qi]; ++k) {
      auto p = fes[qi]->next_rx();
      ASSERT_TRUE(p) << "queue " << qi << " packet " << k;
      const std::uint16_t sport = sport_of(p->bytes);
      EXPECT_EQ(expected_queue[sport], qi) << sport;
      EXPECT_EQ(p->bytes, sent[sport]);
      ASSERT_EQ(p->extras.size(), 1u);
      const auto& v = p->extras[0].u.hash.value;
      EXPECT_EQ(std::uint32_t{v[0]} | std::uint32_t{v[1]} << 8 | std::uint32_t{v[2]} << 16 | std::uint32_t{v[3]} << 24,
                expected_hash[sport]);
    }
  }
  EXPECT_EQ(q0.stats.rx_packets.get(), expected[0]);
  EXPECT_EQ(q1.stats.rx_packets.get(), expected[1]);
  EXPECT_GT(q0.stats.rx_steered_out.get() + q1.stats.rx_steered_out.get(), 0u);
  EXPECT_EQ(q0.stats.rx_no_buffers.get() + q1.stats.rx_no_buffers.get(), 0u);
  EXPECT_TRUE(eventually([&] { return q0.port->rx_outstanding() == 0 && q1.port->rx_outstanding() == 0; }));
}

// A steered packet whose target ring has no room is dropped and counted there; nothing waits.
TEST_F(NetQueueTest, SteeringToAFullQueueDrops) {
  NetFrontend fe0(platform(1)), fe1(platform(1));
  make_vif(2);
  netback::HashConfig h;
  h.algorithm = netif::kHashAlgorithmToeplitz;
  h.flags = netif::kHashTypeIpv4Tcp;
  h.key_len = 40;
  std::memcpy(h.key.data(), kRssKey, 40);
  h.mapping_size = 1;
  h.mapping[0] = 1;  // everything to queue 1
  shared->set_hash(h);
  auto& q0 = start(fe0, {}, 0);
  auto& q1 = start(fe1, {}, 1);
  fe0.post_rx(8);  // queue 1's guest posts nothing
  Flow f;
  for (int i = 0; i < 5; ++i) q0.port->inject(make_tcp(f, 100, i));
  ASSERT_TRUE(eventually([&] { return q1.stats.rx_no_buffers.get() == 5; }));
  EXPECT_EQ(q0.stats.rx_steered_out.get(), 5u);
  EXPECT_TRUE(eventually([&] { return q0.port->rx_outstanding() == 0; }));
  fe1.post_rx(8);
  q0.port->inject(make_tcp(f, 100, 9));
  auto p = fe1.next_rx();
  ASSERT_TRUE(p);
  EXPECT_EQ(q1.stats.rx_packets.get(), 1u);
}

}  // namespace
}  // namespace pvback::test
