// pvback-blk: the userspace blkback for one vbd.
//
//   pvback-blk --backend-path /local/domain/0/backend/vbd/<domid>/<devid> [options]
//
// Serves the device until it is unplugged (the toolstack removes the backend node or sets online=0
// and the frontend closes) or the process gets SIGTERM/SIGINT. Platform from the environment
// (PVBACK_PLATFORM=xen|sim, PVBACK_SIM_DIR, PVBACK_DOMID; see grant/platform.hpp).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "base/unique_fd.hpp"
#include "blkback/data_plane.hpp"
#include "blkback/stats_writer.hpp"
#include "blkback/vbd_driver.hpp"
#include "plane/options.hpp"
#include "sandbox/cgroup.hpp"
#include "xenbus/backend_daemon.hpp"
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
               "  --direct auto|on|off         O_DIRECT on the storage (default auto: on, except on a PV dom0\n"
               "                               when guest pages are mapped, i.e. persistent grants or --data-path map)\n"
               "  --no-direct                  same as --direct off\n"
               "  --no-flush / --no-barrier    do not offer feature-flush-cache / feature-barrier\n"
               "  --recovery-dir DIR           per-queue crash-recovery records (default /run/pvback/recovery)\n"
               "  --no-recovery                no records: a killed or crashed process may lose or repeat answers\n"
               "  --stats-file PATH            live statistics as JSON (default: <run dir>/vbd-<domid>-<devid>.json)\n"
               "  --stats-interval-ms N        statistics and resize check period (default 1000)\n"
               "  --image-cache writethrough|writeback\n"
               "                               images served by qemu-storage-daemon: a write is answered once\n"
               "                               QEMU's caches are in the file (default; a dead daemon loses no\n"
               "                               answered write) or at once (faster; a dead daemon loses those\n"
               "                               since the guest's last flush)\n"
               "  --data-plane process|thread  serve a file's or block device's rings in a data-plane process of\n"
               "                               their own, sandboxed, restarted at once if it dies (default process;\n"
               "                               images and RBD disks are served on threads for now)\n"
               "  --data-plane-restart-burst N restart a data plane that died at most N times within 10 s; one\n"
               "                               more death fails the device (default 5)\n"
               "  --orphan-timeout-ms N        a data plane whose control part died serves on this long for a\n"
               "                               successor to adopt it (default 60000)\n"
               "  --no-sandbox                 do not confine the data-plane process (debugging)\n"
               "  --cgroup-parent auto|none|P  each data plane runs in a control group of its own, vbd-D-N,\n"
               "                               under P (a path in the cgroup hierarchy, e.g. /pvback.slice),\n"
               "                               or under this process's own cgroup (auto, the default: a host\n"
               "                               that cannot have it only costs a warning); none: no cgroup\n"
               "  --data-plane-memory-max SIZE its memory limit, e.g. 512M (default 64M + 32M per queue)\n"
               "  --data-plane-tasks-max N     its thread limit (default: 32 + per queue 1 + 4 per CPU, which\n"
               "                               io_uring's workers may take)\n"
               "  --data-plane-cpu-max PERCENT its CPU limit, 100 = one CPU (default: none)\n"
               "  --sandbox-uid-base N         the data plane runs as uid and gid N + the guest's domid\n"
               "                               (default 1879048192 = 0x70000000)\n"
               "  --data-plane-binary PATH     the executable run as data plane (default: this one)\n"
               "  --inject-latency-us N        testing: each storage operation waits a random 0..N us first, so\n"
               "                               completions come back out of order (default 0: off)\n");
}

}  // namespace

int main(int argc, char** argv) {
  // The data plane, started by the control part of a pvback-blk (blkback/data_plane.hpp).
  if (argc == 3 && std::string_view(argv[1]) == "--data-plane") {
    auto sock = xenbus::parse_uint(argv[2], 1u << 20);
    if (!sock) return 2;
    return blkback::serve_as_data_plane(static_cast<int>(*sock));
  }
  log::set_program("pvback-blk");
#ifdef PVBACK_BUILD_NOTE
  PVBACK_LOG(Info, "build %s", PVBACK_BUILD_NOTE);  // another build of the same sources (tests)
#endif
  blkback::BackendOptions options;
  std::string backend_path, stats_path, recovery_dir;
  bool recovery = true;
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
    } else if (arg == "--direct" && value &&
               (std::strcmp(value, "auto") == 0 || std::strcmp(value, "on") == 0 || std::strcmp(value, "off") == 0)) {
      options.direct = std::strcmp(value, "on") == 0    ? blkback::BackendOptions::Direct::On
                       : std::strcmp(value, "off") == 0 ? blkback::BackendOptions::Direct::Off
                                                        : blkback::BackendOptions::Direct::Auto;
      ++i;
    } else if (arg == "--no-direct") {
      options.direct = blkback::BackendOptions::Direct::Off;
    } else if (arg == "--no-flush") {
      options.flush = false;
    } else if (arg == "--no-barrier") {
      options.barrier = false;
    } else if (arg == "--recovery-dir" && value) {
      recovery_dir = value;
      ++i;
    } else if (arg == "--no-recovery") {
      recovery = false;
    } else if (arg == "--stats-file" && value) {
      stats_path = value;
      ++i;
    } else if (arg == "--stats-interval-ms") {
      interval_ms = std::max(10ul, number(3'600'000));
    } else if (arg == "--image-cache" && value && (std::string_view(value) == "writethrough" ||
                                                    std::string_view(value) == "writeback")) {
      options.image_writeback = std::string_view(value) == "writeback";
      ++i;
    } else if (arg == "--cgroup-parent" && value) {
      options.cgroup = std::string_view(value) != "none";
      options.cgroup_parent_named = options.cgroup && std::string_view(value) != "auto";
      options.cgroup_parent = options.cgroup_parent_named ? value : "";
      ++i;
    } else if (arg == "--data-plane-memory-max" && value && sandbox::parse_size(value)) {
      options.data_plane_memory_max = *sandbox::parse_size(value);
      ++i;
    } else if (arg == "--data-plane-tasks-max") {
      options.data_plane_tasks_max = number(1u << 22);
    } else if (arg == "--data-plane-cpu-max") {
      options.data_plane_cpu_max = static_cast<unsigned>(number(100'000));
    } else if (::pvback::plane::parse_data_plane_option(arg, value, i, number, options)) {
    } else if (arg == "--inject-latency-us") {
      options.inject_latency = std::chrono::microseconds(number(10'000'000));
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

  // systemd's notifications (Type=notify units): taken, and removed from the environment that the
  // processes started from here inherit, before any thread starts.
  service::notifier() = service::Notifier::from_environment();
  // Signals are taken through a signalfd so the main loop sees them between events.
  UniqueFd signal_fd = xenbus::take_termination_signals();  // before any thread starts

  const auto platform_config = grant::PlatformConfig::from_env();
  grant::Platform platform(platform_config);
  auto xs = xenbus::XenStore::open(platform_config.xenstore_path());
  if (!xs) {
    PVBACK_LOG(Error, "cannot connect to XenStore: %s", std::strerror(xs.error()));
    return 1;
  }
  const std::string name = "vbd " + std::to_string(bp->frontend_domid) + "/" + bp->devid;
  if (recovery)
    options.recovery_dir = ::pvback::plane::prepare_recovery_dir(recovery_dir, platform_config.recovery_dir(), name,
                                                                 "a crash of this process may lose or repeat answers");
  options.cgroup_prefix = platform_config.host_tag();
  // cgroup v2: this process leaves its own cgroup for a leaf "control" of it, where the data planes'
  // groups become its siblings (sandbox/cgroup.hpp).
  if (options.data_plane_process && options.cgroup && !options.cgroup_parent_named) {
    if (auto parent = sandbox::enter_own_leaf("control"); !parent) {
      PVBACK_LOG(Warning, "%s: data planes run without memory, task and CPU limits: %s", name.c_str(),
                 parent.error().c_str());
      options.cgroup = false;
    } else if (!parent->empty()) {
      options.cgroup_parent = *parent;
    }
  }
  xenbus::StatsFile stats(stats_path.empty() ? xenbus::StatsFile::default_path(platform_config.stats_dir(), *bp)
                                             : stats_path,
                         name);

  xenbus::FatalLatch fatal;
  blkback::VbdDriver driver(platform, options, name, bp->frontend_domid,
                            [&](int error, const std::string& reason) { fatal.post(error, reason); });
  xenbus::BackendDevice device(*xs, backend_path, driver);
  if (int rc = device.start(); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot start: %s", name.c_str(), std::strerror(rc));
    return 1;
  }
  PVBACK_LOG(Info, "%s: serving %s, statistics in %s", name.c_str(), backend_path.c_str(), stats.path().c_str());

  xenbus::DaemonHooks hooks;
  hooks.write_stats = [&] { stats.write(blkback::render_stats_json(device, driver)); };
  hooks.on_fatal = [&](int error, const std::string& reason) {
    // A connection that already ended (the frontend reconnected meanwhile) is not failed again.
    if (driver.connected() && driver.fatal_generation() == driver.generation())
      device.report_fatal(error, reason.c_str());
  };
  hooks.on_timer = [&] { driver.check_resize(*xs); };
  hooks.extra_fd = [&] { return driver.data_plane_fd(); };
  hooks.on_extra_fd = [&] { driver.on_data_plane_event(); };
  const int exit_code = xenbus::run_backend_daemon(device, fatal, signal_fd, static_cast<unsigned>(interval_ms), hooks);
  driver.keep_recovery_records();  // a successor may resume the rings
  driver.disconnect();
  hooks.write_stats();
  if (device.removed()) {
    driver.remove_recovery_records();  // nothing will resume this device
    PVBACK_LOG(Info, "%s: device removed, exiting", name.c_str());
  }
  return exit_code;
}
