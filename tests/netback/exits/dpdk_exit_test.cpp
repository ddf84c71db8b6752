// The DPDK exit against vdevs: net_ring (each TX queue feeds the RX queue of the same index, so
// a port loops back), net_null (TX frees, RX makes packets), and net_tap inside the test process's
// own network namespace (a kernel tap on the far side, watched with AF_PACKET).
#include <gtest/gtest.h>
#include <net/if.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <thread>

#include "netback/dpdk_exit.hpp"
#include "ring/netif.hpp"
#include "tests/netback/exits/net_support.hpp"
#include "tests/support/eventually.hpp"

namespace pvback::netback {
namespace {

bool g_netns = false;

std::unique_ptr<DpdkExit> make(DpdkConfig config) {
  auto e = DpdkExit::create(config);
  EXPECT_TRUE(e.has_value()) << config.devargs << ": " << std::strerror(e.error());
  return e ? std::move(*e) : nullptr;
}

// Sends frames in one batch; returns transmit()'s count. The chunks are checked against the
// 2 KiB mbuf data room.
unsigned tx(Port& port, const std::vector<std::vector<std::uint8_t>>& frames, const std::vector<PacketMeta>& metas = {}) {
  std::vector<PacketBuffer> bufs(frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) bufs[i].length = static_cast<std::uint32_t>(frames[i].size());
  EXPECT_EQ(port.alloc_tx(bufs), 0);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(bufs[i].nr_chunks, std::max<std::size_t>(1, (frames[i].size() + 2047) / 2048));
    std::uint32_t total = 0;
    for (unsigned c = 0; c < bufs[i].nr_chunks; ++c) {
      EXPECT_LE(bufs[i].chunks[c].len, 2048u);
      total += bufs[i].chunks[c].len;
    }
    EXPECT_EQ(total, frames[i].size());
    test::scatter(bufs[i], frames[i]);
    if (i < metas.size()) bufs[i].meta = metas[i];
  }
  return port.transmit(bufs);
}

std::vector<std::vector<std::uint8_t>> rx_all(Port& port, std::size_t want, std::vector<PacketMeta>* metas = nullptr) {
  std::vector<std::vector<std::uint8_t>> out;
  std::vector<PacketBuffer> bufs(32);
  test::eventually([&] {
    const unsigned n = port.receive(bufs);
    for (unsigned i = 0; i < n; ++i) {
      out.push_back(test::gather(bufs[i]));
      EXPECT_EQ(out.back().size(), bufs[i].length);
      if (metas) metas->push_back(bufs[i].meta);
    }
    port.release(std::span(bufs).first(n));
    return out.size() >= want;
  }, std::chrono::seconds(5));
  return out;
}

TEST(DpdkExit, RingCapabilities) {
  auto exit = make({.devargs = "net_ring0", .max_queues = 1});
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->name(), "net_ring0");
  const auto caps = exit->capabilities();
  EXPECT_TRUE(caps.poll_mode);
  EXPECT_FALSE(caps.rx_gso);
  EXPECT_EQ(exit->port(0).rx_fd(), -1);
  EXPECT_EQ(exit->max_queues(), 1u);
  EXPECT_EQ(exit->configure(1, {}, 1500), 0);
  EXPECT_EQ(exit->configure(2, {}, 1500), EINVAL);
  exit->set_link(true);
}

TEST(DpdkExit, RingRoundTripsAreByteExactAcrossChains) {
  auto exit = make({.devargs = "net_ring1", .max_queues = 1, .name = "vif4.0"});
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->name(), "vif4.0");
  Port& port = exit->port(0);
  std::uint32_t seq = 1;
  std::size_t count = 0;
  for (std::size_t size : {60, 61, 64, 128, 1514, 2047, 2048, 2049, 4095, 4096, 4097, 9000, 9018, 30000, 65535}) {
    const auto frame = test::test_frame(size, seq++);
    ASSERT_EQ(tx(port, {frame}), 1u) << size;
    auto got = rx_all(port, 1);
    ASSERT_EQ(got.size(), 1u) << size;
    EXPECT_EQ(got[0], frame) << size;
    ++count;
  }
  // One batch of many, mixed sizes: order kept.
  std::vector<std::vector<std::uint8_t>> frames;
  for (unsigned i = 0; i < 200; ++i) frames.push_back(test::test_frame(60 + (i * 337) % 9000, 1000 + i));
  ASSERT_EQ(tx(port, frames), frames.size());
  auto got = rx_all(port, frames.size());
  ASSERT_EQ(got.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(got[i], frames[i]) << i;
  count += frames.size();
  EXPECT_EQ(exit->dpdk_port(0).stats().tx_sent.get(), count);
  EXPECT_EQ(exit->dpdk_port(0).stats().rx_received.get(), count);
  EXPECT_EQ(exit->dpdk_port(0).stats().tx_dropped.get(), 0u);
}

// What a port reports as RTE_MBUF_F_RX_L4_CKSUM_NONE (a virtio or tap PMD passing on a local
// packet with a partial checksum: the data is intact but the field holds only the pseudo-header
// sum) must reach the guest as "checksum blank", not as "data validated" alone: a guest that
// forwards the packet would send it with a wrong checksum. The mbuf is put straight into the
// net_ring port's RX ring with the flags such a PMD sets.
TEST(DpdkExit, RxChecksumNoneReachesTheGuestAsChecksumBlank) {
  auto exit = make({.devargs = "net_ring5", .max_queues = 1});
  ASSERT_TRUE(exit);
  rte_ring* ring = rte_ring_lookup("ETH_RXTX0_net_ring5");
  ASSERT_NE(ring, nullptr) << "net_ring's queue ring not found by its name";
  rte_mempool* pool = rte_pktmbuf_pool_create("csum_none_pool", 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  ASSERT_NE(pool, nullptr);
  for (const bool tcp : {true, false}) {
    const auto frame = test::ipv4_frame(tcp, 300, 5555, 80, /*partial=*/true);
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    ASSERT_NE(m, nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size())), frame.data(), frame.size());
    m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_NONE | RTE_MBUF_F_RX_IP_CKSUM_GOOD;
    ASSERT_EQ(rte_ring_enqueue(ring, m), 0);
    std::vector<PacketMeta> metas;
    auto got = rx_all(exit->port(0), 1, &metas);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0], frame);
    EXPECT_TRUE(metas[0].csum_partial) << (tcp ? "tcp" : "udp") << ": told validated without checksum blank";
    EXPECT_EQ(metas[0].csum_start, 34u);
    EXPECT_EQ(metas[0].csum_offset, tcp ? 16u : 6u);
  }
  // Anything that cannot be marked blank (not TCP/UDP over IP) is passed on unvalidated: the guest
  // checks it itself.
  const auto other = test::test_frame(200, 9);
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  ASSERT_NE(m, nullptr);
  std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(other.size())), other.data(), other.size());
  m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_NONE;
  ASSERT_EQ(rte_ring_enqueue(ring, m), 0);
  std::vector<PacketMeta> metas;
  ASSERT_EQ(rx_all(exit->port(0), 1, &metas).size(), 1u);
  EXPECT_FALSE(metas[0].csum_validated);
  EXPECT_FALSE(metas[0].csum_partial);
  exit.reset();
  rte_mempool_free(pool);
}

TEST(DpdkExit, RingQueuesAreSeparate) {
  auto exit = make({.devargs = "net_ring2", .max_queues = 4, .mbufs_per_queue = 2048, .rx_descriptors = 256, .tx_descriptors = 256});
  ASSERT_TRUE(exit);
  ASSERT_EQ(exit->max_queues(), 4u);
  for (unsigned q = 0; q < 4; ++q) ASSERT_EQ(tx(exit->port(q), {test::test_frame(100 + q, q)}), 1u);
  for (unsigned q = 0; q < 4; ++q) {
    auto got = rx_all(exit->port(q), 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], test::test_frame(100 + q, q));
  }
}

TEST(DpdkExit, PortsWorkFromNonEalThreads) {
  auto exit = make({.devargs = "net_ring3", .max_queues = 2});
  ASSERT_TRUE(exit);
  std::vector<std::thread> threads;
  std::atomic<unsigned> ok{0};
  for (unsigned q = 0; q < 2; ++q)
    threads.emplace_back([&, q] {
      EXPECT_EQ(rte_lcore_id(), LCORE_ID_ANY);
      for (unsigned i = 0; i < 500; ++i) {
        const auto f = test::test_frame(60 + i * 17, i);
        if (tx(exit->port(q), {f}) != 1) return;
        auto got = rx_all(exit->port(q), 1);
        if (got.size() != 1 || got[0] != f) return;
      }
      // The first call registered this thread as an lcore (for the mempool cache).
      EXPECT_NE(rte_lcore_id(), LCORE_ID_ANY);
      ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 2u);
}

TEST(DpdkExit, AllocTxIsAllOrNothing) {
  auto exit = make({.devargs = "net_ring4", .max_queues = 1, .mbufs_per_queue = 256, .rx_descriptors = 64, .tx_descriptors = 64});
  ASSERT_TRUE(exit);
  Port& port = exit->port(0);
  // 256 mbufs (some sit in per-lcore caches): 10 x 64 KiB (33 mbufs each) cannot all be had.
  std::vector<PacketBuffer> bufs(10);
  for (auto& b : bufs) b.length = 65535;
  EXPECT_EQ(port.alloc_tx(bufs), ENOBUFS);
  for (auto& b : bufs) EXPECT_EQ(b.handle, nullptr);
  // Nothing leaked: a smaller batch works, repeatedly.
  for (int round = 0; round < 20; ++round) {
    std::vector<PacketBuffer> some(4);
    for (auto& b : some) b.length = 9000;
    ASSERT_EQ(port.alloc_tx(some), 0) << round;
    ASSERT_EQ(port.transmit(some), 4u);
    std::vector<PacketBuffer> back(8);
    unsigned n = 0;
    ASSERT_TRUE(test::eventually([&] { return (n += port.receive(std::span(back).subspan(n))) == 4; }));
    port.release(std::span(back).first(n));
  }
  std::vector<PacketBuffer> too_big(1);
  too_big[0].length = kMaxPacketBytes + 1;
  EXPECT_EQ(port.alloc_tx(too_big), ENOBUFS);
}

TEST(DpdkExit, OffloadsTheDeviceLacksAreDropped) {
  auto exit = make({.devargs = "net_ring5", .max_queues = 1});
  ASSERT_TRUE(exit);
  ASSERT_FALSE(exit->capabilities().tx_csum) << "net_ring offers no checksum offload";
  PacketMeta m;
  m.csum_partial = true;
  m.csum_start = 34;
  m.csum_offset = 6;
  EXPECT_EQ(tx(exit->port(0), {test::ipv4_frame(false, 100, 1, 2, true), test::test_frame(60, 1)}, {m}), 1u);
  EXPECT_EQ(exit->dpdk_port(0).stats().tx_dropped.get(), 1u);
  auto got = rx_all(exit->port(0), 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], test::test_frame(60, 1));
}

TEST(DpdkExit, NullCountsAndGenerates) {
  auto exit = make({.devargs = "net_null0", .max_queues = 2});
  ASSERT_TRUE(exit);
  std::vector<std::vector<std::uint8_t>> frames(100, test::test_frame(1514, 7));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(tx(exit->port(1), frames), 100u);
  EXPECT_EQ(exit->dpdk_port(1).stats().tx_sent.get(), 1000u);
  EXPECT_EQ(exit->dpdk_port(0).stats().tx_sent.get(), 0u);
  std::vector<PacketBuffer> bufs(64);
  for (int i = 0; i < 10; ++i) {
    const unsigned n = exit->port(0).receive(bufs);
    EXPECT_EQ(n, 64u);  // net_null always has packets
    for (unsigned j = 0; j < n; ++j) {
      EXPECT_GT(bufs[j].length, 0u);
      EXPECT_EQ(bufs[j].nr_chunks, 1u);
    }
    exit->port(0).release(std::span(bufs).first(n));
  }
  EXPECT_EQ(exit->dpdk_port(0).stats().rx_received.get(), 640u);
}

TEST(DpdkExit, ProbeErrors) {
  EXPECT_FALSE(DpdkExit::create({.devargs = "net_nosuchdriver0"}).has_value());
  EXPECT_FALSE(DpdkExit::create({.devargs = ""}).has_value());
  auto a = make({.devargs = "net_ring6"});
  ASSERT_TRUE(a);
  auto b = DpdkExit::create({.devargs = "net_ring6"});
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error(), EEXIST);
  // Destroying an exit removes its device: the same devargs probe again.
  a.reset();
  EXPECT_TRUE(make({.devargs = "net_ring6"}));
}

// net_tap: a kernel tap device ("dtap0") in this process's namespace. What the port sends, an
// AF_PACKET socket on dtap0 sees; what that socket sends, the port receives.
TEST(DpdkExit, TapVdevBothWaysWithChecksumOffload) {
  if (!g_netns) GTEST_SKIP() << "no private network namespace";
  auto exit = make({.devargs = "net_tap0,iface=dtap0", .max_queues = 1});
  ASSERT_TRUE(exit);
  ASSERT_NE(if_nametoindex("dtap0"), 0u);
  test::set_if_up("dtap0");
  exit->set_link(true);
  test::PacketSocket sock("dtap0");
  ASSERT_TRUE(sock.ok());
  std::vector<std::vector<std::uint8_t>> frames;
  for (std::size_t size : {60, 1514}) frames.push_back(test::test_frame(size, static_cast<std::uint32_t>(size)));
  ASSERT_EQ(tx(exit->port(0), frames), frames.size());
  for (const auto& f : frames) {
    auto got = sock.recv([&](auto& g) { return test::is_test_frame(g) && test::test_seq(g) == test::test_seq(f); });
    ASSERT_TRUE(got.has_value()) << f.size();
    EXPECT_EQ(*got, f);
  }
  if (exit->capabilities().tx_csum) {
    // A partial UDP checksum leaves the device complete.
    PacketMeta m;
    m.csum_partial = true;
    m.csum_start = 34;
    m.csum_offset = 6;
    ASSERT_EQ(tx(exit->port(0), {test::ipv4_frame(false, 700, 5555, 9, true)}, {m}), 1u);
    auto got = sock.recv([](auto& g) { return g.size() > 36 && test::get16(g, 12) == 0x0800 && test::get16(g, 34) == 5555; });
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(test::ipv4_l4_checksum_ok(*got));
    EXPECT_EQ(*got, test::ipv4_frame(false, 700, 5555, 9, false));
  }
  // The other way.
  std::vector<PacketBuffer> bufs(8);
  const auto in = test::test_frame(1000, 77);
  std::vector<std::uint8_t> got;
  ASSERT_TRUE(test::eventually([&] {
    sock.send(in);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const unsigned n = exit->port(0).receive(bufs);
    for (unsigned i = 0; i < n; ++i) {
      auto f = test::gather(bufs[i]);
      if (test::is_test_frame(f) && test::test_seq(f) == 77) got = f;
    }
    exit->port(0).release(std::span(bufs).first(n));
    return !got.empty();
  }));
  EXPECT_EQ(got, in);
}

// TSO through net_tap (which segments in software with rte_gso): the kernel sees MSS-sized
// segments with correct checksums carrying the whole payload; and a correct UDP frame from the
// kernel comes out with csum_validated (net_tap checks it when RX checksum offload is on).
TEST(DpdkExit, TapVdevTsoAndRxChecksumValidation) {
  if (!g_netns) GTEST_SKIP() << "no private network namespace";
  auto exit = make({.devargs = "net_tap1,iface=dtap1", .max_queues = 1, .tso = true});
  ASSERT_TRUE(exit);
  test::set_if_up("dtap1");
  exit->set_link(true);
  test::PacketSocket sock("dtap1");
  ASSERT_TRUE(sock.ok());
  ASSERT_TRUE(exit->capabilities().tx_tso4) << "net_tap offers TSO in DPDK 22.11";
  const std::size_t payload = 20000, mss = 1400;
  PacketMeta m;
  m.csum_partial = true;
  m.csum_start = 34;
  m.csum_offset = 16;
  m.gso_type = netif::kGsoTypeTcpv4;
  m.gso_size = mss;  // l2/l3/l4 lengths left 0: the port finds them
  ASSERT_EQ(tx(exit->port(0), {test::ipv4_frame(true, payload, 6666, 80, true)}, {m}), 1u);
  std::size_t total = 0, segments = 0;
  while (total < payload) {
    auto got = sock.recv([](auto& g) { return g.size() > 36 && test::get16(g, 12) == 0x0800 && test::get16(g, 34) == 6666; });
    ASSERT_TRUE(got.has_value()) << "after " << total << " bytes";
    EXPECT_LE(got->size(), 14 + 20 + 20 + mss);
    EXPECT_TRUE(test::ipv4_l4_checksum_ok(*got)) << "segment " << segments;
    total += got->size() - 54;
    ++segments;
  }
  EXPECT_EQ(total, payload);
  EXPECT_EQ(segments, (payload + mss - 1) / mss);

  if (!(exit->rx_offloads() & RTE_ETH_RX_OFFLOAD_UDP_CKSUM)) return;
  std::vector<PacketBuffer> bufs(8);
  bool validated = false, seen = false;
  ASSERT_TRUE(test::eventually([&] {
    sock.send(test::ipv4_frame(false, 200, 7777, 9, false));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const unsigned n = exit->port(0).receive(bufs);
    for (unsigned i = 0; i < n; ++i) {
      auto f = test::gather(bufs[i]);
      if (f.size() > 36 && test::get16(f, 12) == 0x0800 && test::get16(f, 34) == 7777) {
        seen = true;
        validated = bufs[i].meta.csum_validated;
      }
    }
    exit->port(0).release(std::span(bufs).first(n));
    return seen;
  }));
  EXPECT_TRUE(validated);
}

// Without the port's TSO (the default), a guest's 60 KB TCP/IPv4 GSO frame is cut here (DPDK's
// GSO library): frames of one MSS each, in order, with IPv4 lengths, ids and header checksums and
// TCP sequence numbers and checksums right, every payload byte once; a frame whose MSS would not
// fit the MTU is dropped; TCP/IPv6 GSO is not offered (the library has none). The TAP's queue fd
// is the queue's RX interrupt fd, so its queue sleeps instead of polling.
TEST(DpdkExit, TapVdevSegmentsGuestGsoInSoftwareWithoutTso) {
  if (!g_netns) GTEST_SKIP() << "no private network namespace";
  auto exit = make({.devargs = "net_tap2,iface=dtap2", .max_queues = 1});
  ASSERT_TRUE(exit);
  test::set_if_up("dtap2");
  exit->set_link(true);
  test::PacketSocket sock("dtap2");
  ASSERT_TRUE(sock.ok());
  EXPECT_TRUE(exit->capabilities().tx_tso4);
  EXPECT_FALSE(exit->capabilities().tx_tso6);
  EXPECT_FALSE(exit->capabilities().poll_mode);
  EXPECT_GE(exit->port(0).rx_fd(), 0);

  const std::size_t payload = 60000, mss = 1448;
  const auto frame = test::ipv4_frame(true, payload, 6667, 80, true);
  PacketMeta m;
  m.csum_partial = true;
  m.csum_start = 34;
  m.csum_offset = 16;
  m.gso_type = netif::kGsoTypeTcpv4;
  m.gso_size = mss;
  ASSERT_EQ(tx(exit->port(0), {frame}, {m}), 1u);
  std::vector<std::uint8_t> joined;
  std::size_t segments = 0;
  std::uint32_t seq = test::get32(frame, 38);
  while (joined.size() < payload) {
    auto got = sock.recv([](auto& g) { return g.size() > 36 && test::get16(g, 12) == 0x0800 && test::get16(g, 34) == 6667; });
    ASSERT_TRUE(got.has_value()) << "after " << joined.size() << " bytes, " << segments << " segments";
    const std::size_t len = got->size() - 54;
    EXPECT_EQ(len, std::min(mss, payload - joined.size())) << "segment " << segments;
    EXPECT_EQ(test::get16(*got, 16), 20 + 20 + len) << "IPv4 total length, segment " << segments;
    std::uint32_t ip_sum = 0;
    for (std::size_t i = 14; i < 34; i += 2) ip_sum += test::get16(*got, i);
    while (ip_sum >> 16) ip_sum = (ip_sum & 0xffff) + (ip_sum >> 16);
    EXPECT_EQ(ip_sum, 0xffffu) << "IPv4 header checksum, segment " << segments;
    EXPECT_TRUE(test::ipv4_l4_checksum_ok(*got)) << "TCP checksum, segment " << segments;
    EXPECT_EQ(test::get32(*got, 38), seq) << "TCP sequence, segment " << segments;
    seq += static_cast<std::uint32_t>(len);
    joined.insert(joined.end(), got->begin() + 54, got->end());
    ++segments;
  }
  EXPECT_EQ(segments, (payload + mss - 1) / mss);
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(), frame.begin() + 54)) << "the payload arrived changed";

  // An odd MSS (segments straddle the guest frame's 2 KiB mbufs at odd offsets) and a small one
  // (more segments than a 64 KiB frame has at the usual MSS): every segment's checksums verify,
  // the payload arrives whole.
  for (const std::size_t odd : {std::size_t{1447}, std::size_t{400}}) {
    m.gso_size = static_cast<std::uint16_t>(odd);
    const auto f = test::ipv4_frame(true, payload, 6669, 80, true, static_cast<std::uint8_t>(odd));
    ASSERT_EQ(tx(exit->port(0), {f}, {m}), 1u) << "mss " << odd;
    std::vector<std::uint8_t> got_payload;
    std::size_t n = 0;
    while (got_payload.size() < payload) {
      auto got = sock.recv([](auto& g) { return g.size() > 36 && test::get16(g, 12) == 0x0800 && test::get16(g, 34) == 6669; });
      ASSERT_TRUE(got.has_value()) << "mss " << odd << ": after " << got_payload.size() << " bytes";
      EXPECT_TRUE(test::ipv4_l4_checksum_ok(*got)) << "mss " << odd << ", segment " << n;
      got_payload.insert(got_payload.end(), got->begin() + 54, got->end());
      ++n;
    }
    EXPECT_EQ(n, (payload + odd - 1) / odd);
    EXPECT_TRUE(std::equal(got_payload.begin(), got_payload.end(), f.begin() + 54)) << "mss " << odd;
  }

  // An MSS beyond what the 1500-byte MTU carries: not sent.
  m.gso_size = 1500;
  EXPECT_EQ(tx(exit->port(0), {test::ipv4_frame(true, 8000, 6668, 80, true)}, {m}), 0u);
  EXPECT_EQ(exit->dpdk_port(0).stats().tx_segmented.get(), 3u);
}

// --no-dpdk-soft-gso: no TSO, so no GSO for the guest; a device without RX interrupts is polled.
TEST(DpdkExit, WithoutSoftGsoOrTsoTheGuestIsOfferedNoGso) {
  if (!g_netns) GTEST_SKIP() << "no private network namespace";
  auto exit = make({.devargs = "net_tap3,iface=dtap3", .max_queues = 1, .soft_gso = false});
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->capabilities().tx_tso4);
  EXPECT_FALSE(exit->capabilities().tx_tso6);
  auto ring = make({.devargs = "net_ring7", .max_queues = 1});
  ASSERT_TRUE(ring);
  EXPECT_TRUE(ring->capabilities().poll_mode);
  EXPECT_EQ(ring->port(0).rx_fd(), -1);
  EXPECT_FALSE(ring->capabilities().tx_tso4) << "net_ring computes no checksums: nothing to segment for";
}

}  // namespace
}  // namespace pvback::netback

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Before EAL starts threads: they, and the net_tap devices, live in the new namespace.
  pvback::netback::g_netns = pvback::test::enter_private_netns();
  return RUN_ALL_TESTS();
}
