// The supervisor proper, the host's control plane. It holds the host's one XenStore connection
// and serves every device there itself: each device's XenbusState machine and driver
// (blkback::start_vbd, netback::start_vif) run in this process, on that connection, and each
// device's rings in a sandboxed data-plane process, a child of this one. Its watch events are read
// once here and routed by token to the device they concern. Devices whose data path runs on
// threads of a control part (an image's qemu-storage-daemon, NBD, RBD, DPDK, --data-plane thread:
// a dying storage daemon there ends the process so that a successor re-executes from the
// recovery records) get a backend process of their own, as every device did before (and does
// under --process-per-device). A SIGKILLed supervisor leaves the data planes serving; its
// successor adopts them as a successor pvback-blk / pvback-net would.
//
// libxl's `xl create` / `xl block-attach` write /local/domain/<self>/backend/<type>/<domid>/<devid>
// and give up on the device (destroying a guest being created) unless the backend reaches
// InitWait within 10 s, so something must be watching before the toolstack runs. The supervisor
// watches backend/vbd and backend/vif and, level-triggered like BackendDevice, rescans both on
// every event: each device with a "state" node and no backend gets one. The backend itself
// follows the device from there, including its removal; the supervisor only restarts backends that
// exit while their device still wants one, and stops them all when it is stopped.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include <memory>
#include <optional>

#include "base/unique_fd.hpp"
#include "blkback/command_line.hpp"
#include "grant/platform.hpp"
#include "netback/command_line.hpp"
#include "supervisor/control.hpp"
#include "supervisor/options.hpp"
#include "supervisor/tuning.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::supervisor {

// What serving devices in this process takes: the platform and each backend's options, parsed from
// --blk-arg / --net-arg as pvback-blk and pvback-net parse theirs.
struct HostConfig {
  const grant::Platform* platform = nullptr;
  blkback::CommandLine blk;
  netback::CommandLine net;
};

class Supervisor {
 public:
  // `options` must have both binaries set. `xs` (and `host`'s platform) must outlive the
  // supervisor. Without `host` every device gets a backend process (--process-per-device).
  // `tuning`: the devices' tunables (the config file and what was set at run time).
  Supervisor(xenbus::XenStore& xs, DomId self, Options options, std::optional<HostConfig> host = std::nullopt,
             ControlServer control = {}, Tuning tuning = {});
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Serves until SIGTERM/SIGINT arrives on `signal_fd` (which must also report SIGCHLD and
  // SIGHUP), then stops every backend. 0, or 1 if the watches cannot be set up or the XenStore
  // connection is lost (noticed within about xenbus::kXenStoreProbeInterval; the backends are
  // then stopped as on SIGTERM and the error logged, so the service manager restarts us).
  int run(const UniqueFd& signal_fd);

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr const char* kWatchToken = "pvback-supervisor";
  struct Key {
    DeviceType type;
    DomId domid;
    std::uint32_t devid;
    auto operator<=>(const Key&) const = default;
  };
  struct Device {
    explicit Device(const Options& o) : backoff(o) {}
    std::string path;
    std::string name;  // "vbd 1/51712"
    pid_t pid = -1;
    // Served in this process (pid is then -1).
    std::unique_ptr<xenbus::DeviceService> service;
    Clock::time_point started{};
    bool restart_pending = false;
    Clock::time_point restart_at{};
    // The backend exited by itself with the device Closed (or died with it Closed and offline):
    // it is not started again until the toolstack re-plugs it (its state leaves Closed) or
    // removes it.
    bool finished = false;
    Backoff backoff;
  };

  std::vector<std::string> directories(DeviceType type) const;
  void rescan();
  void scan_type(DeviceType type, std::set<Key>& seen, std::set<std::string>& refused);
  void scan_directory(DeviceType type, const std::string& dir, std::set<Key>& seen, std::set<std::string>& refused);
  void consider(const Key& key, const std::string& path, std::set<Key>& seen, std::set<std::string>& refused);
  void spawn(Device& device, DeviceType type);
  // Starts serving the device: in this process if it can be, else in a backend process.
  void start_backend(Device& device, DeviceType type);
  bool serves_in_process(DeviceType type) const;
  void start_in_process(Device& device, DeviceType type);
  void reap();
  // A device's backend (process or in-process service) ended: it is started again, or forgotten
  // (removed), or left finished (closed). `by_itself`: it ended by its own decision.
  void after_end(std::map<Key, Device>::iterator it, bool by_itself, std::chrono::milliseconds ran);
  // Watch events: the supervisor's own make `scan` true, each device's are routed to it.
  void route_watch_events(bool& scan);
  std::optional<Key> key_of_token(std::string_view token) const;
  // In-process devices whose device is gone (removed, frontend gone): finished, then after_end.
  void end_removed_services();
  // Every in-process device disconnected, its recovery records kept (SIGTERM, lost XenStore).
  void finish_services();
  // The control socket's answers (control.hpp): now, or (restart, pause, resume) later through
  // control_.reply(client, ...).
  std::optional<std::string> answer(const ControlRequest& request, ClientId client);
  std::map<Key, Device>::const_iterator find_device(const std::string& name) const;
  std::optional<std::string> stats_of(const std::string& name, const Device& d) const;
  std::string node_values_json(const std::string& path) const;
  std::string info_json(const std::string& name, const Device& d) const;
  // restart, pause, resume: begun, answered once done; or refused now.
  std::optional<std::string> operate(const ControlRequest& request, const Key& key, ClientId client);
  std::string refusal(const std::string& command, const std::string& name, const Key& key, int error) const;
  // `set TARGET NAME=VALUE` (host_tuning.cpp); the device's tunables for info.
  std::optional<std::string> set_tunable(const ControlRequest& request);
  std::string tunables_json(const Device& d) const;
  std::string list_json() const;
  // The Prometheus exposition of the devices served in this process, and how many devices there
  // are by kind and by who serves them; write_metrics() puts it in <prometheus_dir>/pvback.prom.
  std::string metrics_text() const;
  void write_metrics();
  std::string device_json(const Key& key, const Device& d) const;
  // A device that will not be served again: a data plane its dead backend left serving stops, and
  // the control group that backend made for it goes.
  void stop_orphan(const Key& key) const;
  void child_exited(Device& device, DeviceType type, int status);
  int poll_timeout_ms() const;
  void stop_children(const UniqueFd& signal_fd);
  bool watch_all();
  void unwatch_all();

  xenbus::XenStore& xs_;
  DomId self_;
  Options options_;
  std::optional<HostConfig> host_;
  ControlServer control_;
  Tuning tuning_;
  std::map<Key, Device> devices_;
  std::set<std::string> refused_;  // entries refused in the last scan, so each is logged once
  bool stopping_ = false;
  bool watching_ = false;
  bool metrics_error_logged_ = false;
};

}  // namespace pvback::supervisor
