#include "netback/command_line.hpp"

#include <algorithm>

#include "netback/tunables.hpp"
#include "plane/options.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::netback {

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: pvback-net --backend-path PATH [options]\n"
               "  --backend-path PATH        /local/domain/<be>/backend/vif/<domid>/<handle>\n"
               "  --exit tap|dpdk            where guest traffic goes (default tap)\n"
               "  --tap-name NAME            TAP device name (default vif<domid>.<handle>)\n"
               "  --tap-up                   bring the TAP up (normally the hotplug script does it)\n"
               "  --dpdk-devargs ARGS        the DPDK port, e.g. net_null0, net_tap0,iface=x,\n"
               "                             net_memif0,role=server, net_vhost0,iface=/sock,client=1\n"
               "  --dpdk-eal-args \"ARGS\"     extra EAL arguments (default: --no-huge -m 256 --no-shconf ...)\n"
               "  --dpdk-tso                 use the DPDK port's TSO when it has it (default off)\n"
               "  --no-dpdk-soft-gso         do not segment the guest's TCP/IPv4 GSO frames in software for a\n"
               "                             DPDK port without TSO (then the guest is offered no GSO)\n"
               "  --max-queues N             multi-queue-max-queues (default: usable CPUs, at most 8)\n"
               "  --no-split-event-channels  --no-ctrl-ring  --no-multicast-control  --no-gso  --no-xdp\n"
               "  --max-slots N              TX packets of more slots are dropped (default 18)\n"
               "  --fatal-slots N            TX packets of more slots disconnect the vif (default 20)\n"
               "  --rx-stall-timeout-ms N    no RX buffers this long: carrier off, drop (default 60000)\n"
               "  --set NAME=VALUE           a tunable by xen-netback's name, as in /etc/pvback/pvback.conf:\n"
               "                             max_queues, separate_tx_rx_irq, provides_xdp_headroom,\n"
               "                             fatal_skb_slots, rx_stall_timeout_msecs\n"
               "  --data-plane process|thread  serve the rings in a sandboxed data-plane process of the vif's own,\n"
               "                             restarted at once if it dies (default process; the DPDK exit's rings\n"
               "                             are always served on threads of pvback-net)\n"
               "  --data-plane-restart-burst N  restart a data plane that died at most N times within 10 s; one\n"
               "                             more death fails the vif (default 5)\n"
               "  --orphan-timeout-ms N      a data plane whose control part died serves on this long for a\n"
               "                             successor to adopt it (default 60000)\n"
               "  --on-stop auto|stop|leave  when this process stops (SIGTERM) with the frontend connected:\n"
               "                             leave its data plane serving for the next one to adopt (the\n"
               "                             guest sees nothing), or stop it (the next one resumes the rings\n"
               "                             from the recovery record; the guest sees a pause); auto, the\n"
               "                             default, leaves it when it is in a systemd scope of its own\n"
               "  --no-sandbox               do not confine the data-plane process (debugging)\n"
               "  --cgroup-parent auto|none|systemd|P  each data plane runs in a control group of its\n"
               "                             own: a systemd scope pvback-vif-D-N-PID.scope in pvback.slice\n"
               "                             (systemd; auto, the default, when systemd started this\n"
               "                             process), vif-D-N under P (a path in the cgroup hierarchy), or\n"
               "                             under this process's own cgroup (auto otherwise: a host that\n"
               "                             cannot have it only costs a warning); none: no cgroup\n"
               "  --data-plane-memory-max SIZE  its memory limit, e.g. 256M (default 32M + 32M per queue)\n"
               "  --data-plane-tasks-max N   its thread limit (default 16 + the queues)\n"
               "  --data-plane-cpu-max PERCENT  its CPU limit, 100 = one CPU (default: none)\n"
               "  --sandbox-uid-base N       the data plane runs as uid and gid N + the guest's domid\n"
               "                             (default 1879048192 = 0x70000000)\n"
               "  --data-plane-binary PATH   the executable run as data plane (default: this one)\n"
               "  --recovery-dir DIR         the vif's record (exactly-once ring resumption, the guest's hash and\n"
               "                             multicast settings) and its data plane's socket (default\n"
               "                             /run/pvback/recovery)\n"
               "  --no-recovery              the record in memory of this process only: a successor of the whole\n"
               "                             backend takes the rings from rsp_prod\n"
               "  --stats-file PATH          live statistics as JSON (default: <run dir>/vif-<domid>-<handle>.json)\n"
               "  --stats-interval-ms N      statistics period (default 1000)\n"
               "  --prometheus-textfile DIR  also write the statistics for Prometheus, as\n"
               "                             DIR/pvback-vif-<domid>-<handle>.prom (node_exporter's\n"
               "                             --collector.textfile.directory=DIR reads it)\n");
}

std::expected<CommandLine, std::string> parse_command_line(const std::vector<std::string>& args) {
  CommandLine c;
  VifOptions& options = c.options;
  std::string error;
  const int argc = static_cast<int>(args.size());
  for (int i = 0; i < argc && error.empty(); ++i) {
    const std::string& arg = args[static_cast<std::size_t>(i)];
    const char* value = i + 1 < argc ? args[static_cast<std::size_t>(i) + 1].c_str() : nullptr;
    const xenbus::OptionNumber number(args, i, error);
    auto text = [&](std::string& into) {
      if (value == nullptr) {
        error = arg + " needs a value";
        return;
      }
      into = value;
      ++i;
    };
    if (arg == "--backend-path") {
      text(c.backend_path);
    } else if (arg == "--exit") {
      text(c.exit_kind);
    } else if (arg == "--tap-name") {
      text(c.tap_name);
    } else if (arg == "--tap-up") {
      c.tap_up = true;
    } else if (arg == "--dpdk-devargs") {
      text(c.dpdk_devargs);
    } else if (arg == "--dpdk-eal-args") {
      text(c.dpdk_eal_args);
    } else if (arg == "--dpdk-tso") {
      c.dpdk_tso = true;
    } else if (arg == "--no-dpdk-soft-gso") {
      c.dpdk_soft_gso = false;
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
      text(c.recovery_dir);
    } else if (arg == "--no-recovery") {
      c.recovery = false;
    } else if (arg == "--stats-file") {
      text(c.stats_path);
    } else if (arg == "--prometheus-textfile") {
      text(c.prometheus_dir);
    } else if (arg == "--stats-interval-ms") {
      c.interval_ms = static_cast<unsigned>(std::max(10ul, number(3'600'000)));
    } else if (arg == "--set" && value) {
      // A tunable by the kernel's name, as the config file and pvbackctl set it.
      error = set_tunable_option(vif_tunables(), "vif", options, value);
      ++i;
    } else if (arg == "-h" || arg == "--help") {
      c.help = true;
    } else {
      error = "unknown option " + arg;
    }
  }
  if (error.empty() && c.exit_kind != "tap" && c.exit_kind != "dpdk") error = "--exit is tap or dpdk";
  if (error.empty() && c.exit_kind == "dpdk" && c.dpdk_devargs.empty()) error = "--exit dpdk needs --dpdk-devargs";
  if (!error.empty()) return std::unexpected(error);
  return c;
}

}  // namespace pvback::netback
