// Per-queue statistics in memory shared between a backend's control part (which writes the
// statistics file) and its data-plane process (whose queue threads count): a sealed memfd both
// map. Counters are relaxed atomics with one writer each (base/counter.hpp), which works the same
// between processes as between threads. A restarted data plane counts on where its predecessor
// stopped, and one adopted by a successor of its control part hands the memfd back, so the
// counters survive either process dying alone.
#pragma once
#include <cerrno>
#include <cstddef>
#include <expected>
#include <new>
#include <type_traits>
#include <utility>

#include "base/unique_fd.hpp"

namespace pvback::plane {

// `count` objects of `size` bytes in a memfd, mapped read-write; the mapping goes with the object.
class SharedMemory {
 public:
  SharedMemory() = default;
  SharedMemory(SharedMemory&& o) noexcept;
  SharedMemory& operator=(SharedMemory&& o) noexcept;
  ~SharedMemory();

  // A new zero-filled memfd named `name`, sealed against shrinking and growing (the other
  // process's mapping must stay valid).
  static std::expected<SharedMemory, int> create(const char* name, std::size_t bytes);
  // Maps what another process created; EINVAL if `fd` holds fewer than `bytes`.
  static std::expected<SharedMemory, int> adopt(UniqueFd fd, std::size_t bytes);

  void* data() const { return base_; }
  std::size_t size() const { return bytes_; }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
};

template <class Stats>
class SharedStats {
  static_assert(std::is_standard_layout_v<Stats>, "shared between processes: no pointers, no vtables");

 public:
  SharedStats() = default;

  // New zeroed statistics for `queues` queues.
  static std::expected<SharedStats, int> create(unsigned queues, const char* name) {
    if (queues == 0) return std::unexpected(EINVAL);
    auto mem = SharedMemory::create(name, sizeof(Stats) * queues);
    if (!mem) return std::unexpected(mem.error());
    for (unsigned i = 0; i < queues; ++i) new (static_cast<Stats*>(mem->data()) + i) Stats();
    return SharedStats(std::move(*mem), queues);
  }
  // Maps statistics another process created for `queues` queues (EINVAL if `fd` is smaller).
  static std::expected<SharedStats, int> adopt(UniqueFd fd, unsigned queues) {
    if (queues == 0) return std::unexpected(EINVAL);
    auto mem = SharedMemory::adopt(std::move(fd), sizeof(Stats) * queues);
    if (!mem) return std::unexpected(mem.error());
    return SharedStats(std::move(*mem), queues);
  }

  Stats& at(unsigned i) const { return static_cast<Stats*>(mem_.data())[i]; }
  unsigned size() const { return queues_; }
  int fd() const { return mem_.fd(); }

 private:
  SharedStats(SharedMemory mem, unsigned queues) : mem_(std::move(mem)), queues_(queues) {}
  SharedMemory mem_;
  unsigned queues_ = 0;
};

}  // namespace pvback::plane
