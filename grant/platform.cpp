#include "grant/platform.hpp"

#include <fstream>
#include <string>

#include "grant/implementations.hpp"

namespace pvback::grant {

Platform::Platform(PlatformConfig config) : config_(std::move(config)) {}

std::unique_ptr<GrantMapper> Platform::open_mapper() const {
  if (config_.kind == PlatformConfig::Kind::Sim) return open_sim_mapper(config_.sim_dir, config_.self);
  return open_xen_mapper();
}

std::unique_ptr<GrantSharer> Platform::open_sharer() const {
  if (config_.kind == PlatformConfig::Kind::Sim) return open_sim_sharer(config_.sim_dir, config_.self);
  return open_xen_sharer();
}

std::unique_ptr<EventChannels> Platform::open_event_channels() const {
  if (config_.kind == PlatformConfig::Kind::Sim) return open_sim_event_channels(config_.sim_dir, config_.self);
  return open_xen_event_channels();
}

bool Platform::direct_io_into_mappings() const {
  if (config_.kind == PlatformConfig::Kind::Sim) return true;
  std::ifstream guest_type("/sys/hypervisor/guest_type");
  std::string type;
  return !(guest_type >> type) || type != "PV";
}

}  // namespace pvback::grant
