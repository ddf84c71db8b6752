// pvback-supervisor: the host's control plane. Serves every vbd and vif the toolstack creates under
// /local/domain/<self>/backend (in this process, or in a pvback-blk / pvback-net of the device's
// own for the kinds served on threads), restarts what fails, answers the operator's control socket.
// See supervisor/supervisor.hpp; options in supervisor/options.cpp.
// Platform from the environment (PVBACK_PLATFORM=xen|sim, PVBACK_SIM_DIR, PVBACK_DOMID), which the
// backends inherit.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "base/unique_fd.hpp"
#include "blkback/command_line.hpp"
#include "grant/platform.hpp"
#include "netback/command_line.hpp"
#include "plane/process.hpp"
#include "plane/systemd_scope.hpp"
#include "sandbox/cgroup.hpp"
#include "supervisor/supervisor.hpp"
#include "xenbus/xenstore.hpp"

int main(int argc, char** argv) {
  using namespace pvback;
  log::set_program("pvback-supervisor");
  auto options = supervisor::parse_options(std::vector<std::string>(argv + 1, argv + argc));
  if (!options) {
    if (options.error() == "help") {
      supervisor::print_usage(stdout);
      return 0;
    }
    std::fprintf(stderr, "pvback-supervisor: %s\n", options.error().c_str());
    supervisor::print_usage(stderr);
    return 2;
  }
  std::error_code ec;
  const auto own_dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  if (options->blk_binary.empty()) options->blk_binary = (own_dir / "pvback-blk").string();
  if (options->net_binary.empty()) options->net_binary = (own_dir / "pvback-net").string();
  for (const auto* binary : {&options->blk_binary, &options->net_binary})
    if (::access(binary->c_str(), X_OK) != 0)
      PVBACK_LOG(Warning, "%s is not executable: %s", binary->c_str(), std::strerror(errno));

  // systemd's notifications (Type=notify units): taken, and removed from the environment that the
  // processes started from here inherit, before any thread starts.
  service::notifier() = service::Notifier::from_environment();
  // Blocked before anything can start a thread (libxenstore's reader), so every signal arrives
  // on the signalfd; the backends get an empty mask back before exec.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));

  const auto config = grant::PlatformConfig::from_env();
  // The backends' recovery directories, as they will choose them from their arguments.
  auto recovery_dir = [&](const std::vector<std::string>& args) {
    std::string dir = config.recovery_dir();
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--no-recovery") dir.clear();
      if (args[i] == "--recovery-dir" && i + 1 < args.size()) dir = args[i + 1];
    }
    return dir;
  };
  // The backend processes write their own textfiles beside the supervisor's.
  if (!options->prometheus_dir.empty())
    for (auto* args : {&options->blk_args, &options->net_args})
      if (std::ranges::find(*args, "--prometheus-textfile") == args->end())
        args->insert(args->end(), {"--prometheus-textfile", options->prometheus_dir});
  options->blk_recovery_dir = recovery_dir(options->blk_args);
  options->net_recovery_dir = recovery_dir(options->net_args);
  // cgroup v2: the supervisor leaves its own cgroup (a unit with Delegate=yes) for a leaf of it, so
  // that its backends' data planes can have limited groups there (sandbox/cgroup.hpp); the
  // backends are started in the supervisor's leaf and told where their data planes go.
  // pvback-blk's and pvback-net's alike (supervisor::settle_cgroup_parents).
  options->cgroup_prefix = config.host_tag();
  // Started by systemd: the data planes go into scopes of their own (plane/systemd_scope.hpp), which
  // outlive this unit's processes, so that a successor adopts them; the supervisor stays put.
  if (plane::systemd_scopes_available())
    for (auto* args : {&options->blk_args, &options->net_args})
      if (std::ranges::find(*args, "--cgroup-parent") == args->end())
        args->insert(args->begin(), {"--cgroup-parent", "systemd"});
  std::expected<std::string, std::string> own;  // the supervisor's cgroup, which it left (v2)
  if (supervisor::needs_own_cgroup(*options)) own = sandbox::enter_own_leaf("supervisor");
  if (!own)
    PVBACK_LOG(Warning, "the backends' data planes run without memory, task and CPU limits: %s", own.error().c_str());
  supervisor::settle_cgroup_parents(*options, own);
  // Each backend's options, parsed as pvback-blk and pvback-net parse theirs: in host mode they
  // serve devices in this process; a mistake shows now rather than at every backend's start.
  grant::Platform platform(config);
  std::optional<supervisor::HostConfig> host;
  if (!options->process_per_device) {
    auto blk = blkback::parse_command_line(options->blk_args);
    auto net = netback::parse_command_line(options->net_args);
    if (!blk || !net) {
      std::fprintf(stderr, "pvback-supervisor: %s: %s\n", !blk ? "--blk-arg" : "--net-arg",
                   !blk ? blk.error().c_str() : net.error().c_str());
      return 2;
    }
    // The devices served here are in the supervisor's own textfile, not in one file each.
    blk->prometheus_dir.clear();
    net->prometheus_dir.clear();
    // The data planes are the backends' executables run as such, not this one.
    if (blk->options.data_plane_binary.empty()) blk->options.data_plane_binary = options->blk_binary;
    if (net->options.data_plane_binary.empty()) net->options.data_plane_binary = options->net_binary;
    blk->options.pausable = true;  // through the control socket
    // A data plane started again (a crash, a reconnection) runs the binary this daemon was started
    // with, not one a package upgrade put there since; pvbackctl restart moves to the new one once
    // it is checked to speak this daemon's protocol.
    plane::pin_binary(options->blk_binary);
    plane::pin_binary(options->net_binary);
    host = supervisor::HostConfig{&platform, std::move(*blk), std::move(*net)};
  }
  supervisor::ControlServer control;
  if (options->control_socket != "none") {
    const std::string path =
        options->control_socket.empty() ? config.stats_dir() + "/control.sock" : options->control_socket;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    auto opened = supervisor::ControlServer::open(path);
    if (!opened && opened.error() == EADDRINUSE) {
      PVBACK_LOG(Error, "%s: another control plane answers there; one per host", path.c_str());
      return 1;
    }
    if (opened) control = std::move(*opened);
    else PVBACK_LOG(Warning, "no control socket at %s: %s", path.c_str(), std::strerror(opened.error()));
  }
  auto xs = xenbus::XenStore::open(config.xenstore_path());
  if (!xs) {
    PVBACK_LOG(Error, "cannot connect to XenStore: %s", std::strerror(xs.error()));
    return 1;
  }
  // The devices' tunables: a mistake in the file stops the start, naming the line (as a bad
  // --blk-arg does), rather than serving guests with values the operator did not choose.
  options->runtime_tunables = config.stats_dir() + "/tunables.conf";
  auto tuning = supervisor::Tuning::load(options->config_file, options->runtime_tunables);
  if (!tuning) {
    PVBACK_LOG(Error, "%s", tuning.error().c_str());
    return 2;
  }
  supervisor::Supervisor supervisor(*xs, config.self, std::move(*options), std::move(host), std::move(control),
                                    std::move(*tuning));
  return supervisor.run(signal_fd);
}
