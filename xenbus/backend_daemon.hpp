// The main loop every one-device backend process (pvback-blk, pvback-net) runs: XenStore watch
// events into the BackendDevice, fatal protocol errors from data-path threads into
// report_fatal(), a periodic timer (statistics, resize checks) and SIGTERM/SIGINT/SIGHUP, until
// the device is removed, a signal arrives or the XenStore connection is lost. The host daemon
// (pvback-supervisor) runs the same per-device steps (DeviceService, on_*) for every device it
// serves from one loop of its own.
#pragma once
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/tunables.hpp"
#include "base/unique_fd.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::prometheus {
class Exposition;
}

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
  // "<dir>/pvback-<type>-<frontend domid>-<devid>.prom": a one-device backend's Prometheus
  // textfile (the host daemon writes one file, <dir>/pvback.prom, for every device it serves).
  static std::string prometheus_path(const std::string& dir, const BackendPath& device);
  const std::string& path() const { return path_; }
  void write(const std::string& content);
  // The file goes (its device is no longer served by this process).
  void remove();

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

// How an operator's request that takes a while (the control socket's restart, pause, resume) ended.
struct Outcome {
  int error = 0;         // 0: done; otherwise an errno value, and `message` says what happened
  std::string message;   // for the operator
  // What it did, by name ("data_plane_pid", "drained", "drain_ms", ...).
  std::vector<std::pair<std::string, std::int64_t>> figures;

  static Outcome failed(int error, std::string message) { return {error, std::move(message), {}}; }
};
using OperationDone = std::function<void(const Outcome&)>;

// One served device: its XenbusState machine, its driver and whatever the driver needs (storage,
// exit, statistics file), with the hooks the loop calls. Made by each backend's library
// (blkback::start_vbd, netback::start_vif) for its own process or for the host daemon's.
class DeviceService {
 public:
  virtual ~DeviceService() = default;
  virtual BackendDevice& device() = 0;
  // The device's statistics as its file holds them (JSON).
  virtual std::string stats_json() const = 0;
  // Its series for Prometheus (base/prometheus.hpp), added to a host-wide exposition.
  virtual void append_metrics(prometheus::Exposition& e) const = 0;
  // The data plane serving its rings, -1 if none (not connected, or served on threads).
  virtual pid_t data_plane_pid() const = 0;
  // What it serves, for an operator: the storage's params, the exit's name.
  virtual std::string target() const = 0;
  // An operator's requests, which the loop never waits for: 0 when begun, `done` then called once
  // from the loop (a data plane's message or end, the timer, a disconnection), perhaps before this
  // returns; otherwise an errno value, `done` never called: ENOTCONN (no data plane: the frontend is
  // not connected), EBUSY (another of them is under way on the device), EALREADY (paused already,
  // or not paused), EOPNOTSUPP (not for this kind of device).
  // Restarts the data plane serving its rings without disturbing the guest: "old_pid" and
  // "data_plane_pid".
  [[nodiscard]] virtual int begin_restart(OperationDone done) = 0;
  // Stops taking the guest's requests, answers those taken and flushes the storage, within
  // `drain_timeout`: "drained", "drain_ms", "flush_ms". An error means the device is not paused.
  [[nodiscard]] virtual int begin_pause(std::chrono::milliseconds /*drain_timeout*/, OperationDone /*done*/) {
    return EOPNOTSUPP;
  }
  // Takes the guest's requests again: "waiting" (in the rings meanwhile), "paused_ms".
  [[nodiscard]] virtual int begin_resume(OperationDone /*done*/) { return EOPNOTSUPP; }
  // The operator paused it (pvbackctl pause) and has not resumed it.
  virtual bool paused() const { return false; }
  // The operator's tunables (base/tunables.hpp), by the kernel backends' names: the device's
  // values now.
  virtual std::vector<TunableValue> tunables() const { return {}; }
  // Changes one in the device's options: a data plane started later has it; one the frontend
  // negotiates is advertised again at once (read at its next connection); one that takes effect
  // now is given to the running data plane (or queues). The error is the operator's message.
  [[nodiscard]] virtual std::expected<TunableChange, std::string> set_tunable(std::string_view /*key*/,
                                                                             std::string_view /*value*/) {
    return std::unexpected(std::string("this device has no tunables"));
  }
  // The end of serving, in this process: the driver disconnects, keeping the recovery records
  // (and so the running data plane's work) for a successor unless the device was removed.
  virtual void finish() = 0;
  FatalLatch& fatal() { return fatal_; }
  const DaemonHooks& hooks() const { return hooks_; }

 protected:
  FatalLatch fatal_;
  DaemonHooks hooks_;
};

// A one-device backend's Prometheus textfile (StatsFile::prometheus_path): `service`'s series.
void write_metrics(StatsFile& file, const DeviceService& service);

// The hooks every driver with a data plane sets the same way (blkback's VbdDriver, netback's
// VifDriver): a fatal error fails the device unless its connection already ended, and the data
// plane's channel is the extra fd.
template <class Driver>
void set_driver_hooks(DaemonHooks& hooks, Driver& driver, BackendDevice& device) {
  hooks.on_fatal = [&driver, &device](int error, const std::string& reason) {
    // A connection that already ended (the frontend reconnected meanwhile) is not failed again.
    if (driver.connected() && driver.fatal_generation() == driver.generation())
      device.report_fatal(error, reason.c_str());
  };
  hooks.extra_fd = [&driver] { return driver.data_plane_fd(); };
  hooks.on_extra_fd = [&driver] { driver.on_data_plane_event(); };
}

// DeviceService::finish() for such a driver: true if the device was removed (its records are
// deleted then; nothing will resume it).
template <class Driver>
bool finish_driver(Driver& driver, const BackendDevice& device, const DaemonHooks& hooks) {
  driver.keep_recovery_records();  // a successor may resume the rings
  if (!device.removed()) driver.leave_data_plane();  // or adopt the data plane, alive
  driver.disconnect();
  if (hooks.write_stats) hooks.write_stats();
  if (!device.removed()) return false;
  driver.remove_recovery_records();
  return true;
}

// The `number(max)` a backend's command-line parser uses (plane::parse_data_plane_option's):
// `args[i + 1]` as a number up to `max`, advancing `i`; the first bad one is kept in `error` and
// 0 returned.
class OptionNumber {
 public:
  OptionNumber(const std::vector<std::string>& args, int& i, std::string& error) : args_(args), i_(i), error_(error) {}
  unsigned long operator()(unsigned long max) const;

 private:
  const std::vector<std::string>& args_;
  int& i_;
  std::string& error_;
};

// The steps of the loop for one device, each after its fd polled readable: watch events that
// concern the device were handled (`before`: its state then), its FatalLatch, its extra fd, the
// timer.
void after_watch_events(DeviceService& service, State before);
void on_fatal_readable(DeviceService& service);
void on_extra_readable(DeviceService& service);
void on_timer(DeviceService& service);

// Runs until the device is removed (exit code 0), a signal arrives (0) or the XenStore connection
// is lost (1, logged naming the device and the cause). A lost connection is noticed by the
// liveness probe every kXenStoreProbeInterval, or at once when any XenStore call fails with a
// connection error; the caller must then stop serving (disconnect the driver) and exit.
int run_backend_daemon(DeviceService& service, const UniqueFd& signal_fd, unsigned interval_ms);

}  // namespace pvback::xenbus
