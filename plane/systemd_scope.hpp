// A data plane in a transient systemd scope unit of its own, for a backend that runs as a systemd
// service (--cgroup-parent systemd, chosen by itself under "auto" when systemd started it).
//
// Why not a leaf of the service's own cgroup (plane/cgroup_leaf.hpp): whatever is in a service's
// cgroup dies with its main process. When the supervisor is SIGKILLed, crashes or misses its
// watchdog, systemd's KillMode=mixed SIGKILLs every data plane below it, and its successor can only
// start new ones that resume the rings from their records (a pause the guest sees) instead of
// adopting the ones that were serving. KillMode=process would spare them, but systemd 252 (Debian
// 12) then cannot put the successor into the unit's cgroup, whose children have controllers
// (status 219/CGROUP), and DelegateSubgroup= comes only in systemd 254. A scope is systemd's own
// way of holding processes that some other program started (systemd-run --scope, logind's
// sessions, libvirt's machines): the manager moves the pid into "<unit>.scope" in the slice and
// enforces its limits, and the scope outlives the service that asked for it, until its last process
// ended; then systemd removes it.
//
// The request goes over the manager's private socket (/run/systemd/private, root only), the way
// systemctl reaches PID 1, so a dom0 without a D-Bus broker works as well.
#pragma once
#include <sys/types.h>

#include <string>

#include "sandbox/cgroup.hpp"

namespace pvback::plane {

// The slice every data plane's scope goes into: `systemctl status pvback.slice` lists them all,
// and a drop-in for it sets limits for all of them together.
inline constexpr const char* kDataPlaneSlice = "pvback.slice";

// Whether this process was started by systemd as (part of) a unit, as root, with the manager's
// private socket reachable: INVOCATION_ID set, /run/systemd/private there. A build without
// libsystemd, or the simulated hypervisor's backends: never.
bool systemd_scopes_available();

// "pvback-vbd-1-51712-4242.scope": the leaf's name and the pid (a replacement data plane's scope
// is another unit, since the dead one's may not be collected yet).
std::string scope_unit_name(const std::string& leaf, pid_t pid);

// Asks systemd to make `unit` a scope in kDataPlaneSlice holding `pid`, with `limits`
// (MemoryMax=, TasksMax=, CPUQuota=), ordered before xendomains.service (at shutdown it stops after
// the guests), collected once it is inactive or failed; waits (up to 2 s for the answer, 2 s more)
// until the kernel shows the pid in it. 0, or an errno value with `why` set ("StartTransientUnit:
// Access denied").
[[nodiscard]] int place_in_scope(pid_t pid, const std::string& unit, const std::string& description,
                                 const sandbox::ResourceLimits& limits, std::string& why);

// Sets a running scope's MemoryMax=, TasksMax=, CPUQuota= to `limits` (those it has): an adopted
// data plane gets what this control part sizes for its device, not what its predecessor did.
// 0, or an errno value with `why` set. Waits up to 2 s for the manager.
[[nodiscard]] int set_scope_limits(const std::string& unit, const sandbox::ResourceLimits& limits, std::string& why);

// The scope `pid` is in, if it is a data plane's ("/sys/fs/cgroup/pvback.slice/pvback-...scope"),
// else "" (a predecessor whose scope request failed left it in its unit's cgroup).
std::string data_plane_scope_of(pid_t pid);

// The cgroup v2 directory `pid` is in ("/sys/fs/cgroup/pvback.slice/pvback-vbd-1-51712-4242.scope"),
// or "" if it cannot be read.
std::string unified_cgroup_of(pid_t pid);

}  // namespace pvback::plane
