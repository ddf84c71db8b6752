// create() leaves nothing mapped or bound when it fails; stop() ends run() whether or not it
// started; a queue stopped with packets in hand gives them back to the port.
#include "tests/netback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

TEST_F(NetQueueTest, CreateFailuresLeaveNothingMapped) {
  NetFrontend fe(platform(1));
  GrantTableSpy spy(run_dir_, 1);
  make_vif(1);
  MemoryPort port;
  netback::QueueStats stats;
  auto config = [&] {
    netback::QueueConfig c;
    c.name = "vif 1/0 q0";
    c.frontend_domid = 1;
    c.tx_ring_ref = fe.tx_ring_page.refs()[0];
    c.rx_ring_ref = fe.rx_ring_page.refs()[0];
    c.tx_event_channel = c.rx_event_channel = fe.tx_port;
    return c;
  };
  auto bad_rx = config();
  bad_rx.rx_ring_ref = 99999;
  auto bad_port = config();
  bad_port.tx_event_channel = bad_port.rx_event_channel = 4000;
  auto bad_limits = config();
  bad_limits.fatal_slots = 10;
  auto bad_index = config();
  bad_index.group = group.get();
  bad_index.index = 3;
  for (auto* c : {&bad_rx, &bad_port, &bad_limits, &bad_index}) {
    auto q = netback::Queue::create(platform(0), *c, port, *shared, stats, {});
    EXPECT_FALSE(q);
    EXPECT_EQ(spy.pins(fe.tx_ring_page.refs()[0]), 0u);
    EXPECT_EQ(spy.pins(fe.rx_ring_page.refs()[0]), 0u);
  }
  // A good one maps both rings, and unmaps them when destroyed.
  auto q = netback::Queue::create(platform(0), config(), port, *shared, stats, {});
  ASSERT_TRUE(q);
  EXPECT_NE(spy.pins(fe.tx_ring_page.refs()[0]), 0u);
  EXPECT_NE(spy.pins(fe.rx_ring_page.refs()[0]), 0u);
  q->reset();
  EXPECT_EQ(spy.pins(fe.tx_ring_page.refs()[0]), 0u);
  EXPECT_EQ(spy.pins(fe.rx_ring_page.refs()[0]), 0u);
}

TEST_F(NetQueueTest, StopBeforeRun) {
  NetFrontend fe(platform(1));
  auto& q = start(fe, {}, 0, [](Runner& r) { r.queue->stop(); });
  EXPECT_TRUE(eventually([&] { return q.returned.load(); }));
}

TEST_F(NetQueueTest, StopDuringRun) {
  NetFrontend fe2(platform(1));
  auto& q2 = start(fe2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  q2.queue->stop();
  EXPECT_TRUE(eventually([&] { return q2.returned.load(); }));
}

TEST_F(NetQueueTest, StopWithHeldPacketsReleasesThem) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  fe.post_rx(2);  // room for one 1514-byte packet; the next waits for buffers
  for (int i = 0; i < 3; ++i) q.port->inject(make_raw(1514, i));
  auto p = fe.next_rx();
  ASSERT_TRUE(p);
  q.queue->stop();
  ASSERT_TRUE(eventually([&] { return q.returned.load(); }));
  EXPECT_EQ(q.port->rx_outstanding(), 0u);
  EXPECT_EQ(q.port->rx_received(), q.port->rx_released());
}

}  // namespace
}  // namespace pvback::test
