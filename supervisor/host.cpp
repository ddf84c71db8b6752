// The supervisor's devices served in its own process, the routing of their watch events, and the
// control socket's answers. See supervisor.hpp.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "base/log.hpp"
#include "base/prometheus.hpp"
#include "base/text_file.hpp"
#include "blkback/vbd_service.hpp"
#include "netback/vif_service.hpp"
#include "supervisor/supervisor.hpp"
#include "xenbus/backend_device.hpp"
#include "xenbus/state.hpp"

namespace pvback::supervisor {
namespace {

// A pause's drain that takes longer than this (a stalled storage) is given up: resumed, an error
// answered. `1 pause DEV SECONDS` sets another.
constexpr unsigned kDefaultDrainTimeout = 30'000;  // ms

// At most this many watch events are read per round, as BackendDevice::handle_events does, so a
// guest flooding its nodes cannot hold the loop (the rest keep the fd readable).
constexpr unsigned kMaxEventsPerRound = 1024;

// The answer of a restart, pause or resume that ended: its figures, or why it failed.
std::string operation_answer(const std::string& command, const std::string& name, const xenbus::Outcome& o) {
  if (o.error != 0) return control_error(name + ": " + o.message);
  std::string out = "\"" + command + "\": {\"device\": " + json_string(name);
  if (command != "restart") out += std::string(", \"paused\": ") + (command == "pause" ? "true" : "false");
  for (const auto& [key, value] : o.figures) out += ", " + json_string(key) + ": " + std::to_string(value);
  return control_answer(out + "}");
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

void Supervisor::start_backend(Device& device, DeviceType type) {
  if (serves_in_process(type)) {
    start_in_process(device, type);
  } else {
    spawn(device, type);
  }
}

bool Supervisor::serves_in_process(DeviceType type) const {
  if (!host_) return false;
  if (type == DeviceType::Vif) return !netback::served_on_threads(host_->net);
  return !blkback::served_on_threads(host_->blk.options);
}

void Supervisor::start_in_process(Device& device, DeviceType type) {
  device.restart_pending = false;
  device.started = Clock::now();
  // The device's own options: the command line's with the config file's and the runtime layer's
  // tunables for it.
  const DeviceFacts facts = Tuning::facts(xs_, type, device.path);
  std::expected<std::unique_ptr<xenbus::DeviceService>, int> service;
  if (type == DeviceType::Vbd) {
    blkback::CommandLine blk = host_->blk;
    tuning_.apply(facts, blk.options);
    service = blkback::start_vbd(*host_->platform, xs_, device.path, blk);
  } else {
    netback::CommandLine net = host_->net;
    tuning_.apply(facts, net.options);
    service = netback::start_vif(*host_->platform, xs_, device.path, net);
  }
  if (!service) {
    // As a backend process that exits at once: started again after the backoff.
    const auto delay = device.backoff.after_exit(std::chrono::milliseconds(0));
    device.restart_pending = true;
    device.restart_at = Clock::now() + delay;
    PVBACK_LOG(Notice, "%s: could not start (%s): trying again in %lld ms", device.name.c_str(),
               std::strerror(service.error()), static_cast<long long>(delay.count()));
    return;
  }
  device.service = std::move(*service);
  PVBACK_LOG(Info, "%s: started in this process", device.name.c_str());
  if (const auto& write = device.service->hooks().write_stats) write();
}

// The device a watch token of a BackendDevice names: "<prefix><dir>/<domid>/<devid>", where <dir>
// is one of this daemon's backend directories.
std::optional<Supervisor::Key> Supervisor::key_of_token(std::string_view token) const {
  const auto path = xenbus::BackendDevice::backend_path_of_token(token);
  if (!path) return std::nullopt;
  for (DeviceType type : {DeviceType::Vbd, DeviceType::Vif})
    for (const std::string& directory : directories(type)) {
      const std::string dir = directory + "/";
      if (!path->starts_with(dir)) continue;
      const std::string_view rest = path->substr(dir.size());
      const auto slash = rest.find('/');
      if (slash == std::string_view::npos) return std::nullopt;
      const auto domid = parse_domid_entry(rest.substr(0, slash));
      const auto devid = parse_devid_entry(rest.substr(slash + 1));
      if (!domid || !devid) return std::nullopt;
      return Key{type, *domid, *devid};
    }
  return std::nullopt;
}

void Supervisor::route_watch_events(bool& scan) {
  std::set<Key> touched;
  for (unsigned n = 0; n < kMaxEventsPerRound; ++n) {
    auto event = xs_.read_watch();
    if (!event) {
      if (event.error() != EAGAIN)
        PVBACK_LOG_RATELIMITED(Error, "reading watch events: %s", std::strerror(event.error()));
      break;
    }
    if (event->token == kWatchToken) {
      scan = true;
      continue;
    }
    // The device by the path its token names (O(log devices) per event, not a question to each).
    if (const auto key = key_of_token(event->token)) {
      const auto it = devices_.find(*key);
      if (it != devices_.end() && it->second.service && it->second.service->device().concerns(event->token))
        touched.insert(*key);
    }
  }
  for (const Key& key : touched) {
    auto it = devices_.find(key);
    if (it == devices_.end() || !it->second.service) continue;
    xenbus::DeviceService& service = *it->second.service;
    const auto before = service.device().state();
    service.device().evaluate();
    xenbus::after_watch_events(service, before);
  }
}

void Supervisor::end_removed_services() {
  for (auto it = devices_.begin(); it != devices_.end();) {
    Device& d = it->second;
    if (!d.service || !d.service->device().removed()) {
      ++it;
      continue;
    }
    d.service->finish();
    d.service.reset();
    after_end(it++, /*by_itself=*/true,
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - d.started));
  }
}

void Supervisor::finish_services() {
  for (auto& [key, d] : devices_) {
    if (!d.service) continue;
    d.service->finish();
    d.service.reset();
  }
}

std::string Supervisor::device_json(const Key& key, const Device& d) const {
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - d.started).count();
  std::string out = "{\"device\": " + json_string(device_name(key.type, key.domid, key.devid));
  out += ", \"kind\": \"" + std::string(type_name(key.type)) + "\"";
  out += ", \"domid\": " + std::to_string(key.domid) + ", \"devid\": " + std::to_string(key.devid);
  if (d.service) {
    const auto& device = d.service->device();
    out += ", \"served_by\": \"host\", \"state\": " + std::to_string(device.state());
    out += ", \"state_name\": " + json_string(std::string(xenbus::state_name(device.state())));
    out += std::string(", \"") + (key.type == DeviceType::Vbd ? "storage" : "exit") +
           "\": " + json_string(d.service->target());
    out += ", \"data_plane_pid\": " + std::to_string(d.service->data_plane_pid());
    out += std::string(", \"paused\": ") + (d.service->paused() ? "true" : "false");
    out += ", \"uptime_s\": " + std::to_string(uptime);
  } else if (d.pid > 0) {
    out += ", \"served_by\": \"process\", \"backend_pid\": " + std::to_string(d.pid);
    const std::string state = xs_.read(d.path + "/state").value_or("");
    const auto parsed = xenbus::parse_state(state);
    out += ", \"state\": " + json_string(state) + ", \"state_name\": " +
           json_string(parsed ? std::string(xenbus::state_name(*parsed)) : "unknown");
    if (key.type == DeviceType::Vbd) out += ", \"storage\": " + json_string(xs_.read(d.path + "/params").value_or(""));
    out += ", \"uptime_s\": " + std::to_string(uptime);
  } else {
    out += std::string(", \"served_by\": ") + (d.finished ? "\"none\", \"closed\": true" : "\"none\"");
  }
  return out + "}";
}

std::string Supervisor::metrics_text() const {
  prometheus::Exposition e;
  e.family("pvback_devices", prometheus::Type::Gauge,
           "Devices the supervisor knows, by kind and by who serves them: host (this process), process (a backend "
           "process of their own, whose series are in its own textfile), none (closed, or waiting for a restart)");
  for (DeviceType type : {DeviceType::Vbd, DeviceType::Vif})
    for (const char* by : {"host", "process", "none"}) {
      const auto n = std::ranges::count_if(devices_, [&](const auto& entry) {
        const Device& d = entry.second;
        const char* served = d.service ? "host" : d.pid > 0 ? "process" : "none";
        return entry.first.type == type && std::string_view(served) == by;
      });
      e.sample("pvback_devices", {{"kind", std::string(type_name(type))}, {"served_by", by}},
               static_cast<std::uint64_t>(n));
    }
  for (const auto& [key, d] : devices_)
    if (d.service) d.service->append_metrics(e);
  return e.render();
}

void Supervisor::write_metrics() {
  const std::string path = options_.prometheus_dir + "/pvback.prom";
  if (const int e = write_file_atomically(path, metrics_text()); e != 0 && !metrics_error_logged_) {
    PVBACK_LOG(Warning, "cannot write the Prometheus textfile %s: %s", path.c_str(), std::strerror(e));
    metrics_error_logged_ = true;
  }
}

std::string Supervisor::list_json() const {
  std::string out = "\"devices\": [";
  bool first = true;
  for (const auto& [key, d] : devices_) {
    out += first ? "\n  " : ",\n  ";
    first = false;
    out += device_json(key, d);
  }
  return out + "]";
}

// The device an operator names ("vbd-5-768"), or end().
std::map<Supervisor::Key, Supervisor::Device>::const_iterator Supervisor::find_device(const std::string& name) const {
  return std::ranges::find_if(devices_, [&](const auto& entry) {
    return device_name(entry.first.type, entry.first.domid, entry.first.devid) == name;
  });
}

std::optional<std::string> Supervisor::stats_of(const std::string& name, const Device& d) const {
  if (d.service) return d.service->stats_json();
  // A backend process writes its statistics to its file (at the default place).
  if (host_) return read_file(host_->platform->config().stats_dir() + "/" + name + ".json");
  return std::nullopt;
}

// Every child of `path` that holds a value, as a JSON object of strings (a directory's own
// value is empty: left out).
std::string Supervisor::node_values_json(const std::string& path) const {
  std::string out = "{";
  for (const std::string& child : xs_.directory(path).value_or(std::vector<std::string>{})) {
    const std::string value = xs_.read(path + "/" + child).value_or("");
    if (value.empty()) continue;
    out += (out.size() > 1 ? ", " : "") + json_string(child) + ": " + json_string(value);
  }
  return out + "}";
}

// What the backend advertised (its directory) and the frontend wrote (its own), with the
// statistics document, whose "negotiated" is what the driver took from the frontend.
std::string Supervisor::info_json(const std::string& name, const Device& d) const {
  const std::string frontend = xs_.read(d.path + "/frontend").value_or("");
  std::string out = "\"info\": {\"device\": " + json_string(name) + ", \"served_by\": ";
  out += d.service ? "\"host\"" : d.pid > 0 ? "\"process\"" : "\"none\"";
  if (d.service) out += std::string(", \"paused\": ") + (d.service->paused() ? "true" : "false");
  if (d.service) out += ", \"tunables\": " + tunables_json(d);
  out += ", \"backend_path\": " + json_string(d.path) + ", \"frontend_path\": " + json_string(frontend);
  out += ", \"backend\": " + node_values_json(d.path);
  out += ", \"frontend\": " + (frontend.empty() ? std::string("{}") : node_values_json(frontend));
  const auto stats = stats_of(name, d);
  return out + ", \"stats\": " + (stats ? *stats : "null") + "}";
}

std::string Supervisor::refusal(const std::string& command, const std::string& name, const Key& key,
                                int error) const {
  const bool vif = key.type == DeviceType::Vif;
  switch (error) {
    case ENOTCONN:
      return command == "restart" ? name + " has no data-plane process to restart (its frontend is not connected)"
                                  : name + " cannot be paused: its frontend is not connected";
    case EBUSY:
      return name + ": a restart, pause or resume of it is under way; try again once it is answered";
    case EALREADY:
      return command == "pause" ? name + " is paused already (pvbackctl resume " + name + " ends the pause)"
                                : name + " is not paused";
    case ENOEXEC:
      return name + ": the data-plane binary on disk did not say which protocol it speaks (an older pvback, or it "
                    "cannot run; the log says which): not restarted onto it";
    case EPROTO:
      return name + ": the data-plane binary on disk is of another pvback version than this host daemon (the log "
                    "says which): not restarted onto it; restarting the host daemon (systemctl restart "
                    "pvback-supervisor) serves every device with the new version, losing no request";
    case EOPNOTSUPP:
      if (vif && command != "restart")
        return name + " is a vif: only vbds can be paused (a vif has no storage to make consistent, and a guest "
                      "whose transmit ring stopped being served would see its network watchdog fire)";
      return name + "'s rings are served on threads of its control part, not by a data plane: it cannot be " +
             (command == "restart" ? "restarted" : "paused");
    default:
      return name + ": cannot " + command + ": " + std::strerror(error);
  }
}

std::optional<std::string> Supervisor::operate(const ControlRequest& request, const Key& key, ClientId client) {
  const std::string& command = request.command;
  const std::string& name = request.args[0];
  Device& d = devices_.at(key);
  if (!d.service && d.pid > 0)
    return control_error(name + " is served by a backend process of its own (pid " + std::to_string(d.pid) +
                         "), not in the host daemon: pvbackctl " + command +
                         " acts only on devices the host daemon serves");
  if (!d.service) return control_error(name + " is not served now");
  auto timeout = std::chrono::milliseconds(kDefaultDrainTimeout);
  if (command == "pause" && request.args.size() == 2) {
    const std::string& word = request.args[1];
    unsigned long seconds = 0;
    const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), seconds);
    if (ec != std::errc() || end != word.data() + word.size() || seconds < 1 || seconds > 3600)
      return control_error("pause's drain timeout is 1 to 3600 seconds, not '" + word + "'");
    timeout = std::chrono::seconds(seconds);
  }
  // Called once, from the loop: when the old data plane ended, the pause's drain and flush, the
  // timer's deadline, a disconnection; or from within begin_*.
  auto done = [this, client, key, command, name](const xenbus::Outcome& outcome) {
    control_.reply(client, operation_answer(command, name, outcome));
    const auto it = devices_.find(key);
    if (it != devices_.end() && it->second.service)
      if (const auto& write = it->second.service->hooks().write_stats) write();
  };
  const int e = command == "restart" ? d.service->begin_restart(std::move(done))
                : command == "pause" ? d.service->begin_pause(timeout, std::move(done))
                                     : d.service->begin_resume(std::move(done));
  if (e != 0) return control_error(refusal(command, name, key, e));
  return std::nullopt;
}

std::optional<std::string> Supervisor::answer(const ControlRequest& request, ClientId client) {
  if (request.command == "list") {
    if (!request.args.empty()) return control_error("list takes no argument");
    return control_answer(list_json());
  }
  const std::string& c = request.command;
  if (c == "set") return set_tunable(request);
  const bool operation = c == "restart" || c == "pause" || c == "resume";
  if (c != "stats" && c != "info" && !operation)
    return control_error("unknown command '" + c + "' (list, info, stats, set, restart, pause, resume)");
  const std::size_t most = c == "pause" ? 2 : 1;
  if (request.args.empty() || request.args.size() > most)
    return control_error(c + (c == "pause" ? " takes one device and, if wanted, the drain's timeout in seconds, e.g. "
                                             "vbd-5-768 30"
                                           : " takes one device, e.g. vbd-5-768"));
  const std::string& name = request.args[0];
  const auto it = find_device(name);
  if (it == devices_.end()) return control_error("no such device: " + name);
  if (c == "info") return control_answer(info_json(name, it->second));
  if (operation) return operate(request, it->first, client);
  const auto stats = stats_of(name, it->second);
  if (!stats) return control_error("no statistics for " + name + " (not served now)");
  return control_answer("\"stats\": " + *stats);
}

}  // namespace pvback::supervisor
