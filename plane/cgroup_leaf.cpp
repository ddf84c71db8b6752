#include "plane/cgroup_leaf.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "base/log.hpp"
#include "plane/systemd_scope.hpp"

namespace pvback::plane {

void set_cgroup_parent(std::string_view value, CgroupOptions& o) {
  o.enabled = value != "none";
  o.systemd = value == "systemd";
  o.parent_named = o.enabled && !o.systemd && value != "auto";
  o.parent = o.parent_named ? std::string(value) : std::string();
}

std::string cgroup_leaf_name(const std::string& prefix, std::string_view device_name) {
  std::string leaf = prefix + std::string(device_name);
  std::ranges::replace(leaf, ' ', '-');
  std::ranges::replace(leaf, '/', '-');
  return leaf;
}

void enter_control_leaf(CgroupOptions& o, bool data_plane_process, const std::string& name, const std::string& leaf) {
  if (!data_plane_process || !o.enabled || o.parent_named) return;
  if (o.systemd || systemd_scopes_available()) {
    o.systemd = true;
    PVBACK_LOG(Info, "%s: data planes in systemd scopes in %s", name.c_str(), kDataPlaneSlice);
    return;
  }
  if (auto parent = sandbox::enter_own_leaf(leaf); !parent) {
    PVBACK_LOG(Warning, "%s: data planes run without memory, task and CPU limits: %s", name.c_str(),
               parent.error().c_str());
    o.enabled = false;
  } else if (!parent->empty()) {
    o.parent = *parent;
  }
}

CgroupLeaf::CgroupLeaf(CgroupOptions options, std::string name) : options_(std::move(options)), name_(std::move(name)) {}

sandbox::ResourceLimits CgroupLeaf::limits(const DefaultLimits& defaults) const {
  sandbox::ResourceLimits limits;
  const std::uint64_t memory = options_.memory_max != 0 ? options_.memory_max : defaults.memory_bytes;
  if (memory != 0) limits.memory_bytes = memory;
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's quarantine alone may hold 256 MiB of freed memory.
  if (options_.memory_max == 0) limits.memory_bytes.reset();
#endif
  const std::uint64_t tasks = options_.tasks_max != 0 ? options_.tasks_max : defaults.tasks;
  if (tasks != 0) limits.tasks = tasks;
  if (options_.cpu_max != 0) limits.cpu_percent = options_.cpu_max;
  return limits;
}

int CgroupLeaf::make(const DefaultLimits& defaults) {
  if (!options_.enabled) return 0;
  if (options_.systemd) {  // each data plane's scope is made as it starts (placer)
    scope_limits_ = limits(defaults);
    return 0;
  }
  remove();  // an earlier connection's (its data plane is gone)
  auto group = sandbox::Cgroup::create(options_.parent, leaf_name(), limits(defaults));
  if (!group) {
    if (options_.parent_named) {
      PVBACK_LOG(Error, "%s: cannot give the data plane its control group: %s", name_.c_str(), group.error().c_str());
      return EPERM;
    }
    if (!warned_)
      PVBACK_LOG(Warning, "%s: the data plane runs without memory, task and CPU limits: %s (--cgroup-parent names "
                 "a parent that can have them)", name_.c_str(), group.error().c_str());
    warned_ = true;
    return 0;
  }
  group_ = std::move(*group);
  PVBACK_LOG(Info, "%s: data plane control group %s", name_.c_str(), group_.describe().c_str());
  return 0;
}

std::function<int(pid_t)> CgroupLeaf::placer() {
  if (options_.enabled && options_.systemd) {
    return [this](pid_t pid) {
      const std::string unit = scope_unit_name(leaf_name(), pid);
      std::string why;
      if (int e = place_in_scope(pid, unit, "pvback data plane of " + name_, scope_limits_, why); e != 0) {
        PVBACK_LOG(Warning, "%s: the data plane (pid %d) runs without its scope, its limits, and cannot outlive its "
                   "control part: %s", name_.c_str(), pid, why.c_str());
        scope_dirs_.clear();
        return 0;
      }
      scope_dirs_ = {data_plane_scope_of(pid)};
      PVBACK_LOG(Info, "%s: data plane (pid %d) in %s", name_.c_str(), pid, unit.c_str());
      return 0;
    };
  }
  if (!group_.valid()) return {};
  return [this](pid_t pid) { return group_.attach(pid); };
}

void CgroupLeaf::adopt(pid_t pid) {
  if (options_.enabled && options_.systemd) {  // where its predecessor put it, with this process's limits
    const std::string scope = data_plane_scope_of(pid);
    scope_dirs_.clear();
    if (scope.empty()) return;
    scope_dirs_.push_back(scope);
    const std::string unit = scope.substr(scope.rfind('/') + 1);
    std::string why;
    if (set_scope_limits(unit, scope_limits_, why) != 0)
      PVBACK_LOG(Warning, "%s: the adopted data plane (pid %d) keeps the limits its predecessor gave %s: %s",
                 name_.c_str(), pid, unit.c_str(), why.c_str());
    else
      PVBACK_LOG(Info, "%s: adopted data plane (pid %d) in %s, limits set again", name_.c_str(), pid, unit.c_str());
    return;
  }
  if (!group_.valid()) return;
  if (int e = group_.attach(pid))
    PVBACK_LOG(Warning, "%s: cannot move the adopted data plane (pid %d) into its control group %s: %s; it serves "
               "on without its limits", name_.c_str(), pid, group_.describe().c_str(), std::strerror(e));
}

void CgroupLeaf::remove() {
  scope_dirs_.clear();  // systemd removes an empty scope itself
  if (!group_.valid()) return;
  if (int e = group_.remove(std::chrono::milliseconds(1000)); e != 0) {
    PVBACK_LOG(Warning, "%s: cannot remove the data plane's control group %s: %s", name_.c_str(),
               group_.describe().c_str(), std::strerror(e));
    group_ = sandbox::Cgroup();
  }
}

void CgroupLeaf::remove_orphan() {
  if (!options_.enabled || options_.systemd || group_.valid()) return;
  if (int e = sandbox::remove_leaf(options_.parent, leaf_name()); e != 0)
    PVBACK_LOG(Warning, "%s: cannot remove the control group %s a dead predecessor left: %s", name_.c_str(),
               leaf_name().c_str(), std::strerror(e));
}

}  // namespace pvback::plane
