// Guest -> port: sizes from 60 B to 64 KiB byte for byte, multi-slot, offloads, rate limiting.
#include "tests/netback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

void expect_all_okay(const std::vector<TxResponse>& rsps) {
  for (const auto& r : rsps) EXPECT_TRUE(r.status == netif::kRspOkay || r.status == netif::kRspNull) << r.id;
}

TEST_F(NetQueueTest, TxFramesByteExact) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  const std::size_t sizes[] = {60, 61, 100, 1514, 4095, 4096, 4097, 9000, 20000, 40000, 65535};
  std::vector<Bytes> frames;
  std::size_t slots = 0;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    frames.push_back(make_raw(sizes[i], static_cast<std::uint32_t>(i)));
    fe.put_packet(frames.back());
    slots += (sizes[i] + kXenPageSize - 1) / kXenPageSize;
  }
  fe.push_tx();
  auto rsps = fe.collect_tx(slots);
  ASSERT_EQ(rsps.size(), slots);
  expect_all_okay(rsps);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == frames.size(); }));
  auto tx = q.port->transmitted();
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(tx[i].bytes, frames[i]) << sizes[i];
    EXPECT_FALSE(tx[i].meta.csum_partial);
    EXPECT_EQ(tx[i].meta.gso_type, 0);
  }
  EXPECT_EQ(q.stats.tx_packets.get(), frames.size());
  EXPECT_EQ(q.port->tx_outstanding(), 0u);
}

TEST_F(NetQueueTest, TxOddOffsetsAndSmallSlots) {
  NetFrontend fe(platform(1));
  auto& q = start(fe, opt([](Options& o) { o.chunk_size = 333; }));
  Bytes frame = make_raw(5000, 7);
  fe.put_packet(frame, 0, {}, 700, 3000);  // first slot 700 bytes at offset 3000, then 700-byte slots
  fe.push_tx();
  auto rsps = fe.collect_tx(8);
  ASSERT_EQ(rsps.size(), 8u);
  expect_all_okay(rsps);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 1; }));
  EXPECT_EQ(q.port->transmitted()[0].bytes, frame);
}

TEST_F(NetQueueTest, TxGso64KiBBothFamilies) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  Flow f4;
  Flow f6;
  f6.v6 = true;
  f6.src[0] = 0xfd;
  f6.dst[0] = 0xfd;
  f6.dst[15] = 2;
  const Bytes p4 = make_partial(f4, make_tcp(f4, 65535 - 54, 1));
  const Bytes p6 = make_partial(f6, make_tcp(f6, 65535 - 74, 2));
  fe.put_packet(p4, netif::kTxfCsumBlank | netif::kTxfDataValidated, {gso_extra(netif::kGsoTypeTcpv4, 1448)});
  fe.put_packet(p6, netif::kTxfCsumBlank | netif::kTxfDataValidated, {gso_extra(netif::kGsoTypeTcpv6, 1428)});
  fe.push_tx();
  auto rsps = fe.collect_tx(2 * 17);
  ASSERT_EQ(rsps.size(), 34u);
  expect_all_okay(rsps);
  EXPECT_EQ(rsps[1].status, netif::kRspNull);  // the extra's slot
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 2; }));
  auto tx = q.port->transmitted();
  EXPECT_EQ(tx[0].bytes, p4);
  EXPECT_EQ(tx[0].meta.gso_type, netif::kGsoTypeTcpv4);
  EXPECT_EQ(tx[0].meta.gso_size, 1448);
  EXPECT_TRUE(tx[0].meta.csum_partial);
  EXPECT_EQ(tx[0].meta.csum_start, 34);
  EXPECT_EQ(tx[0].meta.csum_offset, 16);
  EXPECT_EQ(tx[1].bytes, p6);
  EXPECT_EQ(tx[1].meta.gso_type, netif::kGsoTypeTcpv6);
  EXPECT_EQ(tx[1].meta.gso_size, 1428);
  EXPECT_EQ(tx[1].meta.csum_start, 54);
}

TEST_F(NetQueueTest, TxChecksumFlagsWithCsumCapableExit) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  Flow f;
  const Bytes full = make_tcp(f, 1000, 3);
  const Bytes partial = make_partial(f, full);
  fe.put_packet(partial, netif::kTxfCsumBlank | netif::kTxfDataValidated);
  fe.put_packet(full, netif::kTxfDataValidated);
  fe.put_packet(full, 0);
  fe.push_tx();
  ASSERT_EQ(fe.collect_tx(3).size(), 3u);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 3; }));
  auto tx = q.port->transmitted();
  EXPECT_TRUE(tx[0].meta.csum_partial);
  EXPECT_EQ(tx[0].meta.csum_start, 34);
  EXPECT_EQ(tx[0].meta.csum_offset, 16);
  EXPECT_EQ(tx[0].bytes, partial);
  EXPECT_FALSE(tx[1].meta.csum_partial);
  EXPECT_TRUE(tx[1].meta.csum_validated);
  EXPECT_FALSE(tx[2].meta.csum_partial);
  EXPECT_FALSE(tx[2].meta.csum_validated);
}

TEST_F(NetQueueTest, TxChecksumCompletedForExitWithoutCsum) {
  NetFrontend fe(platform(1));
  Options o;
  o.exit.tx_csum = false;
  auto& q = start(fe, o);
  for (bool v6 : {false, true}) {
    Flow f;
    f.v6 = v6;
    const Bytes full = make_tcp(f, 3001, v6 ? 5 : 4);  // odd length, two slots
    fe.put_packet(make_partial(f, full), netif::kTxfCsumBlank, {}, 2000);
  }
  fe.push_tx();
  ASSERT_EQ(fe.collect_tx(4).size(), 4u);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 2; }));
  auto tx = q.port->transmitted();
  for (int i = 0; i < 2; ++i) {
    Flow f;
    f.v6 = i == 1;
    EXPECT_FALSE(tx[i].meta.csum_partial);
    EXPECT_TRUE(tx[i].meta.csum_validated);
    EXPECT_TRUE(tcp_checksum_ok(f, tx[i].bytes));
    Bytes expect = make_tcp(f, 3001, i == 1 ? 5 : 4);
    // Identical but for a checksum of 0, which the software path writes as 0xffff.
    tx[i].bytes[l4_offset(f) + 16] = expect[l4_offset(f) + 16];
    tx[i].bytes[l4_offset(f) + 17] = expect[l4_offset(f) + 17];
    EXPECT_EQ(tx[i].bytes, expect);
  }
}

// XSA-423 / XSA-432's class: a guest splits a small packet over as many tiny slots as allowed, so
// that its Ethernet, IP and TCP headers are cut across many of them (Linux netback assumed the
// headers in the first slots and overran a buffer on the extreme case). Here the whole packet is
// copied into the exit's chunks and the headers are parsed where they lie: the packet goes out
// byte-exact, its checksum set up (csum-capable exit) or completed in software (exit without).
TEST_F(NetQueueTest, TxHeadersCutAcrossManyTinySlots) {
  for (bool exit_csum : {true, false}) {
    NetFrontend fe(platform(1));
    Options o;
    o.exit.tx_csum = exit_csum;
    auto& q = start(fe, o);
    for (bool v6 : {false, true}) {
      Flow f;
      f.v6 = v6;
      // 238 bytes in 17 slots of 14 (the limit is 18): the first holds the Ethernet header alone
      // (a shorter first slot is refused as a bad size), then IP and TCP are cut every 14 bytes.
      const Bytes full = make_tcp(f, v6 ? 164 : 184, 7);
      fe.put_packet(make_partial(f, full), netif::kTxfCsumBlank | netif::kTxfDataValidated, {}, 14);
    }
    fe.push_tx();
    const auto rsps = fe.collect_tx(34);
    ASSERT_EQ(rsps.size(), 34u);
    for (const auto& r : rsps) EXPECT_EQ(r.status, netif::kRspOkay);
    ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 2; }));
    auto tx = q.port->transmitted();
    for (int i = 0; i < 2; ++i) {
      Flow f;
      f.v6 = i == 1;
      const Bytes full = make_tcp(f, f.v6 ? 164 : 184, 7);
      if (exit_csum) {
        EXPECT_TRUE(tx[i].meta.csum_partial);
        EXPECT_EQ(tx[i].meta.csum_start, f.v6 ? 54 : 34);
        EXPECT_EQ(tx[i].meta.csum_offset, 16);
        EXPECT_EQ(tx[i].bytes, make_partial(f, full));
      } else {
        EXPECT_TRUE(tcp_checksum_ok(f, tx[i].bytes)) << (f.v6 ? "v6" : "v4");
        EXPECT_EQ(tx[i].bytes.size(), full.size());
      }
    }
    stop_all();
    runners.clear();
  }
}

TEST_F(NetQueueTest, TxSplitEventChannels) {
  NetFrontend fe(platform(1), true);
  auto& q = start(fe, opt([](Options& o) { o.split = true; }));
  const Bytes frame = make_raw(1514, 9);
  fe.put_packet(frame);
  fe.push_tx();
  ASSERT_EQ(fe.collect_tx(1).size(), 1u);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 1; }));
  fe.post_rx(4);
  q.port->inject(frame);
  auto pkt = fe.next_rx();
  ASSERT_TRUE(pkt);
  EXPECT_EQ(pkt->bytes, frame);
}

TEST_F(NetQueueTest, TxPortWithoutBuffersAnswersError) {
  NetFrontend fe(platform(1));
  auto& q = start(fe, {}, 0, [](Runner& r) { r.port->fail_alloc = true; });
  fe.put_packet(make_raw(100, 1));
  fe.put_packet(make_raw(5000, 2));
  fe.push_tx();
  auto rsps = fe.collect_tx(3);
  ASSERT_EQ(rsps.size(), 3u);
  for (auto& r : rsps) EXPECT_EQ(r.status, netif::kRspError);
  EXPECT_EQ(q.stats.tx_no_buffers.get(), 2u);
  EXPECT_EQ(q.port->transmitted_count(), 0u);
}

// 1 MB/s: whatever the timing, no more than the burst plus the rate times the elapsed time can
// pass (2x margin); the rest waits in the ring, nothing is dropped.
TEST_F(NetQueueTest, TxRateLimitBoundsThroughput) {
  NetFrontend fe(platform(1));
  make_vif(1);
  shared->set_rate(netback::RateLimit{10'000, 10'000});
  const auto t0 = std::chrono::steady_clock::now();
  auto& q = start(fe);
  const Bytes frame = make_raw(1000, 11);
  std::size_t put = 0, answered = 0;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(300)) {
    while (fe.tx.free_requests() > 0) {
      fe.put_packet(frame);
      ++put;
    }
    fe.push_tx();
    auto more = fe.tx.unconsumed_responses();
    ASSERT_TRUE(more);
    for (ring::RingIdx i = 0; i < *more; ++i) {
      EXPECT_EQ(fe.tx.next_response().status, netif::kRspOkay);
      ++answered;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::uint64_t bytes = q.port->transmitted_bytes();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double allowance = 131072 + 10'000 + 1e6 * elapsed;
  EXPECT_GT(bytes, 0u);
  EXPECT_LT(static_cast<double>(bytes), 2 * allowance) << "elapsed " << elapsed << " s";
  EXPECT_GT(q.stats.rate_limited.get(), 0u);
  EXPECT_GT(put, answered);  // requests were left waiting, not dropped
  EXPECT_EQ(q.stats.tx_packets.get(), q.port->transmitted_count());
  // Lifting the limit lets the rest through.
  shared->set_rate(netback::RateLimit{});
  fe.push_tx();
  EXPECT_TRUE(eventually([&] { return q.port->transmitted_count() == put; }));
}

TEST_F(NetQueueTest, TxMulticastControlUpdatesFilter) {
  NetFrontend fe(platform(1));
  make_vif(1);
  shared->set_multicast_control(true);
  auto& q = start(fe, opt([](Options& o) { o.multicast_control = true; }));
  ExtraInfo add{};
  add.type = netif::kExtraTypeMcastAdd;
  const std::uint8_t mac[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x07};
  std::memcpy(add.u.mcast.addr, mac, 6);
  fe.put(TxRequest{0, 0, netif::kTxfExtraInfo, 77, 0});
  fe.put(add);
  fe.push_tx();
  auto rsps = fe.collect_tx(2);
  ASSERT_EQ(rsps.size(), 2u);
  EXPECT_EQ(rsps[0].id, 77);
  EXPECT_EQ(rsps[0].status, netif::kRspOkay);
  EXPECT_EQ(rsps[1].status, netif::kRspNull);
  netback::MacAddress m;
  std::memcpy(m.data(), mac, 6);
  EXPECT_TRUE(shared->multicast_allowed(m));
  ExtraInfo del = add;
  del.type = netif::kExtraTypeMcastDel;
  fe.put(TxRequest{0, 0, netif::kTxfExtraInfo, 78, 0});
  fe.put(del);
  fe.push_tx();
  ASSERT_EQ(fe.collect_tx(2).size(), 2u);
  EXPECT_FALSE(shared->multicast_allowed(m));
  EXPECT_EQ(q.stats.mcast_add.get(), 1u);
  EXPECT_EQ(q.stats.mcast_del.get(), 1u);
  EXPECT_EQ(q.port->transmitted_count(), 0u);
}

}  // namespace
}  // namespace pvback::test
