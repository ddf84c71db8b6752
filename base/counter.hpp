// A statistics counter with exactly one writer (a data-path thread) and any number of readers (the
// statistics writer), so a relaxed load+store is enough: no locked instruction on the hot path.
// Readers may see a value a few microseconds late, never torn.
#pragma once
#include <atomic>
#include <cstdint>

namespace pvback {

class Counter {
 public:
  void add(std::uint64_t n = 1) noexcept { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(std::uint64_t n = 1) noexcept { value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  void set(std::uint64_t n) noexcept { value_.store(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// Adds every counter of `from` into `into`, for a table of {name, pointer-to-Counter-member}
// fields (the backends' kQueueStatsFields); gauges are summed too (a total over queues).
template <class Stats, class Fields>
void add_counters(Stats& into, const Stats& from, const Fields& fields) {
  for (const auto& f : fields) (into.*f.member).add((from.*f.member).get());
}

// Adds into `total` the counters of `past` (earlier connections) and of every live queue
// (`queues` holds pointers, or unique_ptrs, to each queue's Stats).
template <class Stats, class Queues, class Fields>
void add_queue_totals(Stats& total, const Stats& past, const Queues& queues, const Fields& fields) {
  add_counters(total, past, fields);
  for (const auto& q : queues) add_counters(total, *q, fields);
}

}  // namespace pvback
