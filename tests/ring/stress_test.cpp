// Two threads, one per end, over multi-page rings: every request carries a sequence number and a
// payload checksum, every response echoes both and is verified. One variant busy-polls; the other
// sleeps on simulated event channels driven only by the notify decisions, so a wrong barrier or
// event-index test shows up as a lost wakeup.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "ring/ring.hpp"
#include "tests/ring/shared_area.hpp"

namespace pvback::ring {
namespace {

using testing::SharedArea;

struct StressRequest {
  std::uint64_t seq;
  std::uint64_t payload[4];
  std::uint64_t checksum;
};
struct StressResponse {
  std::uint64_t seq = 0;
  std::uint64_t checksum = 0;
};
using Ring = RingTypes<StressRequest, StressResponse>;  // 48-byte entries

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

StressRequest make_request(std::uint64_t seq) {
  StressRequest req{.seq = seq, .payload = {}, .checksum = 0};
  std::uint64_t sum = seq;
  for (int i = 0; i < 4; ++i) {
    req.payload[i] = mix(seq * 4 + i);
    sum = mix(sum ^ req.payload[i]);
  }
  req.checksum = sum;
  return req;
}

bool request_valid(const StressRequest& req) {
  std::uint64_t sum = req.seq;
  for (int i = 0; i < 4; ++i) sum = mix(sum ^ req.payload[i]);
  return sum == req.checksum;
}

std::uint64_t response_checksum(std::uint64_t seq, std::uint64_t request_checksum) {
  return mix(seq ^ ~request_checksum);
}

// A Xen event channel stand-in: notifications coalesce into one pending flag.
class SimEvent {
 public:
  void notify() {
    {
      std::lock_guard lock(mutex_);
      pending_ = true;
    }
    cv_.notify_one();
  }
  // false if nothing arrived for a long time: a lost wakeup (or a stuck peer) rather than slowness.
  bool wait() {
    std::unique_lock lock(mutex_);
    bool woken = cv_.wait_for(lock, std::chrono::seconds(20), [&] { return pending_; });
    pending_ = false;
    return woken;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool pending_ = false;
};

struct Failure {
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::string what;
  void set(std::string message) {
    std::lock_guard lock(mutex);
    if (!failed.exchange(true)) what = std::move(message);
  }
};

struct StressParams {
  unsigned order;
  std::uint64_t messages;
  bool event_driven;
  // The frontend waits for every response before sending the next small batch, so the backend
  // goes idle (final check, re-arm) constantly while the next batch is being published.
  bool ping_pong = false;
};

std::string stress_name(const ::testing::TestParamInfo<StressParams>& info) {
  std::string mode = info.param.ping_pong ? "PingPong" : info.param.event_driven ? "Events" : "Polling";
  return mode + "Order" + std::to_string(info.param.order);
}

class RingStress : public ::testing::TestWithParam<StressParams> {};

TEST_P(RingStress, EveryMessageArrivesIntactAndInOrder) {
  const StressParams params = GetParam();
  SharedArea area(std::size_t{1} << params.order, 0);
  constexpr RingIdx kStart = 0xFFFFFFFFu - 5000;  // the indices wrap early in the run
  auto front = *Ring::Front::initialise(area.data(), area.pages(), kStart);
  auto back = *Ring::Back::attach(area.data(), area.pages(), kStart);
  ASSERT_EQ(front.size(), Ring::size_for_order(params.order));
  const std::uint64_t total = params.messages;
  SimEvent backend_event, frontend_event;
  Failure failure;
  std::uint64_t notifications_to_backend = 0, notifications_to_frontend = 0;

  std::thread backend([&] {
    std::uint64_t expected = 0;
    while (expected < total && !failure.failed.load(std::memory_order_relaxed)) {
      auto pending = back.unconsumed_requests();
      if (!pending) return failure.set("backend: producer overflow");
      if (*pending == 0) {
        if (!params.event_driven) {
          std::this_thread::yield();
          continue;
        }
        auto more = back.final_check_for_requests();
        if (!more) return failure.set("backend: producer overflow in final check");
        if (!*more && !backend_event.wait()) return failure.set("backend: lost wakeup");
        continue;
      }
      for (RingIdx i = 0; i < *pending; ++i, ++expected) {
        if (back.request_cons_overflow(back.req_cons())) return failure.set("backend: cons overflow");
        StressRequest req = back.next_request();
        if (req.seq != expected || !request_valid(req))
          return failure.set("backend: bad request at " + std::to_string(expected));
        back.put_response(StressResponse{.seq = req.seq, .checksum = response_checksum(req.seq, req.checksum)});
      }
      if (back.push_responses_and_check_notify()) {
        ++notifications_to_frontend;
        if (params.event_driven) frontend_event.notify();
      }
    }
  });

  std::uint64_t sent = 0, received = 0;
  while (received < total && !failure.failed.load(std::memory_order_relaxed)) {
    bool progress = false;
    RingIdx room = front.free_requests();
    bool may_send = room != 0 && sent < total && (!params.ping_pong || sent == received);
    if (may_send) {
      // Vary batch sizes so both ends see partial batches, not only full rings.
      std::uint64_t batch = std::min<std::uint64_t>({room, total - sent, 1 + (sent % (params.ping_pong ? 3 : 97))});
      for (std::uint64_t i = 0; i < batch; ++i) front.put_request(make_request(sent++));
      if (front.push_requests_and_check_notify()) {
        ++notifications_to_backend;
        if (params.event_driven) backend_event.notify();
      }
      progress = true;
    }
    auto responses = front.unconsumed_responses();
    if (!responses) {
      failure.set("frontend: response overflow");
      break;
    }
    for (RingIdx i = 0; i < *responses; ++i, ++received) {
      StressResponse rsp = front.next_response();
      StressRequest original = make_request(received);
      if (rsp.seq != received || rsp.checksum != response_checksum(received, original.checksum)) {
        failure.set("frontend: bad response at " + std::to_string(received));
        break;
      }
      progress = true;
    }
    if (progress || received == total) continue;
    if (!params.event_driven) {
      std::this_thread::yield();
      continue;
    }
    auto more = front.final_check_for_responses();
    if (!more) {
      failure.set("frontend: overflow in final check");
      break;
    }
    if (!*more && !frontend_event.wait()) failure.set("frontend: lost wakeup");
  }
  if (failure.failed) backend_event.notify();  // let a sleeping backend see the failure
  backend.join();

  ASSERT_FALSE(failure.failed.load()) << failure.what;
  EXPECT_EQ(received, total);
  EXPECT_EQ(front.rsp_cons(), static_cast<RingIdx>(kStart + total));
  EXPECT_EQ(back.req_cons(), static_cast<RingIdx>(kStart + total));
  EXPECT_EQ(back.unconsumed_requests().value(), 0u);
  EXPECT_EQ(front.unconsumed_responses().value(), 0u);
  // Suppression can only reduce notifications.
  EXPECT_LE(notifications_to_backend, total);
  EXPECT_LE(notifications_to_frontend, total);
  RecordProperty("notifications_to_backend", std::to_string(notifications_to_backend));
  RecordProperty("notifications_to_frontend", std::to_string(notifications_to_frontend));
}

INSTANTIATE_TEST_SUITE_P(TwoThreads, RingStress,
                         ::testing::Values(StressParams{2, 600'000, false}, StressParams{3, 600'000, false},
                                           StressParams{4, 600'000, false}, StressParams{0, 200'000, true},
                                           StressParams{2, 300'000, true}, StressParams{0, 100'000, true, true}),
                         stress_name);

}  // namespace
}  // namespace pvback::ring
