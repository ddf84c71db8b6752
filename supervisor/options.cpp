#include "supervisor/options.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "xenbus/xenstore.hpp"

namespace pvback::supervisor {

namespace {

// Xen's guest domids end below DOMID_FIRST_RESERVED (0x7FF0).
constexpr std::uint64_t kMaxGuestDomId = 0x7FEF;

// Canonical decimal only: the entry name is put back into paths and logs verbatim, so "007" must
// not pass as 7 and then name a different node than the one that was validated.
std::optional<std::uint64_t> canonical_uint(std::string_view name, std::uint64_t max) {
  if (name.empty() || name.size() > 10 || (name.size() > 1 && name[0] == '0')) return std::nullopt;
  auto value = xenbus::parse_uint(name, max);
  if (!value) return std::nullopt;
  return *value;
}

}  // namespace

std::string_view type_name(DeviceType type) { return type == DeviceType::Vbd ? "vbd" : "vif"; }

std::string device_name(DeviceType type, DomId domid, std::uint32_t devid) {
  return std::string(type_name(type)) + "-" + std::to_string(domid) + "-" + std::to_string(devid);
}

namespace {

// The value of a backend's --cgroup-parent ("auto" as ""), if it was given one.
std::optional<std::string> given_cgroup_parent(const std::vector<std::string>& args) {
  const auto given = std::ranges::find(args, "--cgroup-parent");
  if (given == args.end() || given + 1 == args.end()) return std::nullopt;
  return *(given + 1) == "auto" ? std::string() : *(given + 1);
}

}  // namespace

bool needs_own_cgroup(const Options& options) {
  return !given_cgroup_parent(options.blk_args) || !given_cgroup_parent(options.net_args);
}

void settle_cgroup_parents(Options& options, const std::expected<std::string, std::string>& own) {
  for (auto [args, parent] : {std::pair(&options.blk_args, &options.blk_cgroup_parent),
                              std::pair(&options.net_args, &options.net_cgroup_parent)}) {
    if (auto given = given_cgroup_parent(*args)) {
      *parent = *given;
    } else if (!own) {
      *parent = "none";
      args->insert(args->begin(), {"--cgroup-parent", "none"});
    } else if (!own->empty()) {
      *parent = *own;
      args->insert(args->begin(), {"--cgroup-parent", *own});
    } else {
      parent->clear();
    }
  }
}

std::optional<DomId> parse_domid_entry(std::string_view name) {
  auto v = canonical_uint(name, kMaxGuestDomId);
  if (!v) return std::nullopt;
  return static_cast<DomId>(*v);
}

std::optional<std::uint32_t> parse_devid_entry(std::string_view name) {
  auto v = canonical_uint(name, UINT32_MAX);
  if (!v) return std::nullopt;
  return static_cast<std::uint32_t>(*v);
}

std::string printable(std::string_view text) {
  constexpr std::size_t kMax = 64;
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    }
  }
  if (text.size() > kMax) out += "...";
  return out;
}

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: pvback-supervisor [options]\n"
               "The host's control plane: serves every /local/domain/<self>/backend/vbd/<domid>/<devid> and\n"
               ".../backend/vif/<domid>/<handle> the toolstack creates on its one XenStore connection, each\n"
               "device's rings in a sandboxed data-plane process. Devices whose data path runs on threads of a\n"
               "control part (images, NBD, RBD, the DPDK exit, --data-plane thread) get a pvback-blk or\n"
               "pvback-net process of their own.\n"
               "  --process-per-device     a pvback-blk / pvback-net process for every device (the former mode)\n"
               "  --control-socket PATH    the operator's socket (default <run dir>/control.sock; none: no socket)\n"
               "  --prometheus-textfile DIR  the devices' statistics for Prometheus: DIR/pvback.prom for those\n"
               "                           served here, DIR/pvback-<type>-<domid>-<devid>.prom from backend\n"
               "                           processes (node_exporter's --collector.textfile.directory=DIR)\n"
               "  --config FILE            the devices' tunables, by the kernel backends' names, with per-guest\n"
               "                           and per-device overrides (default /etc/pvback/pvback.conf, read again\n"
               "                           on SIGHUP for the devices started after it; none: no file)\n"
               "  --blk-binary PATH        default: pvback-blk next to this executable\n"
               "  --net-binary PATH        default: pvback-net next to this executable\n"
               "  --blk-arg ARG            a pvback-blk option for every vbd (repeat for each argument)\n"
               "  --net-arg ARG            a pvback-net option for every vif (repeat for each argument)\n"
               "  --vbd-dir vbd|vbd3|both  the disks to serve: backend/vbd (default, what xen-blkback serves),\n"
               "                           backend/vbd3 (Xen 4.19+'s backendtype=tap disks: pvback serves those\n"
               "                           an operator marks so, xen-blkback the rest), or both\n"
               "  --only vbd|vif           serve one device type only\n"
               "  --max-devices N          backends run at most (default 256)\n"
               "  --stop-timeout-ms N      on SIGTERM, wait this long for the backends, then SIGKILL (default 10000)\n"
               "  --restart-delay-ms N     first restart delay of a backend that exited (default 1000;\n"
               "                           doubles up to --max-restart-delay-ms, default 30000)\n"
               "  --max-restart-delay-ms N\n");
}

std::expected<Options, std::string> parse_options(const std::vector<std::string>& args) {
  Options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool has_value = i + 1 < args.size();
    auto value = [&]() -> std::expected<std::string, std::string> {
      if (!has_value) return std::unexpected(arg + " needs a value");
      return args[++i];
    };
    auto number = [&](std::uint64_t min, std::uint64_t max) -> std::expected<std::uint64_t, std::string> {
      auto v = value();
      if (!v) return std::unexpected(v.error());
      auto n = xenbus::parse_uint(*v, max);
      if (!n || *n < min)
        return std::unexpected(arg + " needs a number from " + std::to_string(min) + " to " + std::to_string(max));
      return *n;
    };
    std::string error;
    auto take_ms = [&](std::chrono::milliseconds& into, std::uint64_t min) {
      auto n = number(min, 3'600'000);
      if (n) into = std::chrono::milliseconds(*n); else error = n.error();
    };
    if (arg == "--blk-binary" || arg == "--net-binary") {
      auto v = value();
      if (!v || v->empty()) return std::unexpected(arg + " needs a path");
      (arg == "--blk-binary" ? o.blk_binary : o.net_binary) = *v;
    } else if (arg == "--blk-arg" || arg == "--net-arg") {
      auto v = value();
      if (!v) return std::unexpected(v.error());
      (arg == "--blk-arg" ? o.blk_args : o.net_args).push_back(*v);
    } else if (arg == "--process-per-device") {
      o.process_per_device = true;
    } else if (arg == "--control-socket") {
      auto v = value();
      if (!v || v->empty()) return std::unexpected(arg + " needs a path");
      o.control_socket = *v;
    } else if (arg == "--config") {
      auto v = value();
      if (!v || v->empty()) return std::unexpected(arg + " needs a path (or none)");
      o.config_file = *v == "none" ? "" : *v;
    } else if (arg == "--prometheus-textfile") {
      auto v = value();
      if (!v || v->empty()) return std::unexpected(arg + " needs a directory");
      o.prometheus_dir = *v;
    } else if (arg == "--vbd-dir") {
      auto v = value();
      if (!v || (*v != "vbd" && *v != "vbd3" && *v != "both"))
        return std::unexpected("--vbd-dir needs vbd, vbd3 or both");
      o.vbd_dirs = *v == "both" ? std::vector<std::string>{"vbd", "vbd3"} : std::vector<std::string>{*v};
    } else if (arg == "--only") {
      auto v = value();
      if (!v || (*v != "vbd" && *v != "vif")) return std::unexpected("--only needs vbd or vif");
      o.serve_vbd = *v == "vbd";
      o.serve_vif = *v == "vif";
    } else if (arg == "--max-devices") {
      auto n = number(1, 65536);
      if (!n) return std::unexpected(n.error());
      o.max_devices = static_cast<unsigned>(*n);
    } else if (arg == "--stop-timeout-ms") {
      take_ms(o.stop_timeout, 0);
    } else if (arg == "--restart-delay-ms") {
      take_ms(o.restart_delay, 1);
    } else if (arg == "--max-restart-delay-ms") {
      take_ms(o.max_restart_delay, 1);
    } else if (arg == "-h" || arg == "--help") {
      return std::unexpected("help");
    } else {
      return std::unexpected("unknown option " + printable(arg));
    }
    if (!error.empty()) return std::unexpected(error);
  }
  if (o.max_restart_delay < o.restart_delay) o.max_restart_delay = o.restart_delay;
  return o;
}

}  // namespace pvback::supervisor
