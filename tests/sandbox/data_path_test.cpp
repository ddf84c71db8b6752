// What a confined data plane still does: I/O on the fds it holds, its io_uring, shared memory,
// fds passed over its control socket, eventfds, the allowed ioctls, thread names, abort().
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "tests/sandbox/child.hpp"

namespace pvback::sandbox {
namespace {

using namespace test;

constexpr std::string_view kContent = "a sector's worth of guest data";

class DataPath : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the full policy (namespaces, ids) needs root";
    char path[] = "/tmp/pvback-sandbox-XXXXXX";
    file_ = ::mkstemp(path);
    ASSERT_GE(file_, 0);
    ::unlink(path);
    ASSERT_EQ(::pwrite(file_, kContent.data(), kContent.size(), 0), static_cast<ssize_t>(kContent.size()));
  }
  void TearDown() override {
    if (file_ >= 0) ::close(file_);
  }

  // Runs `body` in a child confined by the data plane's policy and expects it to pass.
  template <class Body>
  void expect_passes(Body body) {
    int status = run_in_child([&] {
      apply_or_exit(domain_policy());
      return body();
    });
    EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
  }

  int file_ = -1;
};

TEST_F(DataPath, ExistingFileReadsAndWrites) {
  expect_passes([&] {
    char buf[64] = {};
    if (::pread(file_, buf, kContent.size(), 0) != static_cast<ssize_t>(kContent.size())) return call_failed("pread");
    if (kContent != std::string_view(buf, kContent.size())) return int{kWrongResult};
    if (::pwrite(file_, "more", 4, 4096) != 4) return call_failed("pwrite");
    if (::fdatasync(file_) != 0 || ::fsync(file_) != 0) return call_failed("fsync");
    if (::fallocate(file_, 0, 0, 8192) != 0) return call_failed("fallocate");
    struct stat st{};
    if (::fstat(file_, &st) != 0) return call_failed("fstat");
    if (st.st_size != 8192) return int{kWrongResult};
    if (::lseek(file_, 4096, SEEK_SET) != 4096 || ::read(file_, buf, 4) != 4) return call_failed("lseek+read");
    if (std::memcmp(buf, "more", 4) != 0) return int{kWrongResult};
    int flags = ::fcntl(file_, F_GETFL);
    if (flags < 0 || ::fcntl(file_, F_SETFL, flags | O_NONBLOCK) != 0) return call_failed("fcntl");
    return int{kPassed};
  });
}

TEST_F(DataPath, EventfdAndEpollCreatedAfterwards) {
  expect_passes([] {
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) return call_failed("eventfd");
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return call_failed("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0) return call_failed("epoll_ctl");
    if (::eventfd_write(efd, 3) != 0) return call_failed("eventfd_write");
    if (::epoll_wait(ep, &ev, 1, 1000) != 1) return call_failed("epoll_wait");
    pollfd p{efd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return call_failed("poll");
    eventfd_t value = 0;
    if (::eventfd_read(efd, &value) != 0) return call_failed("eventfd_read");
    ::close(ep);
    ::close(efd);
    return value == 3 ? int{kPassed} : int{kWrongResult};
  });
}

// A ring set up before apply() submits after it. Its requests bypass seccomp; an IORING_OP_OPENAT
// still meets the empty root.
TEST_F(DataPath, IoUringSetUpBeforehand) {
  io_uring ring;
  ASSERT_EQ(io_uring_queue_init(4, &ring, 0), 0);
  auto run = [&](auto prepare) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    prepare(sqe);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_submit(&ring) != 1 || io_uring_wait_cqe(&ring, &cqe) != 0) return -1000000;
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
  };
  expect_passes([&] {
    if (run([](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); }) != 0) return call_failed("nop");
    char buf[64] = {};
    int n = run([&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, file_, buf, kContent.size(), 0); });
    if (n != static_cast<int>(kContent.size()) || kContent != std::string_view(buf, kContent.size()))
      return int{kWrongResult};
    int opened = run([](io_uring_sqe* sqe) { io_uring_prep_openat(sqe, AT_FDCWD, "/etc/passwd", O_RDONLY, 0); });
    if (opened != -ENOENT) {
      std::fprintf(stderr, "child: IORING_OP_OPENAT /etc/passwd: %d\n", opened);
      return int{kWrongResult};
    }
    io_uring_queue_exit(&ring);
    return int{kPassed};
  });
  io_uring_queue_exit(&ring);
}

// Shared memory (pvback-sim's grants are memfds): mapped after apply(), the writes reach the file.
TEST_F(DataPath, MemfdMapsReadWrite) {
  int mem = ::memfd_create("guest", MFD_CLOEXEC);
  ASSERT_GE(mem, 0);
  ASSERT_EQ(::ftruncate(mem, 4096), 0);
  ASSERT_EQ(::pwrite(mem, kContent.data(), kContent.size(), 0), static_cast<ssize_t>(kContent.size()));
  expect_passes([&] {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
    if (p == MAP_FAILED) return call_failed("mmap");
    bool same = kContent == std::string_view(static_cast<char*>(p), kContent.size());
    std::memcpy(static_cast<char*>(p) + 100, "answer", 6);
    if (::mprotect(p, 4096, PROT_READ) != 0) return call_failed("mprotect");
    ::munmap(p, 4096);
    return same ? int{kPassed} : int{kWrongResult};
  });
  char buf[6] = {};
  EXPECT_EQ(::pread(mem, buf, 6, 100), 6);
  EXPECT_EQ(std::string_view(buf, 6), "answer");
  ::close(mem);
}

// A one-byte message with room for one SCM_RIGHTS fd in `control`.
msghdr one_fd_message(iovec& byte, char (&control)[CMSG_SPACE(sizeof(int))]) {
  msghdr msg{};
  msg.msg_iov = &byte;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  return msg;
}

// The simulated hypervisor's way: an fd passed over an already-connected SEQPACKET socket.
TEST_F(DataPath, ConnectedSocketPassesFds) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  char byte = 'm';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg = one_fd_message(iov, control);
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &file_, sizeof(int));
  ASSERT_EQ(::sendmsg(sv[0], &msg, 0), 1);
  expect_passes([&] {
    char got = 0;
    iovec in{&got, 1};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
    msghdr m = one_fd_message(in, cbuf);
    if (::recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC) != 1) return call_failed("recvmsg");
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return int{kWrongResult};
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    char buf[64] = {};
    if (::pread(fd, buf, kContent.size(), 0) != static_cast<ssize_t>(kContent.size())) return call_failed("pread");
    if (::send(sv[1], "ok", 2, 0) != 2) return call_failed("send");
    return kContent == std::string_view(buf, kContent.size()) ? int{kPassed} : int{kWrongResult};
  });
  char reply[2] = {};
  EXPECT_EQ(::recv(sv[0], reply, 2, MSG_DONTWAIT), 2);
  ::close(sv[0]);
  ::close(sv[1]);
}

// FIONREAD is on the ioctl list; isatty()'s TCGETS fails softly instead of killing.
TEST_F(DataPath, AllowedIoctls) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_EQ(::write(p[1], "abc", 3), 3);
  expect_passes([&] {
    int waiting = 0;
    if (::ioctl(p[0], FIONREAD, &waiting) != 0) return call_failed("FIONREAD");
    if (waiting != 3) return int{kWrongResult};
    int on = 1;
    if (::ioctl(p[0], FIONBIO, &on) != 0) return call_failed("FIONBIO");
    return ::isatty(p[0]) == 0 ? int{kPassed} : int{kWrongResult};
  });
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(DataPath, ThreadNamesAndTime) {
  expect_passes([] {
    if (::prctl(PR_SET_NAME, "pvback-dp", 0, 0, 0) != 0) return call_failed("PR_SET_NAME");
    char name[16] = {};
    if (::prctl(PR_GET_NAME, name, 0, 0, 0) != 0) return call_failed("PR_GET_NAME");
    timespec ts{};
    if (::clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return call_failed("clock_gettime");
    timespec nap{0, 1000};
    if (::nanosleep(&nap, nullptr) != 0) return call_failed("nanosleep");
    return std::strcmp(name, "pvback-dp") == 0 ? int{kPassed} : int{kWrongResult};
  });
}

// abort() still ends the process with SIGABRT (tgkill of itself), not with seccomp's SIGSYS.
TEST_F(DataPath, AbortStillAborts) {
  int status = run_in_child([] {
    apply_or_exit(domain_policy());
    std::abort();
    return 0;
  });
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) << describe_status(status);
}

}  // namespace
}  // namespace pvback::sandbox
