#include "netback/tap_writer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "base/uring_restrictions.hpp"

namespace pvback::netback {
namespace {

// The ring can only write (IORING_OP_WRITE): a data plane taken over cannot use it for what its
// seccomp filter forbids (io_uring's operations never pass that filter). Writing to any fd it holds
// is no more than write() already allows it. No file is registered, so no registration is allowed
// either, and nothing must be unregistered at the end: io_uring_register is not in the net data
// plane's filter, and a ring holding a registered TAP queue would keep the device alive after its
// TapExit until the ring's deferred teardown ran.
int restrict_ring(io_uring& ring) {
  io_uring_restriction r[1] = {};
  r[0].opcode = IORING_RESTRICTION_SQE_OP;
  r[0].sqe_op = IORING_OP_WRITE;
  return restrict_and_enable_ring(ring, r);
}

// A result not yet known (no write answers it: errors are -errno, lengths are >= 0).
constexpr int kPending = INT32_MIN;

}  // namespace

TapWriter::~TapWriter() { close_ring(); }

void TapWriter::close_ring() {
  if (!initialised_) return;
  io_uring_queue_exit(&ring_);  // only closes the ring's fd and unmaps it: no system call a filter refuses
  initialised_ = false;
}

int TapWriter::init(int fd, unsigned entries) {
  if (initialised_) return EBUSY;
  if (fd < 0) return EBADF;
  fd_ = fd;  // whatever happens next: write() per frame on it
  if (entries == 0) return EINVAL;
  // The completion queue holds a whole batch (twice the entries by default): nothing overflows.
  // Not IORING_SETUP_SINGLE_ISSUER: the thread that makes the ring (a data plane's main thread)
  // is not the queue's thread that writes through it.
  int r = io_uring_queue_init(entries, &ring_, IORING_SETUP_R_DISABLED);
  if (r < 0) return -r;
  initialised_ = true;
  if (int e = restrict_ring(ring_)) {
    close_ring();
    return e;
  }
  entries_ = entries;
  return 0;
}

void TapWriter::write_one_by_one(std::span<const iovec> frames, std::span<int> results) const {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const ssize_t n = ::write(fd_, frames[i].iov_base, frames[i].iov_len);
    results[i] = n >= 0 ? static_cast<int>(n) : -errno;
  }
}

void TapWriter::write(std::span<const iovec> frames, std::span<int> results) {
  std::size_t done = 0;
  while (done < frames.size()) {
    if (!initialised_) {  // no ring, or given up on below: what is left goes out one write() each
      write_one_by_one(frames.subspan(done), results.subspan(done));
      return;
    }
    const std::size_t n = std::min<std::size_t>(frames.size() - done, entries_);
    for (std::size_t i = 0; i < n; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // never null: the ring is empty and n <= entries
      io_uring_prep_write(sqe, fd_, frames[done + i].iov_base, static_cast<unsigned>(frames[done + i].iov_len), 0);
      // Without RWF_NOWAIT, io_uring waits for room on a full file even if it is O_NONBLOCK.
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = done + i;
      results[done + i] = kPending;
    }
    // Every write completes inside io_uring_enter (RWF_NOWAIT); waiting for all n only makes sure
    // of it.
    std::size_t completed = 0;
    int failure = 0;
    for (int attempt = 0; completed < n && attempt < 4;) {
      const int r = io_uring_submit_and_wait(&ring_, static_cast<unsigned>(n - completed));
      io_uring_cqe* cqe;
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        results[static_cast<std::size_t>(cqe->user_data)] = cqe->res;
      }
      io_uring_cq_advance(&ring_, seen);
      completed += seen;
      if (r < 0 && r != -EINTR) {
        failure = -r;
        ++attempt;  // EAGAIN, EBUSY, ENOMEM: the kernel is short of something; a few more tries
      }
    }
    if (completed < n) {
      // The ring failed (the kernel kept refusing to enter it): the frames it did not write are
      // dropped, and the ring is given up so that writes left in it are never made later, into
      // slots reused by then. From here on one write() per frame.
      for (std::size_t i = 0; i < n; ++i)
        if (results[done + i] == kPending) results[done + i] = -(failure != 0 ? failure : EIO);
      close_ring();
    }
    // A kernel whose TAP does not take RWF_NOWAIT refuses every write so: from here on, and for
    // these frames, write() (non-blocking by the fd's O_NONBLOCK).
    for (std::size_t i = 0; i < n; ++i) {
      if (results[done + i] != -EOPNOTSUPP) continue;
      close_ring();
      write_one_by_one(frames.subspan(done + i, 1), results.subspan(done + i, 1));
    }
    done += n;
  }
}

}  // namespace pvback::netback
