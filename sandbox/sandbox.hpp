// The confinement a data-plane process applies to itself once it holds every file descriptor,
// mapping and io_uring it will use, just before it starts reading guest-controlled memory.
//
// What apply() confines (as root, in this order):
//   - a new mount namespace whose root is an empty, read-only tmpfs (pivot_root, the host's root
//     detached): no path names anything of the host, /proc included;
//   - a new, empty network namespace (unless Policy::network) and IPC namespace: AF_INET sockets
//     reach nothing, abstract AF_UNIX names of the host are gone; already-connected sockets (the
//     control part's, pvback-sim's) keep working;
//   - RLIMIT_NOFILE just above the highest open fd, RLIMIT_CORE 0 (guest memory never lands in a
//     core file), RLIMIT_NPROC if asked;
//   - every capability dropped from the bounding and ambient sets, the supplementary groups
//     emptied, the uid/gid switched to an unprivileged per-domain id, then the permitted,
//     effective and inheritable sets verified empty;
//   - no_new_privs, then a seccomp filter (sandbox/seccomp_filter.cpp) that kills the process on
//     any system call the data path does not make: no open, socket, connect, exec, fork, ptrace,
//     mount, io_uring_setup, bpf, ... Threads can still be created, on all threads (TSYNC).
//
// What it cannot confine:
//   - /dev/xen/gntdev has no per-domain restriction: a data plane may map any grant any domain
//     offers dom0 through the gntdev fd it holds (/dev/xen/evtchn does: IOCTL_EVTCHN_RESTRICT_DOMID,
//     which is the caller's to use before apply()). The ioctl filter allows the request numbers of
//     the gntdev/evtchn/block/FIONREAD/FIONBIO ioctls but cannot tell which fd a request goes to,
//     nor look inside its argument struct (seccomp sees pointers, not what they point to).
//   - io_uring operations run in the kernel without passing the seccomp filter: a ring created
//     before apply() could submit IORING_OP_OPENAT or IORING_OP_SOCKET. The data planes' rings
//     (storage/loop.cpp; netback/tap_writer.cpp, writes only) are created disabled and restricted
//     (IORING_REGISTER_RESTRICTIONS) to the operations the data path submits, so the kernel refuses
//     those; the empty root and the empty
//     network namespace (which io_uring's workers share) stop them once more.
//   - fds received later over a socket (SCM_RIGHTS, as pvback-sim passes shared memory) are
//     usable: what they grant is the sender's decision.
//   - read/write/sendmsg are not argument-filtered: every fd the process holds stays usable as is.
//
// The namespace, id and capability steps act on the calling thread (unshare(CLONE_NEWNS) even
// refuses a shared fs_struct), so with them apply() wants a single-threaded process and fails
// otherwise; the seccomp filter alone is synchronised to every thread.
#pragma once
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace pvback::sandbox {

// The first uid (and gid) of the data planes' range: one uid per domain, base + domid. Just past
// systemd-nspawn's container range (which ends at 0x6FFF0000), as QEMU's dm_restrict gives each
// domain's device model a uid of its own: two domains' data planes then cannot signal, ptrace or
// share files with each other.
inline constexpr uid_t kDataPlaneUidBase = 0x70000000;

[[nodiscard]] constexpr uid_t data_plane_uid(uid_t base, std::uint16_t domid) { return base + domid; }

// True when this build can install the seccomp filter. AddressSanitizer's runtime makes system
// calls the data path never does (LeakSanitizer ptrace()s the process at exit, the symbolizer
// reads /proc/self/maps and execs llvm-symbolizer), so a sanitized build skips the filter and
// says so in Report::notices.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSeccompInThisBuild = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSeccompInThisBuild = false;
#else
inline constexpr bool kSeccompInThisBuild = true;
#endif
#else
inline constexpr bool kSeccompInThisBuild = true;
#endif

// Which data path the seccomp filter allows (seccomp_filter.cpp): pvback-blk's storage (pread/
// pwrite, flushes, fallocate, io_uring, the block-device ioctls), or pvback-net's, which needs
// none of those (the grant and event-channel handles, a TAP queue's read/write, sockets already
// connected).
// BlockNetwork: pvback-blk's storage reached over connections the data plane makes itself, as
// librbd does to a Ceph cluster's OSDs (sockets of the internet families, connecting them, their
// options).
enum class Profile { Block, Net, BlockNetwork };

struct Policy {
  std::optional<uid_t> uid;  // setresuid to it (never 0); the process's own uid when empty
  std::optional<gid_t> gid;  // setresgid to it, after emptying the supplementary groups
  bool mount_namespace = true;  // an empty, read-only root
  bool network = false;         // false: a new network namespace with nothing in it
  bool ipc_namespace = true;
  unsigned fd_margin = 16;               // RLIMIT_NOFILE = highest open fd + 1 + fd_margin
  std::optional<rlim_t> max_processes;  // RLIMIT_NPROC (threads count against it); left alone if empty
  bool seccomp = true;
  Profile profile = Profile::Block;
  // The process already runs threads (a library's, librbd's): no namespace can be entered then
  // (mount_namespace, ipc_namespace must be off and network on), the capability bounding set is
  // dropped on the calling thread only (an exec, which it alone would matter for, is refused by
  // the filter anyway), the ids are switched on every thread (glibc's setxid broadcast, which
  // empties every thread's capabilities), checked on each in /proc/self/task, and no_new_privs
  // and the filter reach every thread (TSYNC).
  bool threads_running = false;
  // kill(pid, 0), which only asks whether a process exists, passes the filter (any other kill
  // still kills). The simulated hypervisor's grant pin locks need it: a process that finds a lock
  // held checks whether its holder is alive (a holder SIGKILLed while holding it is taken over).
  // Only on the simulated platform; on Xen nothing of the data path asks.
  bool probe_processes = false;
};

// Steps apply() can skip: not root (namespaces, ids, bounding set), or a sanitized build (seccomp).
enum class Step : unsigned {
  mount_namespace = 1u << 0,
  network_namespace = 1u << 1,
  ipc_namespace = 1u << 2,
  ids = 1u << 3,
  bounding_set = 1u << 4,
  seccomp = 1u << 5,
};

struct Report {
  unsigned skipped = 0;               // Step bits
  std::vector<std::string> notices;  // one line per skipped step or fallback, for the caller's log
  [[nodiscard]] bool was_skipped(Step s) const { return (skipped & static_cast<unsigned>(s)) != 0; }
};

// Confines the calling process by `policy`. As root every step runs, each failure is an error
// naming the step and errno. Not as root it does what an unprivileged process can (capability
// sets cleared, rlimits, no_new_privs, seccomp) and reports the rest as skipped.
[[nodiscard]] std::expected<Report, std::string> apply(const Policy& policy);

// A process's confinement as /proc/<pid>/status shows it. /proc is unreachable from inside the
// sandbox: the control part (or a test) reads its child's.
struct Confinement {
  uid_t uid[4] = {};  // real, effective, saved, filesystem
  gid_t gid[4] = {};
  std::uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;  // 0 none, 1 strict, 2 filter
  int threads = 0;
};

[[nodiscard]] std::expected<Confinement, std::string> describe(pid_t pid);
// The same for one thread `tid` of `pid` (/proc/<pid>/task/<tid>/status).
[[nodiscard]] std::expected<Confinement, std::string> describe_task(pid_t pid, pid_t tid);

}  // namespace pvback::sandbox
