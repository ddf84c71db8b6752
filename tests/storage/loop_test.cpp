// The io_uring a queue and its engine share takes only the operations they submit: a data plane
// taken over cannot use its rings for what its seccomp filter forbids (storage/loop.cpp).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

#include "storage/loop.hpp"

namespace pvback::storage {
namespace {

// Submits what `prepare` puts in one entry and returns its result (a negative errno on failure).
template <class F>
int run(Loop& loop, F prepare) {
  io_uring_sqe* sqe = loop.sqe();
  if (sqe == nullptr) return -1000000;
  prepare(sqe);
  io_uring_sqe_set_data64(sqe, 42);
  if (loop.submit() != 1) return -1000001;
  std::uint64_t tag = 0;
  int res = 0;
  if (loop.wait_one(tag, res) != 0 || tag != 42) return -1000002;
  return res;
}

TEST(Loop, TakesTheDataPathsOperations) {
  Loop loop;
  ASSERT_EQ(loop.init(8), 0);
  char path[] = "/tmp/pvback-loop-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  ASSERT_EQ(loop.register_file(fd), 0);
  char out[] = "pvback";
  iovec iov{out, sizeof out};
  EXPECT_EQ(run(loop, [&](io_uring_sqe* s) { io_uring_prep_nop(s); }), 0);
  EXPECT_EQ(run(loop, [&](io_uring_sqe* s) {
              io_uring_prep_writev(s, 0, &iov, 1, 0);
              s->flags |= IOSQE_FIXED_FILE;
            }),
            static_cast<int>(sizeof out));
  char in[sizeof out] = {};
  iovec back{in, sizeof in};
  EXPECT_EQ(run(loop, [&](io_uring_sqe* s) { io_uring_prep_readv(s, fd, &back, 1, 0); }), static_cast<int>(sizeof in));
  EXPECT_STREQ(in, out);
  EXPECT_EQ(run(loop, [&](io_uring_sqe* s) { io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC); }), 0);
  EXPECT_EQ(run(loop, [&](io_uring_sqe* s) { io_uring_prep_poll_add(s, fd, POLLIN); }) & POLLIN, POLLIN);
  ::close(fd);
}

TEST(Loop, RefusesWhatTheDataPathNeverSubmits) {
  Loop loop;
  ASSERT_EQ(loop.init(8), 0);
  EXPECT_EQ(run(loop, [](io_uring_sqe* s) { io_uring_prep_openat(s, AT_FDCWD, "/etc/passwd", O_RDONLY, 0); }), -EACCES);
  EXPECT_EQ(run(loop, [](io_uring_sqe* s) { io_uring_prep_socket(s, AF_INET, SOCK_STREAM, 0, 0); }), -EACCES);
  char buf[8];
  EXPECT_EQ(run(loop, [&](io_uring_sqe* s) { io_uring_prep_read(s, 0, buf, sizeof buf, 0); }), -EACCES);
  // Nor a flag it never sets (IOSQE_ASYNC would put an operation on a kernel worker at will).
  EXPECT_EQ(run(loop, [](io_uring_sqe* s) {
              io_uring_prep_nop(s);
              s->flags |= IOSQE_ASYNC;
            }),
            -EACCES);
}

}  // namespace
}  // namespace pvback::storage
