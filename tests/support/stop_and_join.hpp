// Stops and joins a helper thread on every path out of a test, a failed ASSERT included (a
// joinable std::thread destroyed calls std::terminate, which skips every fixture's teardown).
#pragma once
#include <atomic>
#include <thread>

namespace pvback::test {

struct StopAndJoin {
  std::atomic<bool>& done;
  std::thread& thread;
  StopAndJoin(std::atomic<bool>& d, std::thread& t) : done(d), thread(t) {}
  StopAndJoin(const StopAndJoin&) = delete;
  StopAndJoin& operator=(const StopAndJoin&) = delete;
  ~StopAndJoin() {
    done.store(true);
    if (thread.joinable()) thread.join();
  }
};

}  // namespace pvback::test
