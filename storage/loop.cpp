#include "storage/loop.hpp"

#include <unistd.h>

#include <cerrno>
#include <iterator>

#include "base/uring_restrictions.hpp"

namespace pvback::storage {
namespace {

// Every operation a queue and its engine submit (queue.cpp, file/nbd/rbd/fault engines), and the
// one registration (the storage file). Anything else is refused by the kernel (EACCES), so a data
// plane taken over cannot use its rings to do what its seccomp filter forbids (io_uring's
// operations never pass that filter): IORING_OP_OPENAT, _SOCKET, _CONNECT, _ACCEPT, _SEND_ZC ...
constexpr io_uring_op kAllowedOps[] = {
    IORING_OP_NOP,   IORING_OP_READV,   IORING_OP_WRITEV, IORING_OP_FSYNC,
    IORING_OP_FALLOCATE, IORING_OP_POLL_ADD, IORING_OP_TIMEOUT,
};

// Creates the ring disabled, restricts it, then enables it (the order the kernel wants).
int restrict_ring(io_uring& ring) {
  io_uring_restriction r[std::size(kAllowedOps) + 2] = {};
  std::size_t n = 0;
  for (io_uring_op op : kAllowedOps) {
    r[n].opcode = IORING_RESTRICTION_SQE_OP;
    r[n++].sqe_op = static_cast<std::uint8_t>(op);
  }
  r[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
  r[n++].sqe_flags = IOSQE_FIXED_FILE;  // the storage file (file_engine.cpp)
  r[n].opcode = IORING_RESTRICTION_REGISTER_OP;
  r[n++].register_op = IORING_REGISTER_FILES;
  return restrict_and_enable_ring(ring, std::span(r).first(n));
}

}  // namespace

Loop::~Loop() { close(); }

int Loop::init(unsigned entries) {
  if (initialised_) return EBUSY;
  const int r = io_uring_queue_init(entries, &ring_, IORING_SETUP_R_DISABLED);
  if (r < 0) return -r;
  initialised_ = true;
  if (int e = restrict_ring(ring_)) {
    close();
    return e;
  }
  return 0;
}

void Loop::close() {
  if (!initialised_) return;
  io_uring_queue_exit(&ring_);
  initialised_ = false;
  file_registered_ = false;
}

io_uring_sqe* Loop::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (s == nullptr) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

int Loop::register_file(int fd) {
  if (file_registered_) return EBUSY;
  const int r = io_uring_register_files(&ring_, &fd, 1);
  if (r < 0) return -r;
  file_registered_ = true;
  return 0;
}

int Loop::wait_one(std::uint64_t& user_data, int& res) {
  io_uring_cqe* cqe = nullptr;
  const int r = io_uring_wait_cqe(&ring_, &cqe);
  if (r < 0) return r;
  user_data = cqe->user_data;
  res = cqe->res;
  io_uring_cqe_seen(&ring_, cqe);
  return 0;
}

}  // namespace pvback::storage
