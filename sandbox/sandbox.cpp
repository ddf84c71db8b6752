#include "sandbox/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "sandbox/seccomp_filter.hpp"

namespace pvback::sandbox {
namespace {

using Result = std::expected<void, std::string>;

std::unexpected<std::string> fail(std::string_view step, int err) {
  std::string s(step);
  s += ": ";
  s += std::strerror(err);
  return std::unexpected(std::move(s));
}

// A small file of /proc or /sys, read whole (they are not seekable and have no size).
std::optional<std::string> read_small_file(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  if (n < 0) return std::nullopt;
  return out;
}

template <class T>
bool parse_number(std::string_view s, T& out, int base = 10) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && end != s.data();
}

// The value after "Key:" in a /proc/<pid>/status text, or empty.
std::string_view status_field(std::string_view status, std::string_view key) {
  std::size_t pos = 0;
  while (pos < status.size()) {
    std::size_t eol = status.find('\n', pos);
    if (eol == std::string_view::npos) eol = status.size();
    std::string_view line = status.substr(pos, eol - pos);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':') return line.substr(key.size() + 1);
    pos = eol + 1;
  }
  return {};
}

// What apply() reads before the mount namespace hides /proc.
struct Facts {
  int cap_last_cap = -1;  // -1: unknown, drop until PR_CAPBSET_DROP says EINVAL
  int highest_fd = -1;
  int threads = 1;
};

int highest_open_fd() {
  int highest = -1;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    int own = ::dirfd(dir);
    while (dirent* e = ::readdir(dir)) {
      int fd = -1;
      if (parse_number(std::string_view(e->d_name), fd) && fd != own && fd > highest) highest = fd;
    }
    ::closedir(dir);
    return highest;
  }
  // No /proc: ask every fd below the soft limit.
  rlimit lim{};
  int limit = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 1u << 20 ? static_cast<int>(lim.rlim_cur) : 1 << 20;
  for (int fd = 0; fd < limit; ++fd)
    if (::fcntl(fd, F_GETFD) >= 0) highest = fd;
  return highest;
}

Facts read_facts() {
  Facts f;
  if (auto text = read_small_file("/proc/sys/kernel/cap_last_cap")) parse_number(*text, f.cap_last_cap);
  if (auto status = read_small_file("/proc/self/status")) parse_number(status_field(*status, "Threads"), f.threads);
  f.highest_fd = highest_open_fd();
  return f;
}

// The empty, read-only root: a tmpfs mounted read-only on a directory that exists, made the root
// with pivot_root(".", ".") (the old root ends up stacked on it and is then detached, so nothing of
// the host's file system stays reachable). Needs the new mount namespace and CAP_SYS_ADMIN.
Result enter_empty_root(Report& report) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return fail("mount: making / private", errno);
  const char* target = nullptr;
  for (const char* dir : {"/tmp", "/mnt", "/run"}) {
    struct stat st{};
    if (::stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
      target = dir;
      break;
    }
  }
  if (target == nullptr) return fail("mount: no /tmp, /mnt or /run to mount the empty root on", ENOENT);
  if (::mount("pvback-sandbox", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") != 0)
    return fail(std::string("mount: a tmpfs on ") + target, errno);
  if (::chdir(target) != 0) return fail(std::string("chdir to ") + target, errno);
  if (::syscall(SYS_pivot_root, ".", ".") == 0) {
    if (::umount2(".", MNT_DETACH) != 0) return fail("umount2: detaching the old root", errno);
  } else if (errno == EINVAL) {
    // The host's root is the initial rootfs (an initramfs never pivoted), which pivot_root refuses.
    // chroot leaves the old root mounted in the namespace, out of reach without CAP_SYS_CHROOT.
    if (::chroot(".") != 0) return fail("chroot into the empty root", errno);
    report.notices.emplace_back("sandbox: pivot_root refused (rootfs?): chroot instead, the host's root stays mounted");
  } else {
    return fail("pivot_root into the empty root", errno);
  }
  if (::chdir("/") != 0) return fail("chdir /", errno);
  return {};
}

Result set_limit(int resource, rlim_t value, const char* step) {
  rlimit lim{value, value};
  if (::setrlimit(resource, &lim) != 0) return fail(step, errno);
  return {};
}

Result set_limits(const Policy& policy, const Facts& facts) {
  rlim_t nofile = static_cast<rlim_t>(facts.highest_fd + 1) + policy.fd_margin;
  rlimit current{};
  // An unprivileged process cannot raise its hard limit: never ask for more than it has.
  if (::getrlimit(RLIMIT_NOFILE, &current) == 0 && current.rlim_max != RLIM_INFINITY && nofile > current.rlim_max)
    nofile = current.rlim_max;
  if (auto r = set_limit(RLIMIT_NOFILE, nofile, "setrlimit RLIMIT_NOFILE"); !r) return r;
  if (auto r = set_limit(RLIMIT_CORE, 0, "setrlimit RLIMIT_CORE"); !r) return r;
  if (policy.max_processes)
    if (auto r = set_limit(RLIMIT_NPROC, *policy.max_processes, "setrlimit RLIMIT_NPROC"); !r) return r;
  return {};
}

// Needs CAP_SETPCAP, so before the uid switch takes it away.
Result drop_bounding_set(const Facts& facts) {
  int last = facts.cap_last_cap >= 0 ? facts.cap_last_cap : 63;
  for (int cap = 0; cap <= last; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
    if (errno == EINVAL && facts.cap_last_cap < 0) break;  // past the kernel's last capability
    return fail("prctl PR_CAPBSET_DROP " + std::to_string(cap), errno);
  }
  return {};
}

Result switch_ids(const Policy& policy) {
  if (policy.uid == uid_t{0} || policy.gid == gid_t{0}) return fail("switching ids: uid/gid 0 confines nothing", EINVAL);
  if (::setgroups(0, nullptr) != 0) return fail("setgroups", errno);
  if (policy.gid && ::setresgid(*policy.gid, *policy.gid, *policy.gid) != 0) return fail("setresgid", errno);
  if (policy.uid && ::setresuid(*policy.uid, *policy.uid, *policy.uid) != 0) return fail("setresuid", errno);
  uid_t r = 0, e = 0, s = 0;
  if (::getresuid(&r, &e, &s) != 0) return fail("getresuid", errno);
  if (policy.uid && (r != *policy.uid || e != *policy.uid || s != *policy.uid)) return fail("getresuid after setresuid", EPERM);
  if (policy.uid && (r == 0 || e == 0 || s == 0)) return fail("getresuid: still uid 0", EPERM);
  gid_t gr = 0, ge = 0, gs = 0;
  if (::getresgid(&gr, &ge, &gs) != 0) return fail("getresgid", errno);
  if (policy.gid && (gr != *policy.gid || ge != *policy.gid || gs != *policy.gid)) return fail("getresgid after setresgid", EPERM);
  return {};
}

// Empties the permitted, effective and inheritable sets (lowering them needs no privilege) and
// checks they are empty: a root process that keeps its uid would otherwise keep its capabilities.
Result clear_capability_sets() {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return fail("prctl PR_CAP_AMBIENT_CLEAR_ALL", errno);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capset, &header, data) != 0) return fail("capset (empty sets)", errno);
  header = {_LINUX_CAPABILITY_VERSION_3, 0};
  if (::syscall(SYS_capget, &header, data) != 0) return fail("capget", errno);
  for (const auto& d : data)
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return fail("capget: capabilities left", EPERM);
  return {};
}

// Every thread of the process runs under the policy's uid with no capability in its permitted,
// effective or ambient sets (as /proc/self/task/<tid>/status tells).
Result check_every_thread(const Policy& policy) {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return fail("opendir /proc/self/task", errno);
  Result result;
  unsigned seen = 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/status";
    auto text = read_small_file(path.c_str());
    if (!text) continue;  // the thread ended meanwhile
    ++seen;
    std::uint64_t prm = 1, eff = 1, amb = 1;
    uid_t uid = 0;
    const bool parsed = parse_number(status_field(*text, "CapPrm"), prm, 16) &&
                        parse_number(status_field(*text, "CapEff"), eff, 16) &&
                        parse_number(status_field(*text, "CapAmb"), amb, 16) && parse_number(status_field(*text, "Uid"), uid);
    if (!parsed || prm != 0 || eff != 0 || amb != 0 || (policy.uid && uid != *policy.uid)) {
      result = fail(std::string("thread ") + e->d_name + " kept capabilities or its uid", EPERM);
      break;
    }
  }
  ::closedir(dir);
  if (result && seen == 0) return fail("no thread found in /proc/self/task", ENOENT);
  return result;
}

void skip(Report& report, Step step, const char* why) {
  report.skipped |= static_cast<unsigned>(step);
  report.notices.emplace_back(std::string("sandbox: skipped ") + why);
}

}  // namespace

std::expected<Report, std::string> apply(const Policy& policy) {
  Report report;
  const Facts facts = read_facts();  // before the mount namespace hides /proc
  const bool root = ::geteuid() == 0;

  unsigned namespaces = 0;
  if (policy.mount_namespace) namespaces |= CLONE_NEWNS;
  if (!policy.network) namespaces |= CLONE_NEWNET;
  if (policy.ipc_namespace) namespaces |= CLONE_NEWIPC;
  if (policy.threads_running) {
    if (namespaces != 0) return std::unexpected(std::string("sandbox: a process with threads enters no namespace"));
  } else if (root && facts.threads > 1) {
    return std::unexpected("sandbox: " + std::to_string(facts.threads) +
                           " threads; the namespace, id and capability steps act on one thread only");
  }

  if (root) {
    if (namespaces != 0 && ::unshare(static_cast<int>(namespaces)) != 0) return fail("unshare (namespaces)", errno);
    if (policy.mount_namespace)
      if (auto r = enter_empty_root(report); !r) return std::unexpected(r.error());
  } else {
    if (policy.mount_namespace) skip(report, Step::mount_namespace, "the mount namespace (not root)");
    if (!policy.network) skip(report, Step::network_namespace, "the network namespace (not root)");
    if (policy.ipc_namespace) skip(report, Step::ipc_namespace, "the IPC namespace (not root)");
  }

  if (auto r = set_limits(policy, facts); !r) return std::unexpected(r.error());

  if (root) {
    if (auto r = drop_bounding_set(facts); !r) return std::unexpected(r.error());
    if (auto r = switch_ids(policy); !r) return std::unexpected(r.error());
  } else {
    skip(report, Step::bounding_set, "dropping the capability bounding set (not root)");
    uid_t r = 0, e = 0, s = 0;
    ::getresuid(&r, &e, &s);
    if (policy.uid && (r != *policy.uid || e != *policy.uid || s != *policy.uid))
      skip(report, Step::ids, "switching to the policy's uid (not root)");
    else if (policy.gid && ::getgid() != *policy.gid)
      skip(report, Step::ids, "switching to the policy's gid (not root)");
  }
  if (auto r = clear_capability_sets(); !r) return std::unexpected(r.error());
  if (policy.threads_running && root)
    if (auto r = check_every_thread(policy); !r) return std::unexpected(r.error());

  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("prctl PR_SET_NO_NEW_PRIVS", errno);

  if (!policy.seccomp) {
    skip(report, Step::seccomp, "the seccomp filter (the policy turns it off)");
  } else if (!kSeccompInThisBuild) {
    skip(report, Step::seccomp, "the seccomp filter (AddressSanitizer build)");
  } else if (auto r = detail::install_seccomp_filter(::getpid(), policy); !r) {
    return std::unexpected(r.error());
  }
  return report;
}

namespace {

std::expected<Confinement, std::string> describe_status(const std::string& path) {
  auto text = read_small_file(path.c_str());
  if (!text) return fail("reading " + path, errno);
  Confinement c;
  auto ids = [&](const char* key, auto (&out)[4]) {
    std::string_view v = status_field(*text, key);
    for (auto& id : out) {
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), id);
      if (ec != std::errc()) return false;
      v.remove_prefix(static_cast<std::size_t>(end - v.data()));
    }
    return true;
  };
  bool ok = ids("Uid", c.uid) && ids("Gid", c.gid) && parse_number(status_field(*text, "CapInh"), c.cap_inh, 16) &&
            parse_number(status_field(*text, "CapPrm"), c.cap_prm, 16) &&
            parse_number(status_field(*text, "CapEff"), c.cap_eff, 16) &&
            parse_number(status_field(*text, "CapBnd"), c.cap_bnd, 16) &&
            parse_number(status_field(*text, "CapAmb"), c.cap_amb, 16) &&
            parse_number(status_field(*text, "NoNewPrivs"), c.no_new_privs) &&
            parse_number(status_field(*text, "Seccomp"), c.seccomp) &&
            parse_number(status_field(*text, "Threads"), c.threads);
  if (!ok) return std::unexpected("parsing " + path + ": a field is missing or malformed");
  return c;
}

}  // namespace

std::expected<Confinement, std::string> describe(pid_t pid) {
  return describe_status("/proc/" + std::to_string(pid) + "/status");
}

std::expected<Confinement, std::string> describe_task(pid_t pid, pid_t tid) {
  return describe_status("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
}

}  // namespace pvback::sandbox
