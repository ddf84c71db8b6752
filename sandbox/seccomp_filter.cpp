// The system calls a confined data plane may make. Anything not listed kills the whole process
// (SCMP_ACT_KILL_PROCESS): a data plane that makes an unexpected call is either broken or taken
// over, and in both cases its control part restarts it. Other architectures' ABIs (i386 and x32
// calls on x86_64) kill too (libseccomp's bad-arch action).
#include "sandbox/seccomp_filter.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <xen/xen.h>  // domid_t, which <xen/sys/evtchn.h> uses without including
#include <xen/sys/evtchn.h>
#include <xen/sys/gntdev.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace pvback::sandbox::detail {
namespace {

// Allowed whatever their arguments, for every data plane. Everything here works on what the
// process already holds (fds, its own memory, its own threads) or creates nothing that reaches
// outside it.
constexpr const char* kAllowed[] = {
    // The data path on fds opened before apply(): a TAP queue, the control socket, gntdev/evtchn
    // (or pvback-sim's sockets and shared memory).
    "read", "write", "readv", "writev", "close", "close_range", "fstat",
    // Entering rings set up before apply() (io_uring_setup itself is not allowed): a vbd's storage
    // loop, a TAP queue's batched writes (netback/tap_writer.hpp). Each ring is restricted to its
    // own operations when it is made.
    "io_uring_enter",
    // The simulated hypervisor and the control part talk over already-connected AF_UNIX sockets;
    // pvback-sim passes shared memory as SCM_RIGHTS fds, which recvmsg receives.
    "sendmsg", "recvmsg", "sendto", "recvfrom",
    // A data plane whose control part died takes its successor's connection on the listening
    // socket it was given (nothing can be bound or connected: no path is reachable).
    "accept4",
    // Event loops: waiting, and the fds they create themselves (none of them names a file).
    "poll", "ppoll", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd4",
    // Memory: malloc, thread stacks, grant and shared-memory mappings (mmap and mprotect are below,
    // with PROT_EXEC refused).
    "munmap", "mremap", "madvise", "brk", "membarrier",
    // Threads and their synchronisation (clone is below, clone3 fails with ENOSYS).
    "futex", "set_robust_list", "rseq", "sched_yield", "sched_getaffinity",
    // Time.
    "clock_gettime", "clock_getres", "gettimeofday", "clock_nanosleep", "nanosleep",
    // Signals: handlers, masks, the alternate stack, returning from a handler.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
    // Who am I, randomness, usage figures for statistics.
    "getpid", "gettid", "getrandom", "getrusage", "sysinfo",
    "exit", "exit_group",
};

// pvback-blk's storage (Profile::Block) on top of kAllowed.
constexpr const char* kStorageAllowed[] = {
    // Storage and recovery records, on fds opened before apply().
    "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "lseek",
    // Storage: flushes, discards/zeroing of a file (fallocate), a recovery record's size.
    "fsync", "fdatasync", "sync_file_range", "fallocate", "ftruncate",
    // Rings set up before apply(): registering buffers and files (entering them: kAllowed).
    "io_uring_register",
};

// Profile::BlockNetwork on top of those: librbd's connections to a Ceph cluster's monitors and
// OSDs, made and remade whenever it wants one (socket() itself is below: internet families only).
constexpr const char* kNetworkAllowed[] = {
    "connect", "setsockopt", "getsockopt", "getsockname", "getpeername", "shutdown",
};

// Request numbers ioctl() may carry (the kernel reads the request as 32 bits: compared so).
// libxengnttab (from <xen/sys/gntdev.h>, Debian's libxen-dev; the DMA-buf requests are left out)
// and libxenevtchn (<xen/sys/evtchn.h>; BIND_VIRQ is the toolstack's, not a backend's).
constexpr unsigned long kIoctls[] = {
    IOCTL_GNTDEV_MAP_GRANT_REF, IOCTL_GNTDEV_UNMAP_GRANT_REF, IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR,
    IOCTL_GNTDEV_SET_MAX_GRANTS, IOCTL_GNTDEV_SET_UNMAP_NOTIFY, IOCTL_GNTDEV_GRANT_COPY,
    IOCTL_EVTCHN_BIND_INTERDOMAIN, IOCTL_EVTCHN_BIND_UNBOUND_PORT, IOCTL_EVTCHN_UNBIND, IOCTL_EVTCHN_NOTIFY,
    IOCTL_EVTCHN_RESET, IOCTL_EVTCHN_RESTRICT_DOMID,
    // Sockets and pipes: bytes waiting, non-blocking mode.
    FIONREAD, FIONBIO,
};
// Profile::Block: storage/file_engine's discards of a block device, its size and block sizes.
constexpr unsigned long kStorageIoctls[] = {BLKDISCARD, BLKSECDISCARD, BLKZEROOUT, BLKGETSIZE64, BLKSSZGET, BLKPBSZGET};

// fcntl commands: flags of an fd and of its open file. Not F_DUPFD*: no new fds from old ones.
constexpr int kFcntlCommands[] = {F_GETFD, F_SETFD, F_GETFL, F_SETFL};

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

std::unexpected<std::string> fail(const std::string& step, int rc) {
  return std::unexpected("seccomp: " + step + ": " + std::strerror(rc < 0 ? -rc : rc));
}

constexpr std::uint64_t kLow32 = 0xffffffffu;

}  // namespace

std::expected<void, std::string> install_seccomp_filter(pid_t self, const Policy& policy) {
  Context ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) return fail("seccomp_init", ENOMEM);
  scmp_filter_ctx c = ctx.get();
  // Every thread gets the filter, or none does and seccomp_load fails.
  if (int rc = seccomp_attr_set(c, SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) return fail("TSYNC attribute", rc);
  // A binary tree of syscall numbers instead of a linear list (libseccomp >= 2.5); optional.
  (void)seccomp_attr_set(c, SCMP_FLTATR_CTL_OPTIMIZE, 2);

  auto add = [&](const char* name, std::uint32_t action, unsigned count, const scmp_arg_cmp* args) -> std::expected<void, std::string> {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return fail(std::string("unknown system call ") + name, EINVAL);
    if (int rc = seccomp_rule_add_array(c, action, nr, count, args); rc != 0) return fail(std::string("rule for ") + name, rc);
    return {};
  };
  auto allow_if = [&](const char* name, scmp_arg_cmp cmp) { return add(name, SCMP_ACT_ALLOW, 1, &cmp); };

  const bool network = policy.profile == Profile::BlockNetwork;
  const bool storage = policy.profile == Profile::Block || network;
  for (const char* name : kAllowed)
    if (auto r = add(name, SCMP_ACT_ALLOW, 0, nullptr); !r) return r;
  if (storage)
    for (const char* name : kStorageAllowed)
      if (auto r = add(name, SCMP_ACT_ALLOW, 0, nullptr); !r) return r;
  if (network) {
    for (const char* name : kNetworkAllowed)
      if (auto r = add(name, SCMP_ACT_ALLOW, 0, nullptr); !r) return r;
    for (int family : {AF_INET, AF_INET6})
      if (auto r = allow_if("socket", SCMP_A0(SCMP_CMP_EQ, static_cast<std::uint64_t>(family))); !r) return r;
    // This data plane keeps the host's file system (it has threads before it confines itself), and
    // glibc opens files of it behind librbd's back (a thread librbd starts later asks
    // sysconf(_SC_NPROCESSORS_ONLN), which reads /sys/devices/system/cpu/online and falls back to
    // sched_getaffinity): opening fails with EACCES instead of killing it. Nothing is opened.
    for (const char* name : {"open", "openat", "openat2"})
      if (auto r = add(name, SCMP_ACT_ERRNO(EACCES), 0, nullptr); !r) return r;
  }

  for (unsigned long request : kIoctls)
    if (auto r = allow_if("ioctl", SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, request & kLow32)); !r) return r;
  if (storage)
    for (unsigned long request : kStorageIoctls)
      if (auto r = allow_if("ioctl", SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, request & kLow32)); !r) return r;
  // glibc's isatty() (stdio asks it of a stream's fd) must fail softly, not kill.
  {
    scmp_arg_cmp tcgets = SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, TCGETS);
    if (auto r = add("ioctl", SCMP_ACT_ERRNO(ENOTTY), 1, &tcgets); !r) return r;
  }
  for (int cmd : kFcntlCommands)
    if (auto r = allow_if("fcntl", SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, static_cast<std::uint64_t>(cmd))); !r) return r;

  // glibc's fstat() is newfstatat(fd, "", st, AT_EMPTY_PATH). The path itself cannot be checked
  // (a pointer); with a non-empty one it would stat a name under the empty root.
  if (auto r = allow_if("newfstatat", SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH)); !r) return r;

  // Mappings and protection changes, never executable: no code can be made from data.
  for (const char* name : {"mmap", "mprotect"})
    if (auto r = allow_if(name, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)); !r) return r;

  // Threads, not processes: clone must carry CLONE_THREAD. glibc tries clone3 first, whose flags
  // sit in a struct seccomp cannot read: ENOSYS makes glibc fall back to clone.
  if (auto r = allow_if("clone", SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)); !r) return r;
  if (auto r = add("clone3", SCMP_ACT_ERRNO(ENOSYS), 0, nullptr); !r) return r;

  // abort() and raise() signal the calling thread through tgkill(getpid(), gettid(), sig); no
  // other process may be signalled.
  if (auto r = allow_if("tgkill", SCMP_A0(SCMP_CMP_EQ, static_cast<std::uint64_t>(self))); !r) return r;
  // Asking whether a process exists (signal 0) on the simulated platform: see Policy.
  if (policy.probe_processes)
    if (auto r = allow_if("kill", SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, 0)); !r) return r;

  // Naming threads (pthread_setname_np on the calling thread) and reading the name back.
  for (int option : {PR_SET_NAME, PR_GET_NAME})
    if (auto r = allow_if("prctl", SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, static_cast<std::uint64_t>(option))); !r) return r;

  if (int rc = seccomp_load(c); rc != 0) return fail("seccomp_load", rc);
  return {};
}

}  // namespace pvback::sandbox::detail
