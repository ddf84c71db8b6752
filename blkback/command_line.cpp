#include "blkback/command_line.hpp"

#include <algorithm>
#include <cstring>

#include "blkback/tunables.hpp"
#include "plane/options.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::blkback {

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: pvback-blk --backend-path PATH [options]\n"
               "  --backend-path PATH          /local/domain/<be>/backend/vbd/<domid>/<devid>\n"
               "  --max-queues N               multi-queue-max-queues (default: usable CPUs, at most 8)\n"
               "  --max-ring-page-order N      max-ring-page-order (default 4)\n"
               "  --max-indirect-segments N    feature-max-indirect-segments, 0 disables (default 256, max 4096)\n"
               "  --no-persistent-grants       do not offer feature-persistent\n"
               "  --max-persistent-grants N    per queue (default 1056)\n"
               "  --persistent-idle-ms N       unmap persistent grants unused this long (default 60000)\n"
               "  --poll-max-us N              poll a busy queue's ring up to N us before sleeping (default 200, 0: never)\n"
               "  --submit-batch N             requests started per io_uring_enter (default 2, 0: a whole batch)\n"
               "  --set NAME=VALUE             a tunable by xen-blkback's name, as in /etc/pvback/pvback.conf:\n"
               "                               max_persistent_grants, persistent_grant_unused_seconds, max_queues,\n"
               "                               max_ring_page_order, indirect_threshold, feature_persistent,\n"
               "                               poll_max_us, submit_batch\n"
               "  --data-path copy|map         for non-persistent grants (default copy)\n"
               "  --direct auto|on|off         O_DIRECT on the storage (default auto: on, except on a PV dom0\n"
               "                               when guest pages are mapped, i.e. persistent grants or --data-path map)\n"
               "  --no-direct                  same as --direct off\n"
               "  --no-flush / --no-barrier    do not offer feature-flush-cache / feature-barrier\n"
               "  --recovery-dir DIR           per-queue crash-recovery records (default /run/pvback/recovery)\n"
               "  --no-recovery                no records: a killed or crashed process may lose or repeat answers\n"
               "  --stats-file PATH            live statistics as JSON (default: <run dir>/vbd-<domid>-<devid>.json)\n"
               "  --stats-interval-ms N        statistics and resize check period (default 1000)\n"
               "  --prometheus-textfile DIR    also write the statistics for Prometheus, as\n"
               "                               DIR/pvback-vbd-<domid>-<devid>.prom (node_exporter's\n"
               "                               --collector.textfile.directory=DIR reads it)\n"
               "  --image-cache writethrough|writeback\n"
               "                               images served by qemu-storage-daemon: a write is answered once\n"
               "                               QEMU's caches are in the file (default; a dead daemon loses no\n"
               "                               answered write) or at once (faster; a dead daemon loses those\n"
               "                               since the guest's last flush)\n"
               "  --data-plane process|thread  serve the rings in a data-plane process of their own, sandboxed,\n"
               "                               restarted at once if it dies (default process; thread: unconfined,\n"
               "                               for debugging)\n"
               "  --data-plane-restart-burst N restart a data plane that died at most N times within 10 s; one\n"
               "                               more death fails the device (default 5)\n"
               "  --orphan-timeout-ms N        a data plane whose control part died serves on this long for a\n"
               "                               successor to adopt it (default 60000)\n"
               "  --on-stop auto|stop|leave    when this process stops (SIGTERM) with the frontend connected:\n"
               "                               leave its data plane serving for the next one to adopt (the\n"
               "                               guest sees nothing), or stop it (the next one resumes the rings\n"
               "                               from the recovery records; the guest sees a pause); auto, the\n"
               "                               default, leaves it when it is in a systemd scope of its own\n"
               "  --no-sandbox                 do not confine the data-plane process (debugging)\n"
               "  --cgroup-parent auto|none|systemd|P  each data plane runs in a control group of its\n"
               "                               own: a systemd scope pvback-vbd-D-N-PID.scope in pvback.slice\n"
               "                               (systemd; auto, the default, when systemd started this\n"
               "                               process), vbd-D-N under P (a path in the cgroup hierarchy), or\n"
               "                               under this process's own cgroup (auto otherwise: a host that\n"
               "                               cannot have it only costs a warning); none: no cgroup\n"
               "  --data-plane-memory-max SIZE its memory limit, e.g. 512M (default 64M + 32M per queue, and\n"
               "                               256M more for an RBD image)\n"
               "  --data-plane-tasks-max N     its thread limit (default: 32 + per queue 1 + 4 per CPU, which\n"
               "                               io_uring's workers may take)\n"
               "  --data-plane-cpu-max PERCENT its CPU limit, 100 = one CPU (default: none)\n"
               "  --sandbox-uid-base N         the data plane runs as uid and gid N + the guest's domid\n"
               "                               (default 1879048192 = 0x70000000)\n"
               "  --data-plane-binary PATH     the executable run as data plane (default: this one)\n"
               "  --inject-latency-us N        testing: each storage operation waits a random 0..N us first, so\n"
               "                               completions come back out of order (default 0: off)\n");
}

std::expected<CommandLine, std::string> parse_command_line(const std::vector<std::string>& args) {
  CommandLine c;
  BackendOptions& options = c.options;
  std::string error;
  const int argc = static_cast<int>(args.size());
  for (int i = 0; i < argc && error.empty(); ++i) {
    const std::string& arg = args[static_cast<std::size_t>(i)];
    const char* value = i + 1 < argc ? args[static_cast<std::size_t>(i) + 1].c_str() : nullptr;
    const xenbus::OptionNumber number(args, i, error);
    if (arg == "--backend-path" && value) {
      c.backend_path = value;
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
      options.max_persistent_grants = static_cast<unsigned>(number(65'536));  // as max_persistent_grants
    } else if (arg == "--persistent-idle-ms") {
      options.persistent_idle_expiry = std::chrono::milliseconds(number(86'400'000));
    } else if (arg == "--poll-max-us") {
      options.poll_max = std::chrono::microseconds(number(static_cast<std::uint64_t>(blkback::kMaxPollMax.count())));
    } else if (arg == "--submit-batch") {
      options.submit_batch = static_cast<unsigned>(number(blkback::kMaxSubmitBatch));
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
      c.recovery_dir = value;
      ++i;
    } else if (arg == "--no-recovery") {
      c.recovery = false;
    } else if (arg == "--stats-file" && value) {
      c.stats_path = value;
      ++i;
    } else if (arg == "--prometheus-textfile" && value && *value != '\0') {
      c.prometheus_dir = value;
      ++i;
    } else if (arg == "--stats-interval-ms") {
      c.interval_ms = static_cast<unsigned>(std::max(10ul, number(3'600'000)));
    } else if (arg == "--image-cache" && value && (std::string_view(value) == "writethrough" ||
                                                    std::string_view(value) == "writeback")) {
      options.image_writeback = std::string_view(value) == "writeback";
      ++i;
    } else if (::pvback::plane::parse_data_plane_option(arg, value, i, number, options)) {
    } else if (arg == "--set" && value) {
      // A tunable by the kernel's name, as the config file and pvbackctl set it.
      error = set_tunable_option(vbd_tunables(), "vbd", options, value);
      ++i;
    } else if (arg == "--inject-latency-us") {
      options.inject_latency = std::chrono::microseconds(number(10'000'000));
    } else if (arg == "-h" || arg == "--help") {
      c.help = true;
    } else {
      error = "unknown or incomplete option " + arg;
    }
  }
  if (!error.empty()) return std::unexpected(error);
  return c;
}

}  // namespace pvback::blkback
