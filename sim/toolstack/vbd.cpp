#include "sim/toolstack/vbd.hpp"

#include <cerrno>
#include <vector>

#include "sim/toolstack/device.hpp"
#include "xenbus/state.hpp"

namespace pvback::sim {

std::string vbd_backend_path(DomId backend_domid, DomId frontend_domid, std::uint32_t devid, const std::string& kind) {
  return "/local/domain/" + std::to_string(backend_domid) + "/backend/" + kind + "/" + std::to_string(frontend_domid) +
         "/" + std::to_string(devid);
}

std::string vbd_frontend_path(DomId frontend_domid, std::uint32_t devid) {
  return "/local/domain/" + std::to_string(frontend_domid) + "/device/vbd/" + std::to_string(devid);
}

int add_vbd(xenbus::XenStore& xs, const VbdSpec& spec) {
  if (spec.params.empty() || (spec.mode != "r" && spec.mode != "w") ||
      (spec.device_type != "disk" && spec.device_type != "cdrom") || spec.frontend_domid == spec.backend_domid)
    return EINVAL;
  if (spec.backend_kind != "vbd" && spec.backend_kind != "vbd3") return EINVAL;
  const std::string be = vbd_backend_path(spec.backend_domid, spec.frontend_domid, spec.devid, spec.backend_kind);
  const std::string fe = vbd_frontend_path(spec.frontend_domid, spec.devid);
  const DomId bd = spec.backend_domid, fd = spec.frontend_domid;
  std::vector<std::pair<const char*, std::string>> backend_keys = {
      {"frontend", fe},
      {"frontend-id", std::to_string(fd)},
      {"online", "1"},
      {"removable", spec.device_type == "cdrom" ? "1" : "0"},
      {"bootable", "1"},
      {"dev", spec.dev_name},
      {"type", "phy"},
      {"mode", spec.mode},
      {"device-type", spec.device_type},
      {"params", spec.params},
      {"discard-enable", spec.discard_enable ? "1" : "0"},
      {"state", std::to_string(XenbusStateInitialising)},
  };
  if (!spec.script.empty()) backend_keys.emplace_back("script", spec.script);
  if (!spec.script.empty() && !spec.hotplug_status.empty()) backend_keys.emplace_back("hotplug-status", spec.hotplug_status);
  const std::pair<const char*, std::string> frontend_keys[] = {
      {"backend", be},
      {"backend-id", std::to_string(bd)},
      {"virtual-device", std::to_string(spec.devid)},
      {"device-type", spec.device_type},
      {"state", std::to_string(XenbusStateInitialising)},
  };
  return plug_device(xs, be, bd, backend_keys, fe, fd, frontend_keys);
}

int remove_vbd(xenbus::XenStore& xs, DomId backend_domid, DomId frontend_domid, std::uint32_t devid, int timeout_ms) {
  const std::string be = vbd_backend_path(backend_domid, frontend_domid, devid);
  const std::string fe = vbd_frontend_path(frontend_domid, devid);
  return unplug_device(xs, be, fe, timeout_ms);
}

}  // namespace pvback::sim
