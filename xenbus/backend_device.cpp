#include "xenbus/backend_device.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/log.hpp"
#include "xenbus/hotplug.hpp"

namespace pvback::xenbus {

namespace {
constexpr std::string_view kBackendTokenPrefix = "pvback-backend:";
constexpr std::string_view kFrontendTokenPrefix = "pvback-frontend:";
}  // namespace

bool frontend_has_read_advertisement(const XenStore& xs, const std::string& backend_path) {
  const auto frontend = xs.read(backend_path + "/frontend");
  if (!frontend || frontend->empty()) return false;
  const auto state = xs.read_uint(*frontend + "/state", 8);
  return state && (*state == XenbusStateInitialised || *state == XenbusStateConnected ||
                   *state == XenbusStateReconfiguring || *state == XenbusStateReconfigured);
}

std::optional<std::string_view> BackendDevice::backend_path_of_token(std::string_view token) {
  for (std::string_view prefix : {kBackendTokenPrefix, kFrontendTokenPrefix})
    if (token.starts_with(prefix)) return token.substr(prefix.size());
  return std::nullopt;
}
namespace {

// Domain ids from DOMID_FIRST_RESERVED (0x7FF0) up are special (DOMID_SELF, DOMID_IO, ...) and
// never name a guest.
constexpr std::uint64_t kMaxGuestDomId = 0x7FEF;
// Bounds the work of one handle_events() call when a peer floods a watched path (XSA-349): the
// rest stays queued and keeps the fd readable.
constexpr unsigned kMaxEventsPerCall = 1024;

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
    parts.push_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

// XenStore's own node-name alphabet, minus the separator.
bool valid_component(std::string_view part) {
  if (part.empty() || part == "." || part == "..") return false;
  for (char c : part) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '@';
    if (!ok) return false;
  }
  return true;
}

std::string printable(std::string_view value) {
  // Values come from a guest: keep them short and free of control characters in the journal.
  std::string out;
  for (char c : value.substr(0, 32)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (value.size() > 32) out += "...";
  return out;
}

}  // namespace

std::expected<BackendPath, int> parse_backend_path(std::string_view path) {
  const auto parts = split_path(path);
  // "", "local", "domain", <backend-domid>, "backend", <type>, <frontend-domid>, <devid>
  if (parts.size() != 8 || !parts[0].empty() || parts[1] != "local" || parts[2] != "domain" ||
      parts[4] != "backend")
    return std::unexpected(EINVAL);
  for (std::size_t i = 3; i < parts.size(); ++i)
    if (!valid_component(parts[i])) return std::unexpected(EINVAL);
  auto backend_domid = parse_uint(parts[3], kMaxGuestDomId);
  auto frontend_domid = parse_uint(parts[6], kMaxGuestDomId);
  if (!backend_domid || !frontend_domid) return std::unexpected(EINVAL);
  return BackendPath{static_cast<DomId>(*backend_domid), std::string(parts[5]),
                     static_cast<DomId>(*frontend_domid), std::string(parts[7])};
}

bool valid_frontend_path(std::string_view frontend_path, DomId frontend_domid) {
  const auto parts = split_path(frontend_path);
  // "", "local", "domain", <frontend-domid>, "device", <at least one more>
  if (parts.size() < 6 || !parts[0].empty() || parts[1] != "local" || parts[2] != "domain" ||
      parts[4] != "device")
    return false;
  for (std::size_t i = 3; i < parts.size(); ++i)
    if (!valid_component(parts[i])) return false;
  auto domid = parse_uint(parts[3], kMaxGuestDomId);
  return domid && *domid == frontend_domid;
}

BackendDevice::BackendDevice(XenStore& xs, std::string backend_path, BackendDriver& driver)
    : xs_(xs), backend_path_(std::move(backend_path)), driver_(driver), name_(backend_path_) {
  if (auto parsed = parse_backend_path(backend_path_))
    name_ = parsed->type + " " + std::to_string(parsed->frontend_domid) + "/" + parsed->devid;
  backend_token_ = std::string(kBackendTokenPrefix) + backend_path_;
  frontend_token_ = std::string(kFrontendTokenPrefix) + backend_path_;
}

BackendDevice::~BackendDevice() {
  unwatch_all();
  if (driver_connected_) driver_.disconnect();
}

int BackendDevice::start() {
  if (started_) return EALREADY;
  auto parsed = parse_backend_path(backend_path_);
  if (!parsed) {
    PVBACK_LOG(Error, "%s: not a backend path", printable(backend_path_).c_str());
    return EINVAL;
  }

  auto frontend_id = xs_.read(backend_path_ + "/frontend-id");
  if (!frontend_id) {
    PVBACK_LOG(Error, "%s: cannot read frontend-id: %s", name_.c_str(), std::strerror(frontend_id.error()));
    return frontend_id.error();
  }
  auto domid = parse_uint(*frontend_id, kMaxGuestDomId);
  if (!domid || *domid != parsed->frontend_domid) {
    PVBACK_LOG(Error, "%s: bogus frontend-id \"%s\"", name_.c_str(), printable(*frontend_id).c_str());
    return EINVAL;
  }
  frontend_domid_ = static_cast<DomId>(*domid);

  auto frontend = xs_.read(backend_path_ + "/frontend");
  if (!frontend) {
    PVBACK_LOG(Error, "%s: cannot read frontend: %s", name_.c_str(), std::strerror(frontend.error()));
    return frontend.error();
  }
  if (!valid_frontend_path(*frontend, frontend_domid_)) {
    PVBACK_LOG(Error, "%s: bogus frontend path \"%s\"", name_.c_str(), printable(*frontend).c_str());
    return EINVAL;
  }
  frontend_path_ = std::move(*frontend);

  if (int rc = xs_.watch(backend_path_, backend_token_); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot watch %s: %s", name_.c_str(), backend_path_.c_str(), std::strerror(rc));
    return rc;
  }
  if (int rc = xs_.watch(frontend_path_ + "/state", frontend_token_); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot watch %s/state: %s", name_.c_str(), frontend_path_.c_str(), std::strerror(rc));
    xs_.unwatch(backend_path_, backend_token_);
    return rc;
  }
  watching_ = true;
  started_ = true;
  PVBACK_LOG(Info, "%s: frontend %s", name_.c_str(), frontend_path_.c_str());

  if (int rc = driver_.advertise(xs_, backend_path_); rc != 0) {
    const std::string what = driver_.advertise_failure();
    fail(rc, what.empty() ? "writing backend features" : what.c_str());
    return rc;
  }
  // Without a script to wait for, what the frontend reads of the storage is there before InitWait.
  if (int rc = prepare_when_plugged(); rc != 0 && rc != EAGAIN) return rc;
  switch_state(XenbusStateInitWait);
  evaluate();
  return 0;
}

void BackendDevice::handle_events() {
  bool relevant = false;
  for (unsigned n = 0; n < kMaxEventsPerCall; ++n) {
    auto event = xs_.read_watch();
    if (!event) {
      if (event.error() != EAGAIN)
        PVBACK_LOG_RATELIMITED(Error, "%s: reading watch events: %s", name_.c_str(), std::strerror(event.error()));
      break;
    }
    if (concerns(event->token)) relevant = true;
  }
  if (relevant) evaluate();
}

void BackendDevice::evaluate() {
  if (!started_ || removed_) return;

  auto backend_present = xs_.exists(backend_path_);
  if (!backend_present) {
    PVBACK_LOG_RATELIMITED(Error, "%s: cannot read backend node: %s", name_.c_str(),
                           std::strerror(backend_present.error()));
    return;
  }
  if (!*backend_present) {
    mark_removed("backend node removed (hot unplug)", /*backend_node_present=*/false);
    return;
  }
  // A directory the toolstack removed and wrote again between two of our looks (the device
  // unplugged and plugged back, or its domain destroyed and the id given to a new one) is a new
  // device, whose storage, features and frontend may all differ: libxl writes a new backend's
  // state as Initialising, which a backend never writes. Ours ends here without writing into the
  // new directory, and whoever serves the new one starts afresh (advertises, opens its storage).
  if (state_ != XenbusStateInitialising) {
    auto written = xs_.read(backend_path_ + "/state");
    if (written && parse_state(*written) == XenbusStateInitialising) {
      mark_removed("the toolstack plugged the device anew", /*backend_node_present=*/false);
      return;
    }
  }
  // The script runs once we are at InitWait; it reports in the backend directory, whose watch
  // brings us here.
  if (!prepared_ && state_ == XenbusStateInitWait) {
    if (int rc = prepare_when_plugged(); rc != 0 && rc != EAGAIN) return;
  }

  auto raw = xs_.read(frontend_path_ + "/state");
  if (!raw) {
    if (raw.error() == ENOENT) {
      mark_removed("frontend state node vanished", /*backend_node_present=*/true);
    } else {
      PVBACK_LOG_RATELIMITED(Error, "%s: cannot read frontend state: %s", name_.c_str(),
                             std::strerror(raw.error()));
    }
    return;
  }

  const std::optional<State> frontend = parse_state(*raw);
  if (!frontend) {
    // Log each distinct bad value once: our own writes fire the backend watch again.
    if (last_bad_frontend_state_ != *raw) {
      PVBACK_LOG_RATELIMITED(Error, "%s: frontend wrote invalid state \"%s\"", name_.c_str(), printable(*raw).c_str());
      last_bad_frontend_state_ = *raw;
    }
    if (state_ != XenbusStateClosing && state_ != XenbusStateClosed) fail(EINVAL, "invalid frontend state");
    return;
  }
  last_bad_frontend_state_.reset();

  switch (*frontend) {
    case XenbusStateUnknown:
      mark_removed("frontend state is Unknown", /*backend_node_present=*/true);
      return;
    case XenbusStateInitialising:
      if (state_ == XenbusStateClosed) {
        PVBACK_LOG(Info, "%s: frontend reinitialising, preparing for reconnect", name_.c_str());
        driver_.refresh_advertisement(xs_);
        switch_state(XenbusStateInitWait);
      }
      return;
    case XenbusStateInitialised:
    case XenbusStateConnected:
      // Closed here means the frontend came back and we missed its Initialising. Closing means
      // a failed connect or a bad frontend; only a full close by the frontend gets out of it.
      // (Not refresh_advertisement: this frontend has read the keys already.)
      if (state_ == XenbusStateClosed) switch_state(XenbusStateInitWait);
      if (state_ == XenbusStateInitWait && prepared_) try_connect();
      if (state_ == XenbusStateReconfigured && *frontend == XenbusStateConnected) switch_state(XenbusStateConnected);
      return;
    case XenbusStateReconfiguring:
      if (state_ == XenbusStateConnected) {
        if (int rc = driver_.reconfigure(xs_, frontend_path_); rc != 0) {
          fail(rc, "reconfiguring");
        } else {
          switch_state(XenbusStateReconfigured);
        }
      }
      return;
    case XenbusStateClosing:
      if (state_ != XenbusStateClosing && state_ != XenbusStateClosed) {
        disconnect_driver();
        switch_state(XenbusStateClosing);
      }
      return;
    case XenbusStateClosed: {
      if (state_ != XenbusStateClosed) {
        disconnect_driver();
        switch_state(XenbusStateClosed);
      }
      // Linux's xenbus_dev_is_online(): anything but a readable non-zero number is offline.
      auto online = xs_.read_uint(backend_path_ + "/online", 1);
      if (!online || *online == 0) mark_removed("frontend closed and device offline", /*backend_node_present=*/true);
      return;
    }
    case XenbusStateInitWait:
    case XenbusStateReconfigured:
      PVBACK_LOG(Debug, "%s: frontend state %.*s ignored", name_.c_str(),
                 static_cast<int>(state_name(*frontend).size()), state_name(*frontend).data());
      return;
  }
}

void BackendDevice::switch_state(State next) {
  if (next == state_) return;
  const State previous = state_;
  state_ = next;
  PVBACK_LOG(Info, "%s: %.*s -> %.*s", name_.c_str(), static_cast<int>(state_name(previous).size()),
             state_name(previous).data(), static_cast<int>(state_name(next).size()), state_name(next).data());
  const std::string value = std::to_string(static_cast<int>(next));
  // Only write while the backend node exists: a plain write after the toolstack removed it would
  // recreate a stray node.
  const int rc = xs_.transact([&](Txn txn) -> int {
    auto present = xs_.exists(backend_path_, txn);
    if (!present) return present.error();
    if (!*present) return ENOENT;
    return xs_.write(backend_path_ + "/state", value, txn);
  });
  if (rc != 0 && rc != ENOENT)
    PVBACK_LOG(Error, "%s: cannot write state %s: %s", name_.c_str(), value.c_str(), std::strerror(rc));
}

void BackendDevice::fail(int error, const char* what) {
  PVBACK_LOG(Error, "%s: %s: %s", name_.c_str(), what, std::strerror(error));
  // Like Linux's xenbus_dev_fatal(): "<errno> <message>", for the toolstack and the admin.
  const std::string message = std::to_string(error) + " " + what;
  const int rc = xs_.transact([&](Txn txn) -> int {
    auto present = xs_.exists(backend_path_, txn);
    if (!present) return present.error();
    if (!*present) return ENOENT;
    return xs_.write(backend_path_ + "/error", message, txn);
  });
  if (rc != 0 && rc != ENOENT)
    PVBACK_LOG(Error, "%s: cannot write error node: %s", name_.c_str(), std::strerror(rc));
  // A failed connect may have mapped part of the rings; disconnect() is idempotent.
  driver_.disconnect();
  driver_connected_ = false;
  switch_state(XenbusStateClosing);
}

void BackendDevice::disconnect_driver() {
  driver_.disconnect();
  driver_connected_ = false;
}

int BackendDevice::prepare_when_plugged() {
  if (prepared_) return 0;
  auto node = [&](const char* key) -> std::optional<std::string> {
    auto value = xs_.read(backend_path_ + "/" + key);
    if (value) return std::move(*value);
    return std::nullopt;
  };
  const std::optional<std::string> script = node("script");
  const HotplugVerdict verdict =
      hotplug_verdict(script, node("hotplug-status"), node("hotplug-error"), node("physical-device"));
  using Kind = HotplugVerdict::Kind;
  if (verdict.kind == Kind::Pending || verdict.kind == Kind::Failed) {
    const std::string seen = std::string(verdict.kind == Kind::Pending ? "pending" : "failed: ") + verdict.detail;
    if (seen != hotplug_logged_) {
      hotplug_logged_ = seen;
      if (verdict.kind == Kind::Pending)
        PVBACK_LOG(Info, "%s: waiting for the hotplug script %s before serving the device", name_.c_str(),
                   printable(*script).c_str());
      else
        // As Linux's backends do, the device stays at InitWait with nothing opened; the toolstack,
        // which ran the script, reports the failure and removes the device.
        PVBACK_LOG(Error, "%s: the hotplug script %s refused the device (%s): not serving it", name_.c_str(),
                   printable(*script).c_str(), printable(verdict.detail).c_str());
    }
    return EAGAIN;
  }
  if (int rc = driver_.prepare(xs_, backend_path_); rc != 0) {
    const std::string what = driver_.advertise_failure();
    fail(rc, what.empty() ? "preparing the device" : what.c_str());
    return rc;
  }
  if (verdict.kind == Kind::Connected) PVBACK_LOG(Info, "%s: the hotplug script reported", name_.c_str());
  prepared_ = true;
  return 0;
}

void BackendDevice::try_connect() {
  if (driver_connected_) disconnect_driver();
  if (int rc = driver_.connect(xs_, frontend_path_); rc != 0) {
    fail(rc, "connecting to the frontend");
    return;
  }
  driver_connected_ = true;
  // A previous failure's message no longer describes the device.
  xs_.rm(backend_path_ + "/error");
  switch_state(XenbusStateConnected);
}

void BackendDevice::mark_removed(const char* why, bool backend_node_present) {
  disconnect_driver();
  if (backend_node_present) {
    switch_state(XenbusStateClosed);
  } else {
    state_ = XenbusStateClosed;
  }
  removed_ = true;
  unwatch_all();
  PVBACK_LOG(Notice, "%s: removed: %s", name_.c_str(), why);
  if (on_removed_) on_removed_();
}

void BackendDevice::unwatch_all() {
  if (!watching_) return;
  watching_ = false;
  xs_.unwatch(backend_path_, backend_token_);
  xs_.unwatch(frontend_path_ + "/state", frontend_token_);
}

}  // namespace pvback::xenbus
