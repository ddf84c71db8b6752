// The TAP exit against the real kernel, in a network namespace private to the test process.
// TX: frames written through a TapPort are seen by an AF_PACKET socket on the vif. RX: frames an
// AF_PACKET socket sends on the vif come out of receive().
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "netback/tap_exit.hpp"
#include "netback/vnet_header.hpp"
#include "ring/netif.hpp"
#include "tests/netback/exits/net_support.hpp"
#include "tests/support/eventually.hpp"

namespace pvback::netback {
namespace {

using test::PacketSocket;

bool g_netns = false;

#define REQUIRE_NETNS()                                           \
  do {                                                            \
    if (!g_netns) GTEST_SKIP() << "no private network namespace"; \
  } while (0)

// What AF_PACKET's PACKET_VNET_HDR puts in front: the 10-byte struct virtio_net_hdr.
struct VnetHdr10 {
  std::uint8_t flags, gso_type;
  std::uint16_t hdr_len, gso_size, csum_start, csum_offset;
};
static_assert(sizeof(VnetHdr10) == 10);

std::vector<std::uint8_t> with_vnet(const VnetHdr10& h, const std::vector<std::uint8_t>& frame) {
  std::vector<std::uint8_t> out(sizeof h + frame.size());
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, frame.data(), frame.size());
  return out;
}

struct Received {
  std::vector<std::uint8_t> bytes;
  PacketMeta meta;
  unsigned queue = 0;
};

// Sends frames through a port in one batch; returns transmit()'s count.
unsigned tx(Port& port, const std::vector<std::vector<std::uint8_t>>& frames, const std::vector<PacketMeta>& metas = {}) {
  std::vector<PacketBuffer> bufs(frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) bufs[i].length = static_cast<std::uint32_t>(frames[i].size());
  EXPECT_EQ(port.alloc_tx(bufs), 0);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(bufs[i].nr_chunks, 1u);
    test::scatter(bufs[i], frames[i]);
    if (i < metas.size()) bufs[i].meta = metas[i];
  }
  return port.transmit(bufs);
}

// Receives from the given ports until `want` frames accepted by `accept` came or 10 s passed.
template <typename Accept>
std::vector<Received> rx(TapExit& exit, unsigned queues, std::size_t want, Accept accept) {
  std::vector<Received> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<PacketBuffer> bufs(32);
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> fds;
    for (unsigned q = 0; q < queues; ++q) fds.push_back({exit.port(q).rx_fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 20);
    for (unsigned q = 0; q < queues; ++q) {
      Port& p = exit.port(q);
      const unsigned n = p.receive(bufs);
      for (unsigned i = 0; i < n; ++i) {
        EXPECT_EQ(bufs[i].nr_chunks, 1u);
        auto bytes = test::gather(bufs[i]);
        EXPECT_EQ(bytes.size(), bufs[i].length);
        if (accept(bytes)) out.push_back({std::move(bytes), bufs[i].meta, q});
      }
      p.release(std::span(bufs).first(n));
    }
  }
  return out;
}

// After carrier on, the kernel activates the vif's qdisc asynchronously: sends markers until one
// comes through, then drains.
void wait_rx_path(TapExit& exit, unsigned queues, PacketSocket& inject) {
  const auto marker = test::test_frame(60, 0xfffffff0u);
  ASSERT_TRUE(test::eventually([&] {
    inject.send(marker);
    return !rx(exit, queues, 1, [](auto& f) { return test::is_test_frame(f) && test::test_seq(f) == 0xfffffff0u; })
                .empty();
  }));
  // Drain until the ports have been quiet for 50 ms.
  std::vector<PacketBuffer> bufs(32);
  for (int quiet = 0; quiet < 5;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    unsigned n = 0;
    for (unsigned q = 0; q < queues; ++q) {
      const unsigned got = exit.port(q).receive(bufs);
      exit.port(q).release(std::span(bufs).first(got));
      n += got;
    }
    quiet = n == 0 ? quiet + 1 : 0;
  }
}

class TapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_NETNS();
    auto e = TapExit::create({.name = "vif1.0", .max_queues = queues_, .mtu = 1500, .bring_up = true});
    ASSERT_TRUE(e.has_value()) << std::strerror(e.error());
    exit_ = std::move(*e);
    exit_->set_link(true);
    ASSERT_TRUE(test::eventually([&] { return (test::if_flags("vif1.0") & IFF_RUNNING) != 0; }));
  }
  unsigned queues_ = 1;
  std::unique_ptr<TapExit> exit_;
};

TEST_F(TapTest, CapabilitiesAndName) {
  EXPECT_EQ(exit_->name(), "vif1.0");
  const auto caps = exit_->capabilities();
  EXPECT_TRUE(caps.tx_csum && caps.tx_tso4 && caps.tx_tso6 && caps.rx_gso);
  EXPECT_FALSE(caps.poll_mode);
  EXPECT_GE(exit_->port(0).rx_fd(), 0);
  EXPECT_EQ(exit_->ifindex(), static_cast<int>(if_nametoindex("vif1.0")));
}

TEST_F(TapTest, TxFramesArriveByteExact) {
  PacketSocket sock("vif1.0");
  ASSERT_TRUE(sock.ok());
  std::vector<std::vector<std::uint8_t>> frames;
  std::uint32_t seq = 1;
  for (std::size_t size : {60, 61, 64, 100, 128, 512, 1000, 1513, 1514}) frames.push_back(test::test_frame(size, seq++));
  ASSERT_EQ(tx(exit_->port(0), frames), frames.size());
  for (const auto& f : frames) {
    auto got = sock.recv([&](auto& g) { return test::is_test_frame(g) && test::test_seq(g) == test::test_seq(f); });
    ASSERT_TRUE(got.has_value()) << "frame of " << f.size() << " bytes did not arrive";
    EXPECT_EQ(*got, f);
  }
  EXPECT_EQ(exit_->tap_port(0).stats().tx_sent.get(), frames.size());
  EXPECT_EQ(exit_->tap_port(0).stats().tx_dropped.get(), 0u);
}

TEST_F(TapTest, AWholeArenaOfFramesGoesOutInOneBatchInOrder) {
  PacketSocket sock("vif1.0");
  ASSERT_TRUE(sock.ok());
  std::vector<std::vector<std::uint8_t>> frames;
  for (std::uint32_t seq = 1; seq <= 256; ++seq) frames.push_back(test::test_frame(60 + seq % 200, seq));
  ASSERT_EQ(tx(exit_->port(0), frames), frames.size());
  EXPECT_TRUE(exit_->tap_port(0).batched_tx());  // io_uring is available here: one enter, not 256 writes
  std::uint32_t next = 1;
  while (next <= 256) {
    auto got = sock.recv([](auto& g) { return test::is_test_frame(g); });
    ASSERT_TRUE(got.has_value()) << "frame " << next << " did not arrive";
    ASSERT_EQ(test::test_seq(*got), next) << "out of order";
    EXPECT_EQ(*got, frames[next - 1]);
    ++next;
  }
  EXPECT_EQ(exit_->tap_port(0).stats().tx_sent.get(), 256u);
}

TEST_F(TapTest, TxPartialChecksumAndGsoReachTheKernelAsSuch) {
  PacketSocket sock("vif1.0", /*vnet_hdr=*/true);
  ASSERT_TRUE(sock.ok());
  // A 64 KiB TCPv4 GSO frame and a small UDP frame, both with partial checksums.
  const auto gso = test::ipv4_frame(true, 64000, 1000, 2000, /*partial=*/true);
  const auto udp = test::ipv4_frame(false, 300, 1001, 2001, /*partial=*/true);
  PacketMeta gm;
  gm.csum_partial = true;
  gm.csum_start = 34;
  gm.csum_offset = 16;
  gm.gso_type = netif::kGsoTypeTcpv4;
  gm.gso_size = 1448;
  gm.l2_len = 14;
  gm.l3_len = 20;
  gm.l4_len = 20;
  PacketMeta um;
  um.csum_partial = true;
  um.csum_start = 34;
  um.csum_offset = 6;
  ASSERT_EQ(tx(exit_->port(0), {gso, udp}, {gm, um}), 2u);

  auto is = [](std::uint16_t sport) {
    return [sport](const std::vector<std::uint8_t>& g) {
      return g.size() > 10 + 38 && test::get16(g, 10 + 12) == 0x0800 && test::get16(g, 10 + 34) == sport;
    };
  };
  auto got = sock.recv(is(1000));
  ASSERT_TRUE(got.has_value());
  VnetHdr10 h;
  std::memcpy(&h, got->data(), sizeof h);
  // The kernel keeps it one GSO packet on its way in: AF_PACKET sees all 64 KiB and the metadata.
  EXPECT_EQ(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
  EXPECT_EQ(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
  EXPECT_EQ(h.gso_size, 1448);
  EXPECT_EQ(h.csum_start, 34);
  EXPECT_EQ(h.csum_offset, 16);
  EXPECT_EQ(std::vector<std::uint8_t>(got->begin() + 10, got->end()), gso);

  got = sock.recv(is(1001));
  ASSERT_TRUE(got.has_value());
  std::memcpy(&h, got->data(), sizeof h);
  EXPECT_EQ(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
  EXPECT_EQ(h.gso_type, VIRTIO_NET_HDR_GSO_NONE);
  EXPECT_EQ(h.csum_start, 34);
  EXPECT_EQ(h.csum_offset, 6);
  EXPECT_EQ(std::vector<std::uint8_t>(got->begin() + 10, got->end()), udp);
  EXPECT_EQ(exit_->tap_port(0).stats().tx_sent.get(), 2u);
}

TEST_F(TapTest, TxWhileDownIsDroppedAndCounted) {
  ASSERT_TRUE(test::set_if_up("vif1.0", false));
  EXPECT_EQ(tx(exit_->port(0), {test::test_frame(60, 1), test::test_frame(1514, 2)}), 0u);
  EXPECT_EQ(exit_->tap_port(0).stats().tx_dropped.get(), 2u);
  EXPECT_EQ(exit_->tap_port(0).stats().tx_sent.get(), 0u);
  // Bad metadata (GSO without a partial checksum) is dropped too, before the kernel sees it.
  ASSERT_TRUE(test::set_if_up("vif1.0", true));
  PacketMeta bad;
  bad.gso_type = netif::kGsoTypeTcpv4;
  bad.gso_size = 1000;
  EXPECT_EQ(tx(exit_->port(0), {test::ipv4_frame(true, 3000, 1, 2, false)}, {bad}), 0u);
  EXPECT_EQ(exit_->tap_port(0).stats().tx_dropped.get(), 3u);
}

TEST_F(TapTest, AllocTxRefusesMoreThanTheArenaHolds) {
  std::vector<PacketBuffer> bufs(257);
  for (auto& b : bufs) b.length = 100;
  EXPECT_EQ(exit_->port(0).alloc_tx(bufs), ENOBUFS);
  for (auto& b : bufs) EXPECT_EQ(b.handle, nullptr);
  std::vector<PacketBuffer> ok(256);
  for (auto& b : ok) b.length = 65535;
  ASSERT_EQ(exit_->port(0).alloc_tx(ok), 0);
  std::vector<PacketBuffer> one(1);
  EXPECT_EQ(exit_->port(0).alloc_tx(one), ENOBUFS);
  ASSERT_TRUE(test::set_if_up("vif1.0", false));  // the writes fail: all dropped, all slots back
  EXPECT_EQ(exit_->port(0).transmit(ok), 0u);
  EXPECT_EQ(exit_->port(0).alloc_tx(ok), 0);
  exit_->port(0).transmit(ok);
}

TEST_F(TapTest, RxInjectedFramesComeOutByteExact) {
  PacketSocket inject("vif1.0");
  ASSERT_TRUE(inject.ok());
  wait_rx_path(*exit_, 1, inject);
  const auto before = exit_->tap_port(0).stats().rx_received.get();
  std::vector<std::vector<std::uint8_t>> frames;
  std::uint32_t seq = 100;
  for (std::size_t size : {60, 61, 64, 100, 128, 512, 1000, 1513, 1514}) frames.push_back(test::test_frame(size, seq++));
  for (const auto& f : frames) ASSERT_TRUE(inject.send(f));
  auto got = rx(*exit_, 1, frames.size(), [](auto& f) { return test::is_test_frame(f) && test::test_seq(f) >= 100; });
  ASSERT_EQ(got.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(got[i].bytes, frames[i]);
    EXPECT_FALSE(got[i].meta.csum_partial);
    EXPECT_EQ(got[i].meta.gso_type, netif::kGsoTypeNone);
  }
  EXPECT_GE(exit_->tap_port(0).stats().rx_received.get() - before, frames.size());
}

// A GSO TCP frame sent on the vif (AF_PACKET with a vnet header, as a local TCP socket would make).
std::vector<std::uint8_t> gso_injection(std::uint16_t sport, std::size_t payload) {
  VnetHdr10 h{};
  h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
  h.hdr_len = 54;
  h.gso_size = 1448;
  h.csum_start = 34;
  h.csum_offset = 16;
  return with_vnet(h, test::ipv4_frame(true, payload, sport, 80, /*partial=*/true));
}

TEST_F(TapTest, RxGsoReachesAGuestThatTakesIt) {
  ASSERT_EQ(exit_->configure(1, {.csum = true, .ipv6_csum = true, .sg = true, .gso_tcpv4 = true, .gso_tcpv6 = true}, 1500), 0);
  EXPECT_EQ(exit_->offload_flags(), unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6});
  PacketSocket inject("vif1.0", /*vnet_hdr=*/true);
  ASSERT_TRUE(inject.ok());
  PacketSocket plain("vif1.0");
  wait_rx_path(*exit_, 1, plain);
  const auto packet = gso_injection(4242, 30000);
  ASSERT_TRUE(inject.send(packet));
  auto got = rx(*exit_, 1, 1, [](auto& f) { return f.size() > 36 && test::get16(f, 12) == 0x0800 && test::get16(f, 34) == 4242; });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, std::vector<std::uint8_t>(packet.begin() + 10, packet.end()));
  EXPECT_EQ(got[0].meta.gso_type, netif::kGsoTypeTcpv4);
  EXPECT_EQ(got[0].meta.gso_size, 1448);
  EXPECT_TRUE(got[0].meta.csum_partial);
  EXPECT_EQ(got[0].meta.csum_start, 34);
  EXPECT_EQ(got[0].meta.csum_offset, 16);
}

TEST_F(TapTest, RxGsoIsSegmentedAndChecksummedForAGuestThatDoesNot) {
  ASSERT_EQ(exit_->configure(1, {.csum = false}, 1500), 0);
  EXPECT_EQ(exit_->offload_flags(), 0u);
  PacketSocket inject("vif1.0", /*vnet_hdr=*/true);
  ASSERT_TRUE(inject.ok());
  PacketSocket plain("vif1.0");
  wait_rx_path(*exit_, 1, plain);
  const std::size_t payload = 30000;
  ASSERT_TRUE(inject.send(gso_injection(4343, payload)));
  const std::size_t segments = (payload + 1447) / 1448;
  auto got = rx(*exit_, 1, segments, [](auto& f) { return f.size() > 36 && test::get16(f, 12) == 0x0800 && test::get16(f, 34) == 4343; });
  ASSERT_EQ(got.size(), segments);
  std::size_t total = 0;
  for (const auto& r : got) {
    EXPECT_LE(r.bytes.size(), 1514u);
    EXPECT_FALSE(r.meta.csum_partial);
    EXPECT_EQ(r.meta.gso_type, netif::kGsoTypeNone);
    EXPECT_TRUE(test::ipv4_l4_checksum_ok(r.bytes));
    total += r.bytes.size() - 54;
  }
  EXPECT_EQ(total, payload);
}

class TapMultiQueueTest : public TapTest {
 protected:
  TapMultiQueueTest() { queues_ = 4; }
};

// 64 UDP flows sent on the vif; returns how many frames each queue got.
std::map<unsigned, unsigned> spread(TapExit& exit, PacketSocket& inject, std::uint16_t base) {
  for (std::uint16_t i = 0; i < 64; ++i) EXPECT_TRUE(inject.send(test::ipv4_frame(false, 64, static_cast<std::uint16_t>(base + i), 9, false)));
  auto got = rx(exit, 4, 64, [base](auto& f) {
    return f.size() > 36 && test::get16(f, 12) == 0x0800 && test::get16(f, 34) >= base && test::get16(f, 34) < base + 64;
  });
  EXPECT_EQ(got.size(), 64u);
  std::map<unsigned, unsigned> per_queue;
  for (const auto& r : got) ++per_queue[r.queue];
  return per_queue;
}

TEST_F(TapMultiQueueTest, DetachAndReattachQueues) {
  ASSERT_EQ(exit_->max_queues(), 4u);
  for (unsigned q = 0; q < 4; ++q) EXPECT_NE(exit_->port(q).rx_fd(), exit_->port((q + 1) % 4).rx_fd());
  PacketSocket inject("vif1.0");
  ASSERT_TRUE(inject.ok());
  ASSERT_EQ(exit_->configure(4, {}, 1500), 0);
  EXPECT_EQ(exit_->attached_queues(), 4u);
  wait_rx_path(*exit_, 4, inject);
  auto all = spread(*exit_, inject, 1000);
  EXPECT_GE(all.size(), 3u) << "64 flows should use most of 4 queues";

  ASSERT_EQ(exit_->configure(2, {}, 1500), 0);
  EXPECT_EQ(exit_->attached_queues(), 2u);
  EXPECT_FALSE(exit_->tap_port(3).attached());
  auto two = spread(*exit_, inject, 2000);
  for (const auto& [q, n] : two) EXPECT_LT(q, 2u) << n << " frames on detached queue " << q;
  // A detached queue's port just has nothing: receive() returns 0, transmit() drops.
  std::vector<PacketBuffer> bufs(4);
  EXPECT_EQ(exit_->port(3).receive(bufs), 0u);

  ASSERT_EQ(exit_->configure(4, {}, 1500), 0);
  EXPECT_EQ(exit_->attached_queues(), 4u);
  auto again = spread(*exit_, inject, 3000);
  unsigned high = 0;
  for (const auto& [q, n] : again) high += q >= 2 ? n : 0;
  EXPECT_GT(high, 0u) << "re-attached queues get traffic again";
  EXPECT_EQ(exit_->configure(5, {}, 1500), EINVAL);
  EXPECT_EQ(exit_->configure(0, {}, 1500), EINVAL);
}

TEST(TapExitCreate, MtuMacAndNotUpByDefault) {
  REQUIRE_NETNS();
  auto e = TapExit::create({.name = "vif7.3", .mtu = 9000});
  ASSERT_TRUE(e.has_value()) << std::strerror(e.error());
  EXPECT_EQ(test::if_mtu("vif7.3"), 9000);
  EXPECT_EQ(test::if_flags("vif7.3") & IFF_UP, 0);
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "vif7.3");
  ASSERT_EQ(::ioctl(s.get(), SIOCGIFHWADDR, &ifr), 0);
  const std::uint8_t mac[6] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(std::memcmp(ifr.ifr_hwaddr.sa_data, mac, 6), 0);
  ASSERT_EQ((*e)->configure(1, {}, 1500), 0);
  EXPECT_EQ(test::if_mtu("vif7.3"), 1500);
  EXPECT_EQ((*e)->configure(1, {}, 70000), EINVAL);
  e->reset();
  EXPECT_EQ(if_nametoindex("vif7.3"), 0u) << "the device goes with the exit";
}

TEST(TapExitCreate, CarrierFollowsSetLink) {
  REQUIRE_NETNS();
  auto e = TapExit::create({.name = "vif2.0", .max_queues = 2, .bring_up = true, .tx_queue_len = 500});
  ASSERT_TRUE(e.has_value()) << std::strerror(e.error());
  EXPECT_NE(test::if_flags("vif2.0") & IFF_UP, 0);
  // No carrier until a frontend connects, like the kernel's vif.
  EXPECT_TRUE(test::eventually([] { return (test::if_flags("vif2.0") & IFF_RUNNING) == 0; }));
  (*e)->set_link(true);
  EXPECT_TRUE(test::eventually([] { return (test::if_flags("vif2.0") & IFF_RUNNING) != 0; }));
  (*e)->set_link(false);
  EXPECT_TRUE(test::eventually([] { return (test::if_flags("vif2.0") & IFF_RUNNING) == 0; }));
}

TEST(TapExitCreate, NameCollisionsAndBadNames) {
  REQUIRE_NETNS();
  auto a = TapExit::create({.name = "vif3.0"});
  ASSERT_TRUE(a.has_value());
  auto b = TapExit::create({.name = "vif3.0"});
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error(), EEXIST);
  auto mq = TapExit::create({.name = "vif3.0", .max_queues = 4});
  ASSERT_FALSE(mq.has_value());
  EXPECT_EQ(mq.error(), EEXIST);
  auto lo = TapExit::create({.name = "lo"});
  ASSERT_FALSE(lo.has_value());
  EXPECT_EQ(lo.error(), EEXIST);
  EXPECT_EQ(TapExit::create({.name = "vif12345.67890ab"}).error(), EINVAL);  // 16 characters
  EXPECT_EQ(TapExit::create({.name = ""}).error(), EINVAL);
  EXPECT_EQ(TapExit::create({.name = "vif3.1", .max_queues = 0}).error(), EINVAL);
  auto longest = TapExit::create({.name = "vif32767.65535"});  // 14 characters fit
  EXPECT_TRUE(longest.has_value());
}

}  // namespace
}  // namespace pvback::netback

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  pvback::netback::g_netns = pvback::test::enter_private_netns();
  return RUN_ALL_TESTS();
}
