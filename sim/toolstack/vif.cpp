#include "sim/toolstack/vif.hpp"

#include <cerrno>
#include <cstdio>
#include <regex>
#include <vector>

#include "sim/toolstack/device.hpp"
#include "xenbus/state.hpp"

namespace pvback::sim {

std::string vif_backend_path(DomId backend_domid, DomId frontend_domid, std::uint32_t handle) {
  return "/local/domain/" + std::to_string(backend_domid) + "/backend/vif/" + std::to_string(frontend_domid) + "/" +
         std::to_string(handle);
}

std::string vif_frontend_path(DomId frontend_domid, std::uint32_t handle) {
  return "/local/domain/" + std::to_string(frontend_domid) + "/device/vif/" + std::to_string(handle);
}

std::string default_vif_mac(DomId frontend_domid, std::uint32_t handle) {
  char mac[18];
  std::snprintf(mac, sizeof mac, "00:16:3e:%02x:%02x:%02x", (frontend_domid >> 8) & 0xff, frontend_domid & 0xff,
                handle & 0xff);
  return mac;
}

int add_vif(xenbus::XenStore& xs, const VifSpec& spec) {
  static const std::regex mac_shape("[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}");
  static const std::regex rate_shape("[0-9]+,[0-9]+");
  const std::string mac = spec.mac.empty() ? default_vif_mac(spec.frontend_domid, spec.handle) : spec.mac;
  if (!std::regex_match(mac, mac_shape) || (!spec.rate.empty() && !std::regex_match(spec.rate, rate_shape)) ||
      spec.frontend_domid == spec.backend_domid || spec.mtu < 68 || spec.mtu > 65535)
    return EINVAL;
  const std::string be = vif_backend_path(spec.backend_domid, spec.frontend_domid, spec.handle);
  const std::string fe = vif_frontend_path(spec.frontend_domid, spec.handle);
  std::vector<std::pair<const char*, std::string>> backend_keys = {
      {"frontend", fe},
      {"frontend-id", std::to_string(spec.frontend_domid)},
      {"online", "1"},
      {"script", spec.script},
      {"mac", mac},
      {"handle", std::to_string(spec.handle)},
      {"type", "vif"},
      {"mtu", std::to_string(spec.mtu)},
      {"state", std::to_string(XenbusStateInitialising)},
  };
  if (!spec.script.empty() && !spec.hotplug_status.empty()) backend_keys.emplace_back("hotplug-status", spec.hotplug_status);
  if (!spec.bridge.empty()) backend_keys.emplace_back("bridge", spec.bridge);
  if (!spec.rate.empty()) backend_keys.emplace_back("rate", spec.rate);
  const std::pair<const char*, std::string> frontend_keys[] = {
      {"backend", be},
      {"backend-id", std::to_string(spec.backend_domid)},
      {"handle", std::to_string(spec.handle)},
      {"mac", mac},
      {"mtu", std::to_string(spec.mtu)},
      {"state", std::to_string(XenbusStateInitialising)},
  };
  return plug_device(xs, be, spec.backend_domid, backend_keys, fe, spec.frontend_domid, frontend_keys);
}

int remove_vif(xenbus::XenStore& xs, DomId backend_domid, DomId frontend_domid, std::uint32_t handle,
               int timeout_ms) {
  return unplug_device(xs, vif_backend_path(backend_domid, frontend_domid, handle),
                       vif_frontend_path(frontend_domid, handle), timeout_ms);
}

}  // namespace pvback::sim
