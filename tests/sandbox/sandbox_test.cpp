// What a confined data plane can no longer do, layer by layer, and how its confinement shows in
// /proc/<pid>/status (read by the parent: the child has no /proc).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "tests/sandbox/child.hpp"

namespace pvback::sandbox {
namespace {

using namespace test;

constexpr uid_t kUnprivilegedUid = 1000;

static_assert(data_plane_uid(kDataPlaneUidBase, 7) == 0x70000007);
static_assert(data_plane_uid(kDataPlaneUidBase, 0x7FF0) == 0x70007FF0);  // the highest domid fits

// ---- The seccomp layer: each forbidden call kills the process. ----------------------------------

struct Forbidden {
  const char* name;
  long (*call)();
};

void PrintTo(const Forbidden& f, std::ostream* os) { *os << f.name; }

const Forbidden kForbidden[] = {
    {"open", [] { return long{::open("/etc/passwd", O_RDONLY)}; }},
    {"openat", [] { return long{::openat(AT_FDCWD, "/etc/passwd", O_RDONLY)}; }},
    {"openat2", [] { return ::syscall(SYS_openat2, AT_FDCWD, "/etc/passwd", nullptr, 0); }},
    {"creat", [] { return long{::creat("/x", 0600)}; }},
    {"socket_inet", [] { return long{::socket(AF_INET, SOCK_STREAM, 0)}; }},
    {"socket_unix", [] { return long{::socket(AF_UNIX, SOCK_SEQPACKET, 0)}; }},
    {"socketpair", [] { int sv[2]; return long{::socketpair(AF_UNIX, SOCK_STREAM, 0, sv)}; }},
    {"execve", [] { char* argv[] = {const_cast<char*>("/bin/true"), nullptr}; return long{::execve(argv[0], argv, nullptr)}; }},
    {"fork", [] { pid_t p = ::fork(); if (p == 0) ::_exit(0); return long{p}; }},
    {"vfork", [] { return ::syscall(SYS_vfork); }},
    {"ptrace", [] { return ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); }},
    {"mount", [] { return long{::mount("none", "/", "tmpfs", 0, nullptr)}; }},
    {"chroot", [] { return long{::chroot("/")}; }},
    {"setuid", [] { return long{::syscall(SYS_setuid, 0)}; }},
    {"unshare", [] { return long{::unshare(CLONE_NEWUSER)}; }},
    {"io_uring_setup", [] { io_uring_params p{}; return ::syscall(SYS_io_uring_setup, 4, &p); }},
    {"bpf", [] { return ::syscall(SYS_bpf, 0, nullptr, 0); }},
    {"perf_event_open", [] { perf_event_attr a{}; return ::syscall(SYS_perf_event_open, &a, 0, -1, -1, 0); }},
    {"keyctl", [] { return ::syscall(SYS_keyctl, 0, 0, 0, 0, 0); }},
    {"userfaultfd", [] { return ::syscall(SYS_userfaultfd, 0); }},
    {"dup", [] { return long{::dup(0)}; }},
    {"fcntl_dupfd", [] { return long{::fcntl(0, F_DUPFD_CLOEXEC, 0)}; }},
    {"mmap_exec", [] { void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); return p == MAP_FAILED ? -1L : 0L; }},
    {"ioctl_unlisted", [] { return long{::ioctl(0, FIOCLEX)}; }},
    {"prctl_dumpable", [] { return long{::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)}; }},
    {"kill_init", [] { return long{::kill(1, 0)}; }},
    {"tgkill_other", [] { return ::syscall(SYS_tgkill, 1, 1, 0); }},
    {"prlimit", [] { rlimit l{1 << 20, 1 << 20}; return long{::setrlimit(RLIMIT_NOFILE, &l)}; }},
};

class ForbiddenCall : public ::testing::TestWithParam<Forbidden> {};

TEST_P(ForbiddenCall, KillsTheProcess) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  int status = run_in_child([] {
    apply_or_exit(domain_policy());
    GetParam().call();
    return int{kCallSucceeded};  // not killed, whatever the call returned
  });
  EXPECT_TRUE(killed_by_seccomp(status)) << GetParam().name << ": " << describe_status(status);
}

INSTANTIATE_TEST_SUITE_P(Seccomp, ForbiddenCall, ::testing::ValuesIn(kForbidden),
                         [](const auto& info) { return std::string(info.param.name); });

// pvback-net's data plane (Profile::Net) has no storage: what pvback-blk's needs for it kills it.
// Each call is made on an fd that exists (a memfd made before apply), so it is the filter that
// refuses it, not the kernel.
const Forbidden kStorageOnly[] = {
    {"pread64", [] { char b[1]; return long{::pread(3, b, 1, 0)}; }},
    {"pwrite64", [] { return long{::pwrite(3, "x", 1, 0)}; }},
    {"lseek", [] { return long{::lseek(3, 0, SEEK_SET)}; }},
    {"fsync", [] { return long{::fsync(3)}; }},
    {"fdatasync", [] { return long{::fdatasync(3)}; }},
    {"fallocate", [] { return long{::fallocate(3, 0, 0, 4096)}; }},
    {"ftruncate", [] { return long{::ftruncate(3, 8192)}; }},
    // Entering a ring is allowed (a TAP queue's batched writes); registering anything is not.
    {"io_uring_register", [] { return ::syscall(SYS_io_uring_register, 3, 0, nullptr, 0); }},
    {"ioctl_blkdiscard", [] { std::uint64_t range[2] = {0, 4096}; return long{::ioctl(3, BLKDISCARD, range)}; }},
};

class NetProfileForbids : public ::testing::TestWithParam<Forbidden> {};

TEST_P(NetProfileForbids, TheStoragesCalls) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  int status = run_in_child([] {
    if (::dup2(::memfd_create("storage", 0), 3) != 3) return int{kCallFailed};
    Policy p = domain_policy();
    p.profile = Profile::Net;
    apply_or_exit(p);
    GetParam().call();
    return int{kCallSucceeded};
  });
  EXPECT_TRUE(killed_by_seccomp(status)) << GetParam().name << ": " << describe_status(status);
}

INSTANTIATE_TEST_SUITE_P(Seccomp, NetProfileForbids, ::testing::ValuesIn(kStorageOnly),
                         [](const auto& info) { return std::string(info.param.name); });

// And what pvback-blk's needs still passes under Profile::Block (the default).
TEST(Seccomp, BlockProfileKeepsTheStoragesCalls) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  int status = run_in_child([] {
    if (::dup2(::memfd_create("storage", 0), 3) != 3) return int{kCallFailed};
    apply_or_exit(domain_policy());
    char b[1];
    if (::pwrite(3, "x", 1, 0) != 1 || ::pread(3, b, 1, 0) != 1 || ::fdatasync(3) != 0 || ::ftruncate(3, 8192) != 0)
      return int{kCallFailed};
    return int{kPassed};
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

// On the simulated platform a data plane may ask whether a process exists (its grant pin locks
// take over one a SIGKILLed holder left), and still signal nothing.
TEST(Seccomp, ProbeProcessesAllowsSignalZeroOnly) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  auto probing = [] {
    Policy p = domain_policy();
    p.probe_processes = true;
    return p;
  };
  int status = run_in_child([&] {
    apply_or_exit(probing());
    // Another uid's process: EPERM says it exists, which is all a pin lock needs (not ESRCH).
    if (::kill(1, 0) == 0 || errno != EPERM) return int{kCallFailed};
    return int{kPassed};
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
  status = run_in_child([&] {
    apply_or_exit(probing());
    ::kill(1, SIGTERM);
    return int{kCallSucceeded};
  });
  EXPECT_TRUE(killed_by_seccomp(status)) << describe_status(status);
}

// clone3 is not a kill: glibc falls back to clone when it says ENOSYS.
TEST(Seccomp, Clone3SaysEnosys) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  int status = run_in_child([] {
    apply_or_exit(domain_policy());
    return expect_failure(::syscall(SYS_clone3, nullptr, 0), ENOSYS, "clone3");
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

// ---- The mount namespace alone (seccomp off): an empty, read-only root. --------------------------

TEST(MountNamespace, RootIsEmptyAndReadOnly) {
  SKIP_UNLESS_ROOT();
  int status = run_in_child([] {
    apply_or_exit(domain_policy(/*seccomp=*/false));
    if (int r = expect_failure(::open("/etc/passwd", O_RDONLY), ENOENT, "open /etc/passwd"); r != kPassed) return r;
    if (int r = expect_failure(::open("/proc/self/status", O_RDONLY), ENOENT, "open /proc"); r != kPassed) return r;
    if (int r = expect_failure(::open("../../etc/passwd", O_RDONLY), ENOENT, "open ../../etc"); r != kPassed) return r;
    if (int r = expect_failure(::mkdir("/x", 0700), EROFS, "mkdir /x"); r != kPassed) return r;
    DIR* root = ::opendir("/");
    if (root == nullptr) return call_failed("opendir /");
    int entries = 0;
    while (dirent* e = ::readdir(root))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++entries;
    return entries == 0 ? int{kPassed} : int{kWrongResult};
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

// ---- The network namespace alone (seccomp off). -------------------------------------------------

int connect_to_loopback() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(s, reinterpret_cast<sockaddr*>(&to), sizeof to);
}

TEST(NetworkNamespace, ReachesNothing) {
  SKIP_UNLESS_ROOT();
  int status = run_in_child([] {
    apply_or_exit(domain_policy(/*seccomp=*/false));
    // Not even the loopback device is up in a new network namespace.
    return expect_failure(connect_to_loopback(), ENETUNREACH, "connect 127.0.0.1");
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

TEST(NetworkNamespace, NetworkPolicyKeepsTheHostsNetwork) {
  SKIP_UNLESS_ROOT();
  int status = run_in_child([] {
    Policy p = domain_policy(/*seccomp=*/false);
    p.network = true;
    apply_or_exit(p);
    // The host's loopback answers (nothing listens on the discard port: refused, not unreachable).
    return expect_failure(connect_to_loopback(), ECONNREFUSED, "connect 127.0.0.1");
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

// ---- Resource limits (seccomp off: getrlimit is not a data-path call). ---------------------------

TEST(Limits, NofileJustAboveTheHighestFdAndNoCore) {
  SKIP_UNLESS_ROOT();
  int status = run_in_child([] {
    if (::dup2(2, 77) != 77) return call_failed("dup2");
    int highest = 0;
    for (int fd = 0; fd < 4096; ++fd)
      if (::fcntl(fd, F_GETFD) >= 0) highest = fd;
    Policy p = domain_policy(/*seccomp=*/false);
    p.fd_margin = 5;
    p.max_processes = 64;
    apply_or_exit(p);
    rlimit nofile{}, core{}, nproc{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0 || ::getrlimit(RLIMIT_CORE, &core) != 0 ||
        ::getrlimit(RLIMIT_NPROC, &nproc) != 0)
      return call_failed("getrlimit");
    rlim_t want = static_cast<rlim_t>(highest) + 1 + 5;
    bool ok = nofile.rlim_cur == want && nofile.rlim_max == want && core.rlim_cur == 0 && core.rlim_max == 0 &&
              nproc.rlim_cur == 64 && nproc.rlim_max == 64;
    return ok ? int{kPassed} : int{kWrongResult};
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

// ---- /proc/<child>/status as the parent sees it. -------------------------------------------------

// What the parent sees of a child that confines itself (after `before`, which may make it
// unprivileged): apply()'s Report::skipped (sent over a pipe), /proc/<child>/status while the child
// waits, and how the child ended once let go.
struct Observed {
  unsigned skipped = ~0u;
  std::expected<Confinement, std::string> seen;
  int status = -1;
};

template <class Before>
Observed observe(const Policy& policy, Before before) {
  // `go` is a socket: the parent's send to a child that already died must not raise SIGPIPE.
  int ready[2], go[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) != 0)
    return {~0u, std::unexpected("pipes"), -1};
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!before()) ::_exit(kCallFailed);
    Report report = apply_or_exit(policy);
    if (::write(ready[1], &report.skipped, sizeof report.skipped) != sizeof report.skipped) ::_exit(kCallFailed);
    char c;
    ::_exit(::read(go[0], &c, 1) == 1 ? kPassed : kCallFailed);
  }
  ::close(ready[1]);
  ::close(go[0]);
  Observed o;
  if (::read(ready[0], &o.skipped, sizeof o.skipped) != sizeof o.skipped) o.skipped = ~0u;
  ::close(ready[0]);
  o.seen = describe(pid);
  char c = 'g';
  (void)::send(go[1], &c, 1, MSG_NOSIGNAL);
  ::close(go[1]);
  ::waitpid(pid, &o.status, 0);
  return o;
}

bool stay_root() { return true; }

bool become_unprivileged() {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(kUnprivilegedUid, kUnprivilegedUid, kUnprivilegedUid) == 0 &&
         ::setresuid(kUnprivilegedUid, kUnprivilegedUid, kUnprivilegedUid) == 0;
}

TEST(Status, RootChildEndsUnprivilegedWithoutCapabilities) {
  SKIP_UNLESS_ROOT();
  Observed o = observe(domain_policy(), stay_root);
  ASSERT_TRUE(o.seen) << o.seen.error();
  EXPECT_EQ(o.skipped, kSeccompInThisBuild ? 0u : static_cast<unsigned>(Step::seccomp));
  const uid_t id = data_plane_uid(kDataPlaneUidBase, 7);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(o.seen->uid[i], id) << "uid " << i;
    EXPECT_EQ(o.seen->gid[i], id) << "gid " << i;
  }
  EXPECT_EQ(o.seen->cap_eff, 0u);
  EXPECT_EQ(o.seen->cap_prm, 0u);
  EXPECT_EQ(o.seen->cap_inh, 0u);
  EXPECT_EQ(o.seen->cap_bnd, 0u);
  EXPECT_EQ(o.seen->cap_amb, 0u);
  EXPECT_EQ(o.seen->no_new_privs, 1);
  EXPECT_TRUE(exited_with(o.status, kPassed)) << describe_status(o.status);
}

TEST(Status, RootChildHasASeccompFilter) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  Observed o = observe(domain_policy(), stay_root);
  ASSERT_TRUE(o.seen) << o.seen.error();
  EXPECT_EQ(o.seen->seccomp, 2);
  EXPECT_TRUE(exited_with(o.status, kPassed)) << describe_status(o.status);
}

// ---- Not root: what an unprivileged process can do, and a report of the rest. -------------------

constexpr unsigned kRootOnlySteps = static_cast<unsigned>(Step::mount_namespace) |
                                    static_cast<unsigned>(Step::network_namespace) |
                                    static_cast<unsigned>(Step::ipc_namespace) |
                                    static_cast<unsigned>(Step::bounding_set);

TEST(Unprivileged, AppliesNoNewPrivsAndReportsSkippedSteps) {
  SKIP_UNLESS_ROOT();  // to become unprivileged first
  Observed o = observe(Policy{}, become_unprivileged);
  ASSERT_TRUE(o.seen) << o.seen.error();
  EXPECT_EQ(o.skipped, kRootOnlySteps | (kSeccompInThisBuild ? 0u : static_cast<unsigned>(Step::seccomp)));
  EXPECT_EQ(o.seen->uid[1], kUnprivilegedUid);
  EXPECT_EQ(o.seen->cap_eff, 0u);
  EXPECT_EQ(o.seen->no_new_privs, 1);
  EXPECT_TRUE(exited_with(o.status, kPassed)) << describe_status(o.status);
}

TEST(Unprivileged, ReportsAUidItCannotTake) {
  SKIP_UNLESS_ROOT();
  Observed o = observe(domain_policy(), become_unprivileged);
  EXPECT_TRUE(o.skipped & static_cast<unsigned>(Step::ids)) << o.skipped;
  EXPECT_TRUE(exited_with(o.status, kPassed)) << describe_status(o.status);
}

TEST(Unprivileged, InstallsTheSeccompFilter) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  Observed o = observe(Policy{}, become_unprivileged);
  ASSERT_TRUE(o.seen) << o.seen.error();
  EXPECT_EQ(o.seen->seccomp, 2);
  EXPECT_TRUE(exited_with(o.status, kPassed)) << describe_status(o.status);

  int status = run_in_child([] {
    if (!become_unprivileged()) return call_failed("becoming unprivileged");
    apply_or_exit(Policy{});
    ::open("/etc/passwd", O_RDONLY);
    return int{kCallSucceeded};
  });
  EXPECT_TRUE(killed_by_seccomp(status)) << describe_status(status);
}

// ---- Threads. ------------------------------------------------------------------------------------

// The per-thread steps refuse a process that already has threads.
TEST(Threads, RootStepsRefuseAMultithreadedProcess) {
  SKIP_UNLESS_ROOT();
  int status = run_in_child([] {
    int gate[2];
    if (::pipe(gate) != 0) return call_failed("pipe");
    std::thread waiter([&] { char c; [[maybe_unused]] const ssize_t n = ::read(gate[0], &c, 1); });
    auto r = apply(domain_policy());
    [[maybe_unused]] const ssize_t woke = ::write(gate[1], "x", 1);
    waiter.join();
    if (r) return int{kCallSucceeded};
    return r.error().find("threads") != std::string::npos ? int{kPassed} : int{kWrongResult};
  });
  EXPECT_TRUE(exited_with(status, kPassed)) << describe_status(status);
}

// The filter reaches a thread that existed before apply() (TSYNC).
TEST(Threads, FilterReachesAnEarlierThread) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  int status = run_in_child([] {
    if (!become_unprivileged()) return call_failed("becoming unprivileged");
    int gate[2];
    if (::pipe(gate) != 0) return call_failed("pipe");
    std::thread opener([&] {
      char c;
      if (::read(gate[0], &c, 1) == 1) ::open("/etc/passwd", O_RDONLY);
    });
    apply_or_exit(Policy{});
    [[maybe_unused]] const ssize_t woke = ::write(gate[1], "x", 1);
    opener.join();
    return int{kCallSucceeded};
  });
  EXPECT_TRUE(killed_by_seccomp(status)) << describe_status(status);
}

// A new process is killed, a new thread is not (clone with CLONE_THREAD, after clone3's ENOSYS).
TEST(Threads, ThreadStartsWhereForkIsKilled) {
  SKIP_UNLESS_ROOT();
  SKIP_WITHOUT_SECCOMP();
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  int status = run_in_child([&] {
    ::close(report[0]);
    apply_or_exit(domain_policy());
    int value = 0;
    std::thread([&] { value = 42; }).join();
    if (value != 42) return int{kWrongResult};
    if (::write(report[1], "T", 1) != 1) return call_failed("write");
    pid_t p = ::fork();
    if (p == 0) ::_exit(0);
    return int{kCallSucceeded};
  });
  ::close(report[1]);
  char c = 0;
  EXPECT_EQ(::read(report[0], &c, 1), 1);
  ::close(report[0]);
  EXPECT_EQ(c, 'T') << "the thread did not run";
  EXPECT_TRUE(killed_by_seccomp(status)) << describe_status(status);
}

}  // namespace
}  // namespace pvback::sandbox
