// pvback-supervisor's command line and the pieces of policy tests check without processes: which
// directory entries name a device, and how long to wait before restarting a backend that exited.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grant/types.hpp"

namespace pvback::supervisor {

enum class DeviceType { Vbd, Vif };
std::string_view type_name(DeviceType type);  // "vbd", "vif"
// A device as the operator names it (pvbackctl, the control socket, statistics files):
// "vbd-5-51712", "vif-5-0".
std::string device_name(DeviceType type, DomId domid, std::uint32_t devid);

struct Options {
  // Empty: pvback-blk / pvback-net in the directory of the supervisor's own executable.
  std::string blk_binary;
  std::string net_binary;
  // Appended after "--backend-path PATH", one argv element each (no shell splitting, so an
  // argument may contain spaces, e.g. --dpdk-eal-args).
  std::vector<std::string> blk_args;
  std::vector<std::string> net_args;
  // The former mode: every device gets a backend process of its own, none is served in this one.
  bool process_per_device = false;
  // The operator's control socket (supervisor/control.hpp); empty: <run dir>/control.sock,
  // "none": no socket.
  std::string control_socket;
  // Non-empty: node_exporter's textfile directory. The devices served in this process are written
  // to <dir>/pvback.prom at every statistics period; the pvback-blk / pvback-net processes started
  // for the others get --prometheus-textfile DIR and write pvback-<type>-<domid>-<devid>.prom.
  std::string prometheus_dir;
  // The tunables' file (supervisor/tuning.hpp); "none": none. A file that is not there is an
  // empty one.
  std::string config_file = "/etc/pvback/pvback.conf";
  // Where what `pvbackctl set` changed is kept (set by main: <run dir>/tunables.conf); empty: not
  // kept across restarts.
  std::string runtime_tunables;
  // The directories under backend/ whose devices are vbds: "vbd" (the default; what xen-blkback
  // serves) and/or "vbd3" (what Xen 4.19+'s libxl writes for a disk with backendtype=tap, so
  // that pvback serves the disks an operator marks so while xen-blkback serves the rest).
  std::vector<std::string> vbd_dirs = {"vbd"};
  bool serve_vbd = true;
  bool serve_vif = true;
  unsigned max_devices = 256;
  std::chrono::milliseconds stop_timeout{10000};  // SIGTERM to the children, then SIGKILL
  std::chrono::milliseconds restart_delay{1000};   // first restart; doubles per quick exit
  std::chrono::milliseconds max_restart_delay{30000};
  std::chrono::milliseconds stable_after{60000};    // a child that ran this long starts over at restart_delay
  // Where pvback-blk and pvback-net keep their recovery records and their data planes' listening
  // sockets (their --recovery-dir, else the platform's default; empty: --no-recovery). A device
  // whose backend died and is not restarted (it is gone) has a data plane left serving stopped
  // through it.
  std::string blk_recovery_dir;
  std::string net_recovery_dir;
  // Where pvback-blk and pvback-net put their data planes' control groups (their --cgroup-parent:
  // "" = their own cgroup, "none" = no groups), and what their names start with
  // (PlatformConfig::host_tag): the leaf of a device whose backend died and is not restarted goes
  // with its data plane.
  std::string blk_cgroup_parent;
  std::string net_cgroup_parent;
  std::string cgroup_prefix;
};

// Parses argv[1..]. A value is the error message for the user; "help" when -h/--help was given.
std::expected<Options, std::string> parse_options(const std::vector<std::string>& args);

// Where pvback-blk's and pvback-net's data planes' control groups go (blk_cgroup_parent,
// net_cgroup_parent), the same way for both: a backend's own --cgroup-parent (its --blk-arg /
// --net-arg) is kept as given; a backend given none is told `own`, the cgroup the supervisor left for
// its leaf (sandbox::enter_own_leaf, under cgroup v2), as its --cgroup-parent; "" (nothing had to
// move) leaves it at auto; an error (the supervisor could not leave it) gives it "none", the
// warning logged by the caller. needs_own_cgroup: whether some backend was given none.
bool needs_own_cgroup(const Options& options);
void settle_cgroup_parents(Options& options, const std::expected<std::string, std::string>& own);
void print_usage(std::FILE* out);

// A directory entry under backend/<type>/ (a frontend domid) or backend/<type>/<domid>/ (a devid):
// plain decimal in canonical form (no sign, no leading zero), domids at most 0x7FEF (the guest
// range), devids at most 2^32-1. Anything else ("abc", "..", "007", "") is not a device.
std::optional<DomId> parse_domid_entry(std::string_view name);
std::optional<std::uint32_t> parse_devid_entry(std::string_view name);

// A toolstack-written name made safe for one log line: non-printable bytes escaped, truncated.
std::string printable(std::string_view text);

// The restart delay of one device: `restart_delay` after the first quick exit, doubling up to
// `max_restart_delay`; a child that ran for `stable_after` or longer resets it.
class Backoff {
 public:
  explicit Backoff(const Options& options)
      : initial_(options.restart_delay), max_(options.max_restart_delay), stable_(options.stable_after) {}
  std::chrono::milliseconds after_exit(std::chrono::milliseconds ran) {
    if (ran >= stable_) current_ = std::chrono::milliseconds(0);
    current_ = current_.count() == 0 ? initial_ : std::min(current_ * 2, max_);
    return current_;
  }

 private:
  std::chrono::milliseconds initial_, max_, stable_;
  std::chrono::milliseconds current_{0};
};

}  // namespace pvback::supervisor
