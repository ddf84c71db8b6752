// The io_uring a queue's thread runs on, shared with the storage engine's channel: the queue arms
// its event-channel and stop polls and its timers on it, the engine queues its I/O on it, and one
// io_uring_submit_and_wait per turn of the loop starts them all and sleeps until something is done.
// Completions whose user_data has kEngineTag set belong to the engine's channel.
#pragma once
#include <liburing.h>

#include <cstdint>

namespace pvback::storage {

class Loop {
 public:
  static constexpr std::uint64_t kEngineTag = std::uint64_t{1} << 63;

  Loop() = default;
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  ~Loop();

  // 0 or an errno value. The ring takes only the operations the queues and engines submit
  // (IORING_REGISTER_RESTRICTIONS): see loop.cpp.
  [[nodiscard]] int init(unsigned entries);
  bool initialised() const { return initialised_; }
  void close();

  // A free submission entry; when the queue is full, what is queued is submitted first. nullptr
  // only if even that fails.
  io_uring_sqe* sqe();
  // Registers `fd` as the ring's fixed file 0 (IOSQE_FIXED_FILE, no fd lookup per operation).
  // Once per loop; 0 or an errno value.
  [[nodiscard]] int register_file(int fd);
  bool has_file() const { return file_registered_; }

  // io_uring_submit_and_wait / io_uring_submit: what liburing returns (negative errno on failure).
  int submit_and_wait(unsigned wait_nr) { return io_uring_submit_and_wait(&ring_, wait_nr); }
  int submit() { return io_uring_submit(&ring_); }
  // Completions ready to be reaped, without entering the kernel.
  unsigned ready() const { return io_uring_cq_ready(&ring_); }

  // Calls f(user_data, res) for every completion ready now, then retires them together.
  template <class F>
  unsigned for_each_completion(F&& f) {
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      f(cqe->user_data, cqe->res);
    }
    io_uring_cq_advance(&ring_, seen);
    return seen;
  }
  // Waits for one completion: 0 with user_data/res filled, or a negative errno.
  int wait_one(std::uint64_t& user_data, int& res);

 private:
  io_uring ring_{};
  bool initialised_ = false;
  bool file_registered_ = false;
};

}  // namespace pvback::storage
