// TapWriter (netback/tap_writer.hpp) on a non-blocking pipe, which io_uring writes to as it writes
// to a TAP queue: every frame while io_uring_enter runs, -EAGAIN once the other end is full.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "netback/tap_writer.hpp"
#include "sandbox/sandbox.hpp"

namespace pvback::netback {
namespace {

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      r = UniqueFd(fds[0]);
      w = UniqueFd(fds[1]);
    }
  }
  std::string drain() const {
    std::string out;
    char buf[65536];
    for (ssize_t n; (n = ::read(r.get(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
};

std::vector<std::string> numbered_frames(std::size_t count, std::size_t size) {
  std::vector<std::string> frames;
  for (std::size_t i = 0; i < count; ++i) {
    std::string f = std::to_string(i) + ":";
    f.resize(size, static_cast<char>('a' + i % 26));
    frames.push_back(std::move(f));
  }
  return frames;
}

std::vector<iovec> iovecs(std::vector<std::string>& frames) {
  std::vector<iovec> v;
  for (auto& f : frames) v.push_back({f.data(), f.size()});
  return v;
}

// Every result is the frame's length; returns the frames as the pipe should hold them.
std::string expect_all_written(const std::vector<std::string>& frames, const std::vector<int>& results) {
  std::string want;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(results[i], static_cast<int>(frames[i].size())) << "frame " << i;
    want += frames[i];
  }
  return want;
}

TEST(TapWriter, WritesEveryFrameInOrderInBatches) {
  Pipe p;
  ASSERT_TRUE(p.w);
  TapWriter w;
  ASSERT_EQ(w.init(p.w.get(), 16), 0);
  EXPECT_TRUE(w.batched());
  auto frames = numbered_frames(40, 100);
  auto iov = iovecs(frames);
  std::vector<int> results(iov.size(), -1);
  w.write(iov, results);
  EXPECT_EQ(p.drain(), expect_all_written(frames, results));
  // Again on the same ring: nothing of the first batch is left in it.
  w.write(std::span(iov).first(3), results);
  EXPECT_EQ(p.drain(), frames[0] + frames[1] + frames[2]);
}

TEST(TapWriter, AFullDeviceAnswersEagainAndNeverWaits) {
  Pipe p;
  ASSERT_TRUE(p.w);
  ASSERT_GE(::fcntl(p.w.get(), F_SETPIPE_SZ, 4096), 0);  // one page: 4 frames of 1000 bytes
  TapWriter w;
  ASSERT_EQ(w.init(p.w.get(), 8), 0);
  auto frames = numbered_frames(8, 1000);
  auto iov = iovecs(frames);
  std::vector<int> results(iov.size(), 0);
  w.write(iov, results);  // returns: a blocking write here would hang the test
  std::size_t written = 0, refused = 0;
  for (int r : results) {
    if (r == 1000) ++written;
    else if (r == -EAGAIN) ++refused;
    else ADD_FAILURE() << "result " << r;
  }
  EXPECT_GE(written, 1u);
  EXPECT_GE(refused, 1u);
  EXPECT_EQ(written + refused, frames.size());
  const std::string got = p.drain();
  EXPECT_EQ(got.size(), written * 1000);
  EXPECT_EQ(got.substr(0, 1000), frames[0]);
  // Room again: the ring still works.
  w.write(std::span(iov).first(1), results);
  EXPECT_EQ(results[0], 1000);
  EXPECT_EQ(p.drain(), frames[0]);
}

TEST(TapWriter, WithoutARingEachFrameIsWrittenByItself) {
  Pipe p;
  ASSERT_TRUE(p.w);
  TapWriter w;
  EXPECT_EQ(w.init(p.w.get(), 0), EINVAL);  // no ring: write() per frame on the fd
  EXPECT_FALSE(w.batched());
  auto frames = numbered_frames(5, 64);
  auto iov = iovecs(frames);
  std::vector<int> results(iov.size(), -1);
  w.write(iov, results);
  EXPECT_EQ(p.drain(), expect_all_written(frames, results));
  TapWriter bad;
  EXPECT_EQ(bad.init(-1, 16), EBADF);
}

// The net data plane makes its writers before its seccomp filter and writes and closes them under
// it: nothing TapWriter does after init() may be a call the Net profile refuses (the filter kills
// the process). A child confines itself as the data plane does (the filter alone: no namespace or
// id change, which other tests cover), writes a batch, and destroys the writer.
TEST(TapWriter, WritesAndClosesUnderTheNetDataPlanesSeccompFilter) {
  if (!sandbox::kSeccompInThisBuild) GTEST_SKIP() << "seccomp is off in a sanitized build";
  Pipe p;
  ASSERT_TRUE(p.w);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto* w = new TapWriter;
    if (w->init(p.w.get(), 8) != 0) ::_exit(10);
    sandbox::Policy policy;
    policy.mount_namespace = false;
    policy.network = true;
    policy.ipc_namespace = false;
    policy.profile = sandbox::Profile::Net;
    if (!sandbox::apply(policy)) ::_exit(11);
    auto frames = numbered_frames(20, 64);  // more than the ring's entries: several enters
    auto iov = iovecs(frames);
    std::vector<int> results(iov.size(), -1);
    w->write(iov, results);
    for (int r : results)
      if (r != 64) ::_exit(12);
    delete w;
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (31: SIGSYS, a call the filter refuses)";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(p.drain().size(), 20u * 64);
}

}  // namespace
}  // namespace pvback::netback
