// A device's data plane in a control group of its own (sandbox/cgroup.hpp), the same for
// pvback-blk's vbds and pvback-net's vifs: the leaf "<prefix><type>-<domid>-<devid>" ("vbd-1-51712",
// "vif-5-0"; the prefix is the simulated host's tag) under the parent the operator chose, with the
// memory, task and CPU limits the backend sizes for the device. The control part makes it at
// connect, before any data plane of the connection runs; puts each data plane it launches there
// before giving it anything (Launch::place), a replacement after a death included; moves a data plane
// it adopts from a dead predecessor there (where that predecessor had put it); and removes it when
// the connection ends. A leaf whose control part was SIGKILLed is removed by whoever learns that
// its device is gone (remove_orphan, the supervisor's stop_orphan).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/cgroup.hpp"

namespace pvback::plane {

// The operator's choice (--cgroup-parent auto|none|PATH, --data-plane-memory-max SIZE,
// --data-plane-tasks-max N, --data-plane-cpu-max PERCENT), BackendOptions::cgroup and
// VifOptions::cgroup alike.
struct CgroupOptions {
  bool enabled = true;  // --cgroup-parent none: no leaf at all
  // --cgroup-parent systemd, or auto in a process systemd started: each data plane in a transient
  // scope of its own (plane/systemd_scope.hpp), which outlives this process.
  bool systemd = false;
  // Where the leaves go. Empty (auto): the cgroup this process is in, where a host that cannot have
  // the leaf (no such controller, cgroup v2's rule that a cgroup with processes has no limited
  // children) only costs a warning. A parent the operator named must work, or the device fails to
  // connect.
  std::string parent;
  bool parent_named = false;
  std::string prefix;            // of the leaf's name (PlatformConfig::host_tag)
  std::uint64_t memory_max = 0;  // bytes; 0: the backend's default for the device
  std::uint64_t tasks_max = 0;   // 0: the backend's default for the device
  unsigned cpu_max = 0;          // percent of one CPU; 0: no limit
};

// --cgroup-parent VALUE: "auto", "none", "systemd" or a path (one that cannot be used fails the
// device when it connects, naming the cause).
void set_cgroup_parent(std::string_view value, CgroupOptions& o);

// "vif 5/0" (a device's log name) -> "<prefix>vif-5-0".
std::string cgroup_leaf_name(const std::string& prefix, std::string_view device_name);

// A backend process started with the default parent (auto) by systemd (systemd_scopes_available):
// its data planes go into scopes (o.systemd), and it stays where it is. Otherwise, under cgroup v2:
// it leaves its own
// cgroup for a leaf `leaf` of it, where the data planes' groups become its siblings
// (sandbox::enter_own_leaf); the parent becomes the cgroup it left. If it cannot, its data planes
// run without limits (`o.enabled` = false), with a warning naming `name`. Nothing is done for a
// process with no data plane or a parent the operator named.
void enter_control_leaf(CgroupOptions& o, bool data_plane_process, const std::string& name, const std::string& leaf);

// What a backend sizes for one connection of its device; the operator's options override each.
struct DefaultLimits {
  std::uint64_t memory_bytes = 0;
  std::uint64_t tasks = 0;
};

class CgroupLeaf {
 public:
  CgroupLeaf() = default;
  // `name` is the device's log name ("vif 5/0"), which the leaf is named after.
  CgroupLeaf(CgroupOptions options, std::string name);

  // Creates (or reuses, with the limits set again) the leaf for a connection. 0; or EPERM when the
  // parent the operator named cannot hold it (logged, naming the device and the cause: the device
  // fails to connect rather than serve unlimited). With the automatic parent a failure is a
  // warning, logged once per device, and the data plane runs without the leaf.
  [[nodiscard]] int make(const DefaultLimits& defaults);
  // For Launch::place: moves the pid into the leaf (or its own scope); empty when there is none.
  // A scope systemd does not make is a warning: the data plane runs without its limits.
  std::function<int(pid_t)> placer();
  // A data plane adopted from a dead predecessor: moved into the leaf (it is there already unless
  // its predecessor made none; one in a scope stays in it); a failure is logged, the data plane
  // serves on.
  void adopt(pid_t pid);
  // After the connection's data plane ended: the leaf goes (a process that was not our child may
  // take a moment to leave it). A failure is logged and the leaf forgotten.
  void remove();
  // The device is gone and this process holds no leaf: one a dead predecessor made goes, once
  // empty (waiting up to a second).
  void remove_orphan();

  bool valid() const { return group_.valid(); }
  // The current data plane is in a systemd scope of its own, a unit that outlives this process's.
  bool own_unit() const { return options_.systemd && !scope_dirs_.empty(); }
  // One directory per cgroup hierarchy used (statistics); a scope's directory.
  const std::vector<std::string>& dirs() const { return options_.systemd ? scope_dirs_ : group_.dirs(); }
  std::string leaf_name() const { return cgroup_leaf_name(options_.prefix, name_); }

 private:
  CgroupOptions options_;
  std::string name_;
  sandbox::ResourceLimits limits(const DefaultLimits& defaults) const;
  sandbox::Cgroup group_;
  sandbox::ResourceLimits scope_limits_;  // systemd: what make() sized for the connection
  std::vector<std::string> scope_dirs_;   // systemd: the current data plane's scope
  bool warned_ = false;
};

}  // namespace pvback::plane
