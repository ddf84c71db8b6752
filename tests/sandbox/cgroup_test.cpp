// The data plane's control group (sandbox/cgroup.hpp): each limit lands in the kernel's files, a
// child placed in the leaf is held to it (a thread bomb stops at the task limit, an allocation
// past the memory limit is OOM-killed, a spinning thread is throttled) and the leaf is removed
// once empty. They run in leaves under the gtest process's own cgroup: this needs root and a
// writable cgroup file system, as the data plane does.
#include "sandbox/cgroup.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/sandbox/child.hpp"

namespace pvback::sandbox {
namespace {

using test::describe_status;
using test::run_in_child;

std::string leaf_name(const char* what) { return std::string("pvback-test-") + what + "-" + std::to_string(::getpid()); }

ResourceLimits limits_of(std::optional<std::uint64_t> memory, std::optional<std::uint64_t> tasks,
                         std::optional<unsigned> cpu) {
  ResourceLimits l;
  l.memory_bytes = memory;
  l.tasks = tasks;
  l.cpu_percent = cpu;
  return l;
}
ResourceLimits tasks_limit(std::uint64_t n) { return limits_of(std::nullopt, n, std::nullopt); }

bool exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

// Forks a child that waits on a pipe, places it with `group`, lets it run `body`.
template <class Body>
int run_placed(const Cgroup& group, Body body) {
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return -1;
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    char c;
    ::close(go[1]);
    if (::read(go[0], &c, 1) != 1) ::_exit(test::kCallFailed);
    ::_exit(body());
  }
  ::close(go[0]);
  const int attached = group.attach(pid);
  [[maybe_unused]] const ssize_t w = ::write(go[1], "g", 1);
  ::close(go[1]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (attached != 0) {
    ADD_FAILURE() << "attach: " << std::strerror(attached);
    return -1;
  }
  return status;
}

TEST(CgroupTest, LimitsReachTheKernelAndTheLeafIsRemovedWhenEmpty) {
  SKIP_UNLESS_ROOT();
  const ResourceLimits limits = limits_of(64u << 20, 12, 50);
  auto group = Cgroup::create("", leaf_name("limits"), limits);
  ASSERT_TRUE(group.has_value()) << group.error();
  ASSERT_FALSE(group->dirs().empty());
  for (const auto& dir : group->dirs()) EXPECT_TRUE(exists(dir)) << dir;
  EXPECT_NE(group->describe().find("pids.max=12"), std::string::npos) << group->describe();

  // A child placed there reports the leaf's limits as its own.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char c;
    ::close(pipefd[1]);
    [[maybe_unused]] const ssize_t r = ::read(pipefd[0], &c, 1);
    ::_exit(0);
  }
  ::close(pipefd[0]);
  ASSERT_EQ(group->attach(pid), 0);
  auto applied = applied_limits(pid);
  ASSERT_TRUE(applied.has_value()) << applied.error();
  EXPECT_EQ(applied->memory_bytes, limits.memory_bytes);
  EXPECT_EQ(applied->tasks, limits.tasks);
  EXPECT_EQ(applied->cpu_percent, limits.cpu_percent);
  // Not empty yet: the leaf stays, and says why.
  EXPECT_EQ(group->remove(), EBUSY);
  ::close(pipefd[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const auto dirs = group->dirs();
  EXPECT_EQ(group->remove(), 0);
  for (const auto& dir : dirs) EXPECT_FALSE(exists(dir)) << dir;
}

TEST(CgroupTest, ALeafThatExistsIsReusedWithTheNewLimits) {
  SKIP_UNLESS_ROOT();
  const std::string name = leaf_name("reuse");
  auto first = Cgroup::create("", name, tasks_limit(20));
  ASSERT_TRUE(first.has_value()) << first.error();
  // A successor control part creates the same leaf while the first one's data plane runs in it.
  auto second = Cgroup::create("", name, tasks_limit(30));
  ASSERT_TRUE(second.has_value()) << second.error();
  EXPECT_EQ(first->dirs(), second->dirs());
  auto applied = applied_limits(0);  // ourselves: not in the leaf, so not its limit
  ASSERT_TRUE(applied.has_value());
  EXPECT_NE(applied->tasks, std::optional<std::uint64_t>(30));
  std::ifstream in(second->dirs().front() + "/pids.max");
  std::string value;
  in >> value;
  EXPECT_EQ(value, "30");
  EXPECT_EQ(second->remove(), 0);
  EXPECT_EQ(first->remove(), 0);  // already gone: not an error
}

TEST(CgroupTest, AThreadBombStopsAtTheTaskLimit) {
  SKIP_UNLESS_ROOT();
  auto group = Cgroup::create("", leaf_name("tasks"), tasks_limit(4));
  ASSERT_TRUE(group.has_value()) << group.error();
  const int status = run_placed(*group, [] {
    pthread_t threads[16];
    for (int i = 0; i < 16; ++i) {
      const int err = ::pthread_create(&threads[i], nullptr, [](void*) -> void* {
        ::pause();
        return nullptr;
      }, nullptr);
      // The fifth task of the group is refused.
      if (err == EAGAIN) return i == 3 ? test::kPassed : test::kWrongResult;
      if (err != 0) return test::kWrongErrno;
    }
    return test::kCallSucceeded;
  });
  EXPECT_TRUE(test::exited_with(status, test::kPassed)) << describe_status(status);
  EXPECT_EQ(group->remove(), 0);
}

TEST(CgroupTest, AllocationPastTheMemoryLimitIsOomKilled) {
  SKIP_UNLESS_ROOT();
  auto group = Cgroup::create("", leaf_name("memory"), limits_of(32u << 20, std::nullopt, std::nullopt));
  ASSERT_TRUE(group.has_value()) << group.error();
  const int status = run_placed(*group, [] {
    constexpr std::size_t kSize = 256u << 20;
    auto* p = static_cast<char*>(::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) return test::kCallFailed;
    for (std::size_t i = 0; i < kSize; i += 4096) p[i] = 1;  // with no swap, the kernel must kill
    return test::kCallSucceeded;
  });
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << describe_status(status);
  EXPECT_EQ(group->remove(), 0);
}

TEST(CgroupTest, ASpinningChildIsThrottledToItsCpuShare) {
  SKIP_UNLESS_ROOT();
  auto group = Cgroup::create("", leaf_name("cpu"), limits_of(std::nullopt, std::nullopt, 10));
  ASSERT_TRUE(group.has_value()) << group.error();
  const int status = run_placed(*group, [] {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
    volatile unsigned long spins = 0;
    while (std::chrono::steady_clock::now() < end) spins = spins + 1;
    return test::kPassed;
  });
  ASSERT_TRUE(test::exited_with(status, test::kPassed)) << describe_status(status);
  // The kernel counts each period in which the group ran out of its quota.
  std::ifstream in(group->dirs().back() + "/cpu.stat");
  std::string key;
  std::uint64_t value = 0, throttled = 0;
  while (in >> key >> value)
    if (key == "nr_throttled") throttled = value;
  EXPECT_GT(throttled, 0u) << "a child spinning 400 ms at 10 % of a CPU was never throttled";
  EXPECT_EQ(group->remove(), 0);
}

TEST(CgroupTest, BadNamesAndParentsAreRefused) {
  EXPECT_FALSE(Cgroup::create("", "../escape", tasks_limit(4)).has_value());
  EXPECT_FALSE(Cgroup::create("", "a/b", tasks_limit(4)).has_value());
  EXPECT_FALSE(Cgroup::create("", "", tasks_limit(4)).has_value());
  EXPECT_FALSE(Cgroup::create("relative", "x", tasks_limit(4)).has_value());
  EXPECT_FALSE(Cgroup::create("/a/../../b", "x", tasks_limit(4)).has_value());
}

TEST(CgroupTest, ParentThatDoesNotExistIsAClearError) {
  SKIP_UNLESS_ROOT();
  auto group = Cgroup::create("/pvback-no-such-parent-" + std::to_string(::getpid()), "x", tasks_limit(4));
  ASSERT_FALSE(group.has_value());
  EXPECT_NE(group.error().find("No such file"), std::string::npos) << group.error();
}

TEST(CgroupTest, ParseSize) {
  EXPECT_EQ(parse_size("512M"), 512ull << 20);
  EXPECT_EQ(parse_size("2G"), 2ull << 30);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("8k"), 8192u);
  EXPECT_FALSE(parse_size("").has_value());
  EXPECT_FALSE(parse_size("0").has_value());
  EXPECT_FALSE(parse_size("12Q").has_value());
  EXPECT_FALSE(parse_size("M").has_value());
  EXPECT_FALSE(parse_size("99999999999999999999G").has_value());
}

}  // namespace
}  // namespace pvback::sandbox
