// Waiting in tests for something another thread or process does: polls `condition` until it
// holds or `timeout` passes. A way to wait, never a timing assertion.
#pragma once
#include <chrono>
#include <functional>
#include <thread>

namespace pvback::test {

inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace pvback::test
