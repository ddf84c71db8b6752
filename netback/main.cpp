// pvback-net: the userspace netback for one vif.
//
//   pvback-net --backend-path /local/domain/0/backend/vif/<domid>/<handle> [options]
//
// The exit is a TAP device named vif<domid>.<handle> (default; it exists from start-up, like the
// kernel's vif, so the toolstack's hotplug script can put it on a bridge) or a DPDK ethdev given by
// devargs. Serves the vif until it is unplugged or the process gets SIGTERM/SIGINT. Platform from the
// environment (PVBACK_PLATFORM=xen|sim, PVBACK_SIM_DIR, PVBACK_DOMID; see grant/platform.hpp).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "base/unique_fd.hpp"
#include "netback/data_plane.hpp"
#include "netback/dpdk_exit.hpp"
#include "netback/stats_writer.hpp"
#include "netback/tap_exit.hpp"
#include "netback/vif_driver.hpp"
#include "plane/options.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/backend_device.hpp"
#include "xenbus/xenstore.hpp"

namespace {

using namespace pvback;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: pvback-net --backend-path PATH [options]\n"
               "  --backend-path PATH        /local/domain/<be>/backend/vif/<domid>/<handle>\n"
               "  --exit tap|dpdk            where guest traffic goes (default tap)\n"
               "  --tap-name NAME            TAP device name (default vif<domid>.<handle>)\n"
               "  --tap-up                   bring the TAP up (normally the hotplug script does it)\n"
               "  --dpdk-devargs ARGS        the DPDK port, e.g. net_null0, net_tap0,iface=x,\n"
               "                             net_memif0,role=server, net_vhost0,iface=/sock,client=1\n"
               "  --dpdk-eal-args \"ARGS\"     extra EAL arguments (default: --no-huge -m 256 --no-shconf ...)\n"
               "  --dpdk-tso                 offer GSO to the guest when the DPDK port has TSO (default off)\n"
               "  --max-queues N             multi-queue-max-queues (default: number of CPUs)\n"
               "  --no-split-event-channels  --no-ctrl-ring  --no-multicast-control  --no-gso  --no-xdp\n"
               "  --max-slots N              TX packets of more slots are dropped (default 18)\n"
               "  --fatal-slots N            TX packets of more slots disconnect the vif (default 20)\n"
               "  --rx-stall-timeout-ms N    no RX buffers this long: carrier off, drop (default 60000)\n"
               "  --data-plane process|thread  serve the rings in a sandboxed data-plane process of the vif's own,\n"
               "                             restarted at once if it dies (default process; the DPDK exit's rings\n"
               "                             are always served on threads of pvback-net)\n"
               "  --data-plane-restart-burst N  restart a data plane that died at most N times within 10 s; one\n"
               "                             more death fails the vif (default 5)\n"
               "  --orphan-timeout-ms N      a data plane whose control part died serves on this long for a\n"
               "                             successor to adopt it (default 60000)\n"
               "  --no-sandbox               do not confine the data-plane process (debugging)\n"
               "  --sandbox-uid-base N       the data plane runs as uid and gid N + the guest's domid\n"
               "                             (default 1879048192 = 0x70000000)\n"
               "  --data-plane-binary PATH   the executable run as data plane (default: this one)\n"
               "  --recovery-dir DIR         the vif's record (exactly-once ring resumption, the guest's hash and\n"
               "                             multicast settings) and its data plane's socket (default\n"
               "                             /run/pvback/recovery)\n"
               "  --no-recovery              the record in memory of this process only: a successor of the whole\n"
               "                             backend takes the rings from rsp_prod\n"
               "  --stats-file PATH          live statistics as JSON (default: <run dir>/vif-<domid>-<handle>.json)\n"
               "  --stats-interval-ms N      statistics period (default 1000)\n");
}

// --dpdk-eal-args is one shell word holding several EAL arguments.
std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

}  // namespace

int main(int argc, char** argv) {
  // The data plane, started by the control part of a pvback-net (netback/data_plane.hpp).
  if (argc == 3 && std::string_view(argv[1]) == "--data-plane") {
    auto sock = xenbus::parse_uint(argv[2], 1u << 20);
    if (!sock) return 2;
    return netback::serve_as_data_plane(static_cast<int>(*sock));
  }
  log::set_program("pvback-net");
  netback::VifOptions options;
  std::string backend_path, stats_path, exit_kind = "tap", tap_name, dpdk_devargs, dpdk_eal_args;
  std::string recovery_dir;
  bool tap_up = false, dpdk_tso = false, recovery = true;
  unsigned long interval_ms = 1000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto number = [&](unsigned long max) {
      auto parsed = xenbus::parse_uint(value != nullptr ? value : "", max);
      if (!parsed) {
        std::fprintf(stderr, "pvback-net: %s needs a number up to %lu\n", arg.c_str(), max);
        std::exit(2);
      }
      ++i;
      return static_cast<unsigned long>(*parsed);
    };
    auto text = [&](std::string& into) {
      if (value == nullptr) {
        usage(stderr);
        std::exit(2);
      }
      into = value;
      ++i;
    };
    if (arg == "--backend-path") {
      text(backend_path);
    } else if (arg == "--exit") {
      text(exit_kind);
    } else if (arg == "--tap-name") {
      text(tap_name);
    } else if (arg == "--tap-up") {
      tap_up = true;
    } else if (arg == "--dpdk-devargs") {
      text(dpdk_devargs);
    } else if (arg == "--dpdk-eal-args") {
      text(dpdk_eal_args);
    } else if (arg == "--dpdk-tso") {
      dpdk_tso = true;
    } else if (arg == "--max-queues") {
      options.max_queues = static_cast<unsigned>(number(64));
    } else if (arg == "--no-split-event-channels") {
      options.split_event_channels = false;
    } else if (arg == "--no-ctrl-ring") {
      options.ctrl_ring = false;
    } else if (arg == "--no-multicast-control") {
      options.multicast_control = false;
    } else if (arg == "--no-gso") {
      options.gso = false;
    } else if (arg == "--no-xdp") {
      options.xdp_headroom = false;
    } else if (arg == "--max-slots") {
      options.max_slots = static_cast<unsigned>(number(64));
    } else if (arg == "--fatal-slots") {
      options.fatal_slots = static_cast<unsigned>(number(1024));
    } else if (arg == "--rx-stall-timeout-ms") {
      options.rx_stall_timeout = std::chrono::milliseconds(number(86'400'000));
    } else if (plane::parse_data_plane_option(arg, value, i, number, options)) {
    } else if (arg == "--recovery-dir") {
      text(recovery_dir);
    } else if (arg == "--no-recovery") {
      recovery = false;
    } else if (arg == "--stats-file") {
      text(stats_path);
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
  if (!bp || bp->type != "vif") {
    std::fprintf(stderr, "pvback-net: --backend-path must be /local/domain/<be>/backend/vif/<domid>/<handle>\n");
    usage(stderr);
    return 2;
  }
  if (exit_kind != "tap" && exit_kind != "dpdk") {
    std::fprintf(stderr, "pvback-net: --exit is tap or dpdk\n");
    return 2;
  }
  if (exit_kind == "dpdk" && dpdk_devargs.empty()) {
    std::fprintf(stderr, "pvback-net: --exit dpdk needs --dpdk-devargs\n");
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
  const std::string name = "vif " + std::to_string(bp->frontend_domid) + "/" + bp->devid;
  const unsigned max_queues = [&] {
    unsigned n = options.max_queues != 0 ? options.max_queues : std::max(1u, std::thread::hardware_concurrency());
    return std::min(n, 64u);
  }();
  // The backend's mtu key (libxl writes it) sizes the exit; 1500 when absent.
  const auto mtu = static_cast<std::uint32_t>(xs->read_uint(backend_path + "/mtu", 65535).value_or(1500));

  if (recovery)
    options.recovery_dir = plane::prepare_recovery_dir(recovery_dir, platform_config.recovery_dir(), name,
                                                       "a successor of this process takes the rings from rsp_prod");
  if (exit_kind == "dpdk" && options.data_plane_process) {
    // DPDK's EAL (hugepages, PCI or vhost-user devices, its own threads) lives in this process.
    PVBACK_LOG(Info, "%s: the DPDK exit's rings are served on threads of pvback-net", name.c_str());
    options.data_plane_process = false;
  }

  // A data plane a dead predecessor left serving holds the vif's TAP queues: it is adopted first,
  // and the exit is made of its queue fds (a new TUNSETIFF would add queues nobody reads, or fail
  // on a single-queue device). connect() then checks it serves the frontend's current rings.
  // One this process will not adopt (it serves the rings on threads) is stopped before anything
  // else takes the rings or the TAP.
  std::optional<netback::AdoptedDataPlane> adopted;
  if (!options.recovery_dir.empty()) {
    const std::string path = netback::vif_recovery_prefix(options.recovery_dir, bp->frontend_domid, bp->devid) + ".dp";
    if (exit_kind == "tap" && options.data_plane_process) {
      auto a = netback::adopt_data_plane(path, name);
      if (a) adopted = std::move(*a);
      else if (a.error() != ENOENT && a.error() != ECONNREFUSED)
        PVBACK_LOG(Warning, "%s: no data plane adopted from %s: %s", name.c_str(), path.c_str(), std::strerror(a.error()));
    } else if (int e = netback::stop_orphan_data_plane(path)) {
      PVBACK_LOG(Warning, "%s: cannot stop the data plane left serving at %s: %s", name.c_str(), path.c_str(),
                 std::strerror(e));
    }
  }

  std::unique_ptr<netback::Exit> exit;
  if (exit_kind == "tap") {
    netback::TapConfig tap;
    tap.name = tap_name.empty() ? "vif" + std::to_string(bp->frontend_domid) + "." + bp->devid : tap_name;
    tap.max_queues = max_queues;
    tap.mtu = mtu;
    tap.bring_up = tap_up;
    // The vif outlives a crash or restart of this process (addresses, bridge port, the host's
    // connections through it); it goes with the device.
    tap.persist = true;
    tap.reattach = true;
    if (adopted) {
      auto taken = netback::TapExit::adopt(tap.name, std::move(adopted->taps));
      if (taken) {
        exit = std::move(*taken);
      } else {
        PVBACK_LOG(Warning, "%s: the adopted data plane's TAP queues: %s: stopping it", name.c_str(),
                   std::strerror(taken.error()));
        adopted->process.stop();
        adopted.reset();
      }
    }
    if (!exit) {
      auto created = netback::TapExit::create(tap);
      if (!created) {
        PVBACK_LOG(Error, "%s: cannot create TAP device %s: %s", name.c_str(), tap.name.c_str(),
                   std::strerror(created.error()));
        return 1;
      }
      exit = std::move(*created);
    }
  } else {
    netback::DpdkConfig dpdk;
    dpdk.devargs = dpdk_devargs;
    dpdk.eal_args = split_words(dpdk_eal_args);
    dpdk.max_queues = max_queues;
    dpdk.mtu = mtu;
    dpdk.tso = dpdk_tso;
    auto created = netback::DpdkExit::create(dpdk);
    if (!created) {
      PVBACK_LOG(Error, "%s: cannot open DPDK port %s: %s", name.c_str(), dpdk_devargs.c_str(),
                 std::strerror(created.error()));
      return 1;
    }
    exit = std::move(*created);
  }

  xenbus::StatsFile stats(stats_path.empty() ? xenbus::StatsFile::default_path(platform_config.stats_dir(), *bp)
                                             : stats_path,
                         name);

  xenbus::FatalLatch fatal;
  netback::VifDriver driver(platform, options, name, bp->frontend_domid, *exit,
                            [&](int error, const std::string& reason) { fatal.post(error, reason); });
  if (adopted) driver.offer_adopted(std::move(*adopted));
  xenbus::BackendDevice device(*xs, backend_path, driver);
  if (int rc = device.start(); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot start: %s", name.c_str(), std::strerror(rc));
    return 1;
  }
  driver.settle_after_start();  // not connected: no adopted data plane, no carrier
  PVBACK_LOG(Info, "%s: serving %s through %s, statistics in %s", name.c_str(), backend_path.c_str(),
             exit->name().c_str(), stats.path().c_str());

  xenbus::DaemonHooks hooks;
  hooks.write_stats = [&] { stats.write(netback::render_stats_json(device, driver)); };
  hooks.on_fatal = [&](int error, const std::string& reason) {
    // A connection that already ended (the frontend reconnected meanwhile) is not failed again.
    if (driver.connected() && driver.fatal_generation() == driver.generation())
      device.report_fatal(error, reason.c_str());
  };
  hooks.after_xenstore_events = [&] { driver.refresh_rate(*xs); };
  hooks.on_timer = [&] { driver.refresh_link(); };
  hooks.extra_fd = [&] { return driver.data_plane_fd(); };
  hooks.on_extra_fd = [&] { driver.on_data_plane_event(); };
  const int exit_code = xenbus::run_backend_daemon(device, fatal, signal_fd, static_cast<unsigned>(interval_ms), hooks);
  driver.keep_recovery_records();  // a successor may resume the rings
  driver.disconnect();
  hooks.write_stats();
  if (device.removed()) {
    driver.remove_recovery_records();  // nothing will resume this vif
    if (auto* tap = dynamic_cast<netback::TapExit*>(exit.get())) tap->set_persist(false);  // gone with its last fd
    PVBACK_LOG(Info, "%s: device removed, exiting", name.c_str());
  }
  return exit_code;
}
