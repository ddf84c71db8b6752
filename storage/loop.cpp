#include "storage/loop.hpp"

#include <cerrno>

namespace pvback::storage {

Loop::~Loop() { close(); }

int Loop::init(unsigned entries) {
  if (initialised_) return EBUSY;
  const int r = io_uring_queue_init(entries, &ring_, 0);
  if (r < 0) return -r;
  initialised_ = true;
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
