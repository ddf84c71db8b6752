// The control socket's `set`: an operator's change of a tunable (supervisor/tuning.hpp) on one
// device, or on every vbd, every vif or every device, kept in the runtime layer so that devices
// started later and a restarted host daemon have it too.
#include <algorithm>

#include "base/log.hpp"
#include "base/text_file.hpp"
#include "blkback/tunables.hpp"
#include "netback/tunables.hpp"
#include "supervisor/supervisor.hpp"

namespace pvback::supervisor {
namespace {

bool knows(DeviceType type, std::string_view key) {
  return type == DeviceType::Vbd ? find_tunable(blkback::vbd_tunables(), key) != nullptr
                                 : find_tunable(netback::vif_tunables(), key) != nullptr;
}

std::string change_json(const std::string& device, const TunableChange& c) {
  return "{\"device\": " + json_string(device) + ", \"name\": " + json_string(c.name) +
         ", \"old\": " + std::to_string(c.old_value) + ", \"value\": " + std::to_string(c.value) +
         ", \"when\": \"" + std::string(keyword(c.when)) + "\"}";
}

}  // namespace

std::string Supervisor::tunables_json(const Device& d) const {
  std::string out = "[";
  if (d.service)
    for (const TunableValue& t : d.service->tunables()) {
      out += (out.size() > 1 ? ", " : "") + std::string("{\"name\": ") + json_string(t.name) +
             ", \"value\": " + std::to_string(t.value) + ", \"when\": \"" + std::string(keyword(t.when)) + "\"}";
    }
  return out + "]";
}

// `set TARGET NAME=VALUE`; TARGET is a device (vbd-5-768), vbd, vif or all.
std::optional<std::string> Supervisor::set_tunable(const ControlRequest& request) {
  if (request.args.size() != 2)
    return control_error("set takes a device (or vbd, vif, all) and NAME=VALUE, e.g. vbd-5-768 max_persistent_grants=512");
  const std::string& target = request.args[0];
  const std::string& pair = request.args[1];
  const auto eq = pair.find('=');
  if (eq == std::string::npos || eq == 0) return control_error("set takes NAME=VALUE, not '" + printable(pair) + "'");
  const std::string key = pair.substr(0, eq);
  const std::string value = pair.substr(eq + 1);

  const bool group = target == "vbd" || target == "vif" || target == "all";
  if (!group) {
    const auto it = find_device(target);
    if (it == devices_.end()) return control_error("no such device: " + printable(target));
    const auto& [key_of, d] = *it;
    if (!d.service)
      return control_error(target + (d.pid > 0 ? " is served by a backend process of its own (pid " +
                                                     std::to_string(d.pid) + "): it takes the config file's values "
                                                     "and what was set for all of its kind when it starts again"
                                               : " is not served now"));
    auto change = d.service->set_tunable(key, value);
    if (!change) return control_error(target + ": " + change.error());
    ConfigSection where;
    where.type = std::string(type_name(key_of.type));
    where.domid = key_of.domid;
    // And the guest's name: a domid reused by another guest before the host restarts does not
    // inherit this device's values.
    if (const auto name = xs_.read("/local/domain/" + std::to_string(key_of.domid) + "/name"); name && !name->empty())
      where.domain = *name;
    where.device = std::to_string(key_of.devid);
    std::string out = "\"set\": {\"target\": " + json_string(target) + ", \"devices\": [" + change_json(target, *change) + "]";
    if (auto kept = tuning_.record(std::move(where), change->name, value); !kept) {
      PVBACK_LOG(Warning, "%s: %s", target.c_str(), kept.error().c_str());
      out += ", \"not_kept\": " + json_string(kept.error());
    }
    return control_answer(out + "}");
  }

  // Every device of the kinds that have the tunable; the value is checked first, so that it is
  // refused before any device is changed.
  std::vector<DeviceType> types;
  for (DeviceType t : {DeviceType::Vbd, DeviceType::Vif})
    if ((target == "all" || target == type_name(t)) && knows(t, key)) types.push_back(t);
  if (types.empty()) {
    if (target == "all") return control_error("neither a vbd nor a vif has a tunable '" + printable(key) + "'");
    return control_error(Tuning::check(target, key, value).error());
  }
  for (DeviceType t : types)
    if (auto ok = Tuning::check(type_name(t), key, value); !ok) return control_error(ok.error());
  std::string devices;
  for (const auto& [k, d] : devices_) {
    if (std::ranges::find(types, k.type) == types.end()) continue;
    const std::string name = device_name(k.type, k.domid, k.devid);
    devices += devices.empty() ? "" : ", ";
    if (d.service) {
      auto change = d.service->set_tunable(key, value);
      devices += change ? change_json(name, *change)
                        : "{\"device\": " + json_string(name) + ", \"error\": " + json_string(change.error()) + "}";
    } else {
      devices += "{\"device\": " + json_string(name) + ", \"when\": \"next-start\", \"note\": " +
                 json_string(d.pid > 0 ? "served by a backend process of its own (pid " + std::to_string(d.pid) +
                                             "): it takes the value when it starts again"
                                       : "not served now: it takes the value when it starts") +
                 "}";
    }
  }
  std::string out = "\"set\": {\"target\": " + json_string(target) + ", \"devices\": [" + devices + "]";
  out += ", \"new_devices\": true";
  for (DeviceType t : types) {
    ConfigSection where;
    where.type = std::string(type_name(t));
    if (auto kept = tuning_.record(std::move(where), key, value); !kept) {
      PVBACK_LOG(Warning, "set %s: %s", target.c_str(), kept.error().c_str());
      out += ", \"not_kept\": " + json_string(kept.error());
      break;
    }
  }
  PVBACK_LOG(Notice, "set %s %s=%s", target.c_str(), printable(key).c_str(), printable(value).c_str());
  return control_answer(out + "}");
}

}  // namespace pvback::supervisor
