// pvback-net: the userspace netback for one vif.
//
//   pvback-net --backend-path /local/domain/0/backend/vif/<domid>/<handle> [options]
//
// The exit is a TAP device named vif<domid>.<handle> (default; it exists from start-up, like the
// kernel's vif, so the toolstack's hotplug script can put it on a bridge) or a DPDK ethdev given by
// devargs. Serves the vif until it is unplugged or the process gets SIGTERM/SIGINT. Platform from the
// environment (PVBACK_PLATFORM=xen|sim, PVBACK_SIM_DIR, PVBACK_DOMID; see grant/platform.hpp).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "base/unique_fd.hpp"
#include "netback/command_line.hpp"
#include "netback/data_plane.hpp"
#include "netback/vif_service.hpp"
#include "plane/cgroup_leaf.hpp"
#include "plane/process.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/backend_device.hpp"
#include "xenbus/xenstore.hpp"

int main(int argc, char** argv) {
  using namespace pvback;
  // The data plane, started by the control part of a pvback-net (netback/data_plane.hpp).
  // The data-plane protocol this binary speaks: the host daemon asks before restarting a data
  // plane onto it (plane::repin_binary).
  if (argc == 2 && std::string_view(argv[1]) == "--protocol-version") {
    std::printf("%s\n", ::pvback::plane::protocol_version_line(netback::kPlaneProtocol).c_str());
    return 0;
  }
  if (argc == 3 && std::string_view(argv[1]) == "--data-plane") {
    auto sock = xenbus::parse_uint(argv[2], 1u << 20);
    if (!sock) return 2;
    return netback::serve_as_data_plane(static_cast<int>(*sock));
  }
  log::set_program("pvback-net");
  auto command_line = netback::parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
  if (!command_line) {
    std::fprintf(stderr, "pvback-net: %s\n", command_line.error().c_str());
    netback::print_usage(stderr);
    return 2;
  }
  if (command_line->help) {
    netback::print_usage(stdout);
    return 0;
  }
  auto bp = xenbus::parse_backend_path(command_line->backend_path);
  if (!bp || bp->type != "vif") {
    std::fprintf(stderr, "pvback-net: --backend-path must be /local/domain/<be>/backend/vif/<domid>/<handle>\n");
    netback::print_usage(stderr);
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
  // cgroup v2: this process leaves its own cgroup for a leaf "control" of it, where the data planes'
  // groups become its siblings (plane/cgroup_leaf.hpp).
  netback::VifOptions& options = command_line->options;
  plane::enter_control_leaf(options.cgroup, options.data_plane_process && command_line->exit_kind == "tap",
                            "vif " + std::to_string(bp->frontend_domid) + "/" + bp->devid, "control");
  auto service = netback::start_vif(platform, *xs, command_line->backend_path, *command_line);
  if (!service) return 1;
  const int exit_code = xenbus::run_backend_daemon(**service, signal_fd, command_line->interval_ms);
  (*service)->finish();
  if ((*service)->device().removed()) PVBACK_LOG(Info, "%s: exiting", (*service)->device().name().c_str());
  return exit_code;
}
