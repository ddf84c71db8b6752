// A frontend storming its event channel (XSA-332's class): the queue's wake-ups are bounded, the
// frontend's real requests are still served, and a well-behaved frontend is never throttled.
#include "tests/blkback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;

TEST_F(QueueTest, EventStormIsThrottledAndRequestsAreStillServed) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start(fe, Options{}));
  grant::SharedPages data = fe.share(1);
  // Notifications without a single request, as fast as the frontend can send them, for a second.
  std::uint64_t sent = 0;
  const auto end = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 256; ++i) fe.channels->notify(fe.port);
    sent += 256;
  }
  const std::uint64_t wakeups = stats.events_received.get();
  EXPECT_GT(stats.events_throttled.get(), 0u);
  // Without the throttle every notification that finds the channel unmasked is a wake-up; with
  // it, after the grace the delays grow 1 ms per wake-up: about 60 wake-ups in the first second.
  EXPECT_LT(wakeups, 400u) << sent << " notifications sent";
  // The guest's real work gets through, throttled or not: at most one throttle delay later.
  fe.put(rw_request<X64>(blkif::kOpWrite, 1, 0, {{data.refs()[0], 0, 7, 0}}));
  fe.push();
  fe.channels->notify(fe.port);  // the storming guest keeps notifying
  auto rsp = fe.collect(1, 5000);
  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, blkif::kRspOkay);
  // Work resets the throttle: the next request is answered without waiting for a delay.
  fe.put(rw_request<X64>(blkif::kOpRead, 2, 0, {{data.refs()[0], 0, 7, 0}}));
  fe.push();
  rsp = fe.collect(1, 5000);
  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, blkif::kRspOkay);
  EXPECT_EQ(fatal_calls.load(), 0);
}

TEST_F(QueueTest, WellBehavedFrontendIsNeverThrottled) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start(fe, Options{}));
  grant::SharedPages data = fe.share(8);
  for (std::uint64_t round = 0; round < 2000; ++round) {
    const std::uint32_t n = 1 + static_cast<std::uint32_t>(round % 8);
    for (std::uint32_t i = 0; i < n; ++i)
      fe.put(rw_request<X64>(i % 2 ? blkif::kOpRead : blkif::kOpWrite, round * 8 + i, i * 8,
                             {{data.refs()[i], 0, 7, 0}}));
    fe.push();
    ASSERT_EQ(fe.collect(n).size(), n);
  }
  EXPECT_EQ(stats.events_throttled.get(), 0u);
  EXPECT_EQ(stats.spurious_events.get(), 0u);
}

}  // namespace
}  // namespace pvback::test
