// Polling before sleeping (blkback/queue_poll.cpp) and the submission batch: a polling queue asks
// the frontend for no notifications, a sleeping one always does, and data is right whatever the
// batch.
#include <chrono>
#include <cstring>
#include <thread>

#include "tests/blkback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;

class QueuePollTest : public QueueTest {
 protected:
  // A queue with this polling window and submission batch.
  void start_polling(RawFrontend<X64>& fe, std::chrono::microseconds poll_max, unsigned submit_batch = 2) {
    Options o;
    o.tweak = [=](blkback::QueueConfig& c) {
      c.poll_max = poll_max;
      c.submit_batch = submit_batch;
    };
    start(fe, o);
  }
  // Tells the running queue this polling window (the other limits as they were).
  void tune_polling(std::chrono::microseconds poll_max) {
    blkback::LiveTuning t;
    t.max_persistent_grants = 1056;
    t.persistent_idle_expiry = 60s;
    t.submit_batch = 2;
    t.poll_max = poll_max;
    queue->tune(t);
  }
};

// One request at a time, each put as soon as the previous one is answered (a frontend refilling
// its queue): how many of the pushes the ring said to notify.
unsigned notifications_asked(RawFrontend<X64>& fe, grant::SharedPages& data, unsigned requests) {
  unsigned asked = 0;
  for (unsigned i = 0; i < requests; ++i) {
    fe.put(rw_request<X64>(blkif::kOpRead, i, (i % 64) * 8, {{data.refs()[0], 0, 7, 0}}));
    if (fe.front.push_requests_and_check_notify()) {
      ++asked;
      fe.channels->notify(fe.port);
    }
    auto rsp = fe.collect(1, 10000);
    if (rsp.size() != 1 || rsp[0].status != blkif::kRspOkay) {
      ADD_FAILURE() << "request " << i << " not answered";
      return asked;
    }
  }
  return asked;
}

TEST_F(QueuePollTest, WithoutPollingEveryRequestAfterAnAnswerIsNotified) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start_polling(fe, 0us));
  grant::SharedPages data = fe.share(1);
  // The queue asked again (the final check) before answering each: the next push must notify.
  EXPECT_EQ(notifications_asked(fe, data, 200), 200u);
  EXPECT_GE(stats.events_received.get(), 200u);
}

TEST_F(QueuePollTest, APollingQueueTakesTheNextRequestWithoutANotification) {
  RawFrontend<X64> fe(platform(1), 0);
  // The longest window there is, so that a loaded test machine still shows it.
  ASSERT_NO_FATAL_FAILURE(start_polling(fe, blkback::kMaxPollMax));
  grant::SharedPages data = fe.share(1);
  const unsigned asked = notifications_asked(fe, data, 200);
  // The window starts at 0 and doubles with every poll that finds work, so the first few pushes
  // notify; the rest find the queue polling with notifications off (none of the 200 notifies on
  // an idle 2-CPU machine, nor with three busy loops beside two of these tests).
  EXPECT_LT(asked, 180u);
  EXPECT_EQ(stats.spurious_events.get(), 0u);
  EXPECT_EQ(stats.events_throttled.get(), 0u);
}

TEST_F(QueuePollTest, AQueueThatStopsPollingAsksForTheNextNotificationBeforeSleeping) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start_polling(fe, blkback::kMaxPollMax));
  grant::SharedPages data = fe.share(1);
  notifications_asked(fe, data, 50);  // the window grown to its longest
  // Idle for far longer than the window: the queue is asleep, and asked to be told of the next
  // request (req_event just past what it consumed).
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(fe.front.shared_req_event(), fe.front.req_prod_pvt() + 1);
  fe.put(rw_request<X64>(blkif::kOpRead, 1000, 0, {{data.refs()[0], 0, 7, 0}}));
  EXPECT_TRUE(fe.front.push_requests_and_check_notify());
  fe.channels->notify(fe.port);
  auto rsp = fe.collect(1, 10000);
  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, blkif::kRspOkay);
}

TEST_F(QueuePollTest, TuneTurnsPollingOffAndOn) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start_polling(fe, blkback::kMaxPollMax));
  grant::SharedPages data = fe.share(1);
  tune_polling(0us);
  notifications_asked(fe, data, 5);  // the tuning taken (it is read as the queue wakes)
  EXPECT_EQ(notifications_asked(fe, data, 100), 100u);
  tune_polling(blkback::kMaxPollMax);
  notifications_asked(fe, data, 5);
  const unsigned asked = notifications_asked(fe, data, 200);
  EXPECT_LT(asked, 180u);
}

// Polling switched off and on while requests keep coming (a Tune takes effect as the queue next
// wakes, possibly between taking requests and the final check that asks for notifications): every
// request is still answered, none waits for a notification the frontend was told not to send.
TEST_F(QueuePollTest, PollingSwitchedOffAndOnUnderARequestStreamLosesNoWakeUp) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start_polling(fe, blkback::kMaxPollMax));
  grant::SharedPages data = fe.share(1);
  for (unsigned round = 0; round < 40; ++round) {
    tune_polling(round % 2 == 0 ? 0us : blkback::kMaxPollMax);
    notifications_asked(fe, data, 10);  // fails (a request unanswered in 10 s) on a lost wake-up
    if (HasFailure()) return;
  }
  EXPECT_EQ(stats.events_throttled.get(), 0u);
}

// Batches of 32 writes then reads of distinct data, started 1, 2, 5 or all at a time, polled or
// not: every byte read back is what was written.
TEST_F(QueuePollTest, EverySubmissionBatchServesTheSameData) {
  for (unsigned batch : {0u, 1u, 2u, 5u}) {
    for (auto poll : {0us, 200us}) {
      SCOPED_TRACE(testing::Message() << "submit_batch " << batch << ", poll_max_us " << poll.count());
      RawFrontend<X64> fe(platform(1), 0);
      ASSERT_NO_FATAL_FAILURE(start_polling(fe, poll, batch));
      constexpr unsigned kN = 32;
      grant::SharedPages data = fe.share(kN);
      std::mt19937_64 rng(batch * 1000 + static_cast<unsigned>(poll.count()));
      fill_random(static_cast<std::byte*>(data.data()), kN * kXenPageSize, rng);
      std::vector<std::byte> written(static_cast<std::byte*>(data.data()),
                                     static_cast<std::byte*>(data.data()) + kN * kXenPageSize);
      for (unsigned i = 0; i < kN; ++i)
        fe.put(rw_request<X64>(blkif::kOpWrite, i, i * 8, {{data.refs()[i], 0, 7, 0}}));
      fe.push();
      auto rsp = fe.collect(kN);
      ASSERT_EQ(rsp.size(), kN);
      for (const auto& r : rsp) EXPECT_EQ(r.status, blkif::kRspOkay);
      std::memset(data.data(), 0, kN * kXenPageSize);
      for (unsigned i = 0; i < kN; ++i)
        fe.put(rw_request<X64>(blkif::kOpRead, kN + i, i * 8, {{data.refs()[kN - 1 - i], 0, 7, 0}}));
      fe.push();
      rsp = fe.collect(kN);
      ASSERT_EQ(rsp.size(), kN);
      for (const auto& r : rsp) EXPECT_EQ(r.status, blkif::kRspOkay);
      for (unsigned i = 0; i < kN; ++i)
        EXPECT_EQ(std::memcmp(static_cast<std::byte*>(data.data()) + (kN - 1 - i) * kXenPageSize,
                              written.data() + i * kXenPageSize, kXenPageSize),
                  0)
            << "sector " << i * 8;
      stop_queue();
      engine.reset();
      file.reset();
    }
  }
}

}  // namespace
}  // namespace pvback::test
