// A frontend storming its event channels (XSA-332's class): the queue's wake-ups are bounded,
// its real traffic still flows, and a frontend that notifies only with work is never throttled.
#include "tests/netback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;

TEST_F(NetQueueTest, EventStormIsThrottledAndTrafficStillFlows) {
  NetFrontend fe(platform(1), /*split=*/true);
  auto& q = start(fe, opt([](Options& o) { o.split = true; }));
  fe.post_rx(8);
  std::uint64_t sent = 0;
  const auto end = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 128; ++i) {
      fe.channels->notify(fe.tx_port);
      fe.channels->notify(fe.rx_port);
    }
    sent += 256;
  }
  EXPECT_GT(q.stats.events_throttled.get(), 0u);
  EXPECT_LT(q.stats.events_received.get(), 400u) << sent << " notifications sent";
  // Both directions still work, throttled or not.
  const Bytes frame = make_raw(1514, 7);
  fe.put_packet(frame);
  fe.push_tx();
  fe.channels->notify(fe.tx_port);
  auto rsps = fe.collect_tx(1, 5000);
  ASSERT_EQ(rsps.size(), 1u);
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 1; }));
  EXPECT_EQ(q.port->transmitted()[0].bytes, frame);
  q.port->inject(make_raw(1000, 9));
  auto p = fe.next_rx();
  ASSERT_TRUE(p);
  EXPECT_EQ(q.fatal_calls.load(), 0);
}

TEST_F(NetQueueTest, WellBehavedFrontendIsNeverThrottled) {
  NetFrontend fe(platform(1));
  auto& q = start(fe);
  for (std::uint32_t i = 0; i < 500; ++i) {
    fe.put_packet(make_raw(60 + i % 1400, i));
    fe.push_tx();
    ASSERT_EQ(fe.collect_tx(1).size(), 1u);
  }
  ASSERT_TRUE(eventually([&] { return q.port->transmitted_count() == 500; }));
  EXPECT_EQ(q.stats.events_throttled.get(), 0u);
  EXPECT_EQ(q.stats.spurious_events.get(), 0u);
}

}  // namespace
}  // namespace pvback::test
