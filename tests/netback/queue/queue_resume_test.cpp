// A queue that takes over rings from a backend killed in the middle of a batch (its footprint
// written here by hand: requests taken, responses logged in the ring's journal, some of them
// written into the ring, none pushed). Every request is answered exactly once, as the killed
// backend decided; a posted RX buffer is neither lost nor filled twice; a TX frame whose answer
// was logged is not sent again (netback/ring_journal.hpp).
#include "tests/netback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

class NetQueueResumeTest : public NetQueueTest {
 protected:
  // The options of a queue whose rings have `tx`/`rx` as journals.
  Options journaled() {
    return opt([this](Options& o) {
      o.tweak = [this](netback::QueueConfig& c) {
        c.tx_journal = netback::RingJournal(&tx_block);
        c.rx_journal = netback::RingJournal(&rx_block);
      };
    });
  }
  netback::JournalBlock tx_block{};
  netback::JournalBlock rx_block{};
};

TEST_F(NetQueueResumeTest, RxBuffersAKilledBackendFilledAreAnsweredOnceAndNeverFilledAgain) {
  NetFrontend fe(platform(1));
  fe.post_rx(4);  // buffers 0..3 (id i, page i)
  // The killed backend copied a 100-byte packet into buffer 0 and a 200-byte one into buffer 1,
  // logged both responses, wrote the first over request slot 0 and died before the push.
  const Bytes first = make_raw(100, 1), second = make_raw(200, 2);
  std::memcpy(fe.rx_data.page(0), first.data(), first.size());
  std::memcpy(fe.rx_data.page(1), second.data(), second.size());
  {
    auto back = *netif::RxRing::Back::attach_at_rsp_prod(fe.rx_ring_page.data(), 1);
    netback::RingJournal journal(&rx_block);
    const RxResponse a{back.next_request().id, 0, 0, 100}, b{back.next_request().id, 0, 0, 200};
    journal.stage(0, a);
    journal.stage(1, b);
    journal.commit(0, 2);
    back.put_response(a);
  }
  auto& q = start(fe, journaled());
  auto p = fe.next_rx();
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->error);
  EXPECT_EQ(p->bytes, first);
  p = fe.next_rx();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->bytes, second);
  // The next packet goes into buffer 2: buffers 0 and 1 are the guest's again, untouched.
  const Bytes third = make_raw(300, 3);
  q.port->inject(third);
  p = fe.next_rx();
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->error);
  EXPECT_EQ(p->bytes, third);
  EXPECT_EQ(std::memcmp(fe.rx_data.page(0), first.data(), first.size()), 0) << "buffer 0 filled twice";
  EXPECT_EQ(std::memcmp(fe.rx_data.page(1), second.data(), second.size()), 0) << "buffer 1 filled twice";
  EXPECT_EQ(q.stats.rx_bad_grant.get(), 0u);
  EXPECT_EQ(fe.rx.unconsumed_responses().value_or(99), 0u) << "a buffer answered twice";
}

TEST_F(NetQueueResumeTest, TxFramesWhoseAnswersWereLoggedAreAnsweredOnceAndNotSentAgain) {
  NetFrontend fe(platform(1));
  for (std::uint32_t i = 0; i < 3; ++i) fe.put_packet(make_raw(60 + i, i));
  fe.push_tx();
  // The killed backend sent the three frames, logged their answers, wrote one into the ring.
  {
    auto back = *netif::TxRing::Back::attach_at_rsp_prod(fe.tx_ring_page.data(), 1);
    netback::RingJournal journal(&tx_block);
    std::vector<TxResponse> rsps;
    for (int i = 0; i < 3; ++i) rsps.push_back(TxResponse{back.next_request().id, netif::kRspOkay});
    for (unsigned k = 0; k < 3; ++k) journal.stage(k, rsps[k]);
    journal.commit(0, 3);
    back.put_response(rsps[0]);
  }
  auto& q = start(fe, journaled());
  auto rsps = fe.collect_tx(3);
  ASSERT_EQ(rsps.size(), 3u);
  for (std::uint16_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rsps[i].id, i);
    EXPECT_EQ(rsps[i].status, netif::kRspOkay);
  }
  // A frame after them goes out once, and only it.
  const Bytes next = make_raw(70, 9);
  fe.put_packet(next);
  fe.push_tx();
  ASSERT_EQ(fe.collect_tx(1).size(), 1u);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() >= 1; }));
  auto sent = q.port->transmitted();
  ASSERT_EQ(sent.size(), 1u) << "a frame whose answer was logged went out again";
  EXPECT_EQ(sent[0].bytes, next);
}

TEST_F(NetQueueResumeTest, TxRequestsTakenWithoutALoggedBatchAreTakenAgainFromIntactSlots) {
  NetFrontend fe(platform(1));
  std::vector<Bytes> frames;
  for (std::uint32_t i = 0; i < 3; ++i) {
    frames.push_back(make_raw(80 + i, 20 + i));
    fe.put_packet(frames.back());
  }
  fe.push_tx();
  {
    // Taken, maybe sent, never answered: killed before the log.
    auto back = *netif::TxRing::Back::attach_at_rsp_prod(fe.tx_ring_page.data(), 1);
    for (int i = 0; i < 3; ++i) back.next_request();
  }
  auto& q = start(fe, journaled());
  auto rsps = fe.collect_tx(3);
  ASSERT_EQ(rsps.size(), 3u);
  for (const auto& r : rsps) EXPECT_EQ(r.status, netif::kRspOkay);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() >= 3; }));
  auto sent = q.port->transmitted();
  ASSERT_EQ(sent.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(sent[i].bytes, frames[i]);
}

// The journal is written on every batch, and idle again once the batch is visible: a queue that
// served traffic leaves nothing for a successor to replay.
TEST_F(NetQueueResumeTest, ServedBatchesLeaveTheJournalsIdle) {
  NetFrontend fe(platform(1));
  auto& q = start(fe, journaled());
  fe.post_rx(8);
  for (std::uint32_t i = 0; i < 5; ++i) {
    fe.put_packet(make_raw(100, i));
    q.port->inject(make_raw(120, 50 + i));
  }
  fe.push_tx();
  ASSERT_EQ(fe.collect_tx(5).size(), 5u);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fe.next_rx());
  EXPECT_EQ(tx_block.state, netback::kJournalIdle);
  EXPECT_EQ(rx_block.state, netback::kJournalIdle);
  EXPECT_GT(tx_block.count, 0u) << "no TX batch was logged";
}

}  // namespace
}  // namespace pvback::test
