#include "supervisor/supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "plane/cgroup_leaf.hpp"
#include "plane/process.hpp"
#include "plane/protocols.hpp"
#include "sandbox/cgroup.hpp"

namespace pvback::supervisor {

namespace {

// Refused entries remembered (and so logged once each) per scan; beyond that they are dropped
// silently, so a toolstack gone mad cannot grow our memory or the journal without bound.
constexpr std::size_t kMaxRefusedRemembered = 1024;

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped (status " + std::to_string(status) + ")";
}

}  // namespace

Supervisor::Supervisor(xenbus::XenStore& xs, DomId self, Options options, std::optional<HostConfig> host,
                       ControlServer control, Tuning tuning)
    : xs_(xs),
      self_(self),
      options_(std::move(options)),
      host_(std::move(host)),
      control_(std::move(control)),
      tuning_(std::move(tuning)) {}

std::vector<std::string> Supervisor::directories(DeviceType type) const {
  const std::string base = "/local/domain/" + std::to_string(self_) + "/backend/";
  if (type == DeviceType::Vif) return {base + "vif"};
  // Disks: backend/vbd (what xen-blkback serves) and/or backend/vbd3 (what Xen 4.19+ writes for
  // backendtype=tap), as the operator chose (--vbd-dir).
  std::vector<std::string> out;
  for (const std::string& d : options_.vbd_dirs) out.push_back(base + d);
  return out;
}

bool Supervisor::watch_all() {
  for (DeviceType type : {DeviceType::Vbd, DeviceType::Vif}) {
    if (type == DeviceType::Vbd ? !options_.serve_vbd : !options_.serve_vif) continue;
    // A path that does not exist yet may be watched: the first device creates it.
    for (const std::string& dir : directories(type))
      if (int e = xs_.watch(dir, kWatchToken); e != 0) {
        PVBACK_LOG(Error, "cannot watch %s: %s", dir.c_str(), std::strerror(e));
        return false;
      }
  }
  watching_ = true;
  return true;
}

void Supervisor::unwatch_all() {
  if (!watching_) return;
  watching_ = false;
  for (DeviceType type : {DeviceType::Vbd, DeviceType::Vif}) {
    if (type == DeviceType::Vbd ? !options_.serve_vbd : !options_.serve_vif) continue;
    for (const std::string& dir : directories(type)) xs_.unwatch(dir, kWatchToken);
  }
}

void Supervisor::rescan() {
  std::set<Key> seen;
  std::set<std::string> refused;
  if (options_.serve_vbd) scan_type(DeviceType::Vbd, seen, refused);
  if (options_.serve_vif) scan_type(DeviceType::Vif, seen, refused);
  // Without a "state" node (or a node at all) a device is gone; a backend still running follows
  // the removal itself and is forgotten when it exits. One whose backend died and waited for its
  // restart may have left a data plane serving, and its control group: they go now.
  std::erase_if(devices_, [&](const auto& entry) {
    if (seen.contains(entry.first) || entry.second.pid > 0 || entry.second.service) return false;
    if (!entry.second.finished) {
      PVBACK_LOG(Info, "%s: device removed", entry.second.name.c_str());
      stop_orphan(entry.first);
    }
    return true;
  });
  refused_ = std::move(refused);
}

void Supervisor::scan_type(DeviceType type, std::set<Key>& seen, std::set<std::string>& refused) {
  for (const std::string& dir : directories(type)) scan_directory(type, dir, seen, refused);
}

void Supervisor::scan_directory(DeviceType type, const std::string& dir, std::set<Key>& seen,
                                std::set<std::string>& refused) {
  auto refuse = [&](const std::string& what, const char* why) {
    if (refused.size() >= kMaxRefusedRemembered) return;
    refused.insert(what);
    if (!refused_.contains(what)) PVBACK_LOG(Warning, "ignoring %s: %s", what.c_str(), why);
  };
  auto domids = xs_.directory(dir);
  if (!domids) {
    if (domids.error() != ENOENT) PVBACK_LOG(Warning, "cannot list %s: %s", dir.c_str(), std::strerror(domids.error()));
    return;
  }
  // Every entry costs a XenStore round trip; the toolstack never writes more than this.
  const std::size_t budget = std::max<std::size_t>(4096, std::size_t{options_.max_devices} * 4);
  std::size_t examined = 0;
  for (const auto& domid_name : *domids) {
    if (++examined > budget) {
      refuse(dir, "too many entries; the rest are not examined");
      return;
    }
    auto domid = parse_domid_entry(domid_name);
    if (!domid) {
      refuse(dir + "/" + printable(domid_name), "not a domain id");
      continue;
    }
    const std::string domid_dir = dir + "/" + domid_name;
    auto devids = xs_.directory(domid_dir);
    if (!devids) continue;  // removed meanwhile
    for (const auto& devid_name : *devids) {
      if (++examined > budget) {
        refuse(dir, "too many entries; the rest are not examined");
        return;
      }
      auto devid = parse_devid_entry(devid_name);
      if (!devid) {
        refuse(domid_dir + "/" + printable(devid_name), "not a device id");
        continue;
      }
      const Key key{type, *domid, *devid};
      const std::string path = domid_dir + "/" + devid_name;
      auto state = xs_.read(path + "/state");
      if (!state) continue;  // not a device (yet): libxl writes "state" with the other keys
      seen.insert(key);
      auto it = devices_.find(key);
      const bool closed = *state == "6";
      if (it == devices_.end()) {
        // Closed and offline: the toolstack is tearing it down; nothing to serve. Closed and
        // online is a guest between two connections, which a backend must be there for.
        if (closed && xs_.read(path + "/online").value_or("0") != "1") continue;
        if (devices_.size() >= options_.max_devices) {
          refuse(path, ("--max-devices " + std::to_string(options_.max_devices) + " reached; not served").c_str());
          continue;
        }
        it = devices_.emplace(key, Device(options_)).first;
        it->second.path = path;
        it->second.name = std::string(type_name(type)) + " " + std::to_string(*domid) + "/" + devid_name;
      }
      Device& d = it->second;
      if (d.finished) {
        if (closed) continue;
        d.finished = false;  // re-plugged: a new device as far as restarts go
        d.restart_pending = false;
        d.backoff = Backoff(options_);
      }
      if (d.pid > 0 || d.service) continue;
      if (d.restart_pending && Clock::now() < d.restart_at) continue;
      start_backend(d, type);
    }
  }
}

void Supervisor::spawn(Device& device, DeviceType type) {
  const std::string& binary = type == DeviceType::Vbd ? options_.blk_binary : options_.net_binary;
  const auto& extra = type == DeviceType::Vbd ? options_.blk_args : options_.net_args;
  std::vector<std::string> args = {binary, "--backend-path", device.path};
  args.insert(args.end(), extra.begin(), extra.end());
  // The device's tunables after the --blk-arg/--net-arg ones: the config file's and what was set
  // at run time win over the command line's.
  const auto tunables = tuning_.set_arguments(Tuning::facts(xs_, type, device.path));
  args.insert(args.end(), tunables.begin(), tunables.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  device.restart_pending = false;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    device.restart_pending = true;
    device.restart_at = Clock::now() + device.backoff.after_exit(std::chrono::milliseconds(0));
    PVBACK_LOG(Error, "%s: cannot fork: %s", device.name.c_str(), std::strerror(e));
    return;
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec (libxenstore may run a thread).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    // A supervisor that dies without stopping its backends (SIGKILL, crash) must not leave them
    // behind: its successor would start a second backend on each device. SIGTERM leaves the
    // device Connected, so the successor's backend resumes the rings.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::close_range(3, ~0u, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  device.pid = pid;
  device.started = Clock::now();
  PVBACK_LOG(Info, "%s: started %s (pid %d)", device.name.c_str(), binary.c_str(), static_cast<int>(pid));
}

void Supervisor::reap() {
  // Only the backends' pids: the data planes of the devices served in this process are children
  // too, and their drivers wait for them (waitpid(-1) would take their exit statuses).
  for (auto it = devices_.begin(); it != devices_.end();) {
    Device& d = it->second;
    int status = 0;
    if (d.pid <= 0 || ::waitpid(d.pid, &status, WNOHANG) != d.pid) {
      ++it;
      continue;
    }
    const std::string binary =
        std::filesystem::path(it->first.type == DeviceType::Vbd ? options_.blk_binary : options_.net_binary)
            .filename()
            .string();
    const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - d.started);
    PVBACK_LOG(Notice, "%s: %s (pid %d) %s after %lld ms", d.name.c_str(), binary.c_str(), static_cast<int>(d.pid),
               describe_status(status).c_str(), static_cast<long long>(ran.count()));
    d.pid = -1;
    // A backend that exited by itself (status 0) decided; one killed or crashed decided nothing.
    after_end(it++, WIFEXITED(status) && WEXITSTATUS(status) == 0, ran);
  }
}

void Supervisor::after_end(std::map<Key, Device>::iterator it, bool by_itself, std::chrono::milliseconds ran) {
  Device& d = it->second;
  if (stopping_) return;
  auto state = xs_.read(d.path + "/state");
  // A failed read may be the first sign of a lost connection (a backend that noticed first and
  // exited); a probe settles it before anything is restarted. run() then stops everything.
  if (!state && state.error() != ENOENT) static_cast<void>(xs_.probe(d.path));
  if (xs_.connection_lost()) return;
  if (!state && state.error() == ENOENT) {
    PVBACK_LOG(Info, "%s: device removed, not restarted", d.name.c_str());
    stop_orphan(it->first);
    devices_.erase(it);
    return;
  }
  // A backend that ended by itself with its device Closed decided the device is done (unplugged,
  // its frontend gone). One killed or crashed there decided nothing: while the device is online
  // its guest is between two connections, and the next one needs a backend.
  if (state && *state == "6" && (by_itself || xs_.read(d.path + "/online").value_or("0") != "1")) {
    PVBACK_LOG(Info, "%s: device closed, not restarted", d.name.c_str());
    stop_orphan(it->first);
    d.finished = true;
    return;
  }
  const auto delay = d.backoff.after_exit(ran);
  d.restart_pending = true;
  d.restart_at = Clock::now() + delay;
  PVBACK_LOG(Notice, "%s: restarting in %lld ms", d.name.c_str(), static_cast<long long>(delay.count()));
}

int Supervisor::poll_timeout_ms() const {
  std::optional<Clock::time_point> next;
  for (const auto& [key, d] : devices_)
    if (d.pid <= 0 && !d.service && d.restart_pending && !d.finished && (!next || d.restart_at < *next)) next = d.restart_at;
  if (!next) return -1;
  // Rounded up: waking a millisecond early would find nothing due and spin.
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
}

int Supervisor::run(const UniqueFd& signal_fd) {
  if (!signal_fd) {
    PVBACK_LOG(Error, "no signalfd: %s", std::strerror(errno));
    return 1;
  }
  if (!watch_all()) return 1;
  std::string watched;
  for (DeviceType type : {DeviceType::Vbd, DeviceType::Vif}) {
    if (type == DeviceType::Vbd ? !options_.serve_vbd : !options_.serve_vif) continue;
    for (const std::string& dir : directories(type)) watched += (watched.empty() ? "" : " and ") + dir;
  }
  PVBACK_LOG(Info, "watching %s", watched.c_str());
  rescan();
  // The directories are watched and the devices already there have their backends: a
  // Type=notify unit is started now, and xendomains, ordered after it, may create guests.
  auto& manager = service::notifier();
  manager.ready("watching the backend directories");
  // libxenstore tells of a dead connection only through the calls made on it (see
  // kXenStoreProbeInterval): the loop probes while idle and checks after every step that used
  // XenStore. A lost connection is handled like SIGTERM (the backends are stopped: they have lost
  // theirs too, and would get SIGTERM from PR_SET_PDEATHSIG anyway), but the exit status is 1 so
  // that the service manager starts the supervisor again.
  const std::string probe_path = "/local/domain/" + std::to_string(self_);
  auto next_probe = Clock::now() + xenbus::kXenStoreProbeInterval;
  auto connection_lost = [&] {
    if (!xs_.connection_lost()) return false;
    PVBACK_LOG(Error, "lost the XenStore connection (%s): the XenStore server died or closed it; stopping the "
               "backends and exiting with status 1 so that the supervisor is restarted",
               std::strerror(xs_.connection_error()));
    return true;
  };
  // The in-process devices' statistics and resize checks, at the backends' own period.
  UniqueFd timer_fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (host_ && timer_fd) {
    const unsigned ms = std::min(host_->blk.interval_ms, host_->net.interval_ms);
    itimerspec period{};
    period.it_interval.tv_sec = static_cast<time_t>(ms / 1000);
    period.it_interval.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
    period.it_value = period.it_interval;
    ::timerfd_settime(timer_fd.get(), 0, &period, nullptr);
  }
  if (!options_.prometheus_dir.empty()) {
    std::error_code ec;  // a failure shows up, once, at the first write
    std::filesystem::create_directories(options_.prometheus_dir, ec);
  }
  int exit_code = 0;
  while (!stopping_) {
    if (connection_lost()) {
      exit_code = 1;
      break;
    }
    // Fixed fds first, then each in-process device's (its FatalLatch, its data plane's channel),
    // then the control socket's.
    std::vector<pollfd> fds = {{xs_.fd(), POLLIN, 0}, {signal_fd.get(), POLLIN, 0}, {timer_fd.get(), POLLIN, 0}};
    struct Owner {
      Key key;
      bool fatal;
    };
    std::vector<Owner> owners;
    for (auto& [key, d] : devices_) {
      if (!d.service) continue;
      fds.push_back({d.service->fatal().fd(), POLLIN, 0});
      owners.push_back({key, true});
      if (const auto& extra = d.service->hooks().extra_fd; extra && extra() >= 0) {
        fds.push_back({extra(), POLLIN, 0});
        owners.push_back({key, false});
      }
    }
    const std::size_t control_at = fds.size();
    control_.add_poll_fds(fds);
    const int until_probe = static_cast<int>(std::clamp<long long>(
        std::chrono::ceil<std::chrono::milliseconds>(next_probe - Clock::now()).count(), 0,
        xenbus::kXenStoreProbeInterval.count()));
    const int until_restart = poll_timeout_ms();
    // The watchdog's ping is sent from here, so a loop stuck anywhere (a XenStore call that never
    // returns included) stops the pings and the service manager restarts the supervisor.
    const int until_ping = manager.watchdog();
    const int r = ::poll(fds.data(), fds.size(),
                         service::cap_for_watchdog(
                             until_restart < 0 ? until_probe : std::min(until_restart, until_probe), until_ping));
    if (r < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "poll: %s", std::strerror(errno));
      exit_code = 1;
      break;
    }
    if (Clock::now() >= next_probe) {
      if (int e = xs_.probe(probe_path); e != 0 && !xs_.connection_lost())
        PVBACK_LOG_RATELIMITED(Warning, "XenStore liveness probe: %s", std::strerror(e));
      next_probe = Clock::now() + xenbus::kXenStoreProbeInterval;
    }
    // A restart came due (the probe's own wake-ups are not worth a rescan).
    bool scan = r == 0 && until_restart >= 0 && until_restart <= until_probe &&
                (until_ping < 0 || until_restart <= until_ping);
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      while (::read(signal_fd.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
          PVBACK_LOG(Notice, "signal %u: stopping the backends", info.ssi_signo);
          stopping_ = true;
        } else if (info.ssi_signo == SIGHUP) {
          scan = true;
          // The config file again, for the devices started from now on.
          if (auto reloaded = tuning_.reload(); reloaded)
            PVBACK_LOG(Notice, "SIGHUP: %s read again: devices started from now on take it (pvbackctl set changes "
                       "running ones)", tuning_.file().empty() ? "no config file" : tuning_.file().c_str());
          else
            PVBACK_LOG(Error, "SIGHUP: %s: the previous values stay", reloaded.error().c_str());
        }
      }
      reap();  // SIGCHLD coalesces: reap() collects every exited backend
      scan = true;
    }
    if (fds[0].revents & POLLIN) route_watch_events(scan);
    for (std::size_t i = 0; i < owners.size(); ++i) {
      const pollfd& p = fds[3 + i];
      auto it = devices_.find(owners[i].key);
      if (p.revents == 0 || it == devices_.end() || !it->second.service) continue;
      if (owners[i].fatal) xenbus::on_fatal_readable(*it->second.service);
      else xenbus::on_extra_readable(*it->second.service);
    }
    if (fds[2].revents & POLLIN) {
      std::uint64_t expirations;
      [[maybe_unused]] auto n = ::read(timer_fd.get(), &expirations, sizeof expirations);
      for (auto& [key, d] : devices_)
        if (d.service) xenbus::on_timer(*d.service);
      if (!options_.prometheus_dir.empty()) write_metrics();
    }
    control_.handle(std::span(fds).subspan(control_at),
                    [this](const ControlRequest& q, ClientId client) { return answer(q, client); });
    end_removed_services();
    if (connection_lost()) {
      exit_code = 1;
      break;
    }
    if (scan && !stopping_) rescan();
  }
  manager.stopping();
  unwatch_all();
  stopping_ = true;
  finish_services();
  stop_children(signal_fd);
  // Nothing is served from here any more: the series go rather than stay frozen.
  if (!options_.prometheus_dir.empty()) ::unlink((options_.prometheus_dir + "/pvback.prom").c_str());
  return exit_code;
}

void Supervisor::stop_children(const UniqueFd& signal_fd) {
  auto running = [&] {
    return std::count_if(devices_.begin(), devices_.end(), [](const auto& e) { return e.second.pid > 0; });
  };
  for (auto& [key, d] : devices_)
    if (d.pid > 0) ::kill(d.pid, SIGTERM);
  const auto deadline = Clock::now() + options_.stop_timeout;
  while (running() > 0) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd pfd{signal_fd.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 1000))) > 0) {
      signalfd_siginfo info{};
      while (::read(signal_fd.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      }
    }
    reap();
  }
  for (auto& [key, d] : devices_) {
    if (d.pid <= 0) continue;
    PVBACK_LOG(Warning, "%s: pid %d did not stop within %lld ms, killing it", d.name.c_str(), static_cast<int>(d.pid),
               static_cast<long long>(options_.stop_timeout.count()));
    ::kill(d.pid, SIGKILL);
    ::waitpid(d.pid, nullptr, 0);
    d.pid = -1;
  }
}

void Supervisor::stop_orphan(const Key& key) const {
  const bool vbd = key.type == DeviceType::Vbd;
  const std::string& dir = vbd ? options_.blk_recovery_dir : options_.net_recovery_dir;
  if (dir.empty()) return;
  const char* type = vbd ? "vbd" : "vif";
  const std::string path =
      dir + "/" + type + "-" + std::to_string(key.domid) + "-" + std::to_string(key.devid) + ".dp";
  if (int e = plane::stop_orphan(path, vbd ? plane::kBlkProtocol : plane::kNetProtocol))
    PVBACK_LOG(Warning, "%s %u/%u: cannot stop the data plane left serving at %s: %s", type, key.domid, key.devid,
               path.c_str(), std::strerror(e));
  // A vif's record (one file) describes a connection nothing will resume now.
  if (!vbd) ::unlink(path.substr(0, path.size() - 3).c_str());
  // The data plane's control group, which its dead backend made and can no longer remove.
  const std::string& parent = vbd ? options_.blk_cgroup_parent : options_.net_cgroup_parent;
  if (parent == "none" || parent == "systemd") return;  // systemd removes an empty scope itself
  const std::string leaf = plane::cgroup_leaf_name(
      options_.cgroup_prefix, std::string(type) + " " + std::to_string(key.domid) + "/" + std::to_string(key.devid));
  if (int e = sandbox::remove_leaf(parent, leaf); e != 0)
    PVBACK_LOG(Warning, "%s %u/%u: cannot remove the control group %s: %s", type, key.domid, key.devid, leaf.c_str(),
               std::strerror(e));
}

}  // namespace pvback::supervisor
