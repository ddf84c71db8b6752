// The supervisor proper: one backend process per device the toolstack creates.
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

#include "base/unique_fd.hpp"
#include "supervisor/options.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::supervisor {

class Supervisor {
 public:
  // `options` must have both binaries set. `xs` must outlive the supervisor.
  Supervisor(xenbus::XenStore& xs, DomId self, Options options);
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Serves until SIGTERM/SIGINT arrives on `signal_fd` (which must also report SIGCHLD and
  // SIGHUP), then stops every backend. 0, or 1 if the watches cannot be set up or the XenStore
  // connection is lost (noticed within about xenbus::kXenStoreProbeInterval; the backends are
  // then stopped as on SIGTERM and the error logged, so the service manager restarts us).
  int run(const UniqueFd& signal_fd);

 private:
  using Clock = std::chrono::steady_clock;
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
    Clock::time_point started{};
    bool restart_pending = false;
    Clock::time_point restart_at{};
    // The backend exited by itself with the device Closed (or died with it Closed and offline):
    // it is not started again until the toolstack re-plugs it (its state leaves Closed) or
    // removes it.
    bool finished = false;
    Backoff backoff;
  };

  std::string directory(DeviceType type) const;
  void rescan();
  void scan_type(DeviceType type, std::set<Key>& seen, std::set<std::string>& refused);
  void consider(const Key& key, const std::string& path, std::set<Key>& seen, std::set<std::string>& refused);
  void spawn(Device& device, DeviceType type);
  void reap();
  // A vbd that will not be served again: a data plane its dead pvback-blk left serving stops.
  void stop_orphan(const Key& key) const;
  void child_exited(Device& device, DeviceType type, int status);
  int poll_timeout_ms() const;
  void stop_children(const UniqueFd& signal_fd);
  bool watch_all();
  void unwatch_all();

  xenbus::XenStore& xs_;
  DomId self_;
  Options options_;
  std::map<Key, Device> devices_;
  std::set<std::string> refused_;  // entries refused in the last scan, so each is logged once
  bool stopping_ = false;
  bool watching_ = false;
};

}  // namespace pvback::supervisor
