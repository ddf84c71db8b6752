// The queues' statistics in memory shared between pvback-blk's control part (which writes the
// statistics file) and the data-plane process (whose queue threads count): a memfd both map.
// Counters are relaxed atomics with one writer each (base/counter.hpp), which works the same
// between processes as between threads. A restarted data plane counts on where its predecessor
// stopped.
#pragma once
#include <cstddef>
#include <expected>

#include "base/unique_fd.hpp"
#include "blkback/stats.hpp"

namespace pvback::blkback {

class SharedQueueStats {
 public:
  SharedQueueStats() = default;
  SharedQueueStats(SharedQueueStats&& o) noexcept;
  SharedQueueStats& operator=(SharedQueueStats&& o) noexcept;
  ~SharedQueueStats();

  // New zeroed statistics for `queues` queues.
  static std::expected<SharedQueueStats, int> create(unsigned queues);
  // Maps statistics another process created for `queues` queues (EINVAL if `fd` is smaller).
  static std::expected<SharedQueueStats, int> adopt(UniqueFd fd, unsigned queues);

  QueueStats& at(unsigned i) const { return base_[i]; }
  unsigned size() const { return queues_; }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  QueueStats* base_ = nullptr;
  unsigned queues_ = 0;
};

}  // namespace pvback::blkback
