// Event-index notification: the producer notifies only when the consumer asked to be woken for
// an index it just published; final_check_* re-arms before the consumer goes idle.
#include <gtest/gtest.h>

#include <cstdint>

#include "ring/ring.hpp"
#include "tests/ring/shared_area.hpp"

namespace pvback::ring {
namespace {

using testing::SharedArea;

struct Msg {
  std::uint32_t value = 0;
};
using Ring = RingTypes<Msg, Msg>;

class Notify : public ::testing::TestWithParam<RingIdx> {
 protected:
  void SetUp() override {
    start_ = GetParam();
    front_ = *Ring::Front::initialise(area_.data(), 1, start_);
    back_ = *Ring::Back::attach(area_.data(), 1, start_);
  }
  std::atomic_ref<RingIdx> shared(std::size_t offset) { return detail::shared_index(area_.data(), offset); }
  void send(unsigned n) {
    for (unsigned i = 0; i < n; ++i) front_.put_request(Msg{i});
  }
  void answer(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      back_.next_request();
      back_.put_response(Msg{i});
    }
  }

  SharedArea area_{1};
  RingIdx start_ = 0;
  Ring::Front front_;
  Ring::Back back_;
};

TEST_P(Notify, FirstRequestNotifiesFollowingOnesAreSuppressed) {
  send(1);
  EXPECT_TRUE(front_.push_requests_and_check_notify());  // req_event = start + 1
  send(1);
  EXPECT_FALSE(front_.push_requests_and_check_notify());  // backend has not re-armed: it is awake
  send(3);
  EXPECT_FALSE(front_.push_requests_and_check_notify());
  EXPECT_EQ(back_.unconsumed_requests().value(), 5u);
}

TEST_P(Notify, FinalCheckRearmsForTheNextRequest) {
  send(2);
  EXPECT_TRUE(front_.push_requests_and_check_notify());
  answer(2);
  auto more = back_.final_check_for_requests();
  ASSERT_TRUE(more.has_value());
  EXPECT_FALSE(*more);
  EXPECT_EQ(shared(offsetof(SharedRingHeader, req_event)).load(), static_cast<RingIdx>(start_ + 3));
  send(1);
  EXPECT_TRUE(front_.push_requests_and_check_notify());
}

TEST_P(Notify, FinalCheckSeesRequestsThatRacedWithGoingIdle) {
  send(1);
  EXPECT_TRUE(front_.push_requests_and_check_notify());
  answer(1);
  send(1);  // published while the backend still looks awake: no notification
  EXPECT_FALSE(front_.push_requests_and_check_notify());
  auto more = back_.final_check_for_requests();
  ASSERT_TRUE(more.has_value());
  EXPECT_TRUE(*more);  // so the backend must find it here instead of sleeping
  // And it did not re-arm: the event index still points at the old position.
  EXPECT_EQ(shared(offsetof(SharedRingHeader, req_event)).load(), static_cast<RingIdx>(start_ + 1));
}

TEST_P(Notify, BatchCrossingTheEventIndexNotifiesOnce) {
  // Consumer asks to be woken at the 3rd request from now (like netfront's rsp_event heuristics).
  shared(offsetof(SharedRingHeader, req_event)).store(start_ + 3);
  send(2);
  EXPECT_FALSE(front_.push_requests_and_check_notify());  // published up to start+2
  send(2);
  EXPECT_TRUE(front_.push_requests_and_check_notify());  // (start+2, start+4] contains start+3
  send(1);
  EXPECT_FALSE(front_.push_requests_and_check_notify());
}

TEST_P(Notify, EventIndexBehindOrFarAheadDoesNotNotify) {
  shared(offsetof(SharedRingHeader, req_event)).store(start_);  // already passed
  send(1);
  EXPECT_FALSE(front_.push_requests_and_check_notify());
  shared(offsetof(SharedRingHeader, req_event)).store(start_ + 100);  // not reached yet
  send(10);
  EXPECT_FALSE(front_.push_requests_and_check_notify());
}

TEST_P(Notify, ResponsesFollowTheSameProtocol) {
  send(4);
  front_.push_requests();
  answer(1);
  EXPECT_TRUE(back_.push_responses_and_check_notify());  // rsp_event = start + 1
  answer(1);
  EXPECT_FALSE(back_.push_responses_and_check_notify());
  // Frontend drains and goes idle: re-armed, the next response notifies again.
  EXPECT_EQ(front_.unconsumed_responses().value(), 2u);
  front_.next_response();
  front_.next_response();
  auto more = front_.final_check_for_responses();
  ASSERT_TRUE(more.has_value());
  EXPECT_FALSE(*more);
  answer(2);
  EXPECT_TRUE(back_.push_responses_and_check_notify());
  // A response that races with the frontend's final check is found by it.
  EXPECT_TRUE(front_.final_check_for_responses().value());
}

TEST_P(Notify, PushWithoutNewEntriesNeverNotifies) {
  EXPECT_FALSE(front_.push_requests_and_check_notify());
  EXPECT_FALSE(back_.push_responses_and_check_notify());
}

// Start indices: zero, just below the 2^32 wrap (the batches above straddle it), and mid-range.
INSTANTIATE_TEST_SUITE_P(StartIndex, Notify, ::testing::Values(0u, 0xFFFFFFFEu, 0xFFFFFFFDu, 0x80000000u));

}  // namespace
}  // namespace pvback::ring
