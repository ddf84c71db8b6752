#include "xenbus/backend_daemon.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "base/log.hpp"
#include "base/prometheus.hpp"
#include "base/service_notify.hpp"
#include "base/text_file.hpp"

namespace pvback::xenbus {

FatalLatch::FatalLatch() : event_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void FatalLatch::post(int error, const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (error_ == 0) {
      error_ = error;
      reason_ = reason;
    }
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(event_fd_.get(), &one, sizeof one);
}

std::pair<int, std::string> FatalLatch::take() {
  std::uint64_t count;
  [[maybe_unused]] auto n = ::read(event_fd_.get(), &count, sizeof count);
  std::lock_guard lock(mutex_);
  return {std::exchange(error_, 0), std::move(reason_)};
}

StatsFile::StatsFile(std::string path, std::string device_name)
    : path_(std::move(path)), device_name_(std::move(device_name)) {
  std::error_code ec;  // a failure shows up, once, at the first write
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
}

std::string StatsFile::default_path(const std::string& run_dir, const BackendPath& device) {
  return run_dir + "/" + device.type + "-" + std::to_string(device.frontend_domid) + "-" + device.devid + ".json";
}

std::string StatsFile::prometheus_path(const std::string& dir, const BackendPath& device) {
  return dir + "/pvback-" + device.type + "-" + std::to_string(device.frontend_domid) + "-" + device.devid + ".prom";
}

void StatsFile::write(const std::string& content) {
  if (int e = write_file_atomically(path_, content); e != 0 && !error_logged_) {
    PVBACK_LOG(Warning, "%s: cannot write statistics to %s: %s", device_name_.c_str(), path_.c_str(), std::strerror(e));
    error_logged_ = true;
  }
}

void StatsFile::remove() {
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT)
    PVBACK_LOG(Warning, "%s: cannot remove %s: %s", device_name_.c_str(), path_.c_str(), std::strerror(errno));
}

void write_metrics(StatsFile& file, const DeviceService& service) {
  prometheus::Exposition e;
  service.append_metrics(e);
  file.write(e.render());
}

UniqueFd take_termination_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return UniqueFd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
}

namespace {
void call(const std::function<void()>& hook) {
  if (hook) hook();
}
}  // namespace

unsigned long OptionNumber::operator()(unsigned long max) const {
  const auto next = static_cast<std::size_t>(i_) + 1;
  auto parsed = parse_uint(next < args_.size() ? args_[next] : "", max);
  if (!parsed) {
    if (error_.empty()) error_ = args_[static_cast<std::size_t>(i_)] + " needs a number up to " + std::to_string(max);
    return 0;
  }
  ++i_;
  return static_cast<unsigned long>(*parsed);
}

void after_watch_events(DeviceService& service, State before) {
  call(service.hooks().after_xenstore_events);
  // A reader waiting for a state sees it at once.
  if (service.device().state() != before) call(service.hooks().write_stats);
}

void on_fatal_readable(DeviceService& service) {
  auto [error, reason] = service.fatal().take();
  if (error != 0 && service.hooks().on_fatal) service.hooks().on_fatal(error, reason);
  call(service.hooks().write_stats);
}

void on_extra_readable(DeviceService& service) {
  if (!service.hooks().on_extra_fd) return;
  service.hooks().on_extra_fd();
  call(service.hooks().write_stats);
}

void on_timer(DeviceService& service) {
  call(service.hooks().on_timer);
  call(service.hooks().write_stats);
}

int run_backend_daemon(DeviceService& service, const UniqueFd& signal_fd, unsigned interval_ms) {
  BackendDevice& device = service.device();
  const DaemonHooks& hooks = service.hooks();
  const char* name = device.name().c_str();
  UniqueFd timer_fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer_fd || !signal_fd || service.fatal().fd() < 0) {
    PVBACK_LOG(Error, "%s: cannot create the main loop's fds: %s", name, std::strerror(errno));
    return 1;
  }
  itimerspec period{};
  period.it_interval.tv_sec = static_cast<time_t>(interval_ms / 1000);
  period.it_interval.tv_nsec = static_cast<long>(interval_ms % 1000) * 1'000'000;
  period.it_value = period.it_interval;
  ::timerfd_settime(timer_fd.get(), 0, &period, nullptr);
  call(hooks.write_stats);
  // The device's watches are in place (BackendDevice::start): a Type=notify unit
  // (pvback-blk@, pvback-net@) is started now. Nothing is sent under the supervisor, which keeps
  // NOTIFY_SOCKET to itself.
  auto& manager = service::notifier();
  manager.ready("serving " + device.backend_path());

  // libxenstore tells of a dead connection only through the calls made on it (see
  // kXenStoreProbeInterval): the loop probes while idle and checks after every step that used
  // XenStore. A lost connection ends the process with 1; the caller then disconnects the rings,
  // so nothing is served on the strength of a XenStore the backend can no longer follow.
  XenStore& xs = device.xenstore();
  auto next_probe = std::chrono::steady_clock::now() + kXenStoreProbeInterval;
  auto connection_lost = [&] {
    if (!xs.connection_lost()) return false;
    PVBACK_LOG(Error, "%s: lost the XenStore connection (%s): the XenStore server died or closed it; exiting with "
               "status 1 so that the backend is restarted",
               name, std::strerror(xs.connection_error()));
    return true;
  };

  int exit_code = 0;
  while (!device.removed()) {
    const auto until_probe =
        std::chrono::ceil<std::chrono::milliseconds>(next_probe - std::chrono::steady_clock::now()).count();
    pollfd fds[] = {{device.fd(), POLLIN, 0}, {service.fatal().fd(), POLLIN, 0}, {timer_fd.get(), POLLIN, 0},
                    {signal_fd.get(), POLLIN, 0}, {hooks.extra_fd ? hooks.extra_fd() : -1, POLLIN, 0}};
    const int timeout = service::cap_for_watchdog(
        static_cast<int>(std::clamp<long long>(until_probe, 0, kXenStoreProbeInterval.count())), manager.watchdog());
    if (::poll(fds, 5, timeout) < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "%s: poll: %s", name, std::strerror(errno));
      exit_code = 1;
      break;
    }
    if (std::chrono::steady_clock::now() >= next_probe) {
      if (int e = xs.probe(device.backend_path()); e != 0 && !xs.connection_lost())
        PVBACK_LOG_RATELIMITED(Warning, "%s: XenStore liveness probe: %s", name, std::strerror(e));
      next_probe = std::chrono::steady_clock::now() + kXenStoreProbeInterval;
    }
    if (connection_lost()) {
      exit_code = 1;
      break;
    }
    if (fds[0].revents & POLLIN) {
      const auto before = device.state();
      device.handle_events();
      after_watch_events(service, before);
      if (connection_lost()) {
        exit_code = 1;
        break;
      }
    }
    if (fds[4].fd >= 0 && (fds[4].revents & (POLLIN | POLLHUP | POLLERR))) on_extra_readable(service);
    if (fds[1].revents & POLLIN) on_fatal_readable(service);
    if (fds[2].revents & POLLIN) {
      std::uint64_t expirations;
      [[maybe_unused]] auto n = ::read(timer_fd.get(), &expirations, sizeof expirations);
      on_timer(service);
    }
    if (connection_lost()) {
      exit_code = 1;
      break;
    }
    if (fds[3].revents & POLLIN) {
      signalfd_siginfo info{};
      [[maybe_unused]] auto n = ::read(signal_fd.get(), &info, sizeof info);
      PVBACK_LOG(Notice, "%s: signal %u, stopping", name, info.ssi_signo);
      break;
    }
  }
  manager.stopping();
  return exit_code;
}

}  // namespace pvback::xenbus
