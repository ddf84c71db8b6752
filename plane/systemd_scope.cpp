#include "plane/systemd_scope.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "grant/platform.hpp"

#ifdef PVBACK_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

namespace pvback::plane {

namespace {
[[maybe_unused]] constexpr const char* kPrivateSocket = "/run/systemd/private";
// The unit that starts and stops the guests (Debian's SysV script and upstream's unit alike).
[[maybe_unused]] constexpr const char* kGuestsUnit = "xendomains.service";
}  // namespace

bool systemd_scopes_available() {
#ifdef PVBACK_HAVE_SYSTEMD
  // The simulated hypervisor's backends are tests: a test suite run as root by a systemd service
  // must not leave scopes on the host (its data planes stay in the test's own cgroups).
  if (grant::PlatformConfig::from_env().kind == grant::PlatformConfig::Kind::Sim) return false;
  const char* id = std::getenv("INVOCATION_ID");
  return id != nullptr && *id != '\0' && ::geteuid() == 0 && ::access(kPrivateSocket, F_OK) == 0;
#else
  return false;
#endif
}

std::string scope_unit_name(const std::string& leaf, pid_t pid) {
  return "pvback-" + leaf + "-" + std::to_string(pid) + ".scope";
}

std::string data_plane_scope_of(pid_t pid) {
  const std::string dir = unified_cgroup_of(pid);
  const std::string prefix = std::string("/sys/fs/cgroup/") + kDataPlaneSlice + "/pvback-";
  return dir.starts_with(prefix) && dir.ends_with(".scope") ? dir : std::string();
}

std::string unified_cgroup_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("0::")) return "/sys/fs/cgroup" + line.substr(3);
  return {};
}

#ifdef PVBACK_HAVE_SYSTEMD
namespace {

struct BusClose {
  void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};

// MemoryMax=, TasksMax=, CPUQuota= as (sv) entries of an open a(sv): those `limits` has, and with
// `clear_others` the rest as infinity (a limit the unit had goes).
int append_limits(sd_bus_message* m, const sandbox::ResourceLimits& limits, bool clear_others) {
  constexpr std::uint64_t kInfinity = UINT64_MAX;
  int r = 0;
  if (limits.memory_bytes || clear_others)
    r = sd_bus_message_append(m, "(sv)", "MemoryMax", "t", limits.memory_bytes.value_or(kInfinity));
  if (r >= 0 && (limits.tasks || clear_others))
    r = sd_bus_message_append(m, "(sv)", "TasksMax", "t", limits.tasks.value_or(kInfinity));
  // CPUQuota=N% is CPUQuotaPerSecUSec = N * 10 ms per second.
  if (r >= 0 && (limits.cpu_percent || clear_others))
    r = sd_bus_message_append(m, "(sv)", "CPUQuotaPerSecUSec", "t",
                              limits.cpu_percent ? std::uint64_t{*limits.cpu_percent} * 10'000 : kInfinity);
  return r;
}

// StartTransientUnit's a(sv): what the scope is, where, whose, and its limits.
int append_properties(sd_bus_message* m, pid_t pid, const std::string& description,
                      const sandbox::ResourceLimits& limits) {
  int r = sd_bus_message_open_container(m, 'a', "(sv)");
  if (r >= 0) r = sd_bus_message_append(m, "(sv)", "Description", "s", description.c_str());
  if (r >= 0) r = sd_bus_message_append(m, "(sv)", "Slice", "s", kDataPlaneSlice);
  if (r >= 0) r = sd_bus_message_append(m, "(sv)", "PIDs", "au", 1, static_cast<std::uint32_t>(pid));
  // Removed once its process ended, however it ended (a SIGKILL leaves it failed): scopes of dead
  // data planes do not pile up across restarts.
  if (r >= 0) r = sd_bus_message_append(m, "(sv)", "CollectMode", "s", "inactive-or-failed");
  // At shutdown a scope is stopped (its data plane SIGTERMed) like any unit, in parallel with
  // everything it is not ordered against: ordered before xendomains (as the backends' units are),
  // it stops only once xendomains has saved or shut down the guests whose disks and NICs it serves.
  if (r >= 0) r = sd_bus_message_append(m, "(sv)", "Before", "as", 1, kGuestsUnit);
  if (r >= 0) r = append_limits(m, limits, false);
  if (r >= 0) r = sd_bus_message_close_container(m);
  return r;
}

// Calls the manager's `method` over its private socket, its arguments appended by `append`
// (sd_bus_message* -> an sd-bus result), waiting up to 2 s for the answer: the control part's loop
// (other devices' handshakes too) waits with it, and a manager that does not answer costs a scope
// or its limits, not the host its devices. 0 or an errno value with `why` set ("<method> <unit>:
// <the manager's message>").
template <class Append>
int call_manager(const char* method, const std::string& unit, std::string& why, Append&& append) {
  sd_bus* raw_bus = nullptr;
  int r = sd_bus_new(&raw_bus);
  if (r < 0) {
    why = std::string("sd_bus_new: ") + std::strerror(-r);
    return -r;
  }
  const std::unique_ptr<sd_bus, BusClose> bus(raw_bus);
  r = sd_bus_set_address(bus.get(), (std::string("unix:path=") + kPrivateSocket).c_str());
  if (r >= 0) r = sd_bus_start(bus.get());
  if (r < 0) {
    why = std::string("cannot reach systemd at ") + kPrivateSocket + ": " + std::strerror(-r);
    return -r;
  }
  sd_bus_message* raw_call = nullptr;
  r = sd_bus_message_new_method_call(bus.get(), &raw_call, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                     "org.freedesktop.systemd1.Manager", method);
  const std::unique_ptr<sd_bus_message, MessageUnref> call(raw_call);
  if (r >= 0) r = append(call.get());
  if (r < 0) {
    why = std::string("cannot build the ") + method + " call: " + std::strerror(-r);
    return -r;
  }
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  r = sd_bus_call(bus.get(), call.get(), 2'000'000, &error, &reply);
  sd_bus_message_unref(reply);
  if (r < 0) why = std::string(method) + " " + unit + ": " + (error.message != nullptr ? error.message : std::strerror(-r));
  sd_bus_error_free(&error);
  return r < 0 ? -r : 0;
}

}  // namespace
#endif

int place_in_scope(pid_t pid, const std::string& unit, const std::string& description,
                   const sandbox::ResourceLimits& limits, std::string& why) {
#ifndef PVBACK_HAVE_SYSTEMD
  static_cast<void>(pid), static_cast<void>(unit), static_cast<void>(description), static_cast<void>(limits);
  why = "pvback was built without libsystemd";
  return ENOTSUP;
#else
  const int e = call_manager("StartTransientUnit", unit, why, [&](sd_bus_message* m) {
    int r = sd_bus_message_append(m, "ss", unit.c_str(), "fail");
    if (r >= 0) r = append_properties(m, pid, description, limits);
    if (r >= 0) r = sd_bus_message_append(m, "a(sa(sv))", 0);  // no auxiliary units
    return r;
  });
  if (e != 0) return e;
  // The manager moves the pid when it runs the unit's start job, just after it answered.
  const std::string want = std::string("/") + kDataPlaneSlice + "/" + unit;
  for (int i = 0; i < 400; ++i) {
    if (unified_cgroup_of(pid).ends_with(want)) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  why = unit + " was started but pid " + std::to_string(pid) + " is not in it after 2 s";
  return ETIMEDOUT;
#endif
}

int set_scope_limits(const std::string& unit, const sandbox::ResourceLimits& limits, std::string& why) {
#ifndef PVBACK_HAVE_SYSTEMD
  static_cast<void>(unit), static_cast<void>(limits);
  why = "pvback was built without libsystemd";
  return ENOTSUP;
#else
  return call_manager("SetUnitProperties", unit, why, [&](sd_bus_message* m) {
    // runtime: a transient unit's properties live in /run anyway.
    int r = sd_bus_message_append(m, "sb", unit.c_str(), 1);
    if (r >= 0) r = sd_bus_message_open_container(m, 'a', "(sv)");
    if (r >= 0) r = append_limits(m, limits, true);
    if (r >= 0) r = sd_bus_message_close_container(m);
    return r;
  });
#endif
}

}  // namespace pvback::plane
