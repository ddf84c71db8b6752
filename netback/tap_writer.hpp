// Frames written to one TAP queue in a batch: one io_uring_enter for all of them instead of one
// write() each. A TAP takes a frame per write and the kernel offers no batched write to it from
// user space (vhost-net's batching is the kernel's own), so the saving is the system call per
// frame: its entry and exit, the fd lookup, and the seccomp filter it passes in a data plane.
//
// Every write carries RWF_NOWAIT (io_uring would otherwise wait for room on a full file, O_NONBLOCK
// or not), so io_uring writes every frame while io_uring_enter runs: a full device answers -EAGAIN,
// nothing waits and nothing goes to an io_uring worker. When write() returns, every frame is
// written or refused and its buffer may be reused.
//
//   TapWriter w;
//   if (int e = w.init(fd, 256)) ...          // unavailable: write() still works, one at a time
//   w.write(frames, results);                 // results[i]: bytes written or -errno
#pragma once
#include <liburing.h>
#include <sys/uio.h>

#include <span>

namespace pvback::netback {

class TapWriter {
 public:
  TapWriter() = default;
  TapWriter(const TapWriter&) = delete;
  TapWriter& operator=(const TapWriter&) = delete;
  ~TapWriter();

  // A ring of `entries` writes on `fd`, restricted to writing. 0 or an errno value
  // (EBADF: no fd); without a ring (entries 0, io_uring disabled by kernel.io_uring_disabled, or
  // refused) write() makes a system call per frame on `fd`. Call it before a seccomp filter is
  // applied: io_uring_setup is refused after.
  [[nodiscard]] int init(int fd, unsigned entries);
  bool batched() const { return initialised_; }

  // Writes every frame to the fd, in order. results[i]: the bytes written, or -errno (-EAGAIN: the
  // device's queue is full; -EIO: it is down). results.size() >= frames.size().
  void write(std::span<const iovec> frames, std::span<int> results);

 private:
  void write_one_by_one(std::span<const iovec> frames, std::span<int> results) const;
  void close_ring();

  io_uring ring_{};
  int fd_ = -1;
  unsigned entries_ = 0;
  bool initialised_ = false;
};

}  // namespace pvback::netback
