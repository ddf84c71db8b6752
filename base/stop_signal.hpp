// Asking a data-path thread to stop: a flag it checks between batches and an eventfd that wakes
// it from poll() or io_uring. Any thread may request(); only the owning thread waits.
#pragma once
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "base/unique_fd.hpp"

namespace pvback {

class StopSignal {
 public:
  // 0 or an errno value.
  int open() {
    fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    return fd_ ? 0 : errno;
  }
  void request() noexcept {
    requested_.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(fd_.get(), &one, sizeof one);
  }
  bool requested() const noexcept { return requested_.load(std::memory_order_acquire); }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::atomic<bool> requested_{false};
};

}  // namespace pvback
