// The command-line options every backend with a data-plane process takes (pvback-blk's
// BackendOptions and pvback-net's VifOptions have these fields by the same names).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "plane/cgroup_leaf.hpp"
#include "sandbox/cgroup.hpp"

namespace pvback::plane {

// What a control part does with a connected device's data plane when it stops (SIGTERM, a lost
// XenStore) rather than the device ending (--on-stop): Stop it (it answers what it took and exits;
// a successor resumes the rings from the recovery records, and the guest sees a pause), or Leave it
// serving, as a SIGKILLed control part would, for a successor to adopt alive (the guest sees
// nothing; with no successor within --orphan-timeout-ms it stops by itself, its records kept).
// Auto leaves it where it outlives the control part's service anyway (its own systemd scope), so
// that `systemctl restart` and a package upgrade do not touch the guests' I/O.
enum class OnStop { Auto, Stop, Leave };

// Parses one of --data-plane process|thread, --data-plane-restart-burst N, --orphan-timeout-ms N,
// --on-stop auto|stop|leave,
// --no-sandbox, --sandbox-uid-base N, --data-plane-binary PATH into `o`, and the data plane's
// control group's --cgroup-parent auto|none|PATH, --data-plane-memory-max SIZE,
// --data-plane-tasks-max N, --data-plane-cpu-max PERCENT into `o.cgroup`; false if `arg` is none of
// them (or its value is missing or malformed). `value` is the next argument (nullptr: none), `i`
// its index, advanced past what is taken; `number(max)` parses `value` as a number up to `max` and
// advances `i` (it exits on a bad one).
template <class Options, class Number>
bool parse_data_plane_option(std::string_view arg, const char* value, int& i, Number&& number, Options& o) {
  if (arg == "--data-plane" && value != nullptr &&
      (std::string_view(value) == "process" || std::string_view(value) == "thread")) {
    o.data_plane_process = std::string_view(value) == "process";
    ++i;
  } else if (arg == "--data-plane-restart-burst") {
    o.data_plane_restart_burst = static_cast<unsigned>(number(1'000'000));
  } else if (arg == "--orphan-timeout-ms") {
    o.orphan_timeout = std::chrono::milliseconds(number(86'400'000));
  } else if (arg == "--on-stop" && value != nullptr &&
             (std::string_view(value) == "auto" || std::string_view(value) == "stop" ||
              std::string_view(value) == "leave")) {
    o.on_stop = std::string_view(value) == "auto"   ? OnStop::Auto
                : std::string_view(value) == "stop" ? OnStop::Stop
                                                    : OnStop::Leave;
    ++i;
  } else if (arg == "--no-sandbox") {
    o.sandbox = false;
  } else if (arg == "--sandbox-uid-base") {
    o.sandbox_uid_base = static_cast<std::uint32_t>(number(0xFFFF0000ul));
  } else if (arg == "--data-plane-binary" && value != nullptr) {
    o.data_plane_binary = value;
    ++i;
  } else if (arg == "--cgroup-parent" && value != nullptr) {
    set_cgroup_parent(value, o.cgroup);
    ++i;
  } else if (arg == "--data-plane-memory-max" && value != nullptr && sandbox::parse_size(value)) {
    o.cgroup.memory_max = *sandbox::parse_size(value);
    ++i;
  } else if (arg == "--data-plane-tasks-max") {
    o.cgroup.tasks_max = number(1u << 22);
  } else if (arg == "--data-plane-cpu-max") {
    o.cgroup.cpu_max = static_cast<unsigned>(number(100'000));
  } else {
    return false;
  }
  return true;
}

// The directory of a backend's records and its data planes' listening sockets: `chosen`
// (--recovery-dir) or else `fallback` (the platform's), created if need be. Empty, with a warning
// naming the device and `without` (what is lost without it), if it cannot be created.
std::string prepare_recovery_dir(const std::string& chosen, const std::string& fallback, const std::string& name,
                                 const char* without);

}  // namespace pvback::plane
