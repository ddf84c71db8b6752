// The main loop every one-device backend process (pvback-blk, pvback-net) runs: XenStore watch
// events into the BackendDevice, fatal protocol errors from data-path threads into
// report_fatal(), a periodic timer (statistics, resize checks) and SIGTERM/SIGINT/SIGHUP, until
// the device is removed, a signal arrives or the XenStore connection is lost.
#pragma once
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include "base/unique_fd.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::xenbus {

// Carries the first fatal error a data-path thread reports to the main loop (an eventfd wakes it).
class FatalLatch {
 public:
  FatalLatch();
  // Thread-safe. The first error wins until take() collects it.
  void post(int error, const std::string& reason);
  int fd() const { return event_fd_.get(); }
  // Main thread: the error (0 if none) and its reason; clears the latch.
  std::pair<int, std::string> take();

 private:
  UniqueFd event_fd_;
  std::mutex mutex_;
  int error_ = 0;
  std::string reason_;
};

// The live statistics file of a backend process: its parent directory is created, each write
// replaces it atomically, and a failure is logged once (naming the device), not on every period.
class StatsFile {
 public:
  StatsFile(std::string path, std::string device_name);
  // "<run_dir>/<type>-<frontend domid>-<devid>.json", e.g. vif-5-0.json.
  static std::string default_path(const std::string& run_dir, const BackendPath& device);
  const std::string& path() const { return path_; }
  void write(const std::string& content);

 private:
  std::string path_;
  std::string device_name_;
  bool error_logged_ = false;
};

// Blocks SIGTERM/SIGINT/SIGHUP in this thread (call it before any thread starts, so every thread
// inherits the mask) and returns a signalfd that reports them. Also ignores SIGPIPE.
UniqueFd take_termination_signals();

struct DaemonHooks {
  // After watch events were handled (any change under the backend node fires them).
  std::function<void()> after_xenstore_events;
  // A posted fatal error: report it if it still concerns the current connection.
  std::function<void(int error, const std::string& reason)> on_fatal;
  std::function<void()> on_timer;
  // Called on every backend state change, after a fatal error, on the timer and at exit.
  std::function<void()> write_stats;
  // One more fd to poll (-1: none), asked again every round, and what to do when it is readable
  // (pvback-blk: its data-plane process said something or died).
  std::function<int()> extra_fd;
  std::function<void()> on_extra_fd;
};

// Runs until the device is removed (exit code 0), a signal arrives (0) or the XenStore connection
// is lost (1, logged naming the device and the cause). A lost connection is noticed by the
// liveness probe every kXenStoreProbeInterval, or at once when any XenStore call fails with a
// connection error; the caller must then stop serving (disconnect the driver) and exit.
int run_backend_daemon(BackendDevice& device, FatalLatch& fatal, const UniqueFd& signal_fd, unsigned interval_ms,
                       const DaemonHooks& hooks);

}  // namespace pvback::xenbus
