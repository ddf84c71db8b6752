// The XenBus handshake of one backend device, independent of the device type.
//
// The toolstack creates the backend node /local/domain/<backend-domid>/backend/<type>/<frontend-
// domid>/<devid> (with "frontend", "frontend-id", "online", "state") and the frontend's node; this
// class then drives the backend side of the XenbusState protocol the way Linux frontends expect:
//
//   start():              driver.advertise() -> InitWait
//   frontend Initialised or Connected, backend InitWait (or Closed: reconnect):
//                         driver.connect() -> Connected   (failure: "error" node, Closing)
//   frontend Reconfiguring, backend Connected: driver.reconfigure() -> Reconfigured
//   frontend Connected, backend Reconfigured:                      -> Connected
//   frontend Closing:     driver.disconnect() -> Closing
//   frontend Closed:      driver.disconnect() -> Closed; removed if "online" is not 1
//   frontend Initialising while Closed:                    -> InitWait (frontend reconnecting)
//   frontend state node gone / Unknown:  driver.disconnect() -> Closed, removed
//   backend node removed (hot unplug):   driver.disconnect(), removed
//
// It is level-triggered: any watch event makes it re-read the frontend state, "online" and the
// backend node and act on the current values, so coalesced or missed intermediate states do not
// matter, and a flood of watch events costs one evaluation per handle_events() call.
#pragma once
#include <cerrno>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "grant/types.hpp"
#include "xenbus/state.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::xenbus {

// Implemented by each device type (blkback, netback).
struct BackendDriver {
  virtual ~BackendDriver() = default;
  // Writes feature-* and other keys the frontend reads before it initialises.
  virtual int advertise(XenStore& xs, const std::string& backend_path) = 0;
  // The frontend is about to connect again (it is Initialising, and the backend goes from Closed
  // back to InitWait): what the operator changed while it was connected is advertised now, before
  // it reads it.
  virtual void refresh_advertisement(XenStore& /*xs*/) {}
  // Opens what the device is served from (a vbd's storage) and publishes what the frontend reads
  // of it, once the toolstack's hotplug script has set it up (xenbus/hotplug.hpp): right after
  // advertise() when the directory names no script or the script already reported, else when it
  // does. Called once per device. 0 or an errno value (the device fails; advertise_failure()
  // then says what was being done).
  virtual int prepare(XenStore& /*xs*/, const std::string& /*backend_path*/) { return 0; }
  // Reads ring-ref/event-channel etc. from the frontend and maps the rings. 0 or an errno value.
  virtual int connect(XenStore& xs, const std::string& frontend_path) = 0;
  // Unmaps and unbinds; must be idempotent.
  virtual void disconnect() = 0;
  // The connected frontend switched to Reconfiguring (netfront does it to change its XDP
  // headroom): re-read what changed. 0 moves the backend to Reconfigured, then back to Connected
  // when the frontend is Connected again; an errno value fails the device.
  virtual int reconfigure(XenStore& /*xs*/, const std::string& /*frontend_path*/) { return EOPNOTSUPP; }
  // What the last failed advertise() or prepare() was doing, in the operator's words ("opening <params>"), for
  // the error node; empty for the generic text.
  virtual std::string advertise_failure() const { return {}; }
};

// The pieces of a backend path: /local/domain/<backend_domid>/backend/<type>/<frontend_domid>/<devid>.
struct BackendPath {
  DomId backend_domid = 0;
  std::string type;
  DomId frontend_domid = 0;
  std::string devid;
};

// Validates and splits a backend path; EINVAL if it does not have the shape above or a domid is
// not a valid domain id.
std::expected<BackendPath, int> parse_backend_path(std::string_view path);

// True if `frontend_path` is /local/domain/<frontend_domid>/device/<...> with plain components
// (no empty, "." or ".." component).
bool valid_frontend_path(std::string_view frontend_path, DomId frontend_domid);

// Whether the frontend of the backend at `backend_path` has read what the backend advertised:
// its state is Initialised, Connected, Reconfiguring or Reconfigured (it reads the backend's keys
// when it leaves Initialising). What it negotiated from must then not change under it.
bool frontend_has_read_advertisement(const XenStore& xs, const std::string& backend_path);

class BackendDevice {
 public:
  // Nothing happens until start(). `xs` and `driver` must outlive the device.
  BackendDevice(XenStore& xs, std::string backend_path, BackendDriver& driver);
  BackendDevice(const BackendDevice&) = delete;
  BackendDevice& operator=(const BackendDevice&) = delete;
  // Unwatches, and disconnects the driver if it is still connected.
  ~BackendDevice();

  // Reads and validates "frontend"/"frontend-id", registers the watches, advertises (and prepares,
  // unless a hotplug script has yet to report) and switches to InitWait, then acts on the
  // frontend's current state. 0 or an errno value (EINVAL for bogus
  // toolstack values, ENOENT if the backend node does not exist).
  int start();

  // The XenStore connection's fd: poll it for readability, then call handle_events().
  int fd() const { return xs_.fd(); }
  // The connection itself (the main loop checks it is still alive).
  XenStore& xenstore() const { return xs_; }
  // Drains all pending watch events and runs the state machine once if any concerned this device.
  // Events for other watches on the same connection are dropped. Never throws.
  void handle_events();
  // Whether a watch event of this token is one of this device's (a connection shared by several
  // devices: its reader routes each event to the device it concerns, then calls evaluate()).
  bool concerns(const std::string& token) const { return token == backend_token_ || token == frontend_token_; }
  // The backend path a device's watch token names (its own are "pvback-backend:<path>" and
  // "pvback-frontend:<path>"), for a reader that routes events by path rather than asking every
  // device; nullopt for any other token.
  static std::optional<std::string_view> backend_path_of_token(std::string_view token);
  // Re-reads everything and acts on it, as a watch event would.
  void evaluate();

  // The driver found the frontend broke the protocol while connected (e.g. a ring overflow): writes
  // the error node, disconnects the driver and switches to Closing, like Linux's xenbus_dev_fatal.
  void report_fatal(int error, const char* what) { fail(error, what); }

  State state() const { return state_; }
  bool removed() const { return removed_; }
  bool driver_connected() const { return driver_connected_; }
  // Called once when the device goes away (hot unplug, frontend gone, closed while offline).
  void set_on_removed(std::function<void()> callback) { on_removed_ = std::move(callback); }

  const std::string& backend_path() const { return backend_path_; }
  const std::string& frontend_path() const { return frontend_path_; }
  const std::string& name() const { return name_; }  // "vbd 5/768", for logs

 private:
  void switch_state(State next);
  void fail(int error, const char* what);  // "error" node, disconnect, Closing
  void disconnect_driver();
  void try_connect();
  // The hotplug gate (xenbus/hotplug.hpp): 0 once the driver is prepared; EAGAIN while a script
  // has not reported or refused the device (logged once per verdict); else prepare()'s error,
  // after fail().
  int prepare_when_plugged();
  void mark_removed(const char* why, bool backend_node_present);
  void unwatch_all();

  XenStore& xs_;
  std::string backend_path_;
  BackendDriver& driver_;
  std::string name_;
  std::string frontend_path_;
  DomId frontend_domid_ = 0;
  std::string backend_token_;
  std::string frontend_token_;
  bool watching_ = false;
  bool started_ = false;
  bool removed_ = false;
  bool driver_connected_ = false;
  bool prepared_ = false;
  std::string hotplug_logged_;  // the verdict last logged, so that each is logged once
  State state_ = XenbusStateInitialising;
  std::optional<std::string> last_bad_frontend_state_;
  std::function<void()> on_removed_;
};

}  // namespace pvback::xenbus
