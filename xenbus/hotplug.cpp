#include "xenbus/hotplug.hpp"

namespace pvback::xenbus {

HotplugVerdict hotplug_verdict(const std::optional<std::string>& script, const std::optional<std::string>& status,
                               const std::optional<std::string>& error,
                               const std::optional<std::string>& physical_device) {
  using Kind = HotplugVerdict::Kind;
  if (!script || script->empty()) return {Kind::NoScript, {}};
  if (!status || status->empty()) {
    if (physical_device && !physical_device->empty()) return {Kind::Connected, {}};
    return {Kind::Pending, {}};
  }
  if (*status == "connected") return {Kind::Connected, {}};
  if (error && !error->empty()) return {Kind::Failed, *error};
  return {Kind::Failed, "hotplug-status " + *status};
}

}  // namespace pvback::xenbus
