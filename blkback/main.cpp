// pvback-blk: the userspace blkback for one vbd.
//
//   pvback-blk --backend-path /local/domain/0/backend/vbd/<domid>/<devid> [options]
//
// Serves the device until it is unplugged (the toolstack removes the backend node or sets online=0
// and the frontend closes) or the process gets SIGTERM/SIGINT. Platform from the environment
// (PVBACK_PLATFORM=xen|sim, PVBACK_SIM_DIR, PVBACK_DOMID; see grant/platform.hpp).
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "blkback/stats_writer.hpp"
#include "blkback/vbd_driver.hpp"
#include "xenbus/backend_device.hpp"
#include "xenbus/xenstore.hpp"

namespace {

using namespace pvback;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: pvback-blk --backend-path PATH [options]\n"
               "  --backend-path PATH          /local/domain/<be>/backend/vbd/<domid>/<devid>\n"
               "  --max-queues N               multi-queue-max-queues (default: number of CPUs)\n"
               "  --max-ring-page-order N      max-ring-page-order (default 4)\n"
               "  --max-indirect-segments N    feature-max-indirect-segments, 0 disables (default 256, max 4096)\n"
               "  --no-persistent-grants       do not offer feature-persistent\n"
               "  --max-persistent-grants N    per queue (default 1056)\n"
               "  --persistent-idle-ms N       unmap persistent grants unused this long (default 60000)\n"
               "  --data-path copy|map         for non-persistent grants (default copy)\n"
               "  --no-direct                  never open the storage with O_DIRECT\n"
               "  --no-flush / --no-barrier    do not offer feature-flush-cache / feature-barrier\n"
               "  --stats-file PATH            live statistics as JSON (default: <run dir>/vbd-<domid>-<devid>.json)\n"
               "  --stats-interval-ms N        statistics and resize check period (default 1000)\n");
}

std::string default_stats_path(const grant::PlatformConfig& config, const xenbus::BackendPath& bp) {
  const std::string dir = config.kind == grant::PlatformConfig::Kind::Sim ? config.sim_dir + "/stats" : "/run/pvback";
  return dir + "/vbd-" + std::to_string(bp.frontend_domid) + "-" + bp.devid + ".json";
}

}  // namespace

int main(int argc, char** argv) {
  log::set_program("pvback-blk");
  blkback::BackendOptions options;
  std::string backend_path, stats_path;
  unsigned long interval_ms = 1000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto number = [&](unsigned long max) {
      auto parsed = xenbus::parse_uint(value != nullptr ? value : "", max);
      if (!parsed) {
        std::fprintf(stderr, "pvback-blk: %s needs a number up to %lu\n", arg.c_str(), max);
        std::exit(2);
      }
      ++i;
      return static_cast<unsigned long>(*parsed);
    };
    if (arg == "--backend-path" && value) {
      backend_path = value;
      ++i;
    } else if (arg == "--max-queues") {
      options.max_queues = static_cast<unsigned>(number(256));
    } else if (arg == "--max-ring-page-order") {
      options.max_ring_page_order = static_cast<unsigned>(number(6));
    } else if (arg == "--max-indirect-segments") {
      options.max_indirect_segments = static_cast<unsigned>(number(4096));
    } else if (arg == "--no-persistent-grants") {
      options.persistent_grants = false;
    } else if (arg == "--max-persistent-grants") {
      options.max_persistent_grants = static_cast<unsigned>(number(1u << 20));
    } else if (arg == "--persistent-idle-ms") {
      options.persistent_idle_expiry = std::chrono::milliseconds(number(86'400'000));
    } else if (arg == "--data-path" && value && (std::strcmp(value, "copy") == 0 || std::strcmp(value, "map") == 0)) {
      options.data_path = std::strcmp(value, "map") == 0 ? blkback::DataPath::Map : blkback::DataPath::Copy;
      ++i;
    } else if (arg == "--no-direct") {
      options.allow_direct = false;
    } else if (arg == "--no-flush") {
      options.flush = false;
    } else if (arg == "--no-barrier") {
      options.barrier = false;
    } else if (arg == "--stats-file" && value) {
      stats_path = value;
      ++i;
    } else if (arg == "--stats-interval-ms") {
      interval_ms = std::max(10ul, number(3'600'000));
    } else if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  auto bp = xenbus::parse_backend_path(backend_path);
  if (!bp || bp->type != "vbd") {
    std::fprintf(stderr, "pvback-blk: --backend-path must be /local/domain/<be>/backend/vbd/<domid>/<devid>\n");
    usage(stderr);
    return 2;
  }

  // Signals are taken through a signalfd so the loop below sees them between events.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  UniqueFd fatal_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd timer_fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!signal_fd || !fatal_fd || !timer_fd) {
    PVBACK_LOG(Error, "cannot create signalfd/eventfd/timerfd: %s", std::strerror(errno));
    return 1;
  }

  const auto platform_config = grant::PlatformConfig::from_env();
  grant::Platform platform(platform_config);
  auto xs = xenbus::XenStore::open(platform_config.xenstore_path());
  if (!xs) {
    PVBACK_LOG(Error, "cannot connect to XenStore: %s", std::strerror(xs.error()));
    return 1;
  }
  const std::string name = "vbd " + std::to_string(bp->frontend_domid) + "/" + bp->devid;
  if (stats_path.empty()) stats_path = default_stats_path(platform_config, *bp);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(stats_path).parent_path(), ec);

  std::mutex fatal_mutex;
  int fatal_error = 0;
  std::string fatal_reason;
  blkback::VbdDriver driver(platform, options, name, bp->frontend_domid, [&](int error, const std::string& reason) {
    {
      std::lock_guard lock(fatal_mutex);
      if (fatal_error == 0) {
        fatal_error = error;
        fatal_reason = reason;
      }
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fatal_fd.get(), &one, sizeof one);
  });
  xenbus::BackendDevice device(*xs, backend_path, driver);
  if (int rc = device.start(); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot start: %s", name.c_str(), std::strerror(rc));
    return 1;
  }
  PVBACK_LOG(Info, "%s: serving %s, statistics in %s", name.c_str(), backend_path.c_str(), stats_path.c_str());

  itimerspec period{};
  period.it_interval.tv_sec = static_cast<time_t>(interval_ms / 1000);
  period.it_interval.tv_nsec = static_cast<long>(interval_ms % 1000) * 1'000'000;
  period.it_value = period.it_interval;
  ::timerfd_settime(timer_fd.get(), 0, &period, nullptr);
  bool stats_error_logged = false;
  auto write_stats = [&] {
    if (int e = blkback::write_file_atomically(stats_path, blkback::render_stats_json(device, driver));
        e != 0 && !stats_error_logged) {
      PVBACK_LOG(Warning, "%s: cannot write statistics to %s: %s", name.c_str(), stats_path.c_str(), std::strerror(e));
      stats_error_logged = true;
    }
  };
  write_stats();

  int exit_code = 0;
  while (!device.removed()) {
    pollfd fds[] = {{device.fd(), POLLIN, 0}, {fatal_fd.get(), POLLIN, 0}, {timer_fd.get(), POLLIN, 0},
                    {signal_fd.get(), POLLIN, 0}};
    if (::poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "%s: poll: %s", name.c_str(), std::strerror(errno));
      exit_code = 1;
      break;
    }
    if (fds[0].revents & (POLLERR | POLLHUP)) {
      PVBACK_LOG(Error, "%s: lost the XenStore connection", name.c_str());
      exit_code = 1;
      break;
    }
    if (fds[0].revents & POLLIN) {
      const auto before = device.state();
      device.handle_events();
      if (device.state() != before) write_stats();  // a reader waiting for a state sees it at once
    }
    if (fds[1].revents & POLLIN) {
      std::uint64_t count;
      [[maybe_unused]] auto n = ::read(fatal_fd.get(), &count, sizeof count);
      int error;
      std::string reason;
      {
        std::lock_guard lock(fatal_mutex);
        error = std::exchange(fatal_error, 0);
        reason = std::move(fatal_reason);
      }
      // A connection that already ended (the frontend reconnected meanwhile) is not failed again.
      if (error != 0 && driver.connected() && driver.fatal_generation() == driver.generation())
        device.report_fatal(error, reason.c_str());
      write_stats();
    }
    if (fds[2].revents & POLLIN) {
      std::uint64_t expirations;
      [[maybe_unused]] auto n = ::read(timer_fd.get(), &expirations, sizeof expirations);
      driver.check_resize(*xs);
      write_stats();
    }
    if (fds[3].revents & POLLIN) {
      signalfd_siginfo info{};
      [[maybe_unused]] auto n = ::read(signal_fd.get(), &info, sizeof info);
      PVBACK_LOG(Notice, "%s: signal %u, stopping", name.c_str(), info.ssi_signo);
      break;
    }
  }
  driver.disconnect();
  write_stats();
  if (device.removed()) PVBACK_LOG(Info, "%s: device removed, exiting", name.c_str());
  return exit_code;
}
