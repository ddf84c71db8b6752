// pvback-blk: the userspace blkback for one vbd.
//
//   pvback-blk --backend-path /local/domain/0/backend/vbd/<domid>/<devid> [options]
//
// Serves the device until it is unplugged (the toolstack removes the backend node or sets online=0
// and the frontend closes) or the process gets SIGTERM/SIGINT. Platform from the environment
// (PVBACK_PLATFORM=xen|sim, PVBACK_SIM_DIR, PVBACK_DOMID; see grant/platform.hpp).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "base/unique_fd.hpp"
#include "blkback/command_line.hpp"
#include "blkback/data_plane.hpp"
#include "blkback/vbd_service.hpp"
#include "plane/cgroup_leaf.hpp"
#include "plane/process.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/backend_device.hpp"
#include "xenbus/xenstore.hpp"

int main(int argc, char** argv) {
  using namespace pvback;
  // The data plane, started by the control part of a pvback-blk (blkback/data_plane.hpp).
  // The data-plane protocol this binary speaks: the host daemon asks before restarting a data
  // plane onto it (plane::repin_binary).
  if (argc == 2 && std::string_view(argv[1]) == "--protocol-version") {
    std::printf("%s\n", ::pvback::plane::protocol_version_line(blkback::plane::kProtocol).c_str());
    return 0;
  }
  if (argc == 3 && std::string_view(argv[1]) == "--data-plane") {
    auto sock = xenbus::parse_uint(argv[2], 1u << 20);
    if (!sock) return 2;
    return blkback::serve_as_data_plane(static_cast<int>(*sock));
  }
  log::set_program("pvback-blk");
#ifdef PVBACK_BUILD_NOTE
  PVBACK_LOG(Info, "build %s", PVBACK_BUILD_NOTE);  // another build of the same sources (tests)
#endif
  auto command_line = blkback::parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
  if (!command_line) {
    std::fprintf(stderr, "pvback-blk: %s\n", command_line.error().c_str());
    blkback::print_usage(stderr);
    return 2;
  }
  if (command_line->help) {
    blkback::print_usage(stdout);
    return 0;
  }
  auto bp = xenbus::parse_backend_path(command_line->backend_path);
  if (!bp || (bp->type != "vbd" && bp->type != "vbd3")) {
    std::fprintf(stderr, "pvback-blk: --backend-path must be /local/domain/<be>/backend/vbd/<domid>/<devid>\n");
    blkback::print_usage(stderr);
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
  // cgroup v2: this process leaves its own cgroup for a leaf "control" of it, where the data planes'
  // groups become its siblings (plane/cgroup_leaf.hpp).
  blkback::BackendOptions& options = command_line->options;
  plane::enter_control_leaf(options.cgroup, options.data_plane_process, name, "control");
  auto service = blkback::start_vbd(platform, *xs, command_line->backend_path, *command_line);
  if (!service) return 1;
  const int exit_code = xenbus::run_backend_daemon(**service, signal_fd, command_line->interval_ms);
  (*service)->finish();
  if ((*service)->device().removed()) PVBACK_LOG(Info, "%s: exiting", name.c_str());
  return exit_code;
}
